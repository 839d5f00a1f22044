//! The status page as HTML: a summary table, then per target a duration sparkline and a table
//! of runs with a timing bar each and the transcript of failed steps.
//!
//! Written with maud, not by hand: the hand-written writer (`raw(&'static str)`, `text(escaped)`)
//! took 553 lines of interleaved fragments where the templates show the page's nesting and
//! close every tag, for the same DOM on the test snapshots; +3 small crates. maud escapes every
//! `(value)` (`& < > "`; it double-quotes every attribute, so `'` is safe); only `STYLE` is raw.

use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::views::{RunView, StatusSnapshot, StepView, TargetStatus, Verdict};
use crate::outcome::{Deviation, HttpRecord, Reason, ReferrersMode, Step};

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.4em;margin:0}h2{font-size:1.2em;margin:0 0 .2em}h3{font-size:1em;margin:1em 0 .3em}
a{color:#1f5fa8}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{font-weight:600;color:#555;font-size:12px}
td.num,th.num{text-align:right;white-space:nowrap}
.ok{color:#1a7f37}.fail{color:#c62828;font-weight:600}.none{color:#888}
.confirmation{color:#8a5a00;font-style:italic}
section.target{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:1em 0}
.meta{color:#555;margin:0 0 .5em}
.stats span{margin-right:1.5em}
.legend span{display:inline-block;margin:0 .8em .2em 0;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:3px;vertical-align:middle}
svg.bar{display:block;width:100%;height:12px}
svg.spark{display:block;margin:.4em 0}
tr.detail>td{background:#fff6f6;border-bottom:1px solid #f0caca}
.err{margin:.2em 0;word-break:break-all}
details{margin:.3em 0}summary{cursor:pointer}
table.transcript td,table.transcript th{font-size:12px;border-bottom:1px solid #eee}
table.transcript td.url{word-break:break-all}
";

/// One colour per step, so the timing bars read the same in every row; red is kept for failures.
fn step_colour(step: Step) -> &'static str {
    match step {
        Step::Ping => "#cfd8dc",
        Step::Token => "#9e9e9e",
        Step::CheckBlob => "#8ecae6",
        Step::StartUpload => "#219ebc",
        Step::UploadBlob => "#1f5fa8",
        Step::MountBlob => "#4361ee",
        Step::PushManifest => "#7b5ea7",
        Step::PushIndex => "#9d4edd",
        Step::WaitPropagation => "#b5a9d6",
        Step::PullManifestByTag => "#57b894",
        Step::PullManifestByDigest => "#2a9d8f",
        Step::PullPlatformManifest => "#52b69a",
        Step::PullBlob => "#1a7f37",
        Step::HeadBlob => "#8ab17d",
        Step::PushArtifact => "#c77dff",
        Step::UpdateReferrersTag => "#e0aaff",
        Step::ListReferrers => "#006d77",
        Step::PullReferrersTag => "#83c5be",
        Step::PullArtifact => "#264653",
        Step::PullGoldenManifest => "#bc8a5f",
        Step::PullGoldenBlob => "#8b5e34",
        Step::ListTags => "#adb5bd",
        Step::PullCanaryManifest => "#f4978e",
        Step::PullCanaryBlob => "#e5989b",
        Step::DeleteManifest => "#e9c46a",
        Step::DeleteBlob => "#f4a261",
        Step::CancelUpload => "#c9a227",
    }
}

pub(super) const FAILED_COLOUR: &str = "#d62728";

pub(crate) fn render_html(snapshot: &StatusSnapshot) -> String {
    let now = snapshot.generated_at_unix;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="10";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "registry-prober status" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "registry-prober" }
                    p.meta {
                        "Generated " (utc(now)) " UTC · " a href="/metrics" { "metrics" } " · "
                        @match &snapshot.target {
                            None => a href="/?format=json" { "JSON" },
                            Some(name) => {
                                a href={ "/?target=" (name) "&format=json" } { "JSON" }
                                " · " a href="/" { "all targets" }
                            }
                        }
                    }
                }
                (summary(snapshot))
                @if snapshot.runs_listed() {
                    (legend())
                    @for (i, target) in snapshot.targets.iter().enumerate() {
                        (target_section(i, target, now))
                    }
                } @else {
                    p.meta {
                        (snapshot.targets.len())
                        " targets: follow a target's name for its runs, step timings and failures."
                    }
                }
            }
        }
    };
    page.into_string()
}

fn summary(snapshot: &StatusSnapshot) -> Markup {
    let on_this_page = snapshot.runs_listed();
    html! {
        @if snapshot.targets.is_empty() {
            p.none { "No targets configured." }
        } @else {
            table.summary {
                thead {
                    tr {
                        th { "target" } th { "last run" } th.num { "success ratio" }
                        th.num { "last success" } th.num { "failures in a row" }
                    }
                }
                tbody {
                    @for (i, t) in snapshot.targets.iter().enumerate() {
                        tr {
                            td {
                                @if on_this_page {
                                    a href={ "#t" (i) } { (t.name) }
                                } @else {
                                    a href={ "/?target=" (t.name) } { (t.name) }
                                }
                            }
                            td {
                                @match t.last_result {
                                    None => span.none { "no run yet" },
                                    Some(verdict) => (verdict_badge(verdict)),
                                }
                            }
                            td.num { (ratio(t)) }
                            td.num { (since(t.last_success_unix, snapshot.generated_at_unix)) }
                            td.num { (t.consecutive_failures) }
                        }
                    }
                }
            }
        }
    }
}

fn legend() -> Markup {
    html! {
        p.legend {
            "Steps: "
            @for step in <Step as strum::IntoEnumIterator>::iter() {
                span { i style={ "background:" (step_colour(step)) } {} (step) }
            }
            span { i style={ "background:" (FAILED_COLOUR) } {} "failed step" }
        }
    }
}

fn target_section(index: usize, t: &TargetStatus, now: f64) -> Markup {
    html! {
        section.target id={ "t" (index) } {
            h2 { (t.name) }
            p.meta.mono {
                @if let (Some(registry), Some(repository)) = (&t.registry, &t.repository) {
                    (registry) " · " (repository)
                } @else {
                    "registry not reported yet"
                }
            }
            @if t.runs.is_empty() {
                p.none { "no run yet" }
            } @else {
                p.stats {
                    span { "success ratio " (ratio(t)) }
                    span { "last success " (since(t.last_success_unix, now)) }
                    span { "failures in a row " (t.consecutive_failures) }
                    @for r in &t.referrers {
                        span.referrers {
                            "referrers via " (r.path) ": "
                            @match r.mode {
                                ReferrersMode::Api => "referrers API",
                                ReferrersMode::TagSchema => "tag schema (no referrers API)",
                            }
                        }
                    }
                }
                (sparkline(&t.runs))
                h3 { "Last " (t.runs.len()) " runs, newest first" }
                (runs_table(&t.runs, &t.runs))
            }
            @if !t.recent_failures.is_empty() {
                h3 { "Older failures" }
                (runs_table(&t.recent_failures, &t.runs))
            }
        }
    }
}

fn verdict_badge(verdict: Verdict) -> Markup {
    html! {
        @match verdict {
            Verdict::Success => span.ok { "OK" },
            Verdict::CleanupFailed => span.fail { "CLEANUP FAILED" },
            Verdict::Failure => span.fail { "FAILED" },
        }
    }
}

fn ratio(t: &TargetStatus) -> Markup {
    html! {
        @match t.success_ratio {
            None => span.none { "-" },
            Some(r) => {
                (format!("{:.1}% ", r * 100.0))
                span.none { "(" (t.successes) "/" (t.runs_kept) ")" }
            }
        }
    }
}

fn since(at: Option<f64>, now: f64) -> Markup {
    html! {
        @match at {
            None => span.none { "never" },
            Some(at) => span title={ (utc(at)) " UTC" } { (age(now - at)) " ago" },
        }
    }
}

/// Run durations oldest to newest as one polyline (one point per run), failed runs as red dots.
fn sparkline(newest_first: &[RunView]) -> Markup {
    const W: f64 = 320.0;
    const H: f64 = 40.0;
    const PAD: f64 = 3.0;
    let runs: Vec<&RunView> = newest_first.iter().rev().collect();
    let max = runs
        .iter()
        .map(|r| r.duration_seconds)
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    let point = |i: usize, r: &RunView| -> (f64, f64) {
        let x = if runs.len() > 1 {
            PAD + (W - 2.0 * PAD) * i as f64 / (runs.len() - 1) as f64
        } else {
            W / 2.0
        };
        let y = H - PAD - (H - 2.0 * PAD) * r.duration_seconds / max;
        (x, y)
    };
    let points: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (x, y) = point(i, r);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    // SVG elements are not void: each is closed explicitly (`{}`), or the next would nest in it.
    html! {
        svg.spark xmlns="http://www.w3.org/2000/svg" width="320" height="40" viewBox="0 0 320 40"
            role="img" aria-label="run durations, oldest to newest" {
            title { "run durations, oldest to newest; longest " (secs(max)) }
            polyline fill="none" stroke="#1f5fa8" stroke-width="1.5" points=(points.join(" ")) {}
            @for (i, r) in runs.iter().enumerate().filter(|(_, r)| !r.success) {
                @let (x, y) = point(i, r);
                circle r="2.5" fill=(FAILED_COLOUR) cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) {
                    title { "failed " (utc(r.started_at_unix)) " UTC, " (secs(r.duration_seconds)) }
                }
            }
        }
    }
}

/// `scale_runs`: the runs whose longest duration fills a full bar, so bars compare across rows.
fn runs_table(runs: &[RunView], scale_runs: &[RunView]) -> Markup {
    let scale = runs
        .iter()
        .chain(scale_runs)
        .map(|r| {
            r.duration_seconds
                .max(r.steps.iter().map(|s| s.duration_seconds).sum())
        })
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    html! {
        table.runs {
            thead {
                tr {
                    th { "started (UTC)" } th { "size · upload" } th { "result" }
                    th.num { "duration" } th style="width:60%" { "steps" }
                }
            }
            tbody {
                @for run in runs {
                    tr {
                        td.mono { (utc(run.started_at_unix)) }
                        td {
                            (run.size_class) " · " (run.upload_mode)
                            @if run.confirmation { " · " span.confirmation title="run after a failed run, to confirm or clear it" { "confirmation" } }
                        }
                        td { (verdict_badge(run.verdict())) }
                        td.num { (secs(run.duration_seconds)) }
                        td { (step_bar(run, scale)) }
                    }
                    @if !run.success {
                        tr.detail { td colspan="5" { (failure_detail(run)) } }
                    }
                    @if run.left_behind.is_some() || run.steps.iter().any(|s| !s.deviations.is_empty()) {
                        tr.detail { td colspan="5" { (tolerated(run)) } }
                    }
                }
            }
        }
    }
}

/// Steps laid end to end (they run one after another), widths proportional to their durations.
fn step_bar(run: &RunView, scale: f64) -> Markup {
    const WIDTH: f64 = 1000.0;
    let mut x = 0.0;
    let segments: Vec<(&StepView, f64, f64)> = run
        .steps
        .iter()
        .map(|step| {
            // At least a sliver, so a fast or failed-at-once step still shows and has a tooltip.
            let w = (WIDTH * step.duration_seconds / scale).max(1.5);
            let at = x;
            x += w;
            (step, at, w)
        })
        .collect();
    html! {
        svg.bar xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1000 12" preserveAspectRatio="none"
            role="img" aria-label="step timings" {
            @for (step, x, w) in segments {
                @let colour = if step.success { step_colour(step.step) } else { FAILED_COLOUR };
                rect y="0" height="12" x=(format!("{x:.1}")) width=(format!("{w:.1}"))
                    fill=(colour) {
                    title {
                        (step.step) " via " (step.path)
                        @if let Some(subject) = &step.subject { " (" (subject) ")" }
                        ": " (secs(step.duration_seconds))
                        @if !step.success {
                            ", failed: "
                            (step.reason.map(Reason::as_str).unwrap_or("unknown reason"))
                        }
                    }
                }
            }
        }
    }
}

/// What a run kept in full met that a failure does not show: deviations from the spec it
/// tolerated, and what it left on the registry knowingly.
fn tolerated(run: &RunView) -> Markup {
    let deviations: Vec<(&StepView, &Deviation)> = run
        .steps
        .iter()
        .flat_map(|s| s.deviations.iter().map(move |d| (s, d)))
        .collect();
    html! {
        @if let Some(left) = &run.left_behind {
            p {
                "left on the registry knowingly: " (count(left.manifests as usize, "manifest"))
                ", " (left.bytes) " bytes of blobs"
            }
        }
        @if !deviations.is_empty() {
            details.deviations {
                summary { (count(deviations.len(), "deviation")) " from the spec, tolerated" }
                ul {
                    @for (step, d) in &deviations {
                        li {
                            code { (step.step) } " via " (step.path) ": "
                            code { (<&'static str>::from(d.kind)) } " " (d.detail)
                        }
                    }
                }
            }
        }
    }
}

fn failure_detail(run: &RunView) -> Markup {
    let failed: Vec<&StepView> = run.steps.iter().filter(|s| !s.success).collect();
    let requests: usize = failed.iter().map(|s| s.requests.len()).sum();
    html! {
        @if let Some(f) = &run.first_failure {
            p {
                span.fail { (f.reason.map(Reason::as_str).unwrap_or("failed")) }
                " at " code { (f.step) } " via " (f.path) " (" (f.subject) ")"
            }
            p.err { code { (f.error_line) } }
        }
        @if !run.detailed {
            p.none {
                "HTTP transcript no longer kept: "
                "only the newest run and the last failures keep theirs."
            }
        } @else {
            details {
                summary {
                    "HTTP transcript: " (count(requests, "request"))
                    " in " (count(failed.len(), "failed step"))
                }
                @for (i, step) in failed.iter().enumerate() {
                    h3 {
                        code { (step.step) } " (" (step.subject.as_deref().unwrap_or("?")) "): "
                        (step.reason.map(Reason::as_str).unwrap_or("failed"))
                        " after " (secs(step.duration_seconds))
                    }
                    // The first failed step's error line is already shown above the transcript.
                    @if let Some(error) = step.error.as_ref().filter(|_| i > 0) {
                        p.err { code { (error) } }
                    }
                    @if step.requests.is_empty() {
                        p.none { "no request recorded" }
                    } @else {
                        (transcript(&step.requests))
                    }
                }
            }
        }
    }
}

fn transcript(requests: &[HttpRecord]) -> Markup {
    html! {
        table.transcript {
            thead {
                tr {
                    th { "request" } th.num { "status" } th { "conn" } th.num { "dns" }
                    th.num { "connect" } th.num { "tls" } th.num { "first byte" }
                    th.num { "transfer" } th.num { "sent" } th.num { "received" }
                    th { "registry error" } th { "transport error" }
                }
            }
            tbody {
                @for r in requests {
                    tr {
                        td.url.mono { (r.method) " " (r.url) }
                        td.num {
                            @match r.status { Some(status) => (status), None => "—" }
                        }
                        td {
                            (if r.reused_connection { "reused" } else { "new" })
                            @if let Some(version) = r.http_version { " " (version) }
                        }
                        @for phase in phases(r) {
                            td.num {
                                @match phase { Some(d) => (secs(d.as_secs_f64())), None => "—" }
                            }
                        }
                        td.num { (r.bytes_sent) }
                        td.num { (r.bytes_received) }
                        td {
                            @if !r.error_codes.is_empty() {
                                code { (r.error_codes.join(", ")) } " "
                            }
                            @if let Some(message) = &r.error_message { (message) }
                            @for (name, value) in &r.rate_limit {
                                br; code { (name) ": " (value) }
                            }
                        }
                        td { @if let Some(error) = &r.error { (error) } }
                    }
                }
            }
        }
    }
}

/// The transcript's timing columns, in the order of its header.
fn phases(r: &HttpRecord) -> [Option<Duration>; 5] {
    [
        r.dns_seconds,
        r.connect_seconds,
        r.tls_seconds,
        r.first_byte_seconds,
        r.transfer_seconds,
    ]
}

/// "1 request", "2 requests".
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// A step or run duration at a fixed precision, "40.0 ms" or "1.23 s", so a column of them reads
/// at a glance (humantime writes every unit: "1s 234ms 567us").
fn secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

/// How long ago, in humantime's two largest units: "42s", "5m 3s", "2h 5m", "3days 4h".
pub(super) fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    // Seconds stop counting past an hour and minutes past a day: "2h 0m 5s" is "2h", not "2h 5s".
    let unit = match s {
        0..3_600 => 1,
        3_600..86_400 => 60,
        _ => 3_600,
    };
    let text = humantime::format_duration(Duration::from_secs(s - s % unit)).to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// `YYYY-MM-DD hh:mm:ss` in UTC: humantime's RFC 3339 time with a space for the `T` and no
/// `Z`, since the page says UTC wherever it shows one.
pub(super) fn utc(unix_seconds: f64) -> String {
    // humantime writes the years 1970 to 9999 (before 1970 it panics, after it fails).
    let seconds = unix_seconds.clamp(0.0, 253_402_300_799.0) as u64;
    let mut text =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string();
    text.replace_range(10..11, " ");
    text.pop();
    text
}
