//! Gauges and counters beside the steps: rate-limit headroom, certificate expiry, mounts and
//! canaries, sweeps, the schedule, and the exposition itself.

use super::*;

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
