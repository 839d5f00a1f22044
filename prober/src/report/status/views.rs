//! A snapshot of the status page's history as plain data: what the HTML shows and what
//! `/?format=json` serializes. JSON field names are an interface: add, never rename or drop.

use serde::Serialize;

use crate::outcome::{Deviation, HttpRecord, LeftBehind, Reason, ReferrersReport, Step};

#[derive(Clone, Debug, Serialize)]
pub(crate) struct StatusSnapshot {
    pub(super) generated_at_unix: f64,
    /// The one target asked for (`/?target=NAME`); None for the index of every target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) target: Option<String>,
    pub(super) targets: Vec<TargetStatus>,
}

impl StatusSnapshot {
    pub(super) fn runs_listed(&self) -> bool {
        self.targets.iter().all(|t| t.runs_listed)
    }
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct TargetStatus {
    pub(super) name: String,
    /// From the latest run; None before the first.
    pub(super) registry: Option<String>,
    pub(super) repository: Option<String>,
    /// Whether `runs` and `recent_failures` are filled: with more than
    /// [`LISTED_TARGETS`](super::history::LISTED_TARGETS) targets, only on the target's own page
    /// (`/?target=NAME`).
    pub(super) runs_listed: bool,
    /// Newest first, at most `keep`.
    pub(super) runs: Vec<RunView>,
    /// Failed runs older than every run in `runs` (pushed out by newer runs), newest first.
    pub(super) recent_failures: Vec<RunView>,
    /// Successes over the kept runs; None when there are none.
    pub(super) success_ratio: Option<f64>,
    pub(super) successes: usize,
    pub(super) runs_kept: usize,
    /// Start and verdict of the newest run; None before the first.
    pub(super) last_run_unix: Option<f64>,
    pub(super) last_result: Option<Verdict>,
    /// Start of the last successful run since the prober started.
    pub(super) last_success_unix: Option<f64>,
    pub(super) last_failure_unix: Option<f64>,
    pub(super) consecutive_failures: u64,
    /// How each path served referrers (the referrers API or the referrers tag schema) when a
    /// run last looked them up; absent for a target without artifacts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) referrers: Vec<ReferrersReport>,
}

/// The page's verdict on a run. One case more than the metrics' `result` label (success or
/// failure): a run whose probe steps all passed and only its cleanup failed reads differently
/// to the engineer looking (the registry serves; it leaves things behind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Verdict {
    Success,
    Failure,
    /// Every probe step passed and only cleanup failed.
    CleanupFailed,
}

impl Verdict {
    pub(super) fn of(
        success: bool,
        cleanup_failed: bool,
        first_failure: Option<&FailureView>,
    ) -> Verdict {
        if success {
            Verdict::Success
        } else if cleanup_failed && first_failure.is_some_and(|f| f.step.is_cleanup()) {
            Verdict::CleanupFailed
        } else {
            Verdict::Failure
        }
    }
}

/// One run's summary, its steps with timings, and for a run kept in full (the newest, and the
/// last failures) the subjects of its steps and the transcript of its failed steps (requests,
/// statuses, registry error codes, messages cut to ~300 characters).
#[derive(Clone, Debug, Serialize)]
pub(super) struct RunView {
    /// Order of recording, across targets.
    pub(super) seq: u64,
    pub(super) size_class: String,
    /// How the run uploaded blobs: streamed, monolithic, chunked or post.
    pub(super) upload_mode: String,
    pub(super) started_at_unix: f64,
    pub(super) duration_seconds: f64,
    pub(super) success: bool,
    pub(super) cleanup_failed: bool,
    /// A confirmation run: started after a failed run to confirm or clear it.
    pub(super) confirmation: bool,
    /// Whether the run is kept in full; otherwise its steps carry only step, path, result,
    /// reason and duration, and it has no tag, digest or transcript.
    pub(super) detailed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) manifest_digest: Option<String>,
    /// The step that stopped the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) first_failure: Option<FailureView>,
    /// What the run left on the registry knowingly (rotate mode, a refused DELETE); in full
    /// runs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) left_behind: Option<LeftBehind>,
    pub(super) steps: Vec<StepView>,
}

impl RunView {
    pub(super) fn verdict(&self) -> Verdict {
        Verdict::of(
            self.success,
            self.cleanup_failed,
            self.first_failure.as_ref(),
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct FailureView {
    pub(super) step: Step,
    pub(super) path: String,
    pub(super) subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<Reason>,
    /// `step (subject): error`, as `StepReport::error_line` writes it.
    pub(super) error_line: String,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct StepView {
    pub(super) step: Step,
    pub(super) path: String,
    /// None in a compact row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) subject: Option<String>,
    pub(super) success: bool,
    pub(super) duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) registry_code: Option<String>,
    /// None in a compact row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bytes_received: Option<u64>,
    /// Every request of a failed step; empty (and omitted) for a step that passed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) requests: Vec<HttpRecord>,
    /// The deviations from the spec the step tolerated; in full runs only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) deviations: Vec<Deviation>,
}

pub(crate) fn render_json(snapshot: &StatusSnapshot) -> String {
    serde_json::to_string_pretty(snapshot)
        .expect("a StatusSnapshot always serializes: plain data, string keys")
}
