//! Where finished runs and sweeps go: metrics, the status page's history, traces, and the log
//! (one line a run or sweep: fields first, then a short message).

use std::sync::Arc;

use crate::outcome::{RunReport, SweepReport};
use crate::report::export::TraceExporter;
use crate::report::health::Health;
use crate::report::metrics::Metrics;
use crate::report::status::History;

/// Where finished runs go: metrics, the status page's history, the health watchdog, logs,
/// and traces when an OTLP endpoint is configured.
#[derive(Clone)]
pub struct Sinks {
    pub metrics: Arc<Metrics>,
    pub history: Arc<History>,
    pub health: Arc<Health>,
    pub traces: Option<TraceExporter>,
}

impl Sinks {
    pub(super) fn record(&self, report: &RunReport) {
        self.metrics.observe_run(report);
        self.history.record(report);
        if let Some(traces) = &self.traces {
            traces.record(report);
        }
        log_run(report);
    }
}

pub(super) fn log_sweep(sweep: &SweepReport) {
    if sweep.errors.is_empty() {
        tracing::info!(
            target_name = %sweep.target,
            tags_deleted = sweep.tags_deleted,
            sessions_cancelled = sweep.sessions_cancelled,
            "Swept leftovers"
        );
    } else {
        tracing::warn!(
            target_name = %sweep.target,
            tags_deleted = sweep.tags_deleted,
            sessions_cancelled = sweep.sessions_cancelled,
            errors = %sweep.errors.join("; "),
            "Sweep of leftovers failed in part"
        );
    }
}

fn log_run(report: &RunReport) {
    match report.first_failure() {
        None if report.success => tracing::info!(
            target_name = %report.target,
            size_class = %report.size_class,
            trace_id = %report.trace_id,
            confirmation = report.confirmation,
            duration_seconds = report.duration_seconds.as_secs_f64(),
            steps = report.steps.len(),
            "Run succeeded"
        ),
        // Cut at its hard limit between two steps.
        None => tracing::warn!(
            target_name = %report.target,
            size_class = %report.size_class,
            trace_id = %report.trace_id,
            confirmation = report.confirmation,
            duration_seconds = report.duration_seconds.as_secs_f64(),
            "Run failed: cut at its hard limit between steps"
        ),
        Some(step) => tracing::warn!(
            target_name = %report.target,
            size_class = %report.size_class,
            path = %step.path,
            trace_id = %report.trace_id,
            confirmation = report.confirmation,
            step = step.step.as_str(),
            reason = step.reason.map(|r| r.as_str()),
            status = step.status,
            registry_code = step.registry_code.as_deref(),
            error = step.error_line().unwrap_or_default(),
            cleanup_failed = report.cleanup_failed,
            "Run failed"
        ),
    }
}
