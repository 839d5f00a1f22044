//! Step metrics: every step by path and result, its duration, failed steps by reason, and the
//! cleanup steps that left something behind.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;
use strum::IntoEnumIterator as _;

use super::family::{
    closed_label, label_sets, Configured, Families, Name, Outcome, Scope, Tracked,
};
use super::referrers::has_artifacts;
use crate::config::{Target, ORIGIN};
use crate::outcome::{DeviationKind, Reason, Step, StepReport};

closed_label!(DeviationKind);

label_sets! {
    StepResultLabels { target: Name, path: Name, step: Step, result: Outcome } [path];
    StepDurationLabels { target: Name, path: Name, size_class: Name, step: Step } [path, size_class];
    StepReasonLabels { target: Name, path: Name, step: Step, reason: Reason } [path];
    CleanupLabels { target: Name, step: Step };
    DeviationLabels { target: Name, path: Name, kind: DeviationKind } [path];
}

#[derive(Clone, Debug)]
pub(super) struct StepMetrics {
    steps: Tracked<StepResultLabels, Counter>,
    duration: Tracked<StepDurationLabels, Histogram>,
    failures: Tracked<StepReasonLabels, Counter>,
    cleanup_failures: Tracked<CleanupLabels, Counter>,
    deviations: Tracked<DeviationLabels, Counter>,
}

/// 1 ms to 65.5 s: a token fetch on a warm connection to a 1 GiB blob on a slow link.
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Steps that run against pull paths besides the origin: pulls, the ping and the token each
/// path's auth may need, and the propagation wait of replicated paths.
pub(super) fn runs_on_pull_paths(step: Step) -> bool {
    step.is_pull() || matches!(step, Step::Ping | Step::WaitPropagation | Step::Token)
}

/// Whether `target` runs `step` on the origin (`origin`) or a pull path: the steps of indexes
/// only with `image.platforms`; those of referrers only with artifacts, and on pull paths only
/// for canaries' (a run's artifact is looked up on the origin).
pub(super) fn runs_step(target: &Target, step: Step, origin: bool) -> bool {
    if !origin && !runs_on_pull_paths(step) {
        return false;
    }
    if step.is_index() {
        return target.platforms.is_some();
    }
    if step.is_referrers() {
        let canaries = target
            .canaries
            .as_ref()
            .is_some_and(|c| c.artifact.is_some());
        return canaries || (origin && has_artifacts(target));
    }
    true
}

impl StepMetrics {
    pub(super) fn register(f: &mut Families) -> StepMetrics {
        let m = StepMetrics {
            steps: Tracked::counter(),
            duration: Tracked::new(step_histogram),
            failures: Tracked::counter(),
            cleanup_failures: Tracked::counter(),
            deviations: Tracked::counter(),
        };
        f.tracked(
            "steps",
            "Probe steps executed, by path, step and result",
            None,
            &m.steps,
        );
        f.tracked(
            "step_duration",
            "Duration of a probe step, token fetches and redirects included",
            Some(Unit::Seconds),
            &m.duration,
        );
        f.tracked(
            "step_failures",
            "Failed probe steps by path, step and reason; series appear on first occurrence",
            None,
            &m.failures,
        );
        f.tracked(
            "cleanup_failures",
            "Failed cleanup steps, each of which left something behind on the registry",
            None,
            &m.cleanup_failures,
        );
        f.tracked(
            "protocol_deviations",
            "Deviations from the distribution spec that real clients tolerate, by path and kind; they fail a step only on a strict target",
            None,
            &m.deviations,
        );
        m
    }

    /// Every step a path runs, by result, at zero (the origin runs them all); every cleanup
    /// step's failures at zero.
    pub(super) fn init_target(&self, target: &Target) {
        let t = Name::from(target.name.as_str());
        let paths = std::iter::once(ORIGIN).chain(target.paths.iter().map(|p| p.name.as_str()));
        for path in paths {
            let p = Name::from(path);
            let origin = path == ORIGIN;
            for kind in DeviationKind::iter() {
                self.deviations.touch(DeviationLabels {
                    target: t.clone(),
                    path: p.clone(),
                    kind,
                });
            }
            for step in Step::iter().filter(|s| runs_step(target, *s, origin)) {
                for result in Outcome::iter() {
                    self.steps.touch(StepResultLabels {
                        target: t.clone(),
                        path: p.clone(),
                        step,
                        result,
                    });
                }
            }
        }
        for step in Step::iter().filter(|s| s.is_cleanup()) {
            self.cleanup_failures.touch(CleanupLabels {
                target: t.clone(),
                step,
            });
        }
    }

    pub(super) fn retain(&self, configured: &Configured) {
        let kept = |l: &dyn Scope| configured.keeps(l);
        self.steps.retain(kept);
        self.duration.retain(kept);
        self.failures.retain(kept);
        self.cleanup_failures.retain(kept);
        self.deviations.retain(kept);
    }

    /// One executed step of a run of `target`'s `class`.
    pub(super) fn observe(&self, target: &Name, class: &Name, step: &StepReport) {
        let p = Name::from(step.path.as_str());
        for deviation in &step.deviations {
            self.deviations.inc_by(
                DeviationLabels {
                    target: target.clone(),
                    path: p.clone(),
                    kind: deviation.kind,
                },
                1,
            );
        }
        self.steps.inc_by(
            StepResultLabels {
                target: target.clone(),
                path: p.clone(),
                step: step.step,
                result: Outcome::of(step.success),
            },
            1,
        );
        self.duration.observe(
            StepDurationLabels {
                target: target.clone(),
                path: p.clone(),
                size_class: class.clone(),
                step: step.step,
            },
            step.duration_seconds.as_secs_f64(),
        );
        if step.success {
            return;
        }
        if let Some(reason) = step.reason {
            self.failures.inc_by(
                StepReasonLabels {
                    target: target.clone(),
                    path: p,
                    step: step.step,
                    reason,
                },
                1,
            );
        }
        // A registry that refuses DELETE left something behind knowingly, which the content
        // metrics count: that is not a failed cleanup.
        if step.step.is_cleanup() && !step.is_refused_cleanup() {
            self.cleanup_failures.inc_by(
                CleanupLabels {
                    target: target.clone(),
                    step: step.step,
                },
                1,
            );
        }
    }
}
