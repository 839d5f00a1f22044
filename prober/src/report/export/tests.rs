use std::convert::Infallible;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prometheus_client::registry::Registry;
use prost::Message as _;

use super::*;
use crate::config::OtlpConfig;
use crate::outcome::{Step, StepReport};

/// What the test receiver saw: per request its headers and decoded body.
type Seen = Arc<Mutex<Vec<(http::HeaderMap, ExportTraceServiceRequest)>>>;

/// An OTLP/HTTP receiver on 127.0.0.1 answering every request with `status` after `delay`.
async fn receiver(status: u16, delay: Duration) -> (url::Url, Seen) {
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
                        let decoded = ExportTraceServiceRequest::decode(bytes)
                            .expect("a protobuf export request");
                        log.lock().expect("lock").push((parts.headers, decoded));
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
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

fn source(url: url::Url, timeout: Duration) -> OtlpSource {
    let mut key = http::HeaderValue::from_static("s3cret");
    key.set_sensitive(true);
    OtlpSource::File(OtlpConfig {
        traces_url: url,
        headers: OtlpHeaders(vec![(http::HeaderName::from_static("x-api-key"), key)]),
        timeout,
    })
}

fn report(target: &str) -> RunReport {
    RunReport {
        trace_id: RunReport::new_trace_id(),
        size_class: "default".into(),
        upload_mode: "streamed",
        retry_after: None,
        propagation: Vec::new(),
        mount: None,
        canaries: None,
        left_behind: None,
        referrers: Vec::new(),
        target: target.into(),
        registry: "http://127.0.0.1:5000/".into(),
        repository: "probe/x".into(),
        tag: None,
        manifest_digest: None,
        success: true,
        cleanup_failed: false,
        confirmation: false,
        started_at: SystemTime::now(),
        duration_seconds: Duration::from_millis(30),
        steps: vec![StepReport {
            deviations: Vec::new(),
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

fn registered() -> (Registry, Arc<Metrics>) {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    (registry, metrics)
}

fn count(registry: &Registry, result: &str) -> String {
    let text =
        crate::report::metrics::encode_as(registry, crate::report::metrics::Format::OpenMetrics);
    let series = format!("registry_prober_trace_exports_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or("absent")
        .to_string()
}

fn start(source: &OtlpSource, metrics: Arc<Metrics>) -> TraceExporter {
    TraceExporter::start(OtlpExporter::build(source).expect("builds"), metrics)
}

#[tokio::test]
async fn exports_queued_runs_with_the_configured_headers_and_flushes() {
    let (url, seen) = receiver(200, Duration::ZERO).await;
    let (registry, metrics) = registered();
    let exporter = start(&source(url, Duration::from_secs(5)), metrics);
    let (a, b) = (report("a"), report("b"));
    exporter.record(&a);
    exporter.record(&b);
    assert!(exporter.flush(Duration::from_secs(5)).await, "flushed");

    let seen = seen.lock().expect("lock");
    let spans: Vec<_> = seen
        .iter()
        .flat_map(|(_, r)| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert_eq!(spans.len(), 4, "a root and a step span per run");
    for run in [&a, &b] {
        assert!(spans
            .iter()
            .any(|s| hex::encode(&s.trace_id) == run.trace_id && s.name == trace::RUN_SPAN));
    }
    let (headers, request) = &seen[0];
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-api-key"], "s3cret");
    let resource = request.resource_spans[0]
        .resource
        .as_ref()
        .expect("resource");
    assert!(resource
        .attributes
        .iter()
        .any(|kv| kv.key == "service.name"));
    assert_eq!(count(&registry, "success"), "2");
    assert_eq!(count(&registry, "failure"), "0");
}

/// Exports one run to a receiver answering `status` within `timeout`: how many requests it
/// saw, and the counters.
async fn export_one(status: u16, delay: Duration, timeout: Duration) -> (usize, Registry) {
    let (url, seen) = receiver(status, delay).await;
    let (registry, metrics) = registered();
    let exporter = start(&source(url, timeout), metrics);
    exporter.record(&report("a"));
    assert!(exporter.flush(Duration::from_secs(5)).await, "flushed");
    let requests = seen.lock().expect("lock").len();
    (requests, registry)
}

#[tokio::test]
async fn a_refused_export_is_counted_once_per_run_whatever_the_retries() {
    // 400: not worth a retry.
    let (requests, registry) = export_one(400, Duration::ZERO, Duration::from_secs(5)).await;
    assert_eq!(requests, 1);
    assert_eq!(count(&registry, "failure"), "1");
    assert_eq!(count(&registry, "success"), "0");
    // 503: the exporter retries (3 more times, 100 ms apart and doubling), one failure still.
    let (requests, registry) = export_one(503, Duration::ZERO, Duration::from_secs(5)).await;
    assert_eq!(requests, 4);
    assert_eq!(count(&registry, "failure"), "1");
}

#[tokio::test]
async fn a_collector_that_does_not_answer_fails_the_export_at_its_timeout() {
    let started = std::time::Instant::now();
    let (requests, registry) =
        export_one(200, Duration::from_secs(30), Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(requests >= 1);
    assert_eq!(count(&registry, "failure"), "1");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_the_trace() {
    let (registry, metrics) = registered();
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

#[tokio::test]
async fn the_files_headers_win_over_the_environments() {
    let (url, seen) = receiver(200, Duration::ZERO).await;
    let OtlpSource::File(config) = source(url.clone(), Duration::from_secs(5)) else {
        unreachable!("a file source")
    };
    let client = OtlpClient {
        transport: Transport::new(
            tls::client_config(&TlsOptions::default()).expect("tls"),
            Arc::new(SystemResolver),
        ),
        headers: config.headers,
        timeout: Duration::from_secs(5),
        last_error: LastError::default(),
        announced: AtomicBool::new(false),
    };
    // As the exporter hands it over, with OTEL_EXPORTER_OTLP_HEADERS=x-api-key=from-env.
    let request = http::Request::post(url.as_str())
        .header("x-api-key", "from-env")
        .body(Bytes::from(
            ExportTraceServiceRequest::default().encode_to_vec(),
        ))
        .expect("request");
    let response = client.send_bytes(request).await.expect("sent");
    assert_eq!(response.status(), 200);
    let seen = seen.lock().expect("lock");
    let values: Vec<_> = seen[0].0.get_all("x-api-key").iter().collect();
    assert_eq!(values, ["s3cret"]);
}

#[test]
fn logged_urls_carry_no_credentials() {
    let uri: http::Uri = "http://user:pw@collector:4318/v1/traces?api_key=k"
        .parse()
        .expect("uri");
    let shown = shown(&uri);
    assert!(!shown.contains("pw") && !shown.contains("user"), "{shown}");
    assert!(
        shown.starts_with("http://collector:4318/v1/traces"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_collectors_answer_over_its_bound_fails_naming_the_limit_and_the_url() {
    use crate::http::response::tests::{serve, Answer, ENDLESS};
    let (addr, _) = serve(|_| Answer {
        status: 200,
        headers: Vec::new(),
        body: ENDLESS,
    })
    .await;
    let url: url::Url = format!("http://{addr}/v1/traces").parse().expect("url");
    let client = OtlpClient {
        transport: Transport::new(
            tls::client_config(&TlsOptions::default()).expect("tls"),
            Arc::new(SystemResolver),
        ),
        headers: OtlpHeaders(Vec::new()),
        timeout: Duration::from_secs(20),
        last_error: LastError::default(),
        announced: AtomicBool::new(false),
    };
    let request = http::Request::post(url.as_str())
        .body(Bytes::from(
            ExportTraceServiceRequest::default().encode_to_vec(),
        ))
        .expect("request");
    client
        .send_bytes(request)
        .await
        .expect_err("over the bound");
    assert_eq!(
        client.last_error.take().as_deref(),
        Some(
            format!("{url}: the response is over its limit of 4194304 bytes, not read further")
                .as_str()
        )
    );
}
