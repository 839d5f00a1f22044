//! An OTLP/HTTP trace receiver for tests: `POST /v1/traces` on 127.0.0.1 (a port of its own),
//! each body kept raw and decoded with the official opentelemetry-proto types, answered 200 with
//! an empty ExportTraceServiceResponse, after a delay if asked (a slow collector). Stopped on drop.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::background::{accept_each, Background};
use tokio::sync::oneshot;

/// The path OTLP/HTTP receivers take traces on.
pub const TRACES_PATH: &str = "/v1/traces";

/// One export request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    /// Header names lower-cased, with their values.
    pub headers: Vec<(String, String)>,
    /// The body exactly as sent.
    pub raw: Vec<u8>,
    pub request: ExportTraceServiceRequest,
}

/// The spans of one trace id, with the resource they came with.
#[derive(Clone, Debug)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    pub resource: Vec<KeyValue>,
    pub spans: Vec<Span>,
}

impl Trace {
    /// Spans without a parent.
    pub fn roots(&self) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| s.parent_span_id.is_empty())
            .collect()
    }

    /// The span with this id.
    pub fn span(&self, id: &[u8]) -> Option<&Span> {
        self.spans.iter().find(|s| s.span_id == id)
    }

    /// The children of `parent`.
    pub fn children(&self, parent: &Span) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Requests that were not a decodable POST /v1/traces: method, path and why.
    rejected: Vec<String>,
}

/// A running receiver.
pub struct OtlpReceiver {
    server: Background,
    shared: Arc<Mutex<Shared>>,
}

impl OtlpReceiver {
    pub fn start() -> anyhow::Result<OtlpReceiver> {
        Self::start_with_delay(Duration::ZERO)
    }

    /// A slow collector: every request is kept and answered only `delay` after its body
    /// arrived, so a client that gives up or exits sooner leaves no trace here.
    pub fn start_with_delay(delay: Duration) -> anyhow::Result<OtlpReceiver> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let server = {
            let shared = shared.clone();
            Background::start(
                "otlp-receiver",
                1,
                Duration::from_secs(1),
                move |listener, stop| accept_loop(listener, shared, delay, stop),
            )?
        };
        Ok(OtlpReceiver { server, shared })
    }

    /// The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT or `otlp.endpoint` take it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every export request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared).received.clone()
    }

    /// Requests that were not a decodable POST /v1/traces.
    pub fn rejected(&self) -> Vec<String> {
        lock(&self.shared).rejected.clone()
    }

    /// Every span received so far, grouped by trace id (first seen first).
    pub fn traces(&self) -> Vec<Trace> {
        let mut order: Vec<String> = Vec::new();
        let mut traces: BTreeMap<String, Trace> = BTreeMap::new();
        for received in lock(&self.shared).received.iter() {
            for rs in &received.request.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                    let id = hex::encode(&span.trace_id);
                    let trace = traces.entry(id.clone()).or_insert_with(|| {
                        order.push(id.clone());
                        Trace {
                            trace_id: id,
                            resource: resource.clone(),
                            spans: Vec::new(),
                        }
                    });
                    trace.spans.push(span.clone());
                }
            }
        }
        order
            .into_iter()
            .filter_map(|id| traces.remove(&id))
            .collect()
    }

    /// Polls every 100 ms until a trace satisfies `pred` (then returns it) or `timeout` passes.
    pub fn wait_for_trace(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Trace) -> bool,
    ) -> anyhow::Result<Trace> {
        let start = Instant::now();
        loop {
            if let Some(trace) = self.traces().into_iter().find(|t| pred(t)) {
                return Ok(trace);
            }
            if start.elapsed() > timeout {
                bail!(
                    "no trace {what} within {timeout:?}; got {} request(s), rejected {:?}",
                    self.received().len(),
                    self.rejected()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A string, bool, int or double attribute as text (`"true"`, `"404"`, `"0.25"`).
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let value = attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// [`attr`] of a span.
pub fn span_attr(span: &Span, key: &str) -> Option<String> {
    attr(&span.attributes, key)
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Mutex<Shared>>,
    delay: Duration,
    stop: oneshot::Receiver<()>,
) {
    accept_each(listener, stop, move |tcp| {
        let shared = shared.clone();
        async move {
            let service = service_fn(move |req| handle(shared.clone(), delay, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        }
    })
    .await
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    delay: Duration,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(reject(&shared, &parts, format!("reading the body: {e}"))),
    };
    tokio::time::sleep(delay).await;
    if parts.method != http::Method::POST || parts.uri.path() != TRACES_PATH {
        return Ok(reject(&shared, &parts, "not POST /v1/traces".into()));
    }
    let request = match ExportTraceServiceRequest::decode(raw.clone()) {
        Ok(request) => request,
        Err(e) => return Ok(reject(&shared, &parts, format!("decoding: {e}"))),
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    lock(&shared).received.push(Received {
        headers,
        raw: raw.to_vec(),
        request,
    });
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    Ok(http::Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(answer)))
        .unwrap_or_default())
}

fn reject(
    shared: &Mutex<Shared>,
    parts: &http::request::Parts,
    why: String,
) -> http::Response<Full<Bytes>> {
    lock(shared)
        .rejected
        .push(format!("{} {}: {why}", parts.method, parts.uri));
    let mut resp = http::Response::new(Full::new(Bytes::from(why)));
    *resp.status_mut() = http::StatusCode::BAD_REQUEST;
    resp
}
