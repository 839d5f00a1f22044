//! Registry answers a client must not trust, injected by the fault proxy in front of the real
//! docker-registry: each is a failed step with a precise reason and message, never a panic,
//! and cleanup still leaves nothing behind.

use http::Method;
use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::prober::{first_failure, once_json};
use registry_prober_e2e::Registry;
use serde_json::Value;

const REPO: &str = "registry-prober/faults";
/// One 64 KiB layer keeps these runs short; the config blob is pulled first.
const IMAGE: [&str; 4] = ["--layers", "1", "--layer-size", "64KiB"];

struct Setup {
    registry: Registry,
    proxy: FaultProxy,
}

fn setup() -> Setup {
    let registry = Registry::start_default().expect("registry starts");
    let proxy = FaultProxy::start(&registry.url()).expect("proxy starts");
    Setup { registry, proxy }
}

fn run(s: &Setup) -> (i32, Value) {
    let url = s.proxy.url();
    let mut args = vec!["--registry", url.as_str(), "--repository", REPO];
    args.extend_from_slice(&IMAGE);
    once_json(&args).expect("once runs")
}

fn failed_step(report: &Value) -> (String, String, String) {
    let f = first_failure(report).unwrap_or_else(|| panic!("no failed step in {report:#}"));
    (
        f["step"].as_str().expect("step").to_string(),
        f["reason"].as_str().expect("reason").to_string(),
        f["error"].as_str().expect("error").to_string(),
    )
}

/// The report's steps named `name`, in order.
fn steps_named<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|st| st["step"] == name)
        .collect()
}

/// Cleanup ran even though the run failed: nothing of ours is left in storage.
fn assert_cleaned_up(s: &Setup, report: &Value) {
    let cleanup_failures: Vec<&Value> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|st| {
            matches!(
                st["step"].as_str(),
                Some("delete_manifest" | "delete_blob" | "cancel_upload")
            ) && st["success"] == false
        })
        .collect();
    assert!(
        cleanup_failures.is_empty(),
        "cleanup failed: {cleanup_failures:#?}"
    );
    let st = s.registry.storage();
    assert_eq!(st.tags(REPO).expect("tags"), Vec::<String>::new());
    assert_eq!(
        st.manifest_revisions(REPO).expect("revisions"),
        Vec::<String>::new()
    );
    assert_eq!(st.uploads(REPO).expect("uploads"), Vec::<String>::new());
}

/// Runs with `count` bytes more after every GET body under `path` (chunked, so the client is
/// not told): the step that fails must be `step` for `reason`; the report and its error.
fn overrun(s: &Setup, path: &str, count: usize, step: &str, reason: &str) -> (Value, String) {
    s.proxy.add_rule(
        Rule::new(
            "overrun",
            path,
            Fault::AppendBytes {
                count,
                keep_content_length: true,
            },
        )
        .method(Method::GET),
    );
    let (code, report) = run(s);
    assert_eq!(code, 1);
    let (failed, why, error) = failed_step(&report);
    assert_eq!((failed.as_str(), why.as_str()), (step, reason), "{error}");
    (report, error)
}

/// The failed step read a number of bytes in `range`.
fn assert_received(report: &Value, range: std::ops::Range<u64>) {
    let failed = first_failure(report).expect("failed");
    let received = failed["bytes_received"].as_u64().expect("bytes");
    assert!(
        range.contains(&received),
        "read {received} bytes, expected {range:?}"
    );
}

#[test]
fn a_blob_with_a_wrong_content_length_is_a_size_mismatch() {
    let s = setup();
    s.proxy.add_rule(
        Rule::new(
            "cl",
            "/blobs/sha256:",
            Fault::SetHeader {
                name: "Content-Length".into(),
                value: "999999".into(),
            },
        )
        .method(Method::GET),
    );
    let (code, report) = run(&s);
    assert_eq!(code, 1);
    let (step, reason, error) = failed_step(&report);
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("pull_blob", "size_mismatch")
    );
    assert!(
        error.contains("Content-Length is 999999 but the manifest says"),
        "{error}"
    );
    assert!(
        error.starts_with(&format!("GET {}/v2/{REPO}/blobs/sha256:", s.proxy.url())),
        "{error}"
    );
    assert_cleaned_up(&s, &report);
}

#[test]
fn a_manifest_that_is_not_json_is_a_protocol_failure() {
    let s = setup();
    s.proxy.add_rule(
        Rule::new(
            "html",
            "/manifests/",
            Fault::ReplaceBody {
                body: b"<html>maintenance</html>".to_vec(),
                content_type: Some("text/html".into()),
            },
        )
        .method(Method::GET),
    );
    let (code, report) = run(&s);
    assert_eq!(code, 1);
    let (step, reason, error) = failed_step(&report);
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("pull_manifest_by_tag", "protocol")
    );
    assert!(error.contains("manifest is not JSON"), "{error}");
    assert_cleaned_up(&s, &report);
}

#[test]
fn a_blob_longer_than_declared_is_a_size_mismatch_and_is_not_read_without_bound() {
    let s = setup();
    let (report, error) = overrun(
        &s,
        "/blobs/sha256:",
        10 * 1024 * 1024,
        "pull_blob",
        "size_mismatch",
    );
    assert!(
        error.contains("size mismatch: expected") && error.contains("(or more)"),
        "{error}"
    );
    assert_received(&report, 1..1024 * 1024);
    assert_cleaned_up(&s, &report);
}

#[test]
fn a_manifest_over_its_bound_fails_naming_the_limit_and_is_not_read_further() {
    let s = setup();
    let (report, error) = overrun(
        &s,
        "/manifests/",
        16 * 1024 * 1024,
        "pull_manifest_by_tag",
        "protocol",
    );
    assert!(
        error.starts_with(&format!("GET {}/v2/{REPO}/manifests/", s.proxy.url()))
            && error.ends_with(": manifest over its limit of 4194304 bytes, not read further"),
        "{error}"
    );
    // Past the bound by what arrived with the last reads (HTTP/1.1 reads up to 1 MiB at once;
    // 5.6 MiB seen once in a whole suite), far from the 16 MiB sent.
    assert_received(&report, 4 * 1024 * 1024 + 1..6 * 1024 * 1024);
    assert_cleaned_up(&s, &report);
}

#[test]
fn a_flipped_byte_is_a_digest_mismatch_naming_expected_and_actual() {
    let s = setup();
    s.proxy.add_rule(
        Rule::new("flip", "/blobs/sha256:", Fault::FlipByte { offset: 100 }).method(Method::GET),
    );
    let (code, report) = run(&s);
    assert_eq!(code, 1);
    let (step, reason, error) = failed_step(&report);
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("pull_blob", "digest_mismatch")
    );
    let digest_in_url = error
        .split("/blobs/")
        .nth(1)
        .and_then(|r| r.split(':').take(2).collect::<Vec<_>>().join(":").into())
        .unwrap_or_default();
    assert!(
        error.contains(&format!(
            "digest mismatch: expected {}",
            digest_in_url.trim_end_matches(':')
        )),
        "{error}"
    );
    assert!(error.contains(", got sha256:"), "{error}");
    assert_cleaned_up(&s, &report);
}

#[test]
fn a_connection_reset_mid_blob_is_an_io_failure() {
    let s = setup();
    s.proxy.add_rule(
        Rule::new(
            "reset",
            "/blobs/sha256:",
            Fault::ResetMidBody { after: 1000 },
        )
        .method(Method::GET),
    );
    let (code, report) = run(&s);
    assert_eq!(code, 1);
    let (step, reason, error) = failed_step(&report);
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("pull_blob", "io"),
        "{error}"
    );
    assert!(error.contains("response body broke off after"), "{error}");
    assert_cleaned_up(&s, &report);
}

#[test]
fn a_failed_upload_leaves_its_session_open_and_cleanup_cancels_it() {
    let s = setup();
    // The final PUT of the first upload gets a 500 without reaching the registry, so the
    // registry still holds the open session.
    s.proxy.add_rule(
        Rule::new(
            "put500",
            "/blobs/uploads/",
            Fault::Status {
                status: 500,
                headers: vec![],
                body: r#"{"errors":[{"code":"UNKNOWN","message":"storage backend exploded"}]}"#
                    .into(),
            },
        )
        .method(Method::PUT)
        .times(1),
    );
    let (code, report) = run(&s);
    assert_eq!(code, 1);
    let (step, reason, error) = failed_step(&report);
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("upload_blob", "http_5xx")
    );
    assert!(error.contains("got 500 Internal Server Error, expected 201, registry error UNKNOWN: storage backend exploded"), "{error}");
    let cancel = steps_named(&report, "cancel_upload");
    assert_eq!(cancel.len(), 1, "{report:#}");
    assert_eq!(cancel[0]["success"], true, "{:#}", cancel[0]);
    assert_eq!(s.proxy.hits("put500"), 1);
    assert_cleaned_up(&s, &report);
}

#[test]
fn a_hanging_registry_is_cut_at_the_step_deadline() {
    let s = setup();
    s.proxy
        .add_rule(Rule::new("hang", "/manifests/", Fault::Hang).method(Method::GET));
    let url = s.proxy.url();
    let started = std::time::Instant::now();
    let (code, report) = once_json(&[
        "--registry",
        &url,
        "--repository",
        REPO,
        "--layers",
        "1",
        "--layer-size",
        "4KiB",
        "--timeout",
        "3s",
    ])
    .expect("runs");
    assert_eq!(code, 1);
    let (step, reason, _) = failed_step(&report);
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("pull_manifest_by_tag", "timeout")
    );
    // Cleanup has its own deadline and still ran after the run deadline.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_cleaned_up(&s, &report);
}

#[test]
fn an_upload_whose_answer_is_lost_leaves_a_session_the_registry_will_not_cancel_and_cleanup_says_so(
) {
    let s = setup();
    // The registry takes the PATCH's body (the session now holds the blob) but the prober sees
    // a 500: its URL still carries the POST's state (offset 0), which Distribution refuses
    // from then on, to the cancel's DELETE as to a GET (404 BLOB_UPLOAD_INVALID).
    s.proxy.add_rule(
        Rule::new("lost", "/blobs/uploads/", Fault::SetStatus { status: 500 })
            .method(Method::PATCH)
            .times(1),
    );
    let (code, report) = run(&s);
    assert_eq!(code, 1);
    let (step, reason, _) = failed_step(&report);
    assert_eq!(
        (step.as_str(), reason.as_str()),
        ("upload_blob", "http_5xx")
    );
    let cancel = steps_named(&report, "cancel_upload");
    assert_eq!(cancel.len(), 1, "{report:#}");
    assert_eq!(cancel[0]["success"], false, "{:#}", cancel[0]);
    assert_eq!(
        cancel[0]["reason"], "blob_upload_invalid",
        "{:#}",
        cancel[0]
    );
    let error = cancel[0]["error"].as_str().expect("error");
    assert!(
        error.contains("404") && error.contains("refuses to cancel through it"),
        "{error}"
    );
    // What the step says is what the storage holds: the session is still open.
    assert_eq!(
        s.registry.storage().uploads(REPO).expect("uploads").len(),
        1,
        "{report:#}"
    );
}
