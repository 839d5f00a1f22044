use std::io::Write as _;
use std::process::{Command, Stdio};

use std::time::SystemTime;

use strum::IntoEnumIterator as _;

use super::encode::to_prometheus_text;
use super::*;
use crate::config::{RawConfig, ORIGIN};
use crate::outcome::{
    CanarySummary, HttpRecord, MountOutcome, PropagationReport, Reason, ReferrersMode,
    ReferrersReport, Step, StepReport,
};

const TARGET: &str = "t";

/// `t` with two size classes, a replicated pull path `cache`, canaries and mounts.
const FULL: &str = r#"
targets:
  - name: t
    registry: https://registry.example
    repository: probe/prober
    sizes:
      - class: small
        layer_sizes: [4KiB]
      - class: large
        layer_sizes: [64MiB]
        interval: 10m
    paths:
      - name: cache
        registry: https://cache.example
        propagation_timeout: 30s
    canaries:
      enabled: true
    mount:
      enabled: true
"#;

/// `t` written without any v2 key: one size class, `default`, and no pull path.
const PLAIN: &str = r#"
targets:
  - name: t
    registry: https://registry.example
    repository: probe/prober
"#;

/// FULL with a multi-platform index, artifacts about every run's image and about canaries.
fn with_referrers() -> String {
    FULL.replace(
        "    canaries:\n      enabled: true\n",
        "    canaries:\n      enabled: true\n      artifact: true\n    artifact:\n      enabled: true\n    image:\n      platforms: [linux/amd64, linux/arm64]\n",
    )
}

fn targets(yaml: &str) -> Vec<Target> {
    let raw = RawConfig::from_yaml(yaml).expect("the test config parses");
    raw.validate().expect("the test config is valid").targets
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// An exchange on a new connection, every phase timed, or on a reused one (no setup phases).
fn request(url: &str, reused: bool, cert_not_after: Option<u64>) -> HttpRecord {
    HttpRecord {
        method: "GET".to_string(),
        url: url.to_string(),
        status: Some(200),
        reused_connection: reused,
        http_version: Some("HTTP/1.1"),
        dns_seconds: (!reused).then(|| secs(0.002)),
        connect_seconds: (!reused).then(|| secs(0.003)),
        tls_seconds: (!reused).then(|| secs(0.02)),
        first_byte_seconds: Some(secs(0.05)),
        transfer_seconds: Some(secs(0.1)),
        peer_cert_not_after_unix: cert_not_after,
        ..HttpRecord::default()
    }
}

/// A successful step on the origin, 0.2 s, one exchange on a reused connection.
fn step(step: Step, subject: &str, sent: u64, received: u64) -> StepReport {
    StepReport {
        deviations: Vec::new(),
        step,
        path: ORIGIN.into(),
        subject: subject.to_string(),
        success: true,
        started_at: SystemTime::UNIX_EPOCH,
        duration_seconds: secs(0.2),
        reason: None,
        error: None,
        status: Some(200),
        registry_code: None,
        bytes_sent: sent,
        bytes_received: received,
        requests: vec![request(
            "https://registry.example/v2/probe/blobs/sha256:0123",
            true,
            None,
        )],
    }
}

fn on(path: &str, mut s: StepReport) -> StepReport {
    s.path = path.to_string();
    s
}

fn failed(mut s: StepReport, reason: Reason) -> StepReport {
    s.success = false;
    s.reason = Some(reason);
    s.error = Some(format!(
        "{reason}: sha256:0123 at https://registry.example/v2/"
    ));
    s
}

fn new_connection(mut s: StepReport, url: &str, cert_not_after: u64) -> StepReport {
    s.requests = vec![request(url, false, Some(cert_not_after))];
    s
}

fn run(size_class: &str, success: bool, started_unix: u64, steps: Vec<StepReport>) -> RunReport {
    RunReport {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
        target: TARGET.to_string(),
        size_class: size_class.to_string(),
        upload_mode: "streamed",
        registry: "https://registry.example".to_string(),
        repository: "probe/prober".to_string(),
        tag: Some("probe-0123".to_string()),
        manifest_digest: Some("sha256:abcd".to_string()),
        success,
        cleanup_failed: false,
        confirmation: false,
        started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(started_unix),
        duration_seconds: secs(2.5),
        steps,
        retry_after: None,
        propagation: Vec::new(),
        mount: None,
        canaries: None,
        left_behind: None,
        referrers: Vec::new(),
    }
}

/// A full cycle of the small class on one session, the token fetched on a new connection to
/// a second host, the pushed image pulled through the origin and the cache, which served it
/// 1.5 s after the push.
fn successful_run() -> RunReport {
    let mut report = run(
        "small",
        true,
        1_700_000_000,
        vec![
            new_connection(
                step(Step::Token, "token", 0, 700),
                "https://auth.example/token?scope=repository:probe",
                1_900_000_000,
            ),
            new_connection(
                step(Step::CheckBlob, "layer 1", 0, 0),
                "https://registry.example/v2/probe/blobs/sha256:0123",
                1_950_000_000,
            ),
            step(Step::StartUpload, "layer 1", 0, 0),
            // 5 MB/s: between the 4 MiB/s and 8 MiB/s buckets.
            step(Step::UploadBlob, "layer 1", 1_000_000, 0),
            step(Step::MountBlob, "layer 1", 0, 0),
            step(Step::PushManifest, "probe-0123", 500, 0),
            on(
                "cache",
                new_connection(
                    step(Step::WaitPropagation, "probe-0123", 0, 0),
                    "https://cache.example/v2/probe/manifests/probe-0123",
                    1_800_000_000,
                ),
            ),
            step(Step::PullManifestByTag, "probe-0123", 0, 500),
            step(Step::PullBlob, "layer 1", 0, 1000),
            on("cache", step(Step::PullManifestByTag, "probe-0123", 0, 500)),
            on("cache", step(Step::PullBlob, "layer 1", 0, 1000)),
            step(Step::DeleteManifest, "sha256:abcd", 0, 0),
            step(Step::DeleteBlob, "layer 1", 0, 0),
        ],
    );
    report.propagation = vec![PropagationReport {
        path: "cache".into(),
        delay_seconds: Some(secs(1.5)),
    }];
    report.mount = Some(MountOutcome::Mounted);
    report.canaries = Some(CanarySummary {
        count: 3,
        oldest_pushed_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_000_000)),
    });
    report
}

/// Hand-built, not a real trace, of the large class: two sessions opened and one completed,
/// the cancel of the other failed, a mount fell back to an upload, the cache never served
/// the image, and a pulled blob does not hash to its digest.
fn failed_run() -> RunReport {
    let mut report = run(
        "large",
        false,
        1_700_000_060,
        vec![
            step(Step::StartUpload, "config", 0, 0),
            step(Step::StartUpload, "layer 1", 0, 0),
            step(Step::UploadBlob, "config", 300, 0),
            // The registry answered the mount with 202; the prober uploaded instead.
            step(Step::MountBlob, "layer 1", 0, 0),
            step(Step::UploadBlob, "layer 1", 300, 0),
            step(Step::PushManifest, "probe-0123", 500, 0),
            on(
                "cache",
                failed(
                    step(Step::WaitPropagation, "probe-0123", 0, 0),
                    Reason::PropagationTimeout,
                ),
            ),
            step(Step::PullManifestByTag, "probe-0123", 0, 500),
            failed(
                step(Step::PullBlob, "layer 1", 0, 1000),
                Reason::DigestMismatch,
            ),
            failed(step(Step::CancelUpload, "layer 1", 0, 0), Reason::Http5xx),
            step(Step::DeleteManifest, "sha256:abcd", 0, 0),
        ],
    );
    report.propagation = vec![PropagationReport {
        path: "cache".into(),
        delay_seconds: None,
    }];
    report.mount = Some(MountOutcome::Fallback);
    report
}

/// Every step each path of `target` can run, each on a new connection, every transfer a
/// success, and everything a run of the first class reports when `full`.
fn every_step_run(target: &Target, size_class: &str, paths: &[&str], full: bool) -> RunReport {
    let mut steps = Vec::new();
    for path in std::iter::once(ORIGIN).chain(paths.iter().copied()) {
        for s in Step::iter().filter(|s| step::runs_step(target, *s, path == ORIGIN)) {
            steps.push(on(
                path,
                new_connection(step(s, "x", 1000, 1000), "https://r.example/", 1),
            ));
        }
    }
    let mut report = run(size_class, true, 1_700_000_000, steps);
    report.propagation = paths
        .iter()
        .map(|p| PropagationReport {
            path: p.to_string(),
            delay_seconds: Some(secs(1.0)),
        })
        .collect();
    if step::runs_step(target, Step::ListReferrers, true) {
        report.referrers = std::iter::once(ORIGIN)
            .chain(paths.iter().copied())
            .filter(|p| step::runs_step(target, Step::ListReferrers, *p == ORIGIN))
            .map(|p| ReferrersReport {
                path: p.to_string(),
                mode: ReferrersMode::TagSchema,
            })
            .collect();
    }
    if full {
        report.mount = Some(MountOutcome::Mounted);
        report.canaries = Some(CanarySummary {
            count: 1,
            oldest_pushed_at: Some(SystemTime::UNIX_EPOCH),
        });
    }
    report
}

fn metrics(yaml: &str) -> (Registry, Metrics) {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    for target in targets(yaml) {
        metrics.init_target(&target);
    }
    (registry, metrics)
}

fn observed() -> String {
    let (registry, metrics) = metrics(FULL);
    let mut run = successful_run();
    run.referrers = vec![ReferrersReport {
        path: ORIGIN.into(),
        mode: ReferrersMode::TagSchema,
    }];
    run.steps[0].requests[0].rate_limit = vec![
        ("ratelimit-limit".into(), "100;w=21600".into()),
        ("ratelimit-remaining".into(), "99;w=21600".into()),
    ];
    metrics.observe_run(&run);
    metrics.observe_run(&failed_run());
    metrics.run_started(TARGET, "small");
    metrics.run_started(TARGET, "small");
    metrics.run_finished(TARGET, "small");
    metrics.run_due(TARGET, "small");
    metrics.run_due(TARGET, "small");
    metrics.run_skipped(TARGET, "small", SkipCause::Overrun);
    metrics.run_skipped(TARGET, "large", SkipCause::RateLimited);
    metrics.run_skipped(TARGET, "large", SkipCause::RateLimited);
    metrics.runs_missed(TARGET, "large", 3);
    metrics.observe_sweep(&SweepReport {
        target: TARGET.into(),
        tags_deleted: 2,
        sessions_cancelled: 1,
        errors: Vec::new(),
        steps: Vec::new(),
    });
    metrics.observe_sweep(&SweepReport {
        target: TARGET.into(),
        tags_deleted: 1,
        sessions_cancelled: 0,
        errors: vec!["delete_manifest (registry-prober-default-1-ab): http_5xx".into()],
        steps: Vec::new(),
    });
    metrics.schedule_lag(secs(0.003));
    metrics.config_reload(false);
    metrics.set_targets(3);
    metrics.trace_exports(ExportResult::Success, 3);
    metrics.trace_exports(ExportResult::Dropped, 1);
    encode(&registry)
}

#[track_caller]
fn assert_lines(text: &str, expected: &[&str]) {
    let missing: Vec<&&str> = expected
        .iter()
        .filter(|line| !text.lines().any(|l| l == **line))
        .collect();
    assert!(missing.is_empty(), "missing lines {missing:#?} in\n{text}");
}

#[track_caller]
fn assert_absent(text: &str, prefixes: &[&str]) {
    let present: Vec<&str> = text
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect();
    assert!(present.is_empty(), "unexpected lines {present:#?}");
}

/// Sample lines (not comments) whose labels include `target="<target>"`.
fn series_of<'a>(text: &'a str, target: &str) -> Vec<&'a str> {
    let label = format!("target=\"{target}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .collect()
}

/// Every label value of every sample line.
fn label_values(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| Some(&l[l.find('{')? + 1..l.rfind('}')?]))
        .flat_map(|labels| labels.split("\","))
        .filter_map(|pair| pair.split_once("=\""))
        .map(|(_, value)| value.trim_end_matches('"'))
        .collect()
}

#[test]
fn counts_runs_per_size_class_and_failed_runs_by_their_first_failure() {
    assert_lines(
        &observed(),
        &[
            r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
            r#"registry_prober_runs_total{target="t",size_class="small",result="failure"} 0"#,
            r#"registry_prober_runs_total{target="t",size_class="large",result="failure"} 1"#,
            r#"registry_prober_failures_total{target="t",size_class="large",reason="propagation_timeout"} 1"#,
            r#"registry_prober_failures_total{target="t",size_class="large",reason="digest_mismatch"} 0"#,
            r#"registry_prober_failures_total{target="t",size_class="small",reason="dns"} 0"#,
            r#"registry_prober_run_duration_seconds_count{target="t",size_class="small"} 1"#,
            r#"registry_prober_run_duration_seconds_sum{target="t",size_class="large"} 2.5"#,
            r#"registry_prober_last_run_timestamp_seconds{target="t",size_class="large"} 1700000062.5"#,
            r#"registry_prober_last_success_timestamp_seconds{target="t",size_class="small"} 1700000002.5"#,
            r#"registry_prober_target_interval_seconds{target="t",size_class="small"} 30.0"#,
            r#"registry_prober_target_interval_seconds{target="t",size_class="large"} 600.0"#,
        ],
    );
    assert_absent(
        &observed(),
        &[r#"registry_prober_last_success_timestamp_seconds{target="t",size_class="large"}"#],
    );
}

#[test]
fn counts_steps_per_path_and_step_failures_by_step_and_reason() {
    assert_lines(
        &observed(),
        &[
            r#"registry_prober_steps_total{target="t",path="origin",step="pull_blob",result="success"} 1"#,
            r#"registry_prober_steps_total{target="t",path="origin",step="pull_blob",result="failure"} 1"#,
            r#"registry_prober_steps_total{target="t",path="cache",step="pull_blob",result="success"} 1"#,
            r#"registry_prober_steps_total{target="t",path="cache",step="wait_propagation",result="success"} 1"#,
            r#"registry_prober_steps_total{target="t",path="cache",step="wait_propagation",result="failure"} 1"#,
            r#"registry_prober_steps_total{target="t",path="origin",step="start_upload",result="success"} 3"#,
            r#"registry_prober_steps_total{target="t",path="cache",step="pull_golden_blob",result="success"} 0"#,
            r#"registry_prober_step_failures_total{target="t",path="cache",step="wait_propagation",reason="propagation_timeout"} 1"#,
            r#"registry_prober_step_failures_total{target="t",path="origin",step="pull_blob",reason="digest_mismatch"} 1"#,
            r#"registry_prober_step_failures_total{target="t",path="origin",step="cancel_upload",reason="http_5xx"} 1"#,
            r#"registry_prober_cleanup_failures_total{target="t",step="cancel_upload"} 1"#,
            r#"registry_prober_cleanup_failures_total{target="t",step="delete_blob"} 0"#,
            r#"registry_prober_step_duration_seconds_count{target="t",path="origin",size_class="small",step="pull_blob"} 1"#,
            r#"registry_prober_step_duration_seconds_count{target="t",path="origin",size_class="large",step="pull_blob"} 1"#,
            r#"registry_prober_step_duration_seconds_bucket{le="0.256",target="t",path="cache",size_class="small",step="pull_blob"} 1"#,
            r#"registry_prober_step_duration_seconds_bucket{le="0.128",target="t",path="cache",size_class="small",step="pull_blob"} 0"#,
        ],
    );
}

#[test]
fn pre_creates_on_pull_paths_only_the_steps_they_run() {
    let (registry, _metrics) = metrics(FULL);
    let text = encode(&registry);
    assert_lines(
        &text,
        &[
            r#"registry_prober_steps_total{target="t",path="cache",step="token",result="failure"} 0"#,
            r#"registry_prober_steps_total{target="t",path="cache",step="head_blob",result="failure"} 0"#,
            r#"registry_prober_steps_total{target="t",path="origin",step="list_tags",result="success"} 0"#,
            r#"registry_prober_bytes_total{target="t",path="cache",direction="pull"} 0"#,
            r#"registry_prober_http_requests_total{target="t",path="cache",connection="new"} 0"#,
            r#"registry_prober_blob_mounts_total{target="t",outcome="fallback"} 0"#,
            r#"registry_prober_canaries{target="t"} 0"#,
            r#"registry_prober_skipped_runs_total{target="t",size_class="large",cause="rate_limited"} 0"#,
            r#"registry_prober_runs_in_flight{target="t",size_class="large"} 0"#,
        ],
    );
    assert_absent(
        &text,
        &[
            r#"registry_prober_steps_total{target="t",path="cache",step="upload_blob""#,
            r#"registry_prober_steps_total{target="t",path="cache",step="list_tags""#,
            r#"registry_prober_steps_total{target="t",path="cache",step="delete_manifest""#,
            r#"registry_prober_bytes_total{target="t",path="cache",direction="push"}"#,
            "registry_prober_canary_oldest_push_timestamp_seconds{",
        ],
    );
    // Without mount and canaries configured, their series do not exist.
    let (registry, _metrics) = metrics(PLAIN);
    assert_absent(
        &encode(&registry),
        &[
            "registry_prober_blob_mounts_total{",
            "registry_prober_canaries{",
        ],
    );
}

#[test]
fn counts_upload_sessions_left_open_as_abandoned() {
    assert_lines(
        &observed(),
        &[
            // 1 + 2 started, 1 opened by the mount that fell back.
            r#"registry_prober_upload_sessions_total{target="t",outcome="opened"} 4"#,
            r#"registry_prober_upload_sessions_total{target="t",outcome="completed"} 3"#,
            r#"registry_prober_upload_sessions_total{target="t",outcome="cancelled"} 0"#,
            r#"registry_prober_upload_sessions_total{target="t",outcome="abandoned"} 1"#,
        ],
    );
}

#[test]
fn counts_bytes_and_http_exchanges_per_path() {
    assert_lines(
        &observed(),
        &[
            // push: 1000000 + 500 (first run) + 300 + 300 + 500 (second); the token's 700 is
            // neither.
            r#"registry_prober_bytes_total{target="t",path="origin",direction="push"} 1001600"#,
            // pull: 500 + 1000 (first run) + 500 + 1000 (second, the corrupt blob too).
            r#"registry_prober_bytes_total{target="t",path="origin",direction="pull"} 3000"#,
            r#"registry_prober_bytes_total{target="t",path="cache",direction="pull"} 1500"#,
            r#"registry_prober_http_requests_total{target="t",path="origin",connection="new"} 2"#,
            r#"registry_prober_http_requests_total{target="t",path="origin",connection="reused"} 18"#,
            r#"registry_prober_http_requests_total{target="t",path="cache",connection="new"} 1"#,
            r#"registry_prober_http_requests_total{target="t",path="cache",connection="reused"} 3"#,
            r#"registry_prober_http_phase_duration_seconds_count{target="t",path="origin",phase="dns"} 2"#,
            r#"registry_prober_http_phase_duration_seconds_count{target="t",path="cache",phase="tls"} 1"#,
            r#"registry_prober_http_phase_duration_seconds_count{target="t",path="origin",phase="first_byte"} 20"#,
            r#"registry_prober_http_phase_duration_seconds_bucket{le="0.0032",target="t",path="origin",phase="connect"} 2"#,
            r#"registry_prober_http_phase_duration_seconds_bucket{le="0.0016",target="t",path="origin",phase="connect"} 0"#,
        ],
    );
}

#[test]
fn observes_the_throughput_of_successful_blob_transfers_only() {
    let text = observed();
    assert_lines(
        &text,
        &[
            r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="origin",size_class="small",direction="push"} 1"#,
            r#"registry_prober_blob_throughput_bytes_per_second_sum{target="t",path="origin",size_class="small",direction="push"} 5000000.0"#,
            r#"registry_prober_blob_throughput_bytes_per_second_bucket{le="4194304.0",target="t",path="origin",size_class="small",direction="push"} 0"#,
            r#"registry_prober_blob_throughput_bytes_per_second_bucket{le="8388608.0",target="t",path="origin",size_class="small",direction="push"} 1"#,
            r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="cache",size_class="small",direction="pull"} 1"#,
            r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="origin",size_class="large",direction="push"} 2"#,
        ],
    );
    // The large class's only blob pull failed (digest mismatch).
    assert_absent(
        &text,
        &[
            r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="origin",size_class="large",direction="pull"}"#,
        ],
    );
}

#[test]
fn observes_propagation_delays_of_paths_that_served_the_image_in_time() {
    assert_lines(
        &observed(),
        &[
            r#"registry_prober_propagation_delay_seconds_count{target="t",path="cache"} 1"#,
            r#"registry_prober_propagation_delay_seconds_sum{target="t",path="cache"} 1.5"#,
            r#"registry_prober_propagation_delay_seconds_bucket{le="1.6",target="t",path="cache"} 1"#,
            r#"registry_prober_propagation_delay_seconds_bucket{le="0.8",target="t",path="cache"} 0"#,
        ],
    );
}

#[test]
fn keeps_the_rate_limit_headroom_of_the_latest_answer_per_path() {
    let (registry, metrics) = metrics(FULL);
    assert!(
        !encode(&registry)
            .lines()
            .any(|l| l.starts_with("registry_prober_rate_limit")),
        "absent until a registry says"
    );
    let limited = |remaining: &str| {
        let mut r = request("https://registry.example/v2/", true, None);
        r.rate_limit = vec![
            ("ratelimit-limit".into(), "100;w=21600".into()),
            ("ratelimit-remaining".into(), format!("{remaining};w=21600")),
        ];
        r
    };
    let mut first = step(Step::PullManifestByTag, "t", 0, 10);
    first.requests = vec![limited("76")];
    let mut second = on("cache", step(Step::PullManifestByTag, "t", 0, 10));
    second.requests = vec![limited("75"), limited("74")];
    metrics.observe_run(&run("small", true, 1_700_000_000, vec![first, second]));
    assert_lines(
        &encode(&registry),
        &[
            "registry_prober_rate_limit_requests{target=\"t\",path=\"origin\"} 100",
            "registry_prober_rate_limit_remaining_requests{target=\"t\",path=\"origin\"} 76",
            "registry_prober_rate_limit_remaining_requests{target=\"t\",path=\"cache\"} 74",
            "registry_prober_rate_limit_window_seconds{target=\"t\",path=\"cache\"} 21600.0",
        ],
    );
}

#[test]
fn keeps_the_earliest_certificate_expiry_of_the_run_per_path() {
    assert_lines(
        &observed(),
        &[
            r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="origin"} 1900000000.0"#,
            r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="cache"} 1800000000.0"#,
        ],
    );
}

#[test]
fn counts_mounts_and_tracks_canaries_until_none_is_left() {
    let (registry, metrics) = metrics(FULL);
    metrics.observe_run(&successful_run());
    metrics.observe_run(&failed_run());
    assert_lines(
        &encode(&registry),
        &[
            r#"registry_prober_blob_mounts_total{target="t",outcome="mounted"} 1"#,
            r#"registry_prober_blob_mounts_total{target="t",outcome="fallback"} 1"#,
            r#"registry_prober_canaries{target="t"} 3"#,
            r#"registry_prober_canary_oldest_push_timestamp_seconds{target="t"} 1699000000.0"#,
        ],
    );

    let mut gone = successful_run();
    gone.canaries = Some(CanarySummary {
        count: 0,
        oldest_pushed_at: None,
    });
    metrics.observe_run(&gone);
    let text = encode(&registry);
    assert_lines(&text, &[r#"registry_prober_canaries{target="t"} 0"#]);
    assert_absent(
        &text,
        &["registry_prober_canary_oldest_push_timestamp_seconds{"],
    );
}

#[test]
fn counts_sweeps_by_result_and_swept_objects_by_kind() {
    assert_lines(
        &observed(),
        &[
            r#"registry_prober_sweeps_total{target="t",result="success"} 1"#,
            r#"registry_prober_sweeps_total{target="t",result="failure"} 1"#,
            r#"registry_prober_swept_objects_total{target="t",kind="tag"} 3"#,
            r#"registry_prober_swept_objects_total{target="t",kind="upload_session"} 1"#,
        ],
    );
}

#[test]
fn tracks_scheduled_runs_skips_by_cause_runs_in_flight_schedule_lag_reloads_and_targets() {
    let text = observed();
    assert_lines(
        &text,
        &[
            r#"registry_prober_runs_in_flight{target="t",size_class="small"} 1"#,
            r#"registry_prober_runs_in_flight{target="t",size_class="large"} 0"#,
            r#"registry_prober_skipped_runs_total{target="t",size_class="small",cause="overrun"} 1"#,
            r#"registry_prober_skipped_runs_total{target="t",size_class="small",cause="rate_limited"} 0"#,
            r#"registry_prober_skipped_runs_total{target="t",size_class="large",cause="rate_limited"} 2"#,
            r#"registry_prober_skipped_runs_total{target="t",size_class="large",cause="missed"} 3"#,
            r#"registry_prober_skipped_runs_total{target="t",size_class="small",cause="missed"} 0"#,
            r#"registry_prober_scheduled_runs_total{target="t",size_class="small"} 2"#,
            r#"registry_prober_scheduled_runs_total{target="t",size_class="large"} 3"#,
            "registry_prober_schedule_lag_seconds_count 1",
            r#"registry_prober_schedule_lag_seconds_bucket{le="0.004"} 1"#,
            r#"registry_prober_schedule_lag_seconds_bucket{le="0.002"} 0"#,
            r#"registry_prober_config_reloads_total{result="success"} 0"#,
            r#"registry_prober_config_reloads_total{result="failure"} 1"#,
            "registry_prober_config_last_reload_successful 0",
            "registry_prober_targets 3",
            r#"registry_prober_trace_exports_total{result="success"} 3"#,
            r#"registry_prober_trace_exports_total{result="failure"} 0"#,
            r#"registry_prober_trace_exports_total{result="dropped"} 1"#,
            &format!(
                r#"registry_prober_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        ],
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn exports_no_timestamps_before_the_first_run() {
    let (registry, _metrics) = metrics(FULL);
    assert_absent(
        &encode(&registry),
        &[
            "registry_prober_last_success_timestamp_seconds{",
            "registry_prober_last_run_timestamp_seconds{",
            "registry_prober_tls_certificate_expiry_timestamp_seconds{",
            "registry_prober_canary_oldest_push_timestamp_seconds{",
        ],
    );
}

#[test]
fn the_gzipped_text_is_the_text() {
    use std::io::Read as _;
    let (registry, metrics) = metrics(FULL);
    metrics.observe_run(&successful_run());
    metrics.observe_run(&failed_run());
    for format in [Format::OpenMetrics, Format::Text] {
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&encode_gzip(&registry, format)[..])
            .read_to_string(&mut unzipped)
            .expect("valid gzip");
        assert_eq!(unzipped, encode_as(&registry, format), "{format:?}");
    }
    assert!(
        encode_as(&registry, Format::Text).contains("# TYPE registry_prober_runs_total counter\n")
    );
}

#[test]
fn a_new_target_has_107_series_and_an_observed_one_at_most_683_plus_step_failures() {
    let (registry, _metrics) = metrics(PLAIN);
    assert_eq!(series_of(&encode(&registry), TARGET).len(), 107);

    // Every step, every phase, every transfer, no step failure: the most a target with one
    // size class and no pull path gets without them.
    let (registry, metrics) = metrics(PLAIN);
    let target = &targets(PLAIN)[0];
    metrics.observe_run(&every_step_run(target, "default", &[], false));
    assert_eq!(series_of(&encode(&registry), TARGET).len(), 683);
}

#[test]
fn series_grow_with_size_classes_and_paths_as_documented() {
    // docs/metrics.md: pre-created 64 + 43 C + 32 P (+2 mount, +1 canaries); at most
    // 175 + 508 C + 160 P + 242 C P (+2 mount, +2 canaries) without step failures.
    let (c, p) = (2, 1);
    let (registry, metrics) = metrics(FULL);
    assert_eq!(
        series_of(&encode(&registry), TARGET).len(),
        64 + 43 * c + 32 * p + 2 + 1
    );
    let target = &targets(FULL)[0];
    metrics.observe_run(&every_step_run(target, "small", &["cache"], true));
    metrics.observe_run(&every_step_run(target, "large", &["cache"], false));
    assert_eq!(
        series_of(&encode(&registry), TARGET).len(),
        175 + 508 * c + 160 * p + 242 * c * p + 2 + 2
    );
}

#[test]
fn failed_runs_in_a_row_are_one_series_named_by_the_latest_failure_until_a_success() {
    let (registry, metrics) = metrics(FULL);
    metrics.observe_run(&failed_run());
    let mut confirmation = failed_run();
    confirmation.confirmation = true;
    metrics.observe_run(&confirmation);
    metrics.confirmation_skipped(TARGET, "large", ConfirmationSkipCause::Budget);
    assert_lines(
        &encode(&registry),
        &[
            r#"registry_prober_consecutive_failed_runs{target="t",size_class="large",path="cache",step="wait_propagation"} 2"#,
            r#"registry_prober_confirmation_runs_total{target="t",size_class="large",result="failure"} 1"#,
            r#"registry_prober_confirmation_runs_total{target="t",size_class="large",result="success"} 0"#,
            r#"registry_prober_confirmation_runs_skipped_total{target="t",size_class="large",cause="budget"} 1"#,
            r#"registry_prober_confirmation_runs_skipped_total{target="t",size_class="large",cause="next_run_due"} 0"#,
            r#"registry_prober_runs_total{target="t",size_class="large",result="failure"} 2"#,
        ],
    );
    // The next failure is another step's: the count goes on under its labels, alone.
    let ping = run(
        "large",
        false,
        1_700_000_120,
        vec![failed(step(Step::Ping, "registry", 0, 0), Reason::Connect)],
    );
    metrics.observe_run(&ping);
    let streaks = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("registry_prober_consecutive_failed_runs{"))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        streaks(&encode(&registry)),
        [
            r#"registry_prober_consecutive_failed_runs{target="t",size_class="large",path="origin",step="ping"} 3"#
        ]
    );
    // A success of the other class changes nothing; a success of this one ends the streak.
    metrics.observe_run(&successful_run());
    assert_eq!(streaks(&encode(&registry)).len(), 1);
    let mut ok = successful_run();
    ok.size_class = "large".into();
    ok.confirmation = true;
    metrics.observe_run(&ok);
    let text = encode(&registry);
    assert_eq!(streaks(&text), Vec::<String>::new());
    assert_lines(
        &text,
        &[
            r#"registry_prober_confirmation_runs_total{target="t",size_class="large",result="success"} 1"#,
        ],
    );
    // A new failure starts from one.
    metrics.observe_run(&ping);
    assert_eq!(
        streaks(&encode(&registry)),
        [
            r#"registry_prober_consecutive_failed_runs{target="t",size_class="large",path="origin",step="ping"} 1"#
        ]
    );
}

#[test]
fn indexes_and_artifacts_add_the_series_documented() {
    // docs/metrics.md: with image.platforms +4 + 2 P pre-created, at most +4 + 2 P + 40 C +
    // 20 C P; with artifact.enabled or canaries.artifact +10 pre-created, at most +10 + 100 C
    // + 1 (the info gauge); with canaries.artifact besides, +6 P pre-created, at most +6 P +
    // 60 C P + P.
    let (c, p) = (2, 1);
    let (registry, metrics) = metrics(&with_referrers());
    assert_eq!(
        series_of(&encode(&registry), TARGET).len(),
        64 + 43 * c + 32 * p + 2 + 1 + (4 + 2 * p) + 10 + 6 * p
    );
    let target = &targets(&with_referrers())[0];
    metrics.observe_run(&every_step_run(target, "small", &["cache"], true));
    metrics.observe_run(&every_step_run(target, "large", &["cache"], false));
    let text = encode(&registry);
    assert_eq!(
        series_of(&text, TARGET).len(),
        175 + 508 * c
            + 160 * p
            + 242 * c * p
            + 2
            + 2
            + (4 + 2 * p + 40 * c + 20 * c * p)
            + (10 + 100 * c + 1)
            + (6 * p + 60 * c * p + p)
    );
    assert_lines(
        &text,
        &[
            r#"registry_prober_referrers_info{target="t",path="origin",mode="tag_schema"} 1"#,
            r#"registry_prober_referrers_info{target="t",path="cache",mode="tag_schema"} 1"#,
        ],
    );
    // A path that now serves the referrers API loses its tag_schema series.
    let mut run = every_step_run(target, "small", &[], false);
    run.referrers[0].mode = ReferrersMode::Api;
    metrics.observe_run(&run);
    let text = encode(&registry);
    assert_lines(
        &text,
        &[r#"registry_prober_referrers_info{target="t",path="origin",mode="api"} 1"#],
    );
    assert_absent(
        &text,
        &[r#"registry_prober_referrers_info{target="t",path="origin",mode="tag_schema"}"#],
    );
    // Without artifacts any more, a reload drops the info series.
    metrics.retain_targets(&targets(FULL));
    assert_absent(&encode(&registry), &["registry_prober_referrers_info{"]);
}

#[test]
fn a_reload_removes_the_series_of_what_is_no_longer_configured_and_keeps_the_rest() {
    let two_targets = format!(
        "{FULL}{}",
        r#"
  - name: u
    registry: https://other.example
    repository: probe/prober
"#
    );
    let (registry, metrics) = metrics(&two_targets);
    metrics.observe_run(&successful_run());
    metrics.observe_run(&failed_run());
    let mut other = successful_run();
    other.target = "u".into();
    other.size_class = "default".into();
    other.steps.retain(|s| s.path == ORIGIN);
    other.propagation.clear();
    other.mount = None;
    other.canaries = None;
    metrics.observe_run(&other);
    metrics.observe_sweep(&SweepReport {
        target: "u".into(),
        tags_deleted: 1,
        sessions_cancelled: 0,
        errors: Vec::new(),
        steps: Vec::new(),
    });
    assert!(!series_of(&encode(&registry), "u").is_empty());

    // `u` is gone; `t` keeps its class `small` but loses `large`, the cache, mounts and
    // canaries.
    let kept = targets(
        r#"
targets:
  - name: t
    registry: https://registry.example
    repository: probe/prober
    sizes:
      - class: small
        layer_sizes: [4KiB]
"#,
    );
    metrics.retain_targets(&kept);
    for target in &kept {
        metrics.init_target(target);
    }
    let text = encode(&registry);
    assert_eq!(series_of(&text, "u"), Vec::<&str>::new());
    for gone in [
        r#"size_class="large""#,
        r#"path="cache""#,
        "registry_prober_blob_mounts_total{",
        "registry_prober_canaries{",
        "registry_prober_canary_oldest_push_timestamp_seconds{",
    ] {
        let left: Vec<&str> = series_of(&text, TARGET)
            .into_iter()
            .filter(|l| l.contains(gone))
            .collect();
        assert!(left.is_empty(), "{gone} left {left:#?}");
    }
    assert_lines(
        &text,
        &[
            r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
            r#"registry_prober_steps_total{target="t",path="origin",step="start_upload",result="success"} 3"#,
            r#"registry_prober_bytes_total{target="t",path="origin",direction="push"} 1001600"#,
            r#"registry_prober_run_duration_seconds_count{target="t",size_class="small"} 1"#,
            r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="origin"} 1900000000.0"#,
        ],
    );

    // Configured again, a removed target starts from zero.
    for target in targets(&two_targets) {
        metrics.init_target(&target);
    }
    assert_lines(
        &encode(&registry),
        &[
            r#"registry_prober_runs_total{target="u",size_class="default",result="success"} 0"#,
            r#"registry_prober_sweeps_total{target="u",result="success"} 0"#,
            r#"registry_prober_runs_total{target="t",size_class="large",result="failure"} 0"#,
            r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
        ],
    );

    metrics.retain_targets(&[]);
    assert_eq!(series_of(&encode(&registry), TARGET), Vec::<&str>::new());
}

#[test]
fn no_label_value_is_a_digest_a_url_or_a_path() {
    let text = observed();
    let values = label_values(&text);
    assert!(values.contains(&"digest_mismatch"), "parsed {values:?}");
    assert!(values.contains(&"cache"), "parsed {values:?}");
    for value in values {
        assert!(
            !value.contains("sha256:") && !value.contains("://") && !value.contains('/'),
            "label value {value:?} in\n{text}"
        );
    }
}

#[test]
fn docs_quote_every_help_text_and_list_every_family_and_label_value() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let docs = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    let contract = Metrics::contract();
    assert_eq!(contract.families.len(), 43);
    for family in &contract.families {
        // Under the name one queries: a counter's samples end in `_total`.
        assert!(
            docs.contains(&format!("`{}`", family.name)),
            "docs/metrics.md does not list `{}`",
            family.name
        );
        assert!(
            docs.contains(family.help.trim_end_matches('.')),
            "docs/metrics.md lacks the help of {}: {:?}",
            family.name,
            family.help
        );
        for label in &family.labels {
            for value in label.values.iter().flatten() {
                assert!(
                    docs.contains(&format!("`{value}`")),
                    "docs/metrics.md does not list `{value}` of {}'s {}",
                    family.name,
                    label.name
                );
            }
        }
    }
    for value in [ORIGIN, crate::config::DEFAULT_SIZE_CLASS] {
        assert!(
            docs.contains(&format!("`{value}`")),
            "docs/metrics.md does not list `{value}`"
        );
    }
}

#[test]
fn the_contract_is_what_a_scrape_holds() {
    let text = to_prometheus_text(&observed());
    let contract = Metrics::contract();
    let scraped: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let listed: Vec<(&str, &str)> = contract
        .families
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(listed, scraped);
    let helps: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_once(' ').map(|(_, help)| help.to_string()))
        .collect();
    let listed: Vec<String> = contract.families.iter().map(|f| f.help.clone()).collect();
    assert_eq!(listed, helps);
    // Every sample is a sample name of its family, with exactly the family's labels (a
    // histogram's bucket adds `le`); every closed label's value is one the contract lists.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, _) = line.rsplit_once(' ').expect("a sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = contract
            .families
            .iter()
            .find(|f| f.samples.iter().any(|s| s == name))
            .unwrap_or_else(|| panic!("{name} is in no family of the contract"));
        let pairs: Vec<(&str, &str)> = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once("=\"").expect("label=\"value\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .filter(|(k, _)| *k != "le")
            .collect();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        let expected: Vec<&str> = family.labels.iter().map(|l| l.name).collect();
        assert_eq!(names, expected, "labels of {line}");
        for ((_, value), label) in pairs.iter().zip(&family.labels) {
            if let Some(values) = &label.values {
                assert!(
                    values.contains(value),
                    "{value} of {line} is not in the contract"
                );
            }
        }
    }
}

#[test]
fn the_contract_names_closed_label_values_and_where_open_ones_come_from() {
    let contract = Metrics::contract();
    let steps = contract
        .family("registry_prober_steps_total")
        .expect("the steps family");
    assert_eq!(steps.kind, "counter");
    assert_eq!(steps.samples, vec!["registry_prober_steps_total"]);
    let names: Vec<&str> = steps.labels.iter().map(|l| l.name).collect();
    assert_eq!(names, ["target", "path", "step", "result"]);
    assert!(steps.labels[0].values.is_none() && steps.labels[0].from.is_some());
    assert_eq!(
        steps.labels[2].values.as_deref(),
        Some(
            Step::iter()
                .map(Step::as_str)
                .collect::<Vec<_>>()
                .as_slice()
        )
    );
    assert_eq!(
        steps.labels[3].values.as_deref(),
        Some(["success", "failure"].as_slice())
    );
    let duration = contract
        .family("registry_prober_run_duration_seconds")
        .expect("the run duration family");
    assert_eq!(duration.kind, "histogram");
    assert_eq!(duration.unit.as_deref(), Some("seconds"));
    assert_eq!(
        duration.samples,
        [
            "registry_prober_run_duration_seconds_bucket",
            "registry_prober_run_duration_seconds_sum",
            "registry_prober_run_duration_seconds_count"
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&contract.to_json()).expect("the contract is JSON");
    assert_eq!(json["families"].as_array().map(Vec::len), Some(43));
    assert!(contract
        .to_text()
        .contains("registry_prober_steps_total (counter)"));
}

#[test]
fn promtool_finds_no_problems() {
    let text = to_prometheus_text(&observed());
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED promtool_finds_no_problems: promtool is not installed");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads stdin");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {}\n{report}",
        out.status
    );
}

/// A connection the hygiene sweep opened is reused by the runs after it: its setup phases and
/// certificate are counted from the sweep, or never.
#[test]
fn counts_the_exchanges_of_a_sweep_and_the_certificates_it_met() {
    let (registry, metrics) = metrics(PLAIN);
    let mut ping = step(Step::Ping, "/v2/", 0, 2);
    ping.requests = vec![request(
        "https://registry.example/v2/",
        false,
        Some(1_900_000_000),
    )];
    metrics.observe_sweep(&SweepReport {
        target: "t".into(),
        tags_deleted: 0,
        sessions_cancelled: 0,
        errors: Vec::new(),
        steps: vec![ping, step(Step::ListTags, "registry-prober-", 0, 40)],
    });
    assert_lines(
        &encode(&registry),
        &[
            r#"registry_prober_http_requests_total{target="t",path="origin",connection="new"} 1"#,
            r#"registry_prober_http_requests_total{target="t",path="origin",connection="reused"} 1"#,
            r#"registry_prober_http_phase_duration_seconds_count{target="t",path="origin",phase="dns"} 1"#,
            r#"registry_prober_http_phase_duration_seconds_count{target="t",path="origin",phase="tls"} 1"#,
            r#"registry_prober_http_phase_duration_seconds_count{target="t",path="origin",phase="first_byte"} 2"#,
            r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="origin"} 1900000000.0"#,
        ],
    );
}
