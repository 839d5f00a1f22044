//! What a run has done so far, kept where the schedule can read it while the run goes on: the
//! steps it finished, the one it is in, and the upload sessions open when that one began. A run
//! cut at its hard limit is still reported from here, and its open sessions handed to the sweep.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use url::Url;

use crate::outcome::{Failure, Reason, Step, StepReport};

/// A run's record, shared with whoever started it.
#[derive(Debug, Default)]
pub struct Watch {
    log: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    steps: Vec<StepReport>,
    /// The step under way: (step, path, subject, when it started).
    current: Option<(Step, String, String, SystemTime)>,
    /// The upload sessions open when the step under way began, for the sweep to cancel if the
    /// run is cut before its cleanup.
    open_sessions: Vec<Url>,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // Steps are whole values pushed or read under the lock: a poisoned log is still right.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upload sessions a run cut at its hard limit left open (as of its last step's start).
    pub(super) fn take_open_sessions(&self) -> Vec<Url> {
        std::mem::take(&mut self.lock().open_sessions)
    }

    /// A step began (on `path`, about `subject`) with these upload sessions open.
    pub(super) fn started(
        &self,
        step: Step,
        path: &str,
        subject: &str,
        started_at: SystemTime,
        open_sessions: Vec<Url>,
    ) {
        let mut log = self.lock();
        log.current = Some((step, path.to_string(), subject.to_string(), started_at));
        log.open_sessions = open_sessions;
    }

    /// The step under way ended: the token fetches made for it, then its report.
    pub(super) fn finished(&self, tokens: impl IntoIterator<Item = StepReport>, step: StepReport) {
        let mut log = self.lock();
        log.current = None;
        log.steps.extend(tokens);
        log.steps.push(step);
    }

    /// How many steps were recorded.
    pub(super) fn step_count(&self) -> usize {
        self.lock().steps.len()
    }

    /// Marks recorded step `index` failed with `f` (a failure found after the step ended).
    pub(super) fn fail_step(&self, index: usize, f: &Failure) {
        if let Some(step) = self.lock().steps.get_mut(index) {
            step.success = false;
            step.reason = Some(f.reason);
            step.error = Some(f.message.clone());
        }
    }

    /// The steps, taken at the end of the run.
    pub(super) fn take_steps(&self) -> Vec<StepReport> {
        std::mem::take(&mut self.lock().steps)
    }

    /// The steps of a run cut at `limit`: those it finished, then the one it was in, failed.
    pub fn cut_steps(&self, limit: Duration) -> Vec<StepReport> {
        let mut log = self.lock();
        let mut steps = std::mem::take(&mut log.steps);
        if let Some((step, path, subject, started_at)) = log.current.take() {
            let f = Failure::new(
                Reason::Timeout,
                format!(
                    "run exceeded its hard limit of {}s and was cancelled during this step",
                    limit.as_secs()
                ),
            );
            let duration = SystemTime::now()
                .duration_since(started_at)
                .unwrap_or_default();
            steps.push(StepReport::new(
                step,
                path,
                subject,
                started_at,
                duration,
                Err(&f),
                Vec::new(),
            ));
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_run_keeps_its_finished_steps_and_fails_the_one_it_was_in() {
        let watch = Watch::default();
        {
            let mut log = watch.lock();
            let done = StepReport::new(
                Step::CheckBlob,
                "origin".into(),
                "config".into(),
                SystemTime::now(),
                Duration::from_millis(3),
                Ok(()),
                Vec::new(),
            );
            log.steps.push(done);
            log.current = Some((
                Step::UploadBlob,
                "origin".into(),
                "layer 1".into(),
                SystemTime::now(),
            ));
        }
        let steps = watch.cut_steps(Duration::from_secs(75));
        let summary: Vec<(Step, bool, Option<Reason>)> = steps
            .iter()
            .map(|s| (s.step, s.success, s.reason))
            .collect();
        assert_eq!(
            summary,
            [
                (Step::CheckBlob, true, None),
                (Step::UploadBlob, false, Some(Reason::Timeout))
            ]
        );
        assert_eq!(
            steps[1].error.as_deref(),
            Some("run exceeded its hard limit of 75s and was cancelled during this step")
        );
        assert_eq!(steps[1].subject, "layer 1");
    }
}
