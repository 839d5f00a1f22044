use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::history::{
    History, RunRow, StepMark, LISTED_TARGETS, MAX_ERROR_LINE_CHARS, MAX_MESSAGE_CHARS,
};
use super::html::{age, render_html, utc, FAILED_COLOUR};
use super::views::{render_json, RunView, Verdict};
use crate::outcome::{
    Deviation, DeviationKind, HttpRecord, LeftBehind, Reason, RunReport, Step, StepReport,
};

fn at(unix_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds)
}

fn ok_step(step: Step, subject: &str, millis: u64) -> StepReport {
    StepReport {
        deviations: Vec::new(),
        step,
        path: "origin".into(),
        subject: subject.to_string(),
        success: true,
        started_at: std::time::SystemTime::UNIX_EPOCH,
        duration_seconds: Duration::from_millis(millis),
        reason: None,
        error: None,
        status: Some(201),
        registry_code: None,
        bytes_sent: 100,
        bytes_received: 0,
        requests: vec![HttpRecord {
            method: "PUT".into(),
            url: "https://registry.example/v2/probe/blobs/uploads/abc".into(),
            status: Some(201),
            ..HttpRecord::default()
        }],
    }
}

fn failed_step(step: Step, subject: &str, registry_message: &str) -> StepReport {
    let url = "https://registry.example/v2/probe/manifests/t1";
    StepReport {
        deviations: Vec::new(),
        step,
        path: "origin".into(),
        subject: subject.to_string(),
        success: false,
        started_at: std::time::SystemTime::UNIX_EPOCH,
        duration_seconds: Duration::from_millis(40),
        reason: Some(Reason::ManifestInvalid),
        error: Some(format!(
            "PUT {url}: 400, registry error MANIFEST_INVALID: {registry_message}"
        )),
        status: Some(400),
        registry_code: Some("MANIFEST_INVALID".into()),
        bytes_sent: 500,
        bytes_received: 80,
        requests: vec![HttpRecord {
            method: "PUT".into(),
            url: url.into(),
            status: Some(400),
            reused_connection: true,
            first_byte_seconds: Some(Duration::from_millis(30)),
            transfer_seconds: Some(Duration::from_millis(2)),
            bytes_sent: 500,
            bytes_received: 80,
            error_codes: vec!["MANIFEST_INVALID".into()],
            error_message: Some(registry_message.to_string()),
            ..HttpRecord::default()
        }],
    }
}

fn run(target: &str, started: u64, success: bool) -> RunReport {
    run_with(target, started, success, "layer 1", "manifest invalid")
}

fn run_with(
    target: &str,
    started: u64,
    success: bool,
    subject: &str,
    registry_message: &str,
) -> RunReport {
    let mut steps = vec![
        ok_step(Step::Token, "push", 5),
        ok_step(Step::UploadBlob, subject, 120),
    ];
    steps.push(if success {
        ok_step(Step::PushManifest, "tag t1", 30)
    } else {
        failed_step(Step::PushManifest, "tag t1", registry_message)
    });
    RunReport {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
        target: target.to_string(),
        size_class: "default".into(),
        upload_mode: "streamed",
        registry: "registry.example".into(),
        repository: "probe/e2e".into(),
        tag: Some("t1".into()),
        manifest_digest: success.then(|| "sha256:abc".to_string()),
        success,
        cleanup_failed: false,
        confirmation: false,
        started_at: at(started),
        duration_seconds: Duration::from_millis(200 + started % 7 * 10),
        steps,
        retry_after: None,
        propagation: Vec::new(),
        mount: None,
        canaries: None,
        left_behind: None,
        referrers: Vec::new(),
    }
}

/// Runs of target "eu" started at 1, 2, 3... succeeding where `results` has a `T`.
fn recorded(history: History, results: &str) -> History {
    for (t, result) in (1..).zip(results.chars()) {
        history.record(&run("eu", t, result == 'T'));
    }
    history
}

fn starts(runs: &[RunView]) -> Vec<f64> {
    runs.iter().map(|r| r.started_at_unix).collect()
}

#[test]
fn keeps_the_last_runs_and_older_failures_after_newer_successes_push_them_out() {
    let history = recorded(History::new(3, 2), "FTFTTT");
    let snap = history.snapshot();
    let eu = &snap.targets[0];
    assert_eq!(starts(&eu.runs), [6.0, 5.0, 4.0]);
    assert_eq!(starts(&eu.recent_failures), [3.0, 1.0]);

    // Newer failures replace the preserved ones; those still in the recent list are not repeated.
    history.record(&run("eu", 7, false));
    history.record(&run("eu", 8, false));
    let snap = history.snapshot();
    let eu = &snap.targets[0];
    assert_eq!(starts(&eu.runs), [8.0, 7.0, 6.0]);
    assert!(eu.recent_failures.is_empty(), "{:?}", eu.recent_failures);
}

#[test]
fn computes_success_ratio_and_last_success_over_the_kept_runs() {
    let history = History::new(4, 2);
    for (t, ok) in [(5, true), (10, true), (20, false), (30, true), (40, false)] {
        history.record(&run("eu", t, ok));
    }
    let snap = history.snapshot();
    let eu = &snap.targets[0];
    assert_eq!(eu.success_ratio, Some(0.5));
    assert_eq!((eu.successes, eu.runs_kept), (2, 4));
    assert_eq!(eu.last_success_unix, Some(30.0));
    assert_eq!(eu.last_failure_unix, Some(40.0));
    assert_eq!(eu.consecutive_failures, 1);
    assert_eq!(eu.registry.as_deref(), Some("registry.example"));
}

#[test]
fn lists_configured_targets_in_config_order_before_their_first_run() {
    let history = History::new(10, 5);
    history.record(&run("b", 1, true));
    history.record(&run("gone", 1, true));
    history.set_targets(&["a".to_string(), "b".to_string()]);
    let snap = history.snapshot();
    let names: Vec<&str> = snap.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(snap.targets[0].success_ratio, None);
    assert_eq!(snap.targets[0].last_success_unix, None);
    assert_eq!(
        snap.targets[1].runs.len(),
        1,
        "history survives set_targets"
    );

    let html = render_html(&snap);
    let a = &html[html.find("id=\"t0\"").expect("section of a")..];
    let a = &a[..a.find("</section>").expect("end of section")];
    assert!(a.contains("no run yet"), "{a}");
}

#[test]
fn escapes_registry_messages_subjects_and_target_names_in_the_page() {
    let history = History::new(10, 5);
    let report = run_with(
        "eu<mirror>",
        1_700_000_000,
        false,
        "layer \"2\"",
        "<script>alert(1)</script> & 'more'",
    );
    history.record(&report);
    let html = render_html(&history.snapshot());

    assert!(!html.contains("<script"), "no raw script tag anywhere");
    // maud quotes every attribute value with '"', so a "'" needs no escaping anywhere.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; 'more'"));
    assert!(!html.contains("layer \"2\""));
    assert!(html.contains("layer &quot;2&quot;"));
    assert!(!html.contains("eu<mirror>"));
    assert!(html.contains("<h2>eu&lt;mirror&gt;</h2>"));
}

#[test]
fn shows_the_first_failure_and_a_transcript_of_the_failed_steps() {
    let history = History::new(10, 5);
    history.record(&run("eu", 1_700_000_000, false));
    let html = render_html(&history.snapshot());
    assert!(html.contains(
        "<span class=\"fail\">manifest_invalid</span> at <code>push_manifest</code> via origin (tag t1)"
    ));
    assert!(
        html.contains("<details><summary>HTTP transcript: 1 request in 1 failed step</summary>")
    );
    assert!(html.contains("PUT https://registry.example/v2/probe/manifests/t1"));
    assert!(html.contains("<code>MANIFEST_INVALID</code> manifest invalid"));
    // Passed steps carry no transcript.
    assert!(!html.contains("/blobs/uploads/abc"));
    assert!(html.contains("2023-11-14 22:13:20"));
    assert!(html.contains("href=\"/metrics\"") && html.contains("href=\"/?format=json\""));
}

#[test]
fn cuts_long_registry_messages() {
    let history = History::new(10, 5);
    history.record(&run_with("eu", 1, false, "layer 1", &"x".repeat(5000)));
    let snap = history.snapshot();
    let step = &snap.targets[0].runs[0].steps[2];
    let message = step.requests[0]
        .error_message
        .as_deref()
        .expect("message kept");
    assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    assert!(message.ends_with('…'));
    assert!(step.error.as_deref().expect("error kept").chars().count() <= MAX_ERROR_LINE_CHARS + 1);
}

#[test]
fn json_round_trips_with_the_expected_fields() {
    let history = History::new(10, 5);
    history.set_targets(&["eu".to_string(), "us".to_string()]);
    history.record(&run("eu", 10, true));
    history.record(&run("eu", 20, false));
    let value: serde_json::Value =
        serde_json::from_str(&render_json(&history.snapshot())).expect("valid JSON");

    assert!(value["generated_at_unix"].as_f64().expect("a number") > 1.6e9);
    let eu = &value["targets"][0];
    assert_eq!(eu["name"], "eu");
    assert_eq!(eu["registry"], "registry.example");
    assert_eq!(eu["repository"], "probe/e2e");
    assert_eq!(eu["success_ratio"], 0.5);
    assert_eq!(eu["last_success_unix"], 10.0);
    assert_eq!(eu["recent_failures"], serde_json::json!([]));

    let newest = &eu["runs"][0];
    assert_eq!(newest["success"], false);
    assert_eq!(newest["started_at_unix"], 20.0);
    assert_eq!(newest["size_class"], "default");
    assert_eq!(newest["upload_mode"], "streamed");
    assert_eq!(newest["first_failure"]["step"], "push_manifest");
    assert_eq!(newest["first_failure"]["reason"], "manifest_invalid");
    let failed = &newest["steps"][2];
    assert_eq!(failed["step"], "push_manifest");
    assert_eq!(failed["registry_code"], "MANIFEST_INVALID");
    assert_eq!(failed["requests"][0]["status"], 400);
    assert_eq!(failed["requests"][0]["error_codes"][0], "MANIFEST_INVALID");
    assert_eq!(failed["requests"][0]["first_byte_seconds"], 0.03);
    assert!(
        newest["steps"][0].get("requests").is_none(),
        "no transcript for passed steps"
    );
    assert_eq!(eu["runs"][1]["success"], true);

    let us = &value["targets"][1];
    assert_eq!(us["name"], "us");
    assert_eq!(us["runs"], serde_json::json!([]));
    assert!(us["success_ratio"].is_null());
    assert!(us["last_success_unix"].is_null());
}

#[test]
fn draws_one_sparkline_point_per_run_and_marks_failures() {
    for n in [1_u64, 5] {
        let history = History::new(50, 20);
        for t in 0..n {
            history.record(&run("eu", 100 + t, t % 2 == 0));
        }
        let html = render_html(&history.snapshot());
        let start = html.find("<polyline").expect("a sparkline");
        let points = &html[start..];
        let points = &points[points.find("points=\"").expect("points") + 8..];
        let points = &points[..points.find('"').expect("end of points")];
        assert_eq!(points.split_whitespace().count() as u64, n, "{points}");
        assert_eq!(html.matches("<circle").count() as u64, n / 2);
    }
}

#[test]
fn draws_one_bar_segment_per_step_with_the_failed_one_red() {
    let history = History::new(10, 5);
    history.record(&run("eu", 1, false));
    let html = render_html(&history.snapshot());
    let bar = &html[html.find("<svg class=\"bar\"").expect("a bar")..];
    let bar = &bar[..bar.find("</svg>").expect("end of bar")];
    assert_eq!(bar.matches("<rect").count(), 3);
    assert!(bar.contains(&format!("fill=\"{FAILED_COLOUR}\"><title>push_manifest via origin (tag t1): 40.0 ms, failed: manifest_invalid</title>")), "{bar}");
}

#[test]
fn only_the_newest_run_and_the_last_failures_keep_their_detail() {
    let history = recorded(History::new(6, 2), "FTFFTT");
    let snap = history.snapshot();
    let runs = &snap.targets[0].runs;
    let detailed: Vec<(f64, bool)> = runs
        .iter()
        .map(|r| (r.started_at_unix, r.detailed))
        .collect();
    // 6 is the newest; 4 and 3 are the last two failures; 1 fell out of the two kept.
    assert_eq!(
        detailed,
        [
            (6.0, true),
            (5.0, false),
            (4.0, true),
            (3.0, true),
            (2.0, false),
            (1.0, false)
        ]
    );

    // A compact row keeps what the bar and the failure line need, and nothing else.
    let old_failure = &runs[5];
    assert_eq!(old_failure.tag, None);
    let failure = old_failure
        .first_failure
        .as_ref()
        .expect("first failure kept");
    assert_eq!(
        (failure.step, failure.reason),
        (Step::PushManifest, Some(Reason::ManifestInvalid))
    );
    assert!(
        failure.error_line.contains("manifest invalid"),
        "{}",
        failure.error_line
    );
    let steps: Vec<(Step, &str, bool, Option<Reason>)> = old_failure
        .steps
        .iter()
        .map(|s| (s.step, s.path.as_str(), s.success, s.reason))
        .collect();
    assert_eq!(
        steps,
        [
            (Step::Token, "origin", true, None),
            (Step::UploadBlob, "origin", true, None),
            (
                Step::PushManifest,
                "origin",
                false,
                Some(Reason::ManifestInvalid)
            ),
        ]
    );
    assert_eq!(old_failure.steps[1].duration_seconds, 0.12);
    assert!(old_failure
        .steps
        .iter()
        .all(|s| s.subject.is_none() && s.requests.is_empty()));
    assert_eq!(runs[0].steps[1].subject.as_deref(), Some("layer 1"));
    assert_eq!(runs[0].tag.as_deref(), Some("t1"));

    let html = render_html(&snap);
    assert_eq!(html.matches("<details><summary>HTTP transcript").count(), 2);
    assert_eq!(html.matches("HTTP transcript no longer kept").count(), 1);
    // Every row still has its timing bar.
    assert_eq!(html.matches("<svg class=\"bar\"").count(), 6);
}

#[test]
fn many_targets_are_listed_once_each_and_have_a_page_of_their_own() {
    let history = History::new(10, 5);
    let names: Vec<String> = (0..=LISTED_TARGETS).map(|i| format!("t{i}")).collect();
    history.set_targets(&names);
    history.record(&run("t3", 1, true));
    history.record(&run("t3", 2, false));

    let snap = history.snapshot();
    assert_eq!(snap.targets.len(), LISTED_TARGETS + 1);
    assert!(snap
        .targets
        .iter()
        .all(|t| !t.runs_listed && t.runs.is_empty()));
    let t3 = &snap.targets[3];
    assert_eq!(
        (t3.last_result, t3.last_run_unix, t3.runs_kept),
        (Some(Verdict::Failure), Some(2.0), 2)
    );
    let html = render_html(&snap);
    assert!(html.contains("<a href=\"/?target=t3\">t3</a>"), "{html}");
    assert!(!html.contains("<section"), "no target section on the index");
    assert!(html.contains("21 targets: follow a target's name"));

    let one = history.snapshot_of("t3").expect("t3 is known");
    assert_eq!(one.target.as_deref(), Some("t3"));
    assert_eq!(one.targets.len(), 1);
    assert_eq!(starts(&one.targets[0].runs), [2.0, 1.0]);
    let html = render_html(&one);
    assert!(html.contains("<section class=\"target\""));
    assert!(html.contains("href=\"/?target=t3&amp;format=json\""));
    assert!(history.snapshot_of("t99").is_none());
}

#[test]
fn a_compact_step_is_twelve_bytes() {
    assert!(std::mem::size_of::<StepMark>() <= 12);
}

#[test]
fn a_kept_run_is_sixty_four_bytes_besides_its_steps_and_detail() {
    assert!(std::mem::size_of::<RunRow>() <= 64);
}

#[test]
fn shows_each_runs_upload_mode_next_to_its_size_class() {
    let history = History::new(10, 5);
    let mut chunked = run("eu", 1, true);
    chunked.upload_mode = "chunked";
    history.record(&chunked);
    history.record(&run("eu", 2, true));
    let snap = history.snapshot();
    let modes: Vec<(&str, &str, bool)> = snap.targets[0]
        .runs
        .iter()
        .map(|r| (r.size_class.as_str(), r.upload_mode.as_str(), r.detailed))
        .collect();
    // The compact row of the older run keeps its mode too.
    assert_eq!(
        modes,
        [("default", "streamed", true), ("default", "chunked", false)]
    );

    let html = render_html(&snap);
    assert!(html.contains("<th>size · upload</th>"), "{html}");
    assert!(html.contains("<td>default · streamed</td>"));
    assert!(html.contains("<td>default · chunked</td>"));
    let value: serde_json::Value = serde_json::from_str(&render_json(&snap)).expect("valid JSON");
    assert_eq!(value["targets"][0]["runs"][1]["upload_mode"], "chunked");
}

#[test]
fn shows_the_deviations_a_run_tolerated_and_what_it_left_behind() {
    let history = History::new(10, 5);
    let mut tolerant = run("eu", 1, true);
    tolerant.steps[1].deviations = vec![Deviation {
        kind: DeviationKind::RangeOffByOne,
        detail: "PATCH u: registry holds Range 0-4096 after this chunk, expected 0-4095".into(),
    }];
    tolerant.left_behind = Some(LeftBehind {
        manifests: 1,
        bytes: 4500,
    });
    history.record(&tolerant);
    let snap = history.snapshot();
    let html = render_html(&snap);
    assert!(
        html.contains("1 deviation from the spec, tolerated"),
        "{html}"
    );
    assert!(html.contains("<code>range_off_by_one</code> PATCH u: registry holds Range 0-4096"));
    assert!(html.contains("left on the registry knowingly: 1 manifest, 4500 bytes of blobs"));
    let value: serde_json::Value = serde_json::from_str(&render_json(&snap)).expect("valid JSON");
    let run = &value["targets"][0]["runs"][0];
    assert_eq!(run["left_behind"]["manifests"], 1);
    assert_eq!(run["steps"][1]["deviations"][0]["kind"], "range_off_by_one");
}

#[test]
fn escapes_markup_in_text_and_in_attribute_values() {
    let s = "a&b<c>d\"e'f";
    let markup = maud::html! { span title=(s) { (s) } };
    assert_eq!(
        markup.into_string(),
        "<span title=\"a&amp;b&lt;c&gt;d&quot;e'f\">a&amp;b&lt;c&gt;d&quot;e'f</span>"
    );
}

#[test]
fn formats_utc_times_and_ages() {
    assert_eq!(utc(0.0), "1970-01-01 00:00:00");
    assert_eq!(utc(1_700_000_000.5), "2023-11-14 22:13:20");
    assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00");
    assert_eq!(utc(-5.0), "1970-01-01 00:00:00");
    assert_eq!(utc(1e15), "9999-12-31 23:59:59");
    assert_eq!(age(-1.0), "0s");
    assert_eq!(age(42.0), "42s");
    assert_eq!(age(303.0), "5m 3s");
    assert_eq!(age(7500.0), "2h 5m");
    assert_eq!(age(7205.0), "2h");
    assert_eq!(age(3.0 * 86_400.0 + 4.0 * 3600.0 + 725.0), "3days 4h");
    assert_eq!(age(40.0 * 86_400.0), "1month 9days");
}

#[test]
fn marks_confirmation_runs_on_the_page_and_in_the_json() {
    let history = History::new(10, 5);
    history.record(&run("eu", 1, false));
    let mut confirmation = run("eu", 2, true);
    confirmation.confirmation = true;
    history.record(&confirmation);
    let snap = history.snapshot();
    let runs = &snap.targets[0].runs;
    assert_eq!(
        runs.iter().map(|r| r.confirmation).collect::<Vec<_>>(),
        [true, false]
    );
    let html = render_html(&snap);
    assert_eq!(
        html.matches("<span class=\"confirmation\"").count(),
        1,
        "{html}"
    );
    let json = serde_json::to_value(&snap).expect("snapshot serialises");
    assert_eq!(json["targets"][0]["runs"][0]["confirmation"], true);
    assert_eq!(json["targets"][0]["runs"][1]["confirmation"], false);
}

#[test]
fn shows_how_each_path_served_referrers_as_the_last_run_that_looked_said() {
    use crate::outcome::{ReferrersMode, ReferrersReport};
    let history = History::new(10, 5);
    let with = |t, modes: &[(&str, ReferrersMode)]| {
        let mut report = run("eu", t, true);
        report.referrers = modes
            .iter()
            .map(|(path, mode)| ReferrersReport {
                path: path.to_string(),
                mode: *mode,
            })
            .collect();
        report
    };
    history.record(&with(
        1,
        &[
            ("origin", ReferrersMode::TagSchema),
            ("cache", ReferrersMode::TagSchema),
        ],
    ));
    // A later run that looked on the origin only: the cache keeps what it said last.
    history.record(&with(2, &[("origin", ReferrersMode::Api)]));
    history.record(&with(3, &[]));
    let snap = history.snapshot();
    let json: serde_json::Value =
        serde_json::from_str(&super::views::render_json(&snap)).expect("JSON");
    assert_eq!(
        json["targets"][0]["referrers"],
        serde_json::json!([
            {"path": "origin", "mode": "api"},
            {"path": "cache", "mode": "tag_schema"},
        ])
    );
    let html = render_html(&snap);
    assert!(
        html.contains("referrers via origin: referrers API"),
        "{html}"
    );
    assert!(
        html.contains("referrers via cache: tag schema (no referrers API)"),
        "{html}"
    );

    // A target without artifacts says nothing of referrers.
    let plain = History::new(10, 5);
    plain.record(&run("eu", 1, true));
    let snap = plain.snapshot();
    assert!(!render_html(&snap).contains("referrers via"));
    assert!(!super::views::render_json(&snap).contains("referrers"));
}
