//! Service metrics: the prober's own health and configuration, not any registry's: schedule
//! lag, build info, configuration reloads, the number of targets, and trace exports.

use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;
use strum::IntoEnumIterator as _;

use super::family::{
    closed_label, label_sets, unix_seconds, Families, FloatGauge, NoLabels, Outcome,
};

/// `result` of exporting a run's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum ExportResult {
    Success,
    Failure,
    Dropped,
}

closed_label!(ExportResult);

label_sets! {
    global
    VersionLabels { version: String };
    ReloadLabels { result: Outcome };
    ExportLabels { result: ExportResult };
}

#[derive(Clone, Debug)]
pub(super) struct ServiceMetrics {
    schedule_lag: Histogram,
    build_info: Family<VersionLabels, Gauge>,
    config_reloads: Family<ReloadLabels, Counter>,
    config_last_reload_success: FloatGauge,
    config_last_reload_successful: Gauge,
    targets: Gauge,
    trace_exports: Family<ExportLabels, Counter>,
}

/// 1 ms to 65.5 s: timer noise to runs that waited a long time for a concurrency slot.
fn schedule_lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl ServiceMetrics {
    /// Registers the families, sets the build info, and counts the configuration loaded at
    /// start as a successful load.
    pub(super) fn register(f: &mut Families) -> ServiceMetrics {
        let m = ServiceMetrics {
            schedule_lag: schedule_lag_histogram(),
            build_info: Family::default(),
            config_reloads: Family::default(),
            config_last_reload_success: FloatGauge::default(),
            config_last_reload_successful: Gauge::default(),
            targets: Gauge::default(),
            trace_exports: Family::default(),
        };
        f.add::<NoLabels, _>(
            "schedule_lag",
            "How late a run started after it was due, waiting for a concurrency slot included",
            Some(Unit::Seconds),
            m.schedule_lag.clone(),
        );
        f.add::<VersionLabels, _>(
            "build_info",
            "Always 1; the version label says which build of the prober is running",
            None,
            m.build_info.clone(),
        );
        f.add::<ReloadLabels, _>(
            "config_reloads",
            "Configuration reloads by result",
            None,
            m.config_reloads.clone(),
        );
        f.add::<NoLabels, _>(
            "config_last_reload_success_timestamp",
            "Unix time of the last successful configuration load or reload",
            Some(Unit::Seconds),
            m.config_last_reload_success.clone(),
        );
        f.add::<NoLabels, _>(
            "config_last_reload_successful",
            "1 when the last configuration load or reload succeeded, 0 when it failed",
            None,
            m.config_last_reload_successful.clone(),
        );
        f.add::<NoLabels, _>(
            "targets",
            "Configured probe targets",
            None,
            m.targets.clone(),
        );
        f.add::<ExportLabels, _>(
            "trace_exports",
            "Run traces by export result: sent to the OTLP endpoint, failed to send, or dropped because the export queue was full",
            None,
            m.trace_exports.clone(),
        );

        m.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        for result in Outcome::iter() {
            let _ = m.config_reloads.get_or_create(&ReloadLabels { result });
        }
        for result in ExportResult::iter() {
            let _ = m.trace_exports.get_or_create(&ExportLabels { result });
        }
        // The prober does not start with an invalid configuration (it exits 64), so the
        // registration, which follows the initial load, counts as a successful load.
        m.config_last_reload_successful.set(1);
        m.config_last_reload_success
            .set(unix_seconds(SystemTime::now()));
        m
    }

    pub(super) fn schedule_lag(&self, lag: Duration) {
        self.schedule_lag.observe(lag.as_secs_f64());
    }

    pub(super) fn config_reload(&self, ok: bool) {
        self.config_reloads
            .get_or_create(&ReloadLabels {
                result: Outcome::of(ok),
            })
            .inc();
        self.config_last_reload_successful.set(i64::from(ok));
        if ok {
            self.config_last_reload_success
                .set(unix_seconds(SystemTime::now()));
        }
    }

    pub(super) fn trace_exports(&self, result: ExportResult, runs: u64) {
        self.trace_exports
            .get_or_create(&ExportLabels { result })
            .inc_by(runs);
    }

    pub(super) fn set_targets(&self, n: usize) {
        self.targets.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
