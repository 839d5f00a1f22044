//! Referrers metrics: how each path serves the referrers of a manifest, the OCI 1.1 referrers
//! API or the referrers tag schema a client maintains where there is none, as an info gauge.

use prometheus_client::metrics::gauge::Gauge;
use strum::IntoEnumIterator as _;

use super::family::{closed_label, label_sets, Configured, Families, Name, Scope, Tracked};
use crate::config::Target;
use crate::outcome::{ReferrersMode, RunReport};

closed_label!(ReferrersMode);

label_sets! {
    ReferrersLabels { target: Name, path: Name, mode: ReferrersMode } [path];
}

#[derive(Clone, Debug)]
pub(super) struct ReferrersMetrics {
    info: Tracked<ReferrersLabels, Gauge>,
}

/// Whether a target looks referrers up at all: it pushes artifacts about its runs' images or
/// its canaries.
pub(super) fn has_artifacts(target: &Target) -> bool {
    target.artifact.is_some()
        || target
            .canaries
            .as_ref()
            .is_some_and(|c| c.artifact.is_some())
}

impl ReferrersMetrics {
    pub(super) fn register(f: &mut Families) -> ReferrersMetrics {
        let m = ReferrersMetrics {
            info: Tracked::gauge(),
        };
        f.tracked(
            "referrers_info",
            "Always 1; says how the path served referrers when a run last looked them up: api (the OCI 1.1 referrers API) or tag_schema (no referrers API, the sha256-<hex> referrers tag instead)",
            None,
            &m.info,
        );
        m
    }

    /// Drops the series of targets and paths no longer configured, and of targets that no
    /// longer push artifacts.
    pub(super) fn retain(&self, configured: &Configured) {
        self.info
            .retain(|l: &dyn Scope| configured.target_of(l).is_some_and(has_artifacts));
    }

    /// The mode each path served referrers in during the run: that series 1, the other gone.
    pub(super) fn observe_run(&self, target: &Name, report: &RunReport) {
        for seen in &report.referrers {
            let labels = |mode| ReferrersLabels {
                target: target.clone(),
                path: Name::from(seen.path.as_str()),
                mode,
            };
            for mode in ReferrersMode::iter().filter(|m| *m != seen.mode) {
                self.info.remove(&labels(mode));
            }
            self.info.with(labels(seen.mode), |g| {
                g.set(1);
            });
        }
    }
}
