//! Content metrics: what the prober put on and took from the registry and what it left there:
//! payload bytes and blob throughput, upload sessions, propagation delays of replicated paths,
//! cross-repository mounts, the aged canaries it keeps, and the sweeps of its own leftovers.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;
use strum::IntoEnumIterator as _;

use super::family::{
    closed_label, label_sets, unix_seconds, Configured, Families, FloatGauge, Name, Outcome, Scope,
    Tracked,
};
use crate::config::{Target, ORIGIN};
use crate::outcome::{MountOutcome, RunReport, Step, StepReport, SweepReport};

/// `direction` of payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub(super) enum Direction {
    Push,
    Pull,
}

/// `outcome` of a blob upload session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub(super) enum SessionOutcome {
    Opened,
    Completed,
    Cancelled,
    Abandoned,
}

/// `kind` of a leftover a hygiene sweep removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub(super) enum SweptKind {
    Tag,
    UploadSession,
}

closed_label!(Direction, SessionOutcome, SweptKind);

impl Direction {
    /// Which payload a step's bytes are: what push steps send, what pull steps receive.
    fn of(step: Step) -> Option<Direction> {
        match step {
            s if s.is_push() => Some(Direction::Push),
            s if s.is_pull() => Some(Direction::Pull),
            _ => None,
        }
    }

    /// The steps that move one blob's bytes, whose rate is a blob throughput.
    fn of_blob_transfer(step: Step) -> Option<Direction> {
        match step {
            Step::UploadBlob => Some(Direction::Push),
            Step::PullBlob | Step::PullGoldenBlob | Step::PullCanaryBlob => Some(Direction::Pull),
            _ => None,
        }
    }

    /// The bytes of `step` that move in this direction.
    fn bytes(self, step: &StepReport) -> u64 {
        match self {
            Direction::Push => step.bytes_sent,
            Direction::Pull => step.bytes_received,
        }
    }
}

label_sets! {
    TargetLabels { target: Name };
    SessionLabels { target: Name, outcome: SessionOutcome };
    BytesLabels { target: Name, path: Name, direction: Direction } [path];
    ThroughputLabels { target: Name, path: Name, size_class: Name, direction: Direction } [path, size_class];
    PathLabels { target: Name, path: Name } [path];
    SweepLabels { target: Name, result: Outcome };
    SweptLabels { target: Name, kind: SweptKind };
    MountLabels { target: Name, outcome: MountOutcome };
}

#[derive(Clone, Debug)]
pub(super) struct ContentMetrics {
    upload_sessions: Tracked<SessionLabels, Counter>,
    bytes: Tracked<BytesLabels, Counter>,
    blob_throughput: Tracked<ThroughputLabels, Histogram>,
    propagation_delay: Tracked<PathLabels, Histogram>,
    canaries: Tracked<TargetLabels, Gauge>,
    canary_oldest_push: Tracked<TargetLabels, FloatGauge>,
    sweeps: Tracked<SweepLabels, Counter>,
    swept_objects: Tracked<SweptLabels, Counter>,
    blob_mounts: Tracked<MountLabels, Counter>,
    left_behind_manifests: Tracked<TargetLabels, Counter>,
    left_behind_bytes: Tracked<TargetLabels, Counter>,
}

/// 64 KiB/s to 16 GiB/s: a throttled link to a blob served from a local cache.
fn throughput_histogram() -> Histogram {
    Histogram::new(exponential_buckets(65_536.0, 2.0, 19))
}

/// 50 ms to 410 s: a replica that polls its origin to one that syncs every few minutes.
fn propagation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

impl ContentMetrics {
    pub(super) fn register(f: &mut Families) -> ContentMetrics {
        let m = ContentMetrics {
            upload_sessions: Tracked::counter(),
            bytes: Tracked::counter(),
            blob_throughput: Tracked::new(throughput_histogram),
            propagation_delay: Tracked::new(propagation_histogram),
            canaries: Tracked::gauge(),
            canary_oldest_push: Tracked::float_gauge(),
            sweeps: Tracked::counter(),
            swept_objects: Tracked::counter(),
            blob_mounts: Tracked::counter(),
            left_behind_manifests: Tracked::counter(),
            left_behind_bytes: Tracked::counter(),
        };
        f.tracked(
            "upload_sessions",
            "Blob upload sessions by outcome; abandoned ones were left open on the registry",
            None,
            &m.upload_sessions,
        );
        f.tracked(
            "bytes",
            "Payload bytes pushed to and pulled from the registry, by path",
            None,
            &m.bytes,
        );
        f.tracked(
            "blob_throughput",
            "Payload bytes per second of each successful blob upload and blob pull",
            Some(Unit::Other("bytes_per_second".to_string())),
            &m.blob_throughput,
        );
        f.tracked(
            "propagation_delay",
            "Time from the manifest PUT on the origin until a replicated pull path served the manifest",
            Some(Unit::Seconds),
            &m.propagation_delay,
        );
        f.tracked(
            "canaries",
            "Aged canaries the target keeps and checks, vanished ones included",
            None,
            &m.canaries,
        );
        f.tracked(
            "canary_oldest_push_timestamp",
            "Unix time at which the oldest kept canary was pushed; absent while there is none",
            Some(Unit::Seconds),
            &m.canary_oldest_push,
        );
        f.tracked(
            "sweeps",
            "Hygiene sweeps of the prober's own leftovers, by result",
            None,
            &m.sweeps,
        );
        f.tracked(
            "swept_objects",
            "Leftovers removed by hygiene sweeps: tags of earlier runs and upload sessions",
            None,
            &m.swept_objects,
        );
        f.tracked(
            "blob_mounts",
            "Cross-repository blob mounts by outcome: mounted (201) or fallback (202, uploaded instead)",
            None,
            &m.blob_mounts,
        );
        f.tracked(
            "left_behind_manifests",
            "Manifests runs left on the registry knowingly: in cleanup mode rotate, for the registry's lifecycle policy, or because the registry refuses DELETE",
            None,
            &m.left_behind_manifests,
        );
        f.tracked(
            "left_behind",
            "Bytes of blobs runs uploaded and left on the registry knowingly (see left_behind_manifests)",
            Some(Unit::Bytes),
            &m.left_behind_bytes,
        );
        m
    }

    /// Bytes of every path (pushes go to the origin only), sessions, sweeps, and the mount and
    /// canary series of a target that has them, at zero.
    pub(super) fn init_target(&self, target: &Target) {
        let name = Name::from(target.name.as_str());
        let t = || name.clone();
        let paths = std::iter::once(ORIGIN).chain(target.paths.iter().map(|p| p.name.as_str()));
        for path in paths {
            let p = Name::from(path);
            let origin = path == ORIGIN;
            for direction in Direction::iter().filter(|d| origin || *d == Direction::Pull) {
                self.bytes.touch(BytesLabels {
                    target: t(),
                    path: p.clone(),
                    direction,
                });
            }
        }
        for outcome in SessionOutcome::iter() {
            self.upload_sessions.touch(SessionLabels {
                target: t(),
                outcome,
            });
        }
        for result in Outcome::iter() {
            self.sweeps.touch(SweepLabels {
                target: t(),
                result,
            });
        }
        for kind in SweptKind::iter() {
            self.swept_objects.touch(SweptLabels { target: t(), kind });
        }
        self.left_behind_manifests
            .touch(TargetLabels { target: t() });
        self.left_behind_bytes.touch(TargetLabels { target: t() });
        if target.mount.is_some() {
            for outcome in MountOutcome::iter() {
                self.blob_mounts.touch(MountLabels {
                    target: t(),
                    outcome,
                });
            }
        }
        if target.canaries.is_some() {
            // 0 until the first run of the first size class says how many there are; a kept
            // target's count is left as it is.
            self.canaries.touch(TargetLabels { target: t() });
        }
    }

    /// Drops what is no longer configured, mount and canary series of targets that no longer
    /// have them included.
    pub(super) fn retain(&self, configured: &Configured) {
        let kept = |l: &dyn Scope| configured.keeps(l);
        self.upload_sessions.retain(kept);
        self.bytes.retain(kept);
        self.blob_throughput.retain(kept);
        self.propagation_delay.retain(kept);
        self.sweeps.retain(kept);
        self.swept_objects.retain(kept);
        self.left_behind_manifests.retain(kept);
        self.left_behind_bytes.retain(kept);
        let with_canaries = |l: &dyn Scope| {
            configured
                .target_of(l)
                .is_some_and(|t| t.canaries.is_some())
        };
        self.canaries.retain(with_canaries);
        self.canary_oldest_push.retain(with_canaries);
        self.blob_mounts
            .retain(|l| configured.target_of(l).is_some_and(|t| t.mount.is_some()));
    }

    /// The payload of one step, and the throughput of a blob transfer that succeeded.
    pub(super) fn observe_step(&self, target: &Name, class: &Name, step: &StepReport) {
        let p = || Name::from(step.path.as_str());
        if let Some(direction) = Direction::of(step.step) {
            self.bytes.inc_by(
                BytesLabels {
                    target: target.clone(),
                    path: p(),
                    direction,
                },
                direction.bytes(step),
            );
        }
        // A failed transfer's rate says nothing about the link (it may have stopped early), and
        // a zero duration has no rate.
        if let Some(direction) = Direction::of_blob_transfer(step.step) {
            if step.success && !step.duration_seconds.is_zero() {
                self.blob_throughput.observe(
                    ThroughputLabels {
                        target: target.clone(),
                        path: p(),
                        size_class: class.clone(),
                        direction,
                    },
                    direction.bytes(step) as f64 / step.duration_seconds.as_secs_f64(),
                );
            }
        }
    }

    /// What a whole run did to the registry's content: sessions, propagation, mount, canaries,
    /// what it left behind.
    pub(super) fn observe_run(&self, target: &Name, report: &RunReport) {
        self.observe_upload_sessions(target, report);
        if let Some(left) = report.left_behind {
            let labels = || TargetLabels {
                target: target.clone(),
            };
            self.left_behind_manifests
                .inc_by(labels(), u64::from(left.manifests));
            self.left_behind_bytes.inc_by(labels(), left.bytes);
        }
        // A path that missed its deadline has no delay: its `wait_propagation` step failed with
        // `propagation_timeout`, which is where that is counted.
        for propagation in &report.propagation {
            if let Some(delay) = propagation.delay_seconds {
                self.propagation_delay.observe(
                    PathLabels {
                        target: target.clone(),
                        path: Name::from(propagation.path.as_str()),
                    },
                    delay.as_secs_f64(),
                );
            }
        }
        if let Some(outcome) = report.mount {
            self.blob_mounts.inc_by(
                MountLabels {
                    target: target.clone(),
                    outcome,
                },
                1,
            );
        }
        if let Some(canaries) = &report.canaries {
            let labels = || TargetLabels {
                target: target.clone(),
            };
            self.canaries.with(labels(), |g| {
                g.set(i64::from(canaries.count));
            });
            match canaries.oldest_pushed_at {
                Some(pushed) => self.canary_oldest_push.set(labels(), unix_seconds(pushed)),
                // No canary left: an old timestamp would claim an age nothing has.
                None => self.canary_oldest_push.remove(&labels()),
            }
        }
    }

    /// Sessions are opened by `start_upload`, by a mount or a single POST the registry answered
    /// with 202 (fallback), and closed by a completed `upload_blob` or a `cancel_upload`; whatever a run
    /// opened and did not close stays open on the registry.
    fn observe_upload_sessions(&self, target: &Name, report: &RunReport) {
        let steps = &report.steps;
        let succeeded =
            |step: Step| steps.iter().filter(|s| s.step == step && s.success).count() as u64;
        let fallback = u64::from(report.mount == Some(MountOutcome::Fallback));
        // A single POST ?digest= that the registry answered 202 opened a session too.
        let posted = steps
            .iter()
            .filter(|s| s.step == Step::UploadBlob)
            .filter(|s| {
                s.requests
                    .first()
                    .is_some_and(|r| r.method == "POST" && r.status == Some(202))
            })
            .count() as u64;
        let opened = succeeded(Step::StartUpload) + fallback + posted;
        let completed = succeeded(Step::UploadBlob);
        let cancelled = succeeded(Step::CancelUpload);
        // A monolithic upload without a session of its own would make this negative: saturate.
        let abandoned = opened.saturating_sub(completed + cancelled);
        for (outcome, n) in [
            (SessionOutcome::Opened, opened),
            (SessionOutcome::Completed, completed),
            (SessionOutcome::Cancelled, cancelled),
            (SessionOutcome::Abandoned, abandoned),
        ] {
            if n > 0 {
                self.upload_sessions.inc_by(
                    SessionLabels {
                        target: target.clone(),
                        outcome,
                    },
                    n,
                );
            }
        }
    }

    /// One hygiene sweep and what it removed.
    pub(super) fn observe_sweep(&self, sweep: &SweepReport) {
        let t = || Name::from(sweep.target.as_str());
        self.sweeps.inc_by(
            SweepLabels {
                target: t(),
                result: Outcome::of(sweep.errors.is_empty()),
            },
            1,
        );
        for (kind, n) in [
            (SweptKind::Tag, sweep.tags_deleted),
            (SweptKind::UploadSession, sweep.sessions_cancelled),
        ] {
            self.swept_objects
                .inc_by(SweptLabels { target: t(), kind }, u64::from(n));
        }
    }
}
