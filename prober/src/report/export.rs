//! The trace sink: each finished run's spans go on a bounded queue to one background task, which
//! batches what has queued up and hands it to the OpenTelemetry SDK's OTLP/HTTP exporter. A slow
//! or absent collector never holds a run up: a full queue drops the run's trace and counts it.
//! The queue is ours, not the SDK's BatchSpanProcessor, because that one counts neither drops nor
//! results per run (it drops single spans and logs a total at shutdown) and blocks on each export
//! on a thread of its own, outside tokio, where our transport cannot run; ours counts
//! `registry_prober_trace_exports_total{result}` per run.
//! The exporter sends through `OtlpClient`, opentelemetry-http's `HttpClient` on the prober's own
//! transport: no second HTTP client, pool or crypto provider (Cargo.toml has the measurements).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{
    ExporterBuildError, Protocol, WithExportConfig as _, WithHttpConfig as _,
};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

use crate::config::{OtlpHeaders, OtlpSource};
use crate::http::tls::{self, TlsConfigError, TlsOptions};
use crate::http::transport::{SystemResolver, Transport, TransportError};
use crate::http::{error_chain, redact_url};
use crate::outcome::RunReport;
use crate::report::metrics::{ExportResult, Metrics};
use crate::report::trace;

/// Runs whose traces may wait for export; beyond this a run's trace is dropped.
pub(crate) const QUEUE_RUNS: usize = 512;
/// Runs sent in one export request at most.
const MAX_BATCH_RUNS: usize = 64;
/// The most of a receiver's answer read (the SDK's own clients stop at 4 MiB too).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why the trace exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExporterError {
    /// A setting the exporter refused (e.g. an OTEL_EXPORTER_OTLP_* variable): a config error.
    #[error(transparent)]
    Config(ExporterBuildError),
    #[error("loading the system's root certificates")]
    Tls(#[source] TlsConfigError),
}

/// The SDK's OTLP/HTTP span exporter, configured and ready to be started. Built before the
/// runtime starts, so that a setting it refuses stops the command with exit 64.
pub(crate) struct OtlpExporter {
    exporter: opentelemetry_otlp::SpanExporter,
    timeout: Duration,
    last_error: LastError,
}

impl OtlpExporter {
    /// The config file's endpoint, headers and timeout, or the OTEL_EXPORTER_OTLP_* variables
    /// (read by the exporter itself); always OTLP/HTTP protobuf, trusted through the system's
    /// root certificates, described by `trace::resource()`.
    pub(crate) fn build(source: &OtlpSource) -> Result<OtlpExporter, ExporterError> {
        let tls = tls::client_config(&TlsOptions::default()).map_err(ExporterError::Tls)?;
        let timeout = source.timeout();
        let last_error = LastError::default();
        let client = OtlpClient {
            transport: Transport::new(tls, Arc::new(SystemResolver)),
            headers: match source {
                OtlpSource::File(config) => config.headers.clone(),
                OtlpSource::Env { .. } => OtlpHeaders::default(),
            },
            timeout,
            last_error: last_error.clone(),
            announced: AtomicBool::new(false),
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(timeout)
            .with_http_client(client);
        if let OtlpSource::File(config) = source {
            builder = builder.with_endpoint(config.traces_url.as_str());
        }
        let mut exporter = builder.build().map_err(ExporterError::Config)?;
        exporter.set_resource(&trace::resource());
        Ok(OtlpExporter {
            exporter,
            timeout,
            last_error,
        })
    }
}

enum Msg {
    /// The spans of one run.
    Run(Vec<SpanData>),
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
    /// Starts the export task on the current tokio runtime.
    pub(crate) fn start(exporter: OtlpExporter, metrics: Arc<Metrics>) -> TraceExporter {
        let (queue, rx) = mpsc::channel(QUEUE_RUNS);
        let task = ExportTask {
            otlp: exporter,
            metrics: metrics.clone(),
        };
        tokio::spawn(task.run(rx));
        TraceExporter { queue, metrics }
    }

    /// Queues the trace of a finished run; drops and counts it when the queue is full.
    pub(crate) fn record(&self, report: &RunReport) {
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
    pub(crate) async fn flush(&self, within: Duration) -> bool {
        let (done, finished) = oneshot::channel();
        let flushed = async {
            self.queue.send(Msg::Flush(done)).await.ok()?;
            finished.await.ok()
        };
        matches!(tokio::time::timeout(within, flushed).await, Ok(Some(())))
    }
}

/// The background half: owns the exporter and does the sending.
struct ExportTask {
    otlp: OtlpExporter,
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

    async fn export(&self, batch: Vec<Vec<SpanData>>) {
        let runs = batch.len() as u64;
        let spans = batch.into_iter().flatten().collect();
        let timeout = self.otlp.timeout;
        self.otlp.last_error.take();
        // The exporter's retries stop starting after its timeout, but do not cut the attempt
        // in flight: this bounds the whole export.
        let result = match tokio::time::timeout(timeout, self.otlp.exporter.export(spans)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("timed out after {timeout:?}")),
        };
        match result {
            Ok(()) => {
                self.metrics.trace_exports(ExportResult::Success, runs);
                tracing::debug!(runs, "Traces exported");
            }
            Err(error) => {
                self.metrics.trace_exports(ExportResult::Failure, runs);
                tracing::warn!(
                    runs,
                    error = %error,
                    cause = self.otlp.last_error.take().as_deref().unwrap_or("-"),
                    "Trace export failed"
                );
            }
        }
    }
}

/// Why the client's last request failed, kept for the export's log line: the exporter itself
/// reports a failed request as "network error" only.
#[derive(Clone, Default)]
struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    fn set(&self, error: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The exporter's HTTP client: the prober's own transport (rustls with ring, the system roots,
/// its resolver), a deadline per request (opentelemetry-http leaves that to the client), and
/// the config file's headers set last, so that they win over OTEL_EXPORTER_OTLP_HEADERS.
struct OtlpClient {
    transport: Transport,
    headers: OtlpHeaders,
    timeout: Duration,
    last_error: LastError,
    /// Whether the first request's URL and header names have been logged.
    announced: AtomicBool,
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpClient")
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why an export request failed.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error(transparent)]
    Transport(TransportError),
    #[error("timed out after {0:?} reading the response")]
    Timeout(Duration),
    #[error("reading the response")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the response is over its limit of {MAX_RESPONSE_BYTES} bytes, not read further")]
    TooLong,
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        mut request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        for (name, value) in &self.headers.0 {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let url = shown(request.uri());
        if !self.announced.swap(true, Ordering::Relaxed) {
            // The exporter resolves the endpoint and the environment's headers itself: this
            // is where the resolved ones show. Header values are never logged.
            let names: Vec<&str> = request.headers().keys().map(|n| n.as_str()).collect();
            tracing::info!(url = %url, headers = ?names, "Sending traces");
        }
        match self.send(request).await {
            Ok(response) => {
                if !response.status().is_success() {
                    self.last_error
                        .set(format!("{url} answered {}", response.status()));
                }
                Ok(response)
            }
            Err(e) => {
                self.last_error.set(format!("{url}: {}", error_chain(&e)));
                Err(e.into())
            }
        }
    }
}

impl OtlpClient {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, RequestError> {
        let deadline = Instant::now() + self.timeout;
        let request = request.map(|body| Full::new(body).map_err(|never| match never {}).boxed());
        let (response, _timing) = self
            .transport
            .send(request, deadline)
            .await
            .map_err(RequestError::Transport)?;
        let (parts, body) = response.into_parts();
        let body = timeout_at(deadline, Limited::new(body, MAX_RESPONSE_BYTES).collect())
            .await
            .map_err(|_| RequestError::Timeout(self.timeout))?
            .map_err(|e| match e.downcast::<LengthLimitError>() {
                Ok(_) => RequestError::TooLong,
                Err(e) => RequestError::Body(e),
            })?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }
}

/// A request's URL as logs may show it: without credentials.
fn shown(uri: &http::Uri) -> String {
    match url::Url::parse(&uri.to_string()) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            redact_url(&url)
        }
        Err(_) => uri.path().to_string(),
    }
}

#[cfg(test)]
mod tests;
