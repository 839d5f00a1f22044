//! The status page as HTML: a summary table, then per target a duration sparkline and a table
//! of runs with a timing bar each and the transcript of failed steps.

use std::borrow::Cow;
use std::fmt::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use super::views::{RunView, StatusSnapshot, StepView, TargetStatus, Verdict};
use crate::outcome::{HttpRecord, Reason, Step};

/// HTML-escapes `& < > " '`: safe in text and in quoted attribute values.
pub(super) fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The page being written. Markup can only be a `&'static str`; everything computed goes
/// through `text`, which escapes, so no registry or config string can reach the page raw.
struct Html {
    out: String,
}

impl Html {
    fn raw(&mut self, markup: &'static str) {
        self.out.push_str(markup);
    }

    fn text(&mut self, value: impl fmt::Display) {
        let _ = write!(Escaping(&mut self.out), "{value}");
    }
}

struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_str(&escape(s));
        Ok(())
    }
}

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
        Step::WaitPropagation => "#b5a9d6",
        Step::PullManifestByTag => "#57b894",
        Step::PullManifestByDigest => "#2a9d8f",
        Step::PullBlob => "#1a7f37",
        Step::HeadBlob => "#8ab17d",
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
    let mut h = Html {
        out: String::with_capacity(64 * 1024),
    };
    let now = snapshot.generated_at_unix;
    h.raw("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.raw("<meta http-equiv=\"refresh\" content=\"10\">\n");
    h.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.raw("<title>registry-prober status</title>\n<style>");
    h.raw(STYLE);
    h.raw("</style>\n</head>\n<body>\n<header>\n<h1>registry-prober</h1>\n<p class=\"meta\">");
    h.raw("Generated ");
    h.text(utc(now));
    h.raw(" UTC &middot; <a href=\"/metrics\">metrics</a> &middot; ");
    match &snapshot.target {
        None => h.raw("<a href=\"/?format=json\">JSON</a>"),
        Some(name) => {
            h.raw("<a href=\"/?target=");
            h.text(name);
            h.raw("&amp;format=json\">JSON</a> &middot; <a href=\"/\">all targets</a>");
        }
    }
    h.raw("</p>\n</header>\n");

    render_summary(&mut h, snapshot);
    if snapshot.runs_listed() {
        render_legend(&mut h);
        for (i, target) in snapshot.targets.iter().enumerate() {
            render_target(&mut h, i, target, now);
        }
    } else {
        h.raw("<p class=\"meta\">");
        h.text(snapshot.targets.len());
        h.raw(" targets: follow a target's name for its runs, step timings and failures.</p>\n");
    }
    h.raw("</body>\n</html>\n");
    h.out
}

fn render_summary(h: &mut Html, snapshot: &StatusSnapshot) {
    if snapshot.targets.is_empty() {
        h.raw("<p class=\"none\">No targets configured.</p>\n");
        return;
    }
    let on_this_page = snapshot.runs_listed();
    h.raw("<table class=\"summary\">\n<thead><tr><th>target</th><th>last run</th>");
    h.raw("<th class=\"num\">success ratio</th><th class=\"num\">last success</th>");
    h.raw("<th class=\"num\">failures in a row</th></tr></thead>\n<tbody>\n");
    for (i, t) in snapshot.targets.iter().enumerate() {
        if on_this_page {
            h.raw("<tr><td><a href=\"#t");
            h.text(i);
        } else {
            h.raw("<tr><td><a href=\"/?target=");
            h.text(&t.name);
        }
        h.raw("\">");
        h.text(&t.name);
        h.raw("</a></td><td>");
        match t.last_result {
            None => h.raw("<span class=\"none\">no run yet</span>"),
            Some(verdict) => verdict_badge(h, verdict),
        }
        h.raw("</td><td class=\"num\">");
        ratio(h, t);
        h.raw("</td><td class=\"num\">");
        since(h, t.last_success_unix, snapshot.generated_at_unix);
        h.raw("</td><td class=\"num\">");
        h.text(t.consecutive_failures);
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
}

fn render_legend(h: &mut Html) {
    h.raw("<p class=\"legend\">Steps: ");
    for step in <Step as strum::IntoEnumIterator>::iter() {
        h.raw("<span><i style=\"background:");
        h.text(step_colour(step));
        h.raw("\"></i>");
        h.text(step);
        h.raw("</span>");
    }
    h.raw("<span><i style=\"background:");
    h.text(FAILED_COLOUR);
    h.raw("\"></i>failed step</span></p>\n");
}

fn render_target(h: &mut Html, index: usize, t: &TargetStatus, now: f64) {
    h.raw("<section class=\"target\" id=\"t");
    h.text(index);
    h.raw("\">\n<h2>");
    h.text(&t.name);
    h.raw("</h2>\n<p class=\"meta mono\">");
    match (&t.registry, &t.repository) {
        (Some(registry), Some(repository)) => {
            h.text(registry);
            h.raw(" &middot; ");
            h.text(repository);
        }
        _ => h.raw("registry not reported yet"),
    }
    h.raw("</p>\n");
    if t.runs.is_empty() {
        h.raw("<p class=\"none\">no run yet</p>\n");
    } else {
        h.raw("<p class=\"stats\"><span>success ratio ");
        ratio(h, t);
        h.raw("</span><span>last success ");
        since(h, t.last_success_unix, now);
        h.raw("</span><span>failures in a row ");
        h.text(t.consecutive_failures);
        h.raw("</span></p>\n");
        sparkline(h, &t.runs);
        h.raw("<h3>Last ");
        h.text(t.runs.len());
        h.raw(" runs, newest first</h3>\n");
        runs_table(h, &t.runs, &t.runs);
    }
    if !t.recent_failures.is_empty() {
        h.raw("<h3>Older failures</h3>\n");
        runs_table(h, &t.recent_failures, &t.runs);
    }
    h.raw("</section>\n");
}

fn verdict_badge(h: &mut Html, verdict: Verdict) {
    h.raw(match verdict {
        Verdict::Success => "<span class=\"ok\">OK</span>",
        Verdict::CleanupFailed => "<span class=\"fail\">CLEANUP FAILED</span>",
        Verdict::Failure => "<span class=\"fail\">FAILED</span>",
    });
}

fn ratio(h: &mut Html, t: &TargetStatus) {
    match t.success_ratio {
        None => h.raw("<span class=\"none\">-</span>"),
        Some(r) => {
            h.text(format_args!("{:.1}% ", r * 100.0));
            h.raw("<span class=\"none\">(");
            h.text(format_args!("{}/{}", t.successes, t.runs_kept));
            h.raw(")</span>");
        }
    }
}

fn since(h: &mut Html, at: Option<f64>, now: f64) {
    match at {
        None => h.raw("<span class=\"none\">never</span>"),
        Some(at) => {
            h.raw("<span title=\"");
            h.text(utc(at));
            h.raw(" UTC\">");
            h.text(age(now - at));
            h.raw(" ago</span>");
        }
    }
}

/// Run durations oldest to newest as one polyline (one point per run), failed runs as red dots.
fn sparkline(h: &mut Html, newest_first: &[RunView]) {
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
    h.raw("<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"40\" ");
    h.raw("viewBox=\"0 0 320 40\" role=\"img\" aria-label=\"run durations, oldest to newest\">");
    h.raw("<title>run durations, oldest to newest; longest ");
    h.text(secs(max));
    h.raw("</title><polyline fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"1.5\" points=\"");
    for (i, r) in runs.iter().enumerate() {
        let (x, y) = point(i, r);
        if i > 0 {
            h.raw(" ");
        }
        h.text(format_args!("{x:.1},{y:.1}"));
    }
    h.raw("\"/>");
    for (i, r) in runs.iter().enumerate().filter(|(_, r)| !r.success) {
        let (x, y) = point(i, r);
        h.raw("<circle r=\"2.5\" fill=\"");
        h.text(FAILED_COLOUR);
        h.raw("\" cx=\"");
        h.text(format_args!("{x:.1}"));
        h.raw("\" cy=\"");
        h.text(format_args!("{y:.1}"));
        h.raw("\"><title>failed ");
        h.text(utc(r.started_at_unix));
        h.raw(" UTC, ");
        h.text(secs(r.duration_seconds));
        h.raw("</title></circle>");
    }
    h.raw("</svg>\n");
}

/// `scale_runs`: the runs whose longest duration fills a full bar, so bars compare across rows.
fn runs_table(h: &mut Html, runs: &[RunView], scale_runs: &[RunView]) {
    let scale = runs
        .iter()
        .chain(scale_runs)
        .map(|r| {
            r.duration_seconds
                .max(r.steps.iter().map(|s| s.duration_seconds).sum())
        })
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    h.raw("<table class=\"runs\">\n<thead><tr><th>started (UTC)</th><th>size &middot; upload</th>");
    h.raw("<th>result</th><th class=\"num\">duration</th><th style=\"width:60%\">steps</th>");
    h.raw("</tr></thead>\n<tbody>\n");
    for run in runs {
        h.raw("<tr><td class=\"mono\">");
        h.text(utc(run.started_at_unix));
        h.raw("</td><td>");
        h.text(&run.size_class);
        h.raw(" &middot; ");
        h.text(&run.upload_mode);
        h.raw("</td><td>");
        verdict_badge(h, run.verdict());
        h.raw("</td><td class=\"num\">");
        h.text(secs(run.duration_seconds));
        h.raw("</td><td>");
        step_bar(h, run, scale);
        h.raw("</td></tr>\n");
        if !run.success {
            h.raw("<tr class=\"detail\"><td colspan=\"5\">");
            failure_detail(h, run);
            h.raw("</td></tr>\n");
        }
    }
    h.raw("</tbody>\n</table>\n");
}

/// Steps laid end to end (they run one after another), widths proportional to their durations.
fn step_bar(h: &mut Html, run: &RunView, scale: f64) {
    const WIDTH: f64 = 1000.0;
    h.raw("<svg class=\"bar\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1000 12\" ");
    h.raw("preserveAspectRatio=\"none\" role=\"img\" aria-label=\"step timings\">");
    let mut x = 0.0;
    for step in &run.steps {
        // At least a sliver, so a fast or failed-at-once step still shows and has a tooltip.
        let w = (WIDTH * step.duration_seconds / scale).max(1.5);
        h.raw("<rect y=\"0\" height=\"12\" x=\"");
        h.text(format_args!("{x:.1}"));
        h.raw("\" width=\"");
        h.text(format_args!("{w:.1}"));
        h.raw("\" fill=\"");
        h.text(if step.success {
            step_colour(step.step)
        } else {
            FAILED_COLOUR
        });
        h.raw("\"><title>");
        h.text(step.step);
        h.raw(" via ");
        h.text(&step.path);
        if let Some(subject) = &step.subject {
            h.raw(" (");
            h.text(subject);
            h.raw(")");
        }
        h.raw(": ");
        h.text(secs(step.duration_seconds));
        if !step.success {
            h.raw(", failed: ");
            h.text(step.reason.map(Reason::as_str).unwrap_or("unknown reason"));
        }
        h.raw("</title></rect>");
        x += w;
    }
    h.raw("</svg>");
}

fn failure_detail(h: &mut Html, run: &RunView) {
    if let Some(f) = &run.first_failure {
        h.raw("<p><span class=\"fail\">");
        h.text(f.reason.map(Reason::as_str).unwrap_or("failed"));
        h.raw("</span> at <code>");
        h.text(f.step);
        h.raw("</code> via ");
        h.text(&f.path);
        h.raw(" (");
        h.text(&f.subject);
        h.raw(")</p>\n<p class=\"err\"><code>");
        h.text(&f.error_line);
        h.raw("</code></p>\n");
    }
    if !run.detailed {
        h.raw("<p class=\"none\">HTTP transcript no longer kept: only the newest run and the ");
        h.raw("last failures keep theirs.</p>\n");
        return;
    }
    let failed: Vec<&StepView> = run.steps.iter().filter(|s| !s.success).collect();
    let requests: usize = failed.iter().map(|s| s.requests.len()).sum();
    h.raw("<details><summary>HTTP transcript: ");
    h.text(requests);
    h.raw(if requests == 1 {
        " request"
    } else {
        " requests"
    });
    h.raw(" in ");
    h.text(failed.len());
    h.raw(if failed.len() == 1 {
        " failed step"
    } else {
        " failed steps"
    });
    h.raw("</summary>\n");
    for (i, step) in failed.into_iter().enumerate() {
        h.raw("<h3><code>");
        h.text(step.step);
        h.raw("</code> (");
        h.text(step.subject.as_deref().unwrap_or("?"));
        h.raw("): ");
        h.text(step.reason.map(Reason::as_str).unwrap_or("failed"));
        h.raw(" after ");
        h.text(secs(step.duration_seconds));
        h.raw("</h3>\n");
        // The first failed step's error line is already shown above the transcript.
        if let Some(error) = step.error.as_ref().filter(|_| i > 0) {
            h.raw("<p class=\"err\"><code>");
            h.text(error);
            h.raw("</code></p>\n");
        }
        if step.requests.is_empty() {
            h.raw("<p class=\"none\">no request recorded</p>\n");
            continue;
        }
        transcript(h, &step.requests);
    }
    h.raw("</details>\n");
}

fn transcript(h: &mut Html, requests: &[HttpRecord]) {
    h.raw("<table class=\"transcript\">\n<thead><tr><th>request</th><th class=\"num\">status</th>");
    h.raw("<th>conn</th><th class=\"num\">dns</th><th class=\"num\">connect</th>");
    h.raw("<th class=\"num\">tls</th><th class=\"num\">first byte</th>");
    h.raw(
        "<th class=\"num\">transfer</th><th class=\"num\">sent</th><th class=\"num\">received</th>",
    );
    h.raw("<th>registry error</th><th>transport error</th></tr></thead>\n<tbody>\n");
    for r in requests {
        h.raw("<tr><td class=\"url mono\">");
        h.text(&r.method);
        h.raw(" ");
        h.text(&r.url);
        h.raw("</td><td class=\"num\">");
        match r.status {
            Some(status) => h.text(status),
            None => h.raw("&mdash;"),
        }
        h.raw("</td><td>");
        h.raw(if r.reused_connection { "reused" } else { "new" });
        if let Some(version) = r.http_version {
            h.raw(" ");
            h.text(version);
        }
        for phase in [
            r.dns_seconds,
            r.connect_seconds,
            r.tls_seconds,
            r.first_byte_seconds,
            r.transfer_seconds,
        ] {
            h.raw("</td><td class=\"num\">");
            match phase {
                Some(d) => h.text(secs(d.as_secs_f64())),
                None => h.raw("&mdash;"),
            }
        }
        h.raw("</td><td class=\"num\">");
        h.text(r.bytes_sent);
        h.raw("</td><td class=\"num\">");
        h.text(r.bytes_received);
        h.raw("</td><td>");
        if !r.error_codes.is_empty() {
            h.raw("<code>");
            h.text(r.error_codes.join(", "));
            h.raw("</code> ");
        }
        if let Some(message) = &r.error_message {
            h.text(message);
        }
        for (name, value) in &r.rate_limit {
            h.raw("<br><code>");
            h.text(name);
            h.raw(": ");
            h.text(value);
            h.raw("</code>");
        }
        h.raw("</td><td>");
        if let Some(error) = &r.error {
            h.text(error);
        }
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
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
    // Seconds stop counting past an hour and minutes past a day, so "2h 0m 5s" is "2h", not "2h 5s".
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
