//! The trace sink: each finished run's spans go on a bounded queue to one background task,
//! which batches what has queued up and POSTs it to the OTLP/HTTP endpoint as protobuf. A slow
//! or absent collector never holds a run up: a full queue drops the run's trace and counts it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

use crate::config::OtlpConfig;
use crate::http::error_chain;
use crate::http::tls::{self, TlsConfigError, TlsOptions};
use crate::http::transport::{SystemResolver, Transport, TransportError};
use crate::outcome::RunReport;
use crate::report::metrics::{ExportResult, Metrics};
use crate::report::trace::{self, proto, Resource};

/// Runs whose traces may wait for export; beyond this a run's trace is dropped.
pub const QUEUE_RUNS: usize = 512;
/// Runs sent in one export request at most.
const MAX_BATCH_RUNS: usize = 64;
/// The start of an error answer kept for the log.
const MAX_DETAIL_CHARS: usize = 200;

enum Msg {
    /// The spans of one run.
    Run(Vec<proto::Span>),
    /// Answered once everything queued before it has been exported (or has failed).
    Flush(oneshot::Sender<()>),
}

/// Hands run traces to the export task. Cheap to clone: every clone feeds the same queue.
#[derive(Clone)]
pub struct TraceExporter {
    queue: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
}

impl TraceExporter {
    /// Starts the export task on the current tokio runtime. The endpoint is trusted through
    /// the system's root certificates.
    pub fn start(
        config: OtlpConfig,
        resource: Resource,
        metrics: Arc<Metrics>,
    ) -> Result<TraceExporter, TlsConfigError> {
        let tls = tls::client_config(&TlsOptions::default())?;
        let task = ExportTask {
            transport: Transport::new(tls, Arc::new(SystemResolver)),
            url: crate::http::redact_url(&config.traces_url),
            config,
            resource,
            metrics: metrics.clone(),
        };
        let (queue, rx) = mpsc::channel(QUEUE_RUNS);
        tokio::spawn(task.run(rx));
        Ok(TraceExporter { queue, metrics })
    }

    /// Queues the trace of a finished run; drops and counts it when the queue is full.
    pub fn record(&self, report: &RunReport) {
        if self.queue.try_send(Msg::Run(trace::spans(report))).is_err() {
            self.metrics.trace_exports(ExportResult::Dropped, 1);
            tracing::warn!(
                target_name = %report.target,
                trace_id = %report.trace_id,
                queued_runs = QUEUE_RUNS,
                "Trace export queue full, dropping the run's trace"
            );
        }
    }

    /// Waits until every trace queued before this call has been exported or has failed, at
    /// most `within`; false when time ran out first.
    pub async fn flush(&self, within: Duration) -> bool {
        let (done, finished) = oneshot::channel();
        let flushed = async {
            self.queue.send(Msg::Flush(done)).await.ok()?;
            finished.await.ok()
        };
        matches!(tokio::time::timeout(within, flushed).await, Ok(Some(())))
    }
}

/// Why an export request failed.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("building the request")]
    Request(#[source] http::Error),
    #[error(transparent)]
    Transport(TransportError),
    #[error("timed out after {0:?} reading the response")]
    Timeout(Duration),
    #[error("reading the response")]
    Body(#[source] hyper::Error),
    #[error("the receiver answered {status}{detail}")]
    Status { status: StatusCode, detail: String },
}

/// The background half: owns the connection pool and does the sending.
struct ExportTask {
    config: OtlpConfig,
    /// The traces URL as logs may show it.
    url: String,
    resource: Resource,
    transport: Transport,
    metrics: Arc<Metrics>,
}

impl ExportTask {
    async fn run(self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(first) = rx.recv().await {
            // Whatever queued up while the previous export was in flight goes out together,
            // up to a flush: it is answered right after what came before it.
            let mut batch = Vec::new();
            let mut flush = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Run(spans) => batch.push(spans),
                    Msg::Flush(done) => {
                        flush = Some(done);
                        break;
                    }
                }
                if batch.len() < MAX_BATCH_RUNS {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.export(batch).await;
            }
            if let Some(done) = flush {
                let _ = done.send(());
            }
        }
    }

    async fn export(&self, batch: Vec<Vec<proto::Span>>) {
        let runs = batch.len() as u64;
        let body = trace::encode(&self.resource, batch.into_iter().flatten().collect());
        match self.send(body).await {
            Ok(()) => {
                self.metrics.trace_exports(ExportResult::Success, runs);
                tracing::debug!(url = %self.url, runs, "Traces exported");
            }
            Err(e) => {
                self.metrics.trace_exports(ExportResult::Failure, runs);
                tracing::warn!(
                    url = %self.url,
                    runs,
                    error = %error_chain(&e),
                    "Trace export failed"
                );
            }
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), ExportError> {
        let deadline = Instant::now() + self.config.timeout;
        let mut req = Request::post(self.config.traces_url.as_str())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("registry-prober/", env!("CARGO_PKG_VERSION")),
            )
            .body(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(ExportError::Request)?;
        for (name, value) in &self.config.headers.0 {
            req.headers_mut().append(name.clone(), value.clone());
        }
        let (resp, _timing) = self
            .transport
            .send(req, deadline)
            .await
            .map_err(ExportError::Transport)?;
        let status = resp.status();
        let protobuf = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/x-protobuf"));
        let body = timeout_at(deadline, resp.into_body().collect())
            .await
            .map_err(|_| ExportError::Timeout(self.config.timeout))?
            .map_err(ExportError::Body)?
            .to_bytes();
        if !status.is_success() {
            return Err(ExportError::Status {
                status,
                detail: error_detail(&body, protobuf),
            });
        }
        // A receiver may accept a request yet reject some of its spans.
        if let Ok(answer) = proto::ExportTraceServiceResponse::decode(body) {
            if let Some(partial) = answer.partial_success {
                if partial.rejected_spans > 0 || !partial.error_message.is_empty() {
                    tracing::warn!(
                        url = %self.url,
                        rejected_spans = partial.rejected_spans,
                        message = %partial.error_message,
                        "The trace receiver rejected some spans"
                    );
                }
            }
        }
        Ok(())
    }
}

/// What an error answer says: the message of a protobuf google.rpc.Status (as OTLP/HTTP
/// receivers send) or the start of a text body.
fn error_detail(body: &[u8], protobuf: bool) -> String {
    let text = if protobuf {
        proto::RpcStatus::decode(body)
            .map(|s| s.message)
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    format!(": {cut:?}")
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::time::SystemTime;

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::config::otlp::OtlpHeaders;
    use crate::outcome::{Step, StepReport};

    /// What the test receiver saw: per request its headers and decoded body.
    type Seen = Arc<Mutex<Vec<(http::HeaderMap, proto::ExportTraceServiceRequest)>>>;

    /// An OTLP/HTTP receiver on 127.0.0.1 answering every request with `status`.
    async fn receiver(status: u16) -> (url::Url, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.expect("body").to_bytes();
                            let decoded = proto::ExportTraceServiceRequest::decode(bytes)
                                .expect("a protobuf export request");
                            log.lock().expect("lock").push((parts.headers, decoded));
                            let answer = proto::RpcStatus {
                                code: 8,
                                message: "queue full".into(),
                            };
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::from(answer.encode_to_vec())))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        let url = format!("http://{addr}/v1/traces").parse().expect("url");
        (url, seen)
    }

    fn config(url: url::Url) -> OtlpConfig {
        let mut key = http::HeaderValue::from_static("s3cret");
        key.set_sensitive(true);
        OtlpConfig {
            traces_url: url,
            headers: OtlpHeaders(vec![(http::HeaderName::from_static("x-api-key"), key)]),
            timeout: Duration::from_secs(5),
        }
    }

    fn report(target: &str) -> RunReport {
        RunReport {
            trace_id: RunReport::new_trace_id(),
            size_class: "default".into(),
            retry_after: None,
            propagation: Vec::new(),
            mount: None,
            canaries: None,
            target: target.into(),
            registry: "http://127.0.0.1:5000/".into(),
            repository: "probe/x".into(),
            tag: None,
            manifest_digest: None,
            success: true,
            cleanup_failed: false,
            started_at: SystemTime::now(),
            duration_seconds: Duration::from_millis(30),
            steps: vec![StepReport {
                step: Step::CheckBlob,
                path: "origin".into(),
                subject: "config".into(),
                success: true,
                started_at: SystemTime::now(),
                duration_seconds: Duration::from_millis(10),
                reason: None,
                error: None,
                status: None,
                registry_code: None,
                bytes_sent: 0,
                bytes_received: 0,
                requests: Vec::new(),
            }],
        }
    }

    fn metrics() -> (Registry, Arc<Metrics>) {
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry));
        (registry, metrics)
    }

    fn count(registry: &Registry, result: &str) -> String {
        let text = crate::report::metrics::encode_as(
            registry,
            crate::report::metrics::Format::OpenMetrics,
        );
        let series = format!("registry_prober_trace_exports_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or("absent")
            .to_string()
    }

    #[tokio::test]
    async fn exports_queued_runs_with_the_configured_headers_and_flushes() {
        let (url, seen) = receiver(200).await;
        let (registry, metrics) = metrics();
        let exporter = TraceExporter::start(config(url), Resource::from_env(|_| None), metrics)
            .expect("starts");
        let (a, b) = (report("a"), report("b"));
        exporter.record(&a);
        exporter.record(&b);
        assert!(exporter.flush(Duration::from_secs(5)).await, "flushed");

        let seen = seen.lock().expect("lock");
        let spans: Vec<&proto::Span> = seen
            .iter()
            .flat_map(|(_, r)| &r.resource_spans[0].scope_spans[0].spans)
            .collect();
        assert_eq!(spans.len(), 4, "a root and a step span per run");
        for run in [&a, &b] {
            assert!(spans
                .iter()
                .any(|s| hex::encode(&s.trace_id) == run.trace_id && s.name == trace::RUN_SPAN));
        }
        let (headers, _) = &seen[0];
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["x-api-key"], "s3cret");
        assert_eq!(count(&registry, "success"), "2");
        assert_eq!(count(&registry, "failure"), "0");
    }

    #[tokio::test]
    async fn a_refused_export_is_counted_as_a_failure_per_run() {
        let (url, seen) = receiver(503).await;
        let (registry, metrics) = metrics();
        let exporter = TraceExporter::start(config(url), Resource::from_env(|_| None), metrics)
            .expect("starts");
        exporter.record(&report("a"));
        assert!(exporter.flush(Duration::from_secs(5)).await);
        assert_eq!(seen.lock().expect("lock").len(), 1);
        assert_eq!(count(&registry, "failure"), "1");
        assert_eq!(count(&registry, "success"), "0");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_the_trace() {
        let (registry, metrics) = metrics();
        // No task drains this queue.
        let (queue, _rx) = mpsc::channel(1);
        let exporter = TraceExporter {
            queue,
            metrics: metrics.clone(),
        };
        exporter.record(&report("a"));
        exporter.record(&report("a"));
        assert_eq!(count(&registry, "dropped"), "1");
    }

    #[test]
    fn error_answers_are_quoted_short() {
        let status = proto::RpcStatus {
            code: 3,
            message: "bad span".into(),
        };
        assert_eq!(
            error_detail(&status.encode_to_vec(), true),
            ": \"bad span\""
        );
        assert_eq!(error_detail(b"  ", false), "");
        assert_eq!(error_detail(&[b'x'; 500], false).len(), 2 + 2 + 200);
    }
}
