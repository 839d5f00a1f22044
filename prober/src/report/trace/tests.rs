use std::collections::HashMap;

use opentelemetry::Value;

use super::*;
use crate::outcome::{Reason, Step};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn exchange(method: &str, start: u64, status: u16) -> HttpRecord {
    HttpRecord {
        started_at: Some(at(start)),
        method: method.to_string(),
        url: "http://127.0.0.1:5000/v2/probe/blobs/uploads/?_state=REDACTED".to_string(),
        status: Some(status),
        http_version: Some("HTTP/1.1"),
        connect_seconds: Some(ms(1)),
        first_byte_seconds: Some(ms(5)),
        transfer_seconds: Some(ms(2)),
        bytes_sent: 10,
        bytes_received: 20,
        ..HttpRecord::default()
    }
}

fn step(step: Step, start: u64, duration: u64, requests: Vec<HttpRecord>) -> StepReport {
    StepReport {
        deviations: Vec::new(),
        step,
        path: "origin".into(),
        subject: "layer 1".to_string(),
        success: true,
        started_at: at(start),
        duration_seconds: ms(duration),
        reason: None,
        error: None,
        status: None,
        registry_code: None,
        bytes_sent: requests.iter().map(|r| r.bytes_sent).sum(),
        bytes_received: requests.iter().map(|r| r.bytes_received).sum(),
        requests,
    }
}

fn report() -> RunReport {
    let mut failed = step(Step::PullBlob, 40, 30, vec![exchange("GET", 41, 200)]);
    failed.success = false;
    failed.reason = Some(Reason::DigestMismatch);
    failed.error = Some("expected sha256:aa, got sha256:bb".to_string());
    RunReport {
        trace_id: TRACE_ID.to_string(),
        size_class: "default".into(),
        upload_mode: "streamed",
        retry_after: None,
        propagation: Vec::new(),
        mount: None,
        canaries: None,
        left_behind: None,
        referrers: Vec::new(),
        target: "local".to_string(),
        registry: "http://127.0.0.1:5000/".to_string(),
        repository: "probe/x".to_string(),
        tag: Some("registry-prober-1-00000000".to_string()),
        manifest_digest: None,
        success: false,
        cleanup_failed: false,
        confirmation: false,
        started_at: at(0),
        duration_seconds: ms(100),
        steps: vec![
            step(
                Step::StartUpload,
                0,
                20,
                vec![exchange("HEAD", 1, 404), exchange("POST", 9, 202)],
            ),
            // An exchange whose phases add up to more than its step lasted.
            step(Step::UploadBlob, 20, 5, vec![exchange("PUT", 21, 201)]),
            failed,
        ],
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn string(s: &str) -> Option<Value> {
    Some(Value::from(s.to_string()))
}

#[test]
fn a_run_is_a_root_span_with_a_child_per_step_and_a_grandchild_per_exchange() {
    let spans = spans(&report());
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            RUN_SPAN,
            "start_upload",
            "HTTP HEAD",
            "HTTP POST",
            "upload_blob",
            "HTTP PUT",
            "pull_blob",
            "HTTP GET"
        ]
    );
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    assert_eq!(by_id.len(), spans.len(), "span ids are unique");
    let root = &spans[0];
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    for span in &spans {
        assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
        assert!(span.span_context.is_sampled());
        assert_ne!(span.span_context.span_id(), SpanId::INVALID);
        if span.name == RUN_SPAN {
            continue;
        }
        let parent = by_id[&span.parent_span_id];
        if span.name.starts_with("HTTP ") {
            assert_eq!(span.span_kind, SpanKind::Client);
            assert!(<Step as strum::IntoEnumIterator>::iter().any(|s| s.as_str() == parent.name));
        } else {
            assert_eq!(span.span_kind, SpanKind::Internal);
            assert_eq!(parent.name, RUN_SPAN);
        }
        assert!(
            parent.start_time <= span.start_time && span.end_time <= parent.end_time,
            "{} lies outside {}",
            span.name,
            parent.name
        );
    }
    assert_eq!(by_id[&spans[5].parent_span_id].name, "upload_blob");
    // The recorded times, not the time of tracing.
    assert_eq!(root.start_time, at(0));
    assert_eq!(root.end_time, at(100));
    assert_eq!(spans[2].start_time, at(1), "the HEAD's recorded start");
    assert_eq!(spans[2].end_time, at(9), "plus its 8 ms of phases");
    // 8 ms of phases inside a 5 ms step: cut at the step's end.
    assert_eq!(spans[5].start_time, at(21));
    assert_eq!(spans[5].end_time, at(25));
}

#[test]
fn steps_carry_their_outcome_and_the_run_its_first_failure() {
    let spans = spans(&report());
    let root = &spans[0];
    assert_eq!(
        root.status,
        Status::error("pull_blob (layer 1): expected sha256:aa, got sha256:bb")
    );
    assert_eq!(
        attr(root, "registry_prober.success"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        attr(root, "registry_prober.target").cloned(),
        string("local")
    );
    assert_eq!(
        attr(root, "registry_prober.tag").cloned(),
        string("registry-prober-1-00000000")
    );

    let failed = &spans[6];
    assert_eq!(
        attr(failed, "registry_prober.reason").cloned(),
        string("digest_mismatch")
    );
    assert!(matches!(failed.status, Status::Error { .. }));
    let upload = &spans[1];
    assert_eq!(upload.status, Status::Ok);
    assert_eq!(attr(upload, "registry_prober.reason"), None);
    assert_eq!(
        attr(upload, "http.response.status_code"),
        Some(&Value::I64(202))
    );
    assert_eq!(
        attr(upload, "registry_prober.bytes_received"),
        Some(&Value::I64(40))
    );

    let head = &spans[2];
    assert_eq!(head.status, Status::Unset, "an expected 404 is no error");
    assert_eq!(
        attr(head, "network.protocol.version").cloned(),
        string("1.1")
    );
    assert_eq!(
        attr(head, "registry_prober.first_byte_seconds"),
        Some(&Value::F64(0.005))
    );
    assert_eq!(attr(head, "registry_prober.dns_seconds"), None);
    assert_eq!(
        attr(head, "url.full").cloned(),
        string("http://127.0.0.1:5000/v2/probe/blobs/uploads/?_state=REDACTED")
    );
}

#[test]
fn a_report_without_a_valid_trace_id_still_gets_one() {
    for bad in [
        "",
        "00000000000000000000000000000000",
        "4bf92f35",
        "not hex",
    ] {
        let mut r = report();
        r.trace_id = bad.to_string();
        let spans = spans(&r);
        let id = spans[0].span_context.trace_id();
        assert_ne!(id, TraceId::INVALID, "{bad:?}");
        assert!(spans.iter().all(|s| s.span_context.trace_id() == id));
    }
}

#[test]
fn the_resource_names_the_prober_and_its_version() {
    // The process's own environment: the tests run without OTEL_SERVICE_NAME (the e2e test
    // covers the variables).
    let resource = resource();
    let get = |key: &'static str| resource.get(&Key::from_static_str(key));
    assert_eq!(get("service.name"), string(DEFAULT_SERVICE_NAME));
    assert_eq!(get("service.version"), string(env!("CARGO_PKG_VERSION")));
    assert_eq!(get("telemetry.sdk.language"), string("rust"));
}
