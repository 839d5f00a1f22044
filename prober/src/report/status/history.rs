//! What the status page keeps of finished runs: per target the newest run and the last few
//! failures in full, every other kept run as a compact row (its result, its first failure and
//! ~12 bytes a step), so a thousand targets fit (docs/benchmarks.md).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::views::{FailureView, RunView, StatusSnapshot, StepView, TargetStatus, Verdict};
use crate::outcome::{
    Deviation, HttpRecord, LeftBehind, Reason, ReferrersReport, RunReport, Step, StepReport,
};

/// Registry error messages and transport errors are cut here: enough to read, bounded in memory.
pub(super) const MAX_MESSAGE_CHARS: usize = 300;
/// A step's error line names the request (method, URL) before the registry's message.
pub(super) const MAX_ERROR_LINE_CHARS: usize = 600;
/// Long URLs (object-store redirects) and rate-limit header values are cut here.
const MAX_URL_CHARS: usize = 400;
const MAX_HEADER_VALUE_CHARS: usize = 100;

/// The index page (and its JSON) lists the runs of every target up to this many targets; with
/// more, it lists each target once and links to `/?target=NAME` for its runs.
pub(super) const LISTED_TARGETS: usize = 20;

/// Recent runs per target for the status page: the last `keep` runs, plus the last
/// `keep_failures` failed runs kept in full even after newer runs push them out of the recent
/// list (like blackbox_exporter's history). Thread-safe.
pub(crate) struct History {
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
    /// The size classes, upload modes and paths named by the kept runs, which rows refer to by
    /// index.
    names: Names,
    /// Oldest first, at most `keep`. Only the newest and the failures in `failures` keep their
    /// detail.
    runs: VecDeque<RunRow>,
    /// Oldest first, at most `keep_failures`, each with its detail; may overlap `runs`.
    failures: VecDeque<RunRow>,
    last_success_unix: Option<f64>,
    last_failure_unix: Option<f64>,
    consecutive_failures: u64,
    /// How each path served referrers when a run last looked them up.
    referrers: Vec<ReferrersReport>,
}

/// Interned names (size classes, upload modes, paths): a kept run refers to them by index
/// instead of holding a copy of each. A target has a handful; past `u16::MAX` they share one "…"
/// entry.
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

/// A kept run: 64 bytes, its steps and detail apart. Cloning is cheap: they are shared.
#[derive(Clone)]
pub(super) struct RunRow {
    seq: u64,
    started_at_unix: f64,
    duration_seconds: f64,
    size_class: u16,
    upload_mode: u16,
    success: bool,
    cleanup_failed: bool,
    confirmation: bool,
    first_failure: Option<Arc<FailureView>>,
    /// What the timing bar needs of every step.
    steps: Arc<[StepMark]>,
    /// Everything else; dropped once the run is neither the newest nor a kept failure.
    detail: Option<Arc<RunDetail>>,
}

/// One step of a compact row: 12 bytes.
#[derive(Clone, Copy)]
pub(super) struct StepMark {
    step: Step,
    success: bool,
    reason: Option<Reason>,
    path: u16,
    seconds: f32,
}

struct RunDetail {
    tag: Option<String>,
    manifest_digest: Option<String>,
    left_behind: Option<LeftBehind>,
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
            referrers: Vec::new(),
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
            last_result: self.runs.back().map(RunRow::verdict),
            last_success_unix: self.last_success_unix,
            last_failure_unix: self.last_failure_unix,
            consecutive_failures: self.consecutive_failures,
            referrers: self.referrers.clone(),
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
    pub(crate) fn new(keep: usize, keep_failures: usize) -> History {
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

    pub(crate) fn record(&self, report: &RunReport) {
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
        for seen in &report.referrers {
            match target.referrers.iter_mut().find(|r| r.path == seen.path) {
                Some(known) => known.mode = seen.mode,
                None => target.referrers.push(seen.clone()),
            }
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
    pub(crate) fn set_targets(&self, names: &[String]) {
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
    pub(crate) fn snapshot(&self) -> StatusSnapshot {
        let state = self.lock();
        let list_runs = state.targets.len() <= LISTED_TARGETS;
        StatusSnapshot {
            generated_at_unix: unix(SystemTime::now()),
            target: None,
            targets: state.targets.iter().map(|t| t.status(list_runs)).collect(),
        }
    }

    /// A view of one target with its runs; None when no target has that name.
    pub(crate) fn snapshot_of(&self, name: &str) -> Option<StatusSnapshot> {
        let state = self.lock();
        let target = state.targets.iter().find(|t| t.name == name)?;
        Some(StatusSnapshot {
            generated_at_unix: unix(SystemTime::now()),
            target: Some(target.name.clone()),
            targets: vec![target.status(true)],
        })
    }
}

impl RunRow {
    fn from_report(seq: u64, report: &RunReport, names: &mut Names) -> RunRow {
        RunRow {
            seq,
            started_at_unix: unix(report.started_at),
            duration_seconds: report.duration_seconds.as_secs_f64(),
            size_class: names.index(&report.size_class),
            upload_mode: names.index(report.upload_mode),
            success: report.success,
            cleanup_failed: report.cleanup_failed,
            confirmation: report.confirmation,
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
                left_behind: report.left_behind,
                steps: report.steps.iter().map(StepView::from_report).collect(),
            })),
        }
    }

    fn verdict(&self) -> Verdict {
        Verdict::of(
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
            upload_mode: names.get(self.upload_mode).to_string(),
            started_at_unix: self.started_at_unix,
            duration_seconds: self.duration_seconds,
            success: self.success,
            cleanup_failed: self.cleanup_failed,
            confirmation: self.confirmation,
            detailed: detail.is_some(),
            tag: detail.and_then(|d| d.tag.clone()),
            manifest_digest: detail.and_then(|d| d.manifest_digest.clone()),
            first_failure: self.first_failure.as_deref().cloned(),
            left_behind: detail.and_then(|d| d.left_behind),
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
            deviations: Vec::new(),
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
            deviations: step
                .deviations
                .iter()
                .map(|d| Deviation {
                    kind: d.kind,
                    detail: truncate(&d.detail, MAX_ERROR_LINE_CHARS),
                })
                .collect(),
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

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}
