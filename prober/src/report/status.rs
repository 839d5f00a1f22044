//! The status page, one more sink of finished runs: `History` keeps the recent runs per target
//! (and recent failures after newer successes push them out, like blackbox_exporter's history),
//! and `render_html` / `render_json` show a snapshot of it. The server only reads snapshots.
//!
//! Memory is bounded per target, so a thousand targets fit: the newest run and the last few
//! failed runs are kept in full (steps with subjects, errors, HTTP transcripts); every other
//! kept run is a compact row (its result, its first failure and the timing of its steps, ~12
//! bytes a step). A snapshot lists the runs of at most [`LISTED_TARGETS`] targets; past that the
//! index lists each target once and its runs are on `/?target=NAME`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::outcome::{HttpRecord, Reason, RunReport, Step, StepReport};

/// Registry error messages and transport errors are cut here: enough to read, bounded in memory.
const MAX_MESSAGE_CHARS: usize = 300;
/// A step's error line names the request (method, URL) before the registry's message.
const MAX_ERROR_LINE_CHARS: usize = 600;
/// Long URLs (object-store redirects) and rate-limit header values are cut here.
const MAX_URL_CHARS: usize = 400;
const MAX_HEADER_VALUE_CHARS: usize = 100;

/// The index page (and its JSON) lists the runs of every target up to this many targets; with
/// more, it lists each target once and links to `/?target=NAME` for its runs.
pub const LISTED_TARGETS: usize = 20;

/// Recent runs per target for the status page: the last `keep` runs, plus the last
/// `keep_failures` failed runs kept in full even after newer runs push them out of the recent
/// list (like blackbox_exporter's history). Thread-safe.
pub struct History {
    keep: usize,
    keep_failures: usize,
    state: Mutex<State>,
}

struct State {
    /// Numbers runs across targets, so a failure kept twice (recent and preserved) is recognised.
    next_seq: u64,
    /// In config order; targets that ran without being configured (not expected) come last.
    targets: Vec<TargetHistory>,
}

struct TargetHistory {
    name: String,
    registry: Option<String>,
    repository: Option<String>,
    /// The size classes and paths named by the kept runs, which rows refer to by index.
    names: Names,
    /// Oldest first, at most `keep`. Only the newest and the failures in `failures` keep their
    /// detail.
    runs: VecDeque<RunRow>,
    /// Oldest first, at most `keep_failures`, each with its detail; may overlap `runs`.
    failures: VecDeque<RunRow>,
    last_success_unix: Option<f64>,
    last_failure_unix: Option<f64>,
    consecutive_failures: u64,
}

/// Interned names (size classes, paths): a kept run refers to them by index instead of holding
/// a copy of each. A target has a handful; past `u16::MAX` they share one "…" entry.
#[derive(Default)]
struct Names(Vec<Box<str>>);

impl Names {
    fn index(&mut self, name: &str) -> u16 {
        if let Some(i) = self.0.iter().position(|n| &**n == name) {
            return u16::try_from(i).unwrap_or(u16::MAX);
        }
        match u16::try_from(self.0.len()) {
            Ok(i) if i < u16::MAX => {
                self.0.push(name.into());
                i
            }
            _ => u16::MAX,
        }
    }

    fn get(&self, index: u16) -> &str {
        self.0.get(usize::from(index)).map_or("…", |n| n)
    }
}

/// A kept run. Cloning is cheap: the steps and the detail are shared.
#[derive(Clone)]
struct RunRow {
    seq: u64,
    started_at_unix: f64,
    duration_seconds: f64,
    size_class: u16,
    success: bool,
    cleanup_failed: bool,
    first_failure: Option<Arc<FailureView>>,
    /// What the timing bar needs of every step.
    steps: Arc<[StepMark]>,
    /// Everything else; dropped once the run is neither the newest nor a kept failure.
    detail: Option<Arc<RunDetail>>,
}

/// One step of a compact row: 12 bytes.
#[derive(Clone, Copy)]
struct StepMark {
    step: Step,
    success: bool,
    reason: Option<Reason>,
    path: u16,
    seconds: f32,
}

struct RunDetail {
    tag: Option<String>,
    manifest_digest: Option<String>,
    steps: Vec<StepView>,
}

impl TargetHistory {
    fn new(name: String) -> TargetHistory {
        TargetHistory {
            name,
            registry: None,
            repository: None,
            names: Names::default(),
            runs: VecDeque::new(),
            failures: VecDeque::new(),
            last_success_unix: None,
            last_failure_unix: None,
            consecutive_failures: 0,
        }
    }

    fn status(&self, list_runs: bool) -> TargetStatus {
        let successes = self.runs.iter().filter(|r| r.success).count();
        let oldest_recent = self.runs.front().map(|r| r.seq).unwrap_or(u64::MAX);
        let view = |r: &RunRow| r.view(&self.names);
        TargetStatus {
            name: self.name.clone(),
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            success_ratio: (!self.runs.is_empty())
                .then(|| successes as f64 / self.runs.len() as f64),
            successes,
            runs_kept: self.runs.len(),
            last_run_unix: self.runs.back().map(|r| r.started_at_unix),
            last_result: self.runs.back().map(RunRow::result),
            last_success_unix: self.last_success_unix,
            last_failure_unix: self.last_failure_unix,
            consecutive_failures: self.consecutive_failures,
            runs_listed: list_runs,
            runs: if list_runs {
                self.runs.iter().rev().map(view).collect()
            } else {
                Vec::new()
            },
            recent_failures: if list_runs {
                self.failures
                    .iter()
                    .rev()
                    .filter(|f| f.seq < oldest_recent)
                    .map(view)
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

impl History {
    /// `keep` recent runs and `keep_failures` failed runs in full per target, e.g. 50 and 10.
    pub fn new(keep: usize, keep_failures: usize) -> History {
        History {
            keep,
            keep_failures,
            state: Mutex::new(State {
                next_seq: 0,
                targets: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: still worth showing.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record(&self, report: &RunReport) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let index = match state.targets.iter().position(|t| t.name == report.target) {
            Some(i) => i,
            None => {
                state
                    .targets
                    .push(TargetHistory::new(report.target.clone()));
                state.targets.len() - 1
            }
        };
        let target = &mut state.targets[index];
        let row = RunRow::from_report(seq, report, &mut target.names);
        if target.registry.as_deref() != Some(report.registry.as_str()) {
            target.registry = Some(report.registry.clone());
        }
        if target.repository.as_deref() != Some(report.repository.as_str()) {
            target.repository = Some(report.repository.clone());
        }
        if row.success {
            target.last_success_unix = Some(row.started_at_unix);
            target.consecutive_failures = 0;
        } else {
            target.last_failure_unix = Some(row.started_at_unix);
            target.consecutive_failures += 1;
            target.failures.push_back(row.clone());
            while target.failures.len() > self.keep_failures {
                if let Some(gone) = target.failures.pop_front() {
                    if let Some(kept) = target.runs.iter_mut().find(|r| r.seq == gone.seq) {
                        kept.detail = None;
                    }
                }
            }
        }
        // The run this one replaces as the newest keeps its detail only as a kept failure.
        if let Some(previous) = target.runs.back_mut() {
            if !target.failures.iter().any(|f| f.seq == previous.seq) {
                previous.detail = None;
            }
        }
        target.runs.push_back(row);
        while target.runs.len() > self.keep {
            target.runs.pop_front();
        }
    }

    /// Targets known to the page, in config order, even before their first run (so the page
    /// lists them as "no run yet"). Targets no longer named (a config reload) are forgotten.
    pub fn set_targets(&self, names: &[String]) {
        let mut state = self.lock();
        let mut old = std::mem::take(&mut state.targets);
        state.targets = names
            .iter()
            .map(|name| match old.iter().position(|t| &t.name == name) {
                Some(i) => old.swap_remove(i),
                None => TargetHistory::new(name.clone()),
            })
            .collect();
    }

    /// A serializable view of every target, with their runs when there are at most
    /// [`LISTED_TARGETS`].
    pub fn snapshot(&self) -> StatusSnapshot {
        let state = self.lock();
        let list_runs = state.targets.len() <= LISTED_TARGETS;
        StatusSnapshot {
            generated_at_unix: unix(SystemTime::now()),
            target: None,
            targets: state.targets.iter().map(|t| t.status(list_runs)).collect(),
        }
    }

    /// A view of one target with its runs; None when no target has that name.
    pub fn snapshot_of(&self, name: &str) -> Option<StatusSnapshot> {
        let state = self.lock();
        let target = state.targets.iter().find(|t| t.name == name)?;
        Some(StatusSnapshot {
            generated_at_unix: unix(SystemTime::now()),
            target: Some(target.name.clone()),
            targets: vec![target.status(true)],
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusSnapshot {
    pub generated_at_unix: f64,
    /// The one target asked for (`/?target=NAME`); None for the index of every target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub targets: Vec<TargetStatus>,
}

impl StatusSnapshot {
    fn runs_listed(&self) -> bool {
        self.targets.iter().all(|t| t.runs_listed)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetStatus {
    pub name: String,
    /// From the latest run; None before the first.
    pub registry: Option<String>,
    pub repository: Option<String>,
    /// Whether `runs` and `recent_failures` are filled: with more than [`LISTED_TARGETS`]
    /// targets, only on the target's own page (`/?target=NAME`).
    pub runs_listed: bool,
    /// Newest first, at most `keep`.
    pub runs: Vec<RunView>,
    /// Failed runs older than every run in `runs` (pushed out by newer runs), newest first.
    pub recent_failures: Vec<RunView>,
    /// Successes over the kept runs; None when there are none.
    pub success_ratio: Option<f64>,
    pub successes: usize,
    pub runs_kept: usize,
    /// Start and result of the newest run; None before the first.
    pub last_run_unix: Option<f64>,
    pub last_result: Option<RunResult>,
    /// Start of the last successful run since the prober started.
    pub last_success_unix: Option<f64>,
    pub last_failure_unix: Option<f64>,
    pub consecutive_failures: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Success,
    Failure,
    /// Every probe step passed and only cleanup failed.
    CleanupFailed,
}

impl RunResult {
    fn of(success: bool, cleanup_failed: bool, first_failure: Option<&FailureView>) -> RunResult {
        if success {
            RunResult::Success
        } else if cleanup_failed && first_failure.is_some_and(|f| f.step.is_cleanup()) {
            RunResult::CleanupFailed
        } else {
            RunResult::Failure
        }
    }
}

/// One run's summary, its steps with timings, and for a run kept in full (the newest, and the
/// last failures) the subjects of its steps and the transcript of its failed steps (requests,
/// statuses, registry error codes, messages cut to ~300 characters).
#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    /// Order of recording, across targets.
    pub seq: u64,
    pub size_class: String,
    pub started_at_unix: f64,
    pub duration_seconds: f64,
    pub success: bool,
    pub cleanup_failed: bool,
    /// Whether the run is kept in full; otherwise its steps carry only step, path, result,
    /// reason and duration, and it has no tag, digest or transcript.
    pub detailed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The step that stopped the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<FailureView>,
    pub steps: Vec<StepView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailureView {
    pub step: Step,
    pub path: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// `step (subject): error`, as `StepReport::error_line` writes it.
    pub error_line: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepView {
    pub step: Step,
    pub path: String,
    /// None in a compact row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub success: bool,
    pub duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_code: Option<String>,
    /// None in a compact row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    /// Every request of a failed step; empty (and omitted) for a step that passed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<HttpRecord>,
}

impl RunRow {
    fn from_report(seq: u64, report: &RunReport, names: &mut Names) -> RunRow {
        RunRow {
            seq,
            started_at_unix: unix(report.started_at),
            duration_seconds: report.duration_seconds.as_secs_f64(),
            size_class: names.index(&report.size_class),
            success: report.success,
            cleanup_failed: report.cleanup_failed,
            first_failure: report.first_failure().map(|s| {
                Arc::new(FailureView {
                    step: s.step,
                    path: s.path.clone(),
                    subject: s.subject.clone(),
                    reason: s.reason,
                    error_line: truncate(
                        &s.error_line()
                            .unwrap_or_else(|| format!("{} ({})", s.step, s.subject)),
                        MAX_ERROR_LINE_CHARS,
                    ),
                })
            }),
            steps: report
                .steps
                .iter()
                .map(|s| StepMark {
                    step: s.step,
                    success: s.success,
                    reason: s.reason,
                    path: names.index(&s.path),
                    seconds: s.duration_seconds.as_secs_f32(),
                })
                .collect(),
            detail: Some(Arc::new(RunDetail {
                tag: report.tag.clone(),
                manifest_digest: report.manifest_digest.clone(),
                steps: report.steps.iter().map(StepView::from_report).collect(),
            })),
        }
    }

    fn result(&self) -> RunResult {
        RunResult::of(
            self.success,
            self.cleanup_failed,
            self.first_failure.as_deref(),
        )
    }

    fn view(&self, names: &Names) -> RunView {
        let detail = self.detail.as_deref();
        RunView {
            seq: self.seq,
            size_class: names.get(self.size_class).to_string(),
            started_at_unix: self.started_at_unix,
            duration_seconds: self.duration_seconds,
            success: self.success,
            cleanup_failed: self.cleanup_failed,
            detailed: detail.is_some(),
            tag: detail.and_then(|d| d.tag.clone()),
            manifest_digest: detail.and_then(|d| d.manifest_digest.clone()),
            first_failure: self.first_failure.as_deref().cloned(),
            steps: match detail {
                Some(d) => d.steps.clone(),
                None => self.steps.iter().map(|m| m.view(names)).collect(),
            },
        }
    }
}

impl StepMark {
    fn view(&self, names: &Names) -> StepView {
        StepView {
            step: self.step,
            path: names.get(self.path).to_string(),
            subject: None,
            success: self.success,
            // To the microsecond: an f32 widened as is prints as 0.11999999731779099.
            duration_seconds: (f64::from(self.seconds) * 1e6).round() / 1e6,
            reason: self.reason,
            error: None,
            status: None,
            registry_code: None,
            bytes_sent: None,
            bytes_received: None,
            requests: Vec::new(),
        }
    }
}

impl StepView {
    fn from_report(step: &StepReport) -> StepView {
        StepView {
            step: step.step,
            path: step.path.clone(),
            subject: Some(step.subject.clone()),
            success: step.success,
            duration_seconds: step.duration_seconds.as_secs_f64(),
            reason: step.reason,
            error: step
                .error
                .as_deref()
                .map(|e| truncate(e, MAX_ERROR_LINE_CHARS)),
            status: step.status,
            registry_code: step.registry_code.clone(),
            bytes_sent: Some(step.bytes_sent),
            bytes_received: Some(step.bytes_received),
            requests: if step.success {
                Vec::new()
            } else {
                step.requests.iter().map(bounded_record).collect()
            },
        }
    }
}

/// A transcript entry with every free-text field cut to size (headers other than the rate-limit
/// ones are never recorded, so none can leak a credential here).
fn bounded_record(r: &HttpRecord) -> HttpRecord {
    let mut r = r.clone();
    r.url = truncate(&r.url, MAX_URL_CHARS);
    r.error_codes = r
        .error_codes
        .iter()
        .map(|c| truncate(c, MAX_HEADER_VALUE_CHARS))
        .collect();
    r.error_message = r
        .error_message
        .as_deref()
        .map(|m| truncate(m, MAX_MESSAGE_CHARS));
    r.error = r.error.as_deref().map(|e| truncate(e, MAX_MESSAGE_CHARS));
    r.rate_limit = r
        .rate_limit
        .iter()
        .map(|(k, v)| {
            (
                truncate(k, MAX_HEADER_VALUE_CHARS),
                truncate(v, MAX_HEADER_VALUE_CHARS),
            )
        })
        .collect();
    r
}

pub fn render_json(snapshot: &StatusSnapshot) -> String {
    serde_json::to_string_pretty(snapshot)
        .expect("a StatusSnapshot always serializes: plain data, string keys")
}

/// HTML-escapes `& < > " '`: safe in text and in quoted attribute values.
pub fn escape(s: &str) -> Cow<'_, str> {
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

const FAILED_COLOUR: &str = "#d62728";

pub fn render_html(snapshot: &StatusSnapshot) -> String {
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
            Some(result) => result_badge(h, result),
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

fn result_badge(h: &mut Html, result: RunResult) {
    h.raw(match result {
        RunResult::Success => "<span class=\"ok\">OK</span>",
        RunResult::CleanupFailed => "<span class=\"fail\">CLEANUP FAILED</span>",
        RunResult::Failure => "<span class=\"fail\">FAILED</span>",
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
    h.raw("<table class=\"runs\">\n<thead><tr><th>started (UTC)</th><th>size</th><th>result</th>");
    h.raw(
        "<th class=\"num\">duration</th><th style=\"width:60%\">steps</th></tr></thead>\n<tbody>\n",
    );
    for run in runs {
        h.raw("<tr><td class=\"mono\">");
        h.text(utc(run.started_at_unix));
        h.raw("</td><td>");
        h.text(&run.size_class);
        h.raw("</td><td>");
        result_badge(
            h,
            RunResult::of(run.success, run.cleanup_failed, run.first_failure.as_ref()),
        );
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

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

fn secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

/// "42s", "5m 03s", "2h 05m", "3d 04h".
fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, without a date crate (Howard Hinnant's days-to-civil).
fn utc(unix_seconds: f64) -> String {
    let secs = unix_seconds.max(0.0).floor() as i64;
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
            started_at: at(started),
            duration_seconds: Duration::from_millis(200 + started % 7 * 10),
            steps,
            retry_after: None,
            propagation: Vec::new(),
            mount: None,
            canaries: None,
            left_behind: None,
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
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;more&#39;"));
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
        assert!(html
            .contains("<details><summary>HTTP transcript: 1 request in 1 failed step</summary>"));
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
        assert!(
            step.error.as_deref().expect("error kept").chars().count() <= MAX_ERROR_LINE_CHARS + 1
        );
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
            (Some(RunResult::Failure), Some(2.0), 2)
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
    fn escapes_the_five_html_special_characters() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
        assert!(matches!(escape("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn formats_utc_times_and_ages() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000.5), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(age(42.0), "42s");
        assert_eq!(age(303.0), "5m 03s");
        assert_eq!(age(7500.0), "2h 05m");
    }
}
