use std::time::SystemTime;

use strum::IntoEnumIterator as _;

use super::encode::to_prometheus_text;
use super::*;
use crate::config::{RawConfig, ORIGIN};
use crate::outcome::{
    CanarySummary, HttpRecord, MountOutcome, PropagationReport, Reason, ReferrersMode,
    ReferrersReport, Step, StepReport,
};

mod series;
mod service;

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
