//! Run metrics: how many runs of each size class came due, how many finished and how, how long
//! they took, when the last one (and the last good one) ended, runs skipped or in flight, the
//! configured interval, confirmation runs (run and skipped), and how many runs in a row have
//! failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;
use strum::IntoEnumIterator as _;

use super::family::{
    closed_label, label_sets, unix_seconds, Configured, Families, FloatGauge, Name, Outcome,
    Tracked,
};
use crate::config::{Target, UploadMode};
use crate::outcome::{Reason, RunReport, Step};

/// `cause` of a skipped run: `overrun`, the previous run of the size class was still going;
/// `rate_limited`, the registry answered 429 (Retry-After) and the schedule waits it out;
/// `missed`, the schedule itself fell a whole interval behind (the process was starved of CPU
/// or stopped) and the tick passed without a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum SkipCause {
    Overrun,
    RateLimited,
    Missed,
}

/// `cause` of a confirmation run that was due and did not run: `budget`, the size class has
/// used the confirmations it earns (one per 4 scheduled runs); `next_run_due`, the next
/// scheduled run would start before the confirmation could end (the failed run was slow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum ConfirmationSkipCause {
    Budget,
    NextRunDue,
}

closed_label!(SkipCause, ConfirmationSkipCause, UploadMode);

label_sets! {
    ClassLabels { target: Name, size_class: Name } [size_class];
    RunLabels { target: Name, size_class: Name, result: Outcome } [size_class];
    FailureLabels { target: Name, size_class: Name, reason: Reason } [size_class];
    SkipLabels { target: Name, size_class: Name, cause: SkipCause } [size_class];
    ConfirmationSkipLabels { target: Name, size_class: Name, cause: ConfirmationSkipCause } [size_class];
    StreakLabels { target: Name, size_class: Name, path: Name, step: Step } [size_class, path];
    ClassInfoLabels { target: Name, size_class: Name, upload_mode: UploadMode } [size_class];
}

#[derive(Clone, Debug)]
pub(super) struct RunMetrics {
    scheduled: Tracked<ClassLabels, Counter>,
    runs: Tracked<RunLabels, Counter>,
    failures: Tracked<FailureLabels, Counter>,
    duration: Tracked<ClassLabels, Histogram>,
    last_run: Tracked<ClassLabels, FloatGauge>,
    last_success: Tracked<ClassLabels, FloatGauge>,
    skipped: Tracked<SkipLabels, Counter>,
    in_flight: Tracked<ClassLabels, Gauge>,
    interval: Tracked<ClassLabels, FloatGauge>,
    info: Tracked<ClassInfoLabels, Gauge>,
    confirmations: Tracked<RunLabels, Counter>,
    confirmations_skipped: Tracked<ConfirmationSkipLabels, Counter>,
    failed_in_a_row: Tracked<StreakLabels, Gauge>,
    /// Per size class, its failed runs in a row and the labels of its `failed_in_a_row` series.
    streaks: Arc<Mutex<HashMap<(Name, Name), Streak>>>,
}

/// A size class's failed runs in a row, and the series that shows them (none when no failed
/// run said which step failed).
#[derive(Clone, Debug)]
struct Streak {
    runs: i64,
    series: Option<StreakLabels>,
}

/// 10 ms to 328 s: a run is cut at its timeout, plus cleanup's own deadline.
fn run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

impl RunMetrics {
    pub(super) fn register(f: &mut Families) -> RunMetrics {
        let m = RunMetrics {
            scheduled: Tracked::counter(),
            runs: Tracked::counter(),
            failures: Tracked::counter(),
            duration: Tracked::new(run_histogram),
            last_run: Tracked::float_gauge(),
            last_success: Tracked::float_gauge(),
            skipped: Tracked::counter(),
            in_flight: Tracked::gauge(),
            interval: Tracked::float_gauge(),
            info: Tracked::gauge(),
            confirmations: Tracked::counter(),
            confirmations_skipped: Tracked::counter(),
            failed_in_a_row: Tracked::gauge(),
            streaks: Arc::default(),
        };
        f.tracked(
            "scheduled_runs",
            "Runs that came due on the schedule of the size class; each one is either counted in registry_prober_runs_total when it ends or in registry_prober_skipped_runs_total",
            None,
            &m.scheduled,
        );
        f.tracked(
            "runs",
            "Probe runs that finished, by size class and result; a run fails when any of its steps fails",
            None,
            &m.runs,
        );
        f.tracked(
            "failures",
            "Failed probe runs by size class and the reason of the first failed step",
            None,
            &m.failures,
        );
        f.tracked(
            "run_duration",
            "Wall-clock duration of a probe run, cleanup included",
            Some(Unit::Seconds),
            &m.duration,
        );
        f.tracked(
            "last_run_timestamp",
            "Unix time at which the last probe run of the size class finished",
            Some(Unit::Seconds),
            &m.last_run,
        );
        f.tracked(
            "last_success_timestamp",
            "Unix time at which the last successful probe run of the size class finished; absent until a run succeeds",
            Some(Unit::Seconds),
            &m.last_success,
        );
        f.tracked(
            "skipped_runs",
            "Scheduled runs not started, by cause: overrun (the previous run of the size class still going), rate_limited (waiting out the registry's Retry-After) or missed (the schedule fell a whole interval behind)",
            None,
            &m.skipped,
        );
        f.tracked(
            "runs_in_flight",
            "Probe runs currently in progress",
            None,
            &m.in_flight,
        );
        f.tracked(
            "target_interval",
            "Configured interval between the starts of two runs of the size class",
            Some(Unit::Seconds),
            &m.interval,
        );
        f.tracked(
            "size_class_info",
            "Always 1; says how the size class uploads blobs (join on target and size_class)",
            None,
            &m.info,
        );
        f.tracked(
            "confirmation_runs",
            "Confirmation runs that finished, by size class and result: runs started after a failed run to confirm or clear it (also counted in registry_prober_runs_total)",
            None,
            &m.confirmations,
        );
        f.tracked(
            "confirmation_runs_skipped",
            "Confirmation runs due after a failed run that did not run, by cause: budget (the size class used the confirmations it earns) or next_run_due (the next scheduled run comes first)",
            None,
            &m.confirmations_skipped,
        );
        f.tracked(
            "consecutive_failed_runs",
            "Runs of the size class that failed in a row (scheduled and confirmation runs) since its last success; path and step name the first failed step of the latest; absent after a success",
            None,
            &m.failed_in_a_row,
        );
        m
    }

    /// Every size class's closed series at zero, and its configured interval (set again on a
    /// reload; the counts of a kept class stay).
    pub(super) fn init_target(&self, target: &Target) {
        let t = Name::from(target.name.as_str());
        for class in &target.sizes {
            let c = Name::from(class.name.as_str());
            let class_labels = || ClassLabels {
                target: t.clone(),
                size_class: c.clone(),
            };
            self.scheduled.touch(class_labels());
            for result in Outcome::iter() {
                self.runs.touch(RunLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    result,
                });
            }
            for reason in Reason::iter() {
                self.failures.touch(FailureLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    reason,
                });
            }
            for cause in SkipCause::iter() {
                self.skipped.touch(SkipLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    cause,
                });
            }
            for result in Outcome::iter() {
                self.confirmations.touch(RunLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    result,
                });
            }
            for cause in ConfirmationSkipCause::iter() {
                self.confirmations_skipped.touch(ConfirmationSkipLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    cause,
                });
            }
            self.in_flight.touch(class_labels());
            self.interval
                .set(class_labels(), class.interval.as_secs_f64());
            // One series, of the configured mode: a reload that changes it drops the old one.
            for mode in UploadMode::iter() {
                let labels = ClassInfoLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    upload_mode: mode,
                };
                if mode.as_str() == class.upload.as_str() {
                    self.info.with(labels, |g| {
                        g.set(1);
                    });
                } else {
                    self.info.remove(&labels);
                }
            }
        }
    }

    pub(super) fn retain(&self, configured: &Configured) {
        let kept = |l: &dyn super::family::Scope| configured.keeps(l);
        self.scheduled.retain(kept);
        self.runs.retain(kept);
        self.failures.retain(kept);
        self.duration.retain(kept);
        self.last_run.retain(kept);
        self.last_success.retain(kept);
        self.skipped.retain(kept);
        self.in_flight.retain(kept);
        self.interval.retain(kept);
        self.info.retain(kept);
        self.confirmations.retain(kept);
        self.confirmations_skipped.retain(kept);
        self.failed_in_a_row.retain(kept);
        self.streaks().retain(|_, streak| {
            streak
                .series
                .as_ref()
                .is_none_or(|labels| configured.keeps(labels))
        });
    }

    fn streaks(&self) -> std::sync::MutexGuard<'_, HashMap<(Name, Name), Streak>> {
        // Each update replaces an entry whole: a poisoned map is still consistent.
        self.streaks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the run into its class's failed runs in a row, or ends the streak on a success:
    /// one series per failing class, labelled with the first failed step of its latest failed
    /// run (a run that said none keeps the previous labels).
    fn observe_streak(&self, report: &RunReport, t: &Name, c: &Name) {
        let mut streaks = self.streaks();
        let key = (t.clone(), c.clone());
        if report.success {
            if let Some(Streak {
                series: Some(labels),
                ..
            }) = streaks.remove(&key)
            {
                self.failed_in_a_row.remove(&labels);
            }
            return;
        }
        let before = streaks.remove(&key).unwrap_or(Streak {
            runs: 0,
            series: None,
        });
        let series = report
            .first_failure()
            .map(|s| StreakLabels {
                target: t.clone(),
                size_class: c.clone(),
                path: Name::from(s.path.as_str()),
                step: s.step,
            })
            .or(before.series.clone());
        if let Some(old) = before
            .series
            .as_ref()
            .filter(|old| Some(*old) != series.as_ref())
        {
            self.failed_in_a_row.remove(old);
        }
        let runs = before.runs + 1;
        if let Some(labels) = &series {
            self.failed_in_a_row.with(labels.clone(), |g| {
                g.set(runs);
            });
        }
        streaks.insert(key, Streak { runs, series });
    }

    /// A finished run: its result, its duration, when it ended, and the reason of its first
    /// failure.
    pub(super) fn observe(&self, report: &RunReport) {
        let t = Name::from(report.target.as_str());
        let c = Name::from(report.size_class.as_str());
        let class_labels = || ClassLabels {
            target: t.clone(),
            size_class: c.clone(),
        };
        let finished = unix_seconds(report.started_at + report.duration_seconds);
        self.runs.inc_by(
            RunLabels {
                target: t.clone(),
                size_class: c.clone(),
                result: Outcome::of(report.success),
            },
            1,
        );
        self.duration
            .observe(class_labels(), report.duration_seconds.as_secs_f64());
        self.last_run.set(class_labels(), finished);
        if report.confirmation {
            self.confirmations.inc_by(
                RunLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    result: Outcome::of(report.success),
                },
                1,
            );
        }
        self.observe_streak(report, &t, &c);
        if report.success {
            self.last_success.set(class_labels(), finished);
        } else if let Some(reason) = report.first_failure().and_then(|s| s.reason) {
            self.failures.inc_by(
                FailureLabels {
                    target: t.clone(),
                    size_class: c.clone(),
                    reason,
                },
                1,
            );
        }
    }

    /// `n` runs of `size_class` came due.
    pub(super) fn scheduled(&self, target: &str, size_class: &str, n: u64) {
        self.scheduled.inc_by(
            ClassLabels {
                target: Name::from(target),
                size_class: Name::from(size_class),
            },
            n,
        );
    }

    /// `n` scheduled runs of `size_class` did not start, for `cause`.
    pub(super) fn skipped(&self, target: &str, size_class: &str, cause: SkipCause, n: u64) {
        self.skipped.inc_by(
            SkipLabels {
                target: Name::from(target),
                size_class: Name::from(size_class),
                cause,
            },
            n,
        );
    }

    /// A confirmation run of `size_class` was due and did not run, for `cause`.
    pub(super) fn confirmation_skipped(
        &self,
        target: &str,
        size_class: &str,
        cause: ConfirmationSkipCause,
    ) {
        self.confirmations_skipped.inc_by(
            ConfirmationSkipLabels {
                target: Name::from(target),
                size_class: Name::from(size_class),
                cause,
            },
            1,
        );
    }

    /// A run started (`+1`) or ended however it ended (`-1`).
    pub(super) fn in_flight(&self, target: &str, size_class: &str, delta: i64) {
        self.in_flight.with(
            ClassLabels {
                target: Name::from(target),
                size_class: Name::from(size_class),
            },
            |g| {
                g.inc_by(delta);
            },
        );
    }
}
