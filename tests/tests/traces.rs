//! Traces: `registry-prober run` against the real docker-registry sends each run as one OTLP
//! trace to a receiver that decodes it with the official opentelemetry-proto types: a root span
//! per run, a span per step, a span per HTTP exchange, failures as ERROR spans with their
//! reason, the endpoint from the config or the environment, the last trace flushed on SIGTERM,
//! and no credentials anywhere.

use std::time::Duration;

use base64::Engine as _;
use http::Method;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::otlp::{attr, span_attr, Trace};
use registry_prober_e2e::prober::prober_with_env;
use registry_prober_e2e::service::Service;
use registry_prober_e2e::{free_port, OtlpReceiver, Registry, RegistryAuth, RegistryOptions};

const RUN_SPAN: &str = "registry_prober.run";
const PASSWORD: &str = "otlp-hunter2-secret";
/// How far a child span may stick out of its parent: they come from separate clock readings.
const SLACK_NANOS: u64 = 5_000_000;

/// The cycle's steps with a registry that needs no token (basic auth).
const STEPS: [&str; 11] = [
    "ping",
    "check_blob",
    "start_upload",
    "upload_blob",
    "push_manifest",
    "pull_manifest_by_tag",
    "pull_manifest_by_digest",
    "pull_blob",
    "delete_manifest",
    "delete_blob",
    "cancel_upload",
];

fn target(name: &str, registry: &str, repo: &str, extra: &str) -> String {
    format!("  - name: {name}\n    registry: {registry}\n    repository: {repo}\n    image: {{layers: 1, layer_size: 4KiB, compression: none}}\n{extra}")
}

/// The single root span of a trace, if it is the run of `target`.
fn run_of<'a>(trace: &'a Trace, target: &str) -> Option<&'a Span> {
    let roots = trace.roots();
    let root = *roots.first()?;
    (roots.len() == 1
        && root.name == RUN_SPAN
        && span_attr(root, "registry_prober.target").as_deref() == Some(target))
    .then_some(root)
}

fn status_code(span: &Span) -> i32 {
    span.status.as_ref().map(|s| s.code).unwrap_or_default()
}

#[track_caller]
fn assert_inside(child: &Span, parent: &Span) {
    assert!(
        child.start_time_unix_nano + SLACK_NANOS >= parent.start_time_unix_nano
            && child.end_time_unix_nano <= parent.end_time_unix_nano + SLACK_NANOS
            && child.start_time_unix_nano <= child.end_time_unix_nano,
        "{} [{}, {}] lies outside {} [{}, {}]",
        child.name,
        child.start_time_unix_nano,
        child.end_time_unix_nano,
        parent.name,
        parent.start_time_unix_nano,
        parent.end_time_unix_nano
    );
}

#[test]
fn a_run_is_one_trace_with_a_span_per_step_and_per_http_exchange_and_no_credentials() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", PASSWORD),
        ..Default::default()
    })
    .expect("registry");
    let receiver = OtlpReceiver::start().expect("receiver");
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("pw");
    let auth = format!(
        "    auth: {{username: prober, password_file: {}}}\n",
        pw.display()
    );
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}otlp:\n  endpoint: {}\n  timeout: 5s\n",
        target("traced", &reg.url(), "probe/traced", &auth),
        receiver.endpoint()
    );
    let mut svc = Service::start(&config).expect("service starts");
    let trace = receiver
        .wait_for_trace("of a successful run", Duration::from_secs(20), |t| {
            run_of(t, "traced").is_some_and(|root| {
                span_attr(root, "registry_prober.success").as_deref() == Some("true")
            })
        })
        .expect("a trace");
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());

    // The resource names the service.
    assert_eq!(
        attr(&trace.resource, "service.name").as_deref(),
        Some("registry-prober")
    );
    assert!(attr(&trace.resource, "service.version").is_some());

    // One root: the run, OK.
    let root = run_of(&trace, "traced").expect("root");
    assert_eq!(status_code(root), StatusCode::Ok as i32);
    assert_eq!(
        span_attr(root, "registry_prober.repository").as_deref(),
        Some("probe/traced")
    );
    assert_eq!(trace.trace_id.len(), 32);

    // A span per step, children of the run, named after their step.
    let steps = trace.children(root);
    for name in STEPS.iter().filter(|s| **s != "cancel_upload") {
        assert!(
            steps.iter().any(|s| s.name == *name),
            "no {name} span among {:?}",
            steps.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
    for step in &steps {
        assert!(
            STEPS.contains(&step.name.as_str()),
            "step span {}",
            step.name
        );
        assert_eq!(
            span_attr(step, "registry_prober.step").as_deref(),
            Some(step.name.as_str())
        );
        assert!(span_attr(step, "registry_prober.subject").is_some());
        assert!(span_attr(step, "registry_prober.bytes_sent").is_some());
        assert!(span_attr(step, "registry_prober.bytes_received").is_some());
        assert_eq!(span_attr(step, "registry_prober.reason"), None);
        assert_eq!(status_code(step), StatusCode::Ok as i32, "{}", step.name);
        assert_inside(step, root);
    }
    // The config blob and the 4 KiB layer: each an upload_blob span with its own bytes.
    let uploads: Vec<&&Span> = steps.iter().filter(|s| s.name == "upload_blob").collect();
    assert_eq!(uploads.len(), 2);
    assert!(
        uploads
            .iter()
            .any(|s| span_attr(s, "registry_prober.bytes_sent")
                .and_then(|b| b.parse::<u64>().ok())
                .is_some_and(|b| b >= 4096)),
        "the layer's bytes"
    );
    for upload in uploads {
        assert_eq!(
            span_attr(upload, "http.response.status_code").as_deref(),
            Some("201")
        );
    }

    // HTTP spans: children of a step span, client spans, inside their step.
    let http: Vec<&Span> = trace
        .spans
        .iter()
        .filter(|s| s.name.starts_with("HTTP "))
        .collect();
    assert!(http.len() >= steps.len(), "{} HTTP spans", http.len());
    for exchange in &http {
        let parent = trace
            .span(&exchange.parent_span_id)
            .expect("the parent is in the trace");
        assert!(
            steps.iter().any(|s| s.span_id == parent.span_id),
            "{} under {}",
            exchange.name,
            parent.name
        );
        assert_eq!(exchange.kind, SpanKind::Client as i32);
        let method = span_attr(exchange, "http.request.method").expect("method");
        assert_eq!(exchange.name, format!("HTTP {method}"));
        assert!(span_attr(exchange, "url.full")
            .is_some_and(|u| u.starts_with(&format!("{}/v2/", reg.url()))));
        assert!(span_attr(exchange, "http.response.status_code").is_some());
        assert_eq!(
            span_attr(exchange, "network.protocol.version").as_deref(),
            Some("1.1")
        );
        assert!(span_attr(exchange, "registry_prober.reused_connection").is_some());
        assert!(span_attr(exchange, "registry_prober.first_byte_seconds").is_some());
        assert_inside(exchange, parent);
    }
    // Every span of the trace hangs off the run.
    assert_eq!(trace.spans.len(), 1 + steps.len() + http.len());

    // The run's log line carries the trace id, so a log line leads to its trace.
    let needle = format!("\"trace_id\":\"{}\"", trace.trace_id);
    svc.wait_for("the run's log line", Duration::from_secs(5), |s| {
        Ok(s.log().contains(&needle))
    })
    .expect("trace id in the log");
    svc.wait_for("a counted export", Duration::from_secs(5), |s| {
        Ok(
            s.metric("registry_prober_trace_exports_total{result=\"success\"}")?
                .unwrap_or(0.0)
                >= 1.0,
        )
    })
    .expect("exports counted");

    // No credentials in the traces (nor the logs, metrics or page).
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("prober:{PASSWORD}"));
    let raw: Vec<u8> = receiver
        .received()
        .into_iter()
        .flat_map(|r| r.raw)
        .collect();
    let raw = String::from_utf8_lossy(&raw);
    for (what, text) in [
        ("traces", raw.into_owned()),
        ("logs", svc.log()),
        ("metrics", svc.metrics().expect("metrics")),
        ("page", svc.get("/").expect("page").text()),
    ] {
        assert!(!text.contains(PASSWORD), "password in {what}");
        assert!(!text.contains(&basic), "basic auth header in {what}");
    }
}

#[test]
fn a_target_on_a_closed_port_sends_an_error_trace_with_reason_connect() {
    let reg = Registry::start_default().expect("registry");
    let receiver = OtlpReceiver::start().expect("receiver");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}{}otlp: {{traces_endpoint: \"{}/v1/traces\"}}\n",
        target("up", &reg.url(), "probe/up", ""),
        target("down", &closed, "probe/down", ""),
        receiver.endpoint()
    );
    let _svc = Service::start(&config).expect("service starts");
    let down = receiver
        .wait_for_trace("of the closed port", Duration::from_secs(20), |t| {
            run_of(t, "down").is_some()
        })
        .expect("a trace of the failing target");
    let root = run_of(&down, "down").expect("root");
    assert_eq!(status_code(root), StatusCode::Error as i32);
    assert_eq!(
        span_attr(root, "registry_prober.success").as_deref(),
        Some("false")
    );
    let message = &root.status.as_ref().expect("status").message;
    assert!(message.contains("127.0.0.1"), "{message}");
    let failed: Vec<&Span> = down
        .children(root)
        .into_iter()
        .filter(|s| status_code(s) == StatusCode::Error as i32)
        .collect();
    assert!(!failed.is_empty(), "no failed step span");
    for step in &failed {
        assert_eq!(
            span_attr(step, "registry_prober.reason").as_deref(),
            Some("connect"),
            "{}",
            step.name
        );
        assert!(!step.status.as_ref().expect("status").message.is_empty());
    }
    // The exchange that never got an answer is an error too, without a status code.
    let exchange = down
        .spans
        .iter()
        .find(|s| s.parent_span_id == failed[0].span_id)
        .expect("the failed exchange");
    assert_eq!(status_code(exchange), StatusCode::Error as i32);
    assert_eq!(span_attr(exchange, "http.response.status_code"), None);

    // The healthy target's traces go to the same receiver, each a trace of its own.
    receiver
        .wait_for_trace("of the healthy target", Duration::from_secs(20), |t| {
            run_of(t, "up").is_some()
        })
        .expect("a trace of the healthy target");
}

#[test]
fn the_endpoint_headers_and_service_name_can_come_from_the_otel_environment() {
    let reg = Registry::start_default().expect("registry");
    let receiver = OtlpReceiver::start().expect("receiver");
    let endpoint = receiver.endpoint();
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}",
        target("env", &reg.url(), "probe/env", "")
    );
    let mut svc = Service::start_with_env(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=env%20s3cret-key"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "prober-e2e"),
            // OTEL_SERVICE_NAME wins over a service.name here, as the spec says.
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,service.name=overridden",
            ),
        ],
    )
    .expect("service starts");
    let trace = receiver
        .wait_for_trace(
            "from the environment's endpoint",
            Duration::from_secs(20),
            |t| run_of(t, "env").is_some(),
        )
        .expect("a trace");
    assert_eq!(
        attr(&trace.resource, "service.name").as_deref(),
        Some("prober-e2e")
    );
    assert_eq!(
        attr(&trace.resource, "deployment.environment").as_deref(),
        Some("test")
    );
    let received = receiver.received();
    let headers = &received[0].headers;
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "x-api-key" && v == "env s3cret-key"),
        "{headers:?}"
    );
    assert!(headers
        .iter()
        .any(|(n, v)| n == "content-type" && v == "application/x-protobuf"));
    svc.wait_for("the exporter's start line", Duration::from_secs(5), |s| {
        Ok(s.log()
            .contains("Exporting a trace of every run over OTLP/HTTP"))
    })
    .expect("logged");
    let log = svc.log();
    assert!(log.contains("x-api-key"), "the header's name is logged");
    assert!(!log.contains("s3cret-key"), "the header's value is not");
}

#[test]
fn sigterm_flushes_the_last_runs_trace_before_exiting_zero() {
    let reg = Registry::start_default().expect("registry");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy");
    // The upload's PUT never gets an answer: the run is in flight when SIGTERM arrives, and is
    // recorded (so its trace queued) only during the drain, moments before the exit.
    proxy.add_rule(Rule::new("stuck-put", "/blobs/uploads/", Fault::Hang).method(Method::PUT));
    // A slow collector: without the flush the process would be gone before it answers.
    let receiver = OtlpReceiver::start_with_delay(Duration::from_millis(500)).expect("receiver");
    let config = format!(
        "defaults: {{interval: 5s, timeout: 2s}}\ntargets:\n{}otlp: {{endpoint: \"{}\"}}\n",
        target("last", &proxy.url(), "probe/last", ""),
        receiver.endpoint()
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for(
        "the upload PUT is in flight",
        Duration::from_secs(15),
        |_| Ok(proxy.hits("stuck-put") >= 1),
    )
    .expect("upload started");
    assert!(receiver.traces().is_empty(), "no run has finished yet");
    svc.signal("TERM").expect("sigterm");
    let code = svc.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(code, 0);
    // Checked once, right after the exit: the flush waited for the receiver's answer.
    assert!(svc.log().contains("Stopped"), "a clean shutdown");
    let traces = receiver.traces();
    let trace = traces
        .iter()
        .find(|t| run_of(t, "last").is_some())
        .unwrap_or_else(|| panic!("the last run's trace did not arrive; log:\n{}", svc.log()));
    let root = run_of(trace, "last").expect("root");
    assert_eq!(status_code(root), StatusCode::Error as i32);
    let upload = trace
        .children(root)
        .into_iter()
        .find(|s| s.name == "upload_blob")
        .expect("upload_blob span");
    assert_eq!(
        span_attr(upload, "registry_prober.reason").as_deref(),
        Some("timeout")
    );
    assert!(trace
        .children(root)
        .iter()
        .any(|s| s.name == "cancel_upload"));
    assert!(svc
        .log()
        .contains(&format!("\"trace_id\":\"{}\"", trace.trace_id)));
}

#[test]
fn once_sends_its_runs_trace_before_it_exits() {
    let reg = Registry::start_default().expect("registry");
    let receiver = OtlpReceiver::start_with_delay(Duration::from_millis(200)).expect("receiver");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prober.yml");
    std::fs::write(
        &config,
        format!(
            "targets:\n{}otlp: {{endpoint: \"{}\"}}\n",
            target("once", &reg.url(), "probe/once", ""),
            receiver.endpoint()
        ),
    )
    .expect("config");
    let config = config.to_string_lossy();
    let out = prober_with_env(&["once", "--config", &config, "--output", "json"], &[])
        .expect("once runs");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = out.report().expect("report");
    let trace_id = report["trace_id"].as_str().expect("trace_id in the report");
    let traces = receiver.traces();
    let trace = traces
        .iter()
        .find(|t| t.trace_id == trace_id)
        .expect("the run's trace arrived before the exit");
    assert!(run_of(trace, "once").is_some());
}

#[test]
fn an_unsupported_otlp_protocol_stops_run_at_start_with_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prober.yml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{}\ntargets:\n{}",
            free_port(),
            target("x", "http://127.0.0.1:5000", "probe/x", "")
        ),
    )
    .expect("config");
    let config = config.to_string_lossy();
    let out = prober_with_env(
        &["run", "--config", &config],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    )
    .expect("run exits");
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "error: OTEL_EXPORTER_OTLP_PROTOCOL: protocol \"grpc\" is not supported (only \"http/protobuf\")"
    );
}

#[test]
fn an_endpoint_the_exporter_refuses_stops_once_with_exit_64_naming_the_variable() {
    let out = prober_with_env(
        &[
            "once",
            "--registry",
            "http://127.0.0.1:5000",
            "--repository",
            "probe/x",
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
    )
    .expect("once exits");
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "error: otlp: invalid exporter configuration: OTEL_EXPORTER_OTLP_ENDPOINT: invalid endpoint 'collector:4318': invalid format"
    );
}
