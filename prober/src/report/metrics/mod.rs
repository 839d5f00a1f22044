//! Prometheus metrics, the service's counting sink, one file per concern: runs, steps, HTTP
//! exchanges, content (bytes, sessions, canaries, sweeps) and the service itself. Each concern
//! registers, zero-initialises, observes and retains its own families, so a new family touches
//! one file; `Metrics` hands each of them what a finished run or sweep produced. Registering
//! writes the contract (`contract.rs`), which `registry-prober metrics-contract` prints and
//! docs/metrics.md is checked against.

mod content;
mod contract;
mod encode;
mod family;
mod http;
mod referrers;
mod run;
mod service;
mod step;

use std::time::Duration;

use prometheus_client::registry::Registry;

pub use contract::Contract;
#[cfg(test)]
use encode::encode;
pub use encode::{encode_as, encode_gzip, Format};
pub use run::{ConfirmationSkipCause, SkipCause};
pub use service::ExportResult;

use crate::config::Target;
use crate::outcome::{RunReport, SweepReport};
use content::ContentMetrics;
use family::{Configured, Families, Name};
use http::HttpMetrics;
use referrers::ReferrersMetrics;
use run::RunMetrics;
use service::ServiceMetrics;
use step::StepMetrics;

/// Every metric the prober exports. Each concern holds handles on shared state (an `Arc`
/// inside), so a clone counts into the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    run: RunMetrics,
    step: StepMetrics,
    http: HttpMetrics,
    content: ContentMetrics,
    referrers: ReferrersMetrics,
    service: ServiceMetrics,
}

impl Metrics {
    /// Registers every family in `registry` under the prefix `registry_prober` and sets the
    /// build info. The HELP texts are quoted in docs/metrics.md (a test keeps them equal).
    pub fn register(registry: &mut Registry) -> Metrics {
        Self::register_with_contract(registry).0
    }

    /// The families the prober exports, as registering them describes them.
    pub fn contract() -> Contract {
        Self::register_with_contract(&mut Registry::default()).1
    }

    fn register_with_contract(registry: &mut Registry) -> (Metrics, Contract) {
        let mut families = Families::new(registry);
        let metrics = Metrics {
            run: RunMetrics::register(&mut families),
            step: StepMetrics::register(&mut families),
            http: HttpMetrics::register(&mut families),
            content: ContentMetrics::register(&mut families),
            referrers: ReferrersMetrics::register(&mut families),
            service: ServiceMetrics::register(&mut families),
        };
        let contract = Contract {
            families: families.finish(),
        };
        (metrics, contract)
    }

    /// Creates every series of `target`'s closed label sets at zero, so `rate()` sees the first
    /// increment and `absent()` only fires for targets that are really missing. Called again
    /// after a reload, it leaves existing series (and their values) alone; it only (re)sets
    /// each size class's configured interval.
    pub fn init_target(&self, target: &Target) {
        self.run.init_target(target);
        self.step.init_target(target);
        self.http.init_target(target);
        self.content.init_target(target);
    }

    /// Removes every series of targets that are no longer configured, and of size classes and
    /// pull paths (and mount or canary families) no longer configured for the targets that are,
    /// after a configuration reload. The series of what stays configured keep their values.
    pub fn retain_targets(&self, targets: &[Target]) {
        let configured = Configured::new(targets);
        self.run.retain(&configured);
        self.step.retain(&configured);
        self.http.retain(&configured);
        self.content.retain(&configured);
        self.referrers.retain(&configured);
    }

    /// Counts one finished run: its result, its steps per path, its exchanges and transfers,
    /// the propagation delays, mount and canaries it saw, and the certificates it met.
    pub fn observe_run(&self, report: &RunReport) {
        let target = Name::from(report.target.as_str());
        let class = Name::from(report.size_class.as_str());
        self.run.observe(report);
        for step in &report.steps {
            self.step.observe(&target, &class, step);
            self.http.observe_step(&target, step);
            self.content.observe_step(&target, &class, step);
        }
        self.content.observe_run(&target, report);
        self.referrers.observe_run(&target, report);
        self.http.observe_certificates(&target, &report.steps);
        self.http.observe_rate_limits(&target, &report.steps);
    }

    /// Counts one hygiene sweep, what it removed and its exchanges: a connection the sweep
    /// opened is reused by the runs after it, so its dns, connect and tls phases (and the
    /// certificates it met) are only ever seen here.
    pub fn observe_sweep(&self, sweep: &SweepReport) {
        self.content.observe_sweep(sweep);
        let target = Name::from(sweep.target.as_str());
        for step in &sweep.steps {
            self.http.observe_step(&target, step);
        }
        self.http.observe_certificates(&target, &sweep.steps);
        self.http.observe_rate_limits(&target, &sweep.steps);
    }

    /// A run of `target`'s `size_class` came due; it is counted again when it ends or is
    /// skipped.
    pub fn run_due(&self, target: &str, size_class: &str) {
        self.run.scheduled(target, size_class, 1);
    }

    /// A run that came due did not start, for `cause`.
    pub fn run_skipped(&self, target: &str, size_class: &str, cause: SkipCause) {
        self.run.skipped(target, size_class, cause, 1);
    }

    /// `n` runs of `target`'s `size_class` came due while the schedule was a whole interval or
    /// more behind: due and skipped at once (cause `missed`).
    pub fn runs_missed(&self, target: &str, size_class: &str, n: u64) {
        self.run.scheduled(target, size_class, n);
        self.run.skipped(target, size_class, SkipCause::Missed, n);
    }

    /// A confirmation run of `size_class` was due after a failed run and did not run, for
    /// `cause`.
    pub fn confirmation_skipped(
        &self,
        target: &str,
        size_class: &str,
        cause: ConfirmationSkipCause,
    ) {
        self.run.confirmation_skipped(target, size_class, cause);
    }

    /// A run of `target`'s `size_class` started (in-flight +1).
    pub fn run_started(&self, target: &str, size_class: &str) {
        self.run.in_flight(target, size_class, 1);
    }

    /// A run of `target`'s `size_class` ended, however it ended (in-flight -1).
    pub fn run_finished(&self, target: &str, size_class: &str) {
        self.run.in_flight(target, size_class, -1);
    }

    /// How late a run started after it was due.
    pub fn schedule_lag(&self, lag: Duration) {
        self.service.schedule_lag(lag);
    }

    /// A configuration reload was attempted; `ok` says whether the new configuration is in use.
    pub fn config_reload(&self, ok: bool) {
        self.service.config_reload(ok);
    }

    /// `runs` run traces ended with `result` (an export carries the traces of several runs).
    pub fn trace_exports(&self, result: ExportResult, runs: u64) {
        self.service.trace_exports(result, runs);
    }

    /// The number of configured targets.
    pub fn set_targets(&self, n: usize) {
        self.service.set_targets(n);
    }
}

#[cfg(test)]
mod tests;
