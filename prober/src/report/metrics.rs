//! Prometheus metrics: the service's counting sink. `Metrics` is the only writer of every family;
//! the scheduler feeds it finished `RunReport`s and the server encodes the registry for /metrics.
//! The families, their labels and their HELP texts are the contract documented in docs/metrics.md.

use std::fmt::{self, Write as _};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::probe::outcome::{Reason, RunReport, Step, StepReport};

/// The `Content-Type` of what [`encode`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this.
const PREFIX: &str = "registry_prober";

/// A gauge holding a float (unix timestamps in seconds).
type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The OpenMetrics text of `registry` (for /metrics), ending with `# EOF`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail and every label value encodes");
    text
}

/// Content type of the Prometheus text format (0.0.4), for scrapers that do not ask for OpenMetrics.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus text format (0.0.4) of `registry`, for scrapers and linters (promtool 2.42)
/// that do not negotiate OpenMetrics: a counter's family is named with its `_total` and there
/// is no `# UNIT` or `# EOF`, the translation Prometheus itself makes when it ingests
/// OpenMetrics.
pub fn encode_text_format(registry: &Registry) -> String {
    to_prometheus_text(&encode(registry))
}

fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].into_iter().find_map(|kind| {
            let (name, rest) = line.strip_prefix(kind)?.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{kind}{name}_total {rest}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

/// Every metric the prober exports. Each field is a handle on shared state (an `Arc` inside),
/// so a clone counts into the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    runs: Family<RunLabels, Counter>,
    run_duration: HistogramFamily<TargetLabels>,
    last_run: Family<TargetLabels, FloatGauge>,
    last_success: Family<TargetLabels, FloatGauge>,
    skipped_runs: Family<TargetLabels, Counter>,
    runs_in_flight: Family<TargetLabels, Gauge>,
    failures: Family<ReasonLabels, Counter>,
    steps: Family<StepResultLabels, Counter>,
    step_duration: HistogramFamily<StepLabels>,
    step_failures: Family<StepReasonLabels, Counter>,
    cleanup_failures: Family<StepLabels, Counter>,
    upload_sessions: Family<SessionLabels, Counter>,
    bytes: Family<DirectionLabels, Counter>,
    http_requests: Family<ConnectionLabels, Counter>,
    http_phase_duration: HistogramFamily<PhaseLabels>,
    tls_certificate_expiry: Family<TargetLabels, FloatGauge>,
    build_info: Family<VersionLabels, Gauge>,
    config_reloads: Family<ReloadLabels, Counter>,
    config_last_reload_success: FloatGauge,
    config_last_reload_successful: Gauge,
    targets: Gauge,
    trace_exports: Family<ExportLabels, Counter>,
}

impl Metrics {
    /// Registers every family in `registry` under the prefix `registry_prober` and sets the
    /// build info. The HELP texts are quoted in docs/metrics.md (a test keeps them equal).
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            runs: Family::default(),
            run_duration: Family::new_with_constructor(run_histogram),
            last_run: Family::default(),
            last_success: Family::default(),
            skipped_runs: Family::default(),
            runs_in_flight: Family::default(),
            failures: Family::default(),
            steps: Family::default(),
            step_duration: Family::new_with_constructor(step_histogram),
            step_failures: Family::default(),
            cleanup_failures: Family::default(),
            upload_sessions: Family::default(),
            bytes: Family::default(),
            http_requests: Family::default(),
            http_phase_duration: Family::new_with_constructor(phase_histogram),
            tls_certificate_expiry: Family::default(),
            build_info: Family::default(),
            config_reloads: Family::default(),
            config_last_reload_success: FloatGauge::default(),
            config_last_reload_successful: Gauge::default(),
            targets: Gauge::default(),
            trace_exports: Family::default(),
        };
        let m = metrics.clone();
        let r = registry.sub_registry_with_prefix(PREFIX);

        r.register(
            "runs",
            "Probe runs that finished, by result; a run fails when any of its steps fails",
            m.runs,
        );
        r.register_with_unit(
            "run_duration",
            "Wall-clock duration of a probe run, cleanup included",
            Unit::Seconds,
            m.run_duration,
        );
        r.register_with_unit(
            "last_run_timestamp",
            "Unix time at which the last probe run finished",
            Unit::Seconds,
            m.last_run,
        );
        r.register_with_unit(
            "last_success_timestamp",
            "Unix time at which the last successful probe run finished; absent until a run succeeds",
            Unit::Seconds,
            m.last_success,
        );
        r.register(
            "skipped_runs",
            "Scheduled runs skipped because the previous run of the target was still going",
            m.skipped_runs,
        );
        r.register(
            "runs_in_flight",
            "Probe runs currently in progress",
            m.runs_in_flight,
        );
        r.register(
            "failures",
            "Failed probe runs by the reason of the first failed step",
            m.failures,
        );
        r.register("steps", "Probe steps executed, by step and result", m.steps);
        r.register_with_unit(
            "step_duration",
            "Duration of a probe step, token fetches and redirects included",
            Unit::Seconds,
            m.step_duration,
        );
        r.register(
            "step_failures",
            "Failed probe steps by step and reason; series appear on first occurrence",
            m.step_failures,
        );
        r.register(
            "cleanup_failures",
            "Failed cleanup steps, each of which left something behind on the registry",
            m.cleanup_failures,
        );
        r.register(
            "upload_sessions",
            "Blob upload sessions by outcome; abandoned ones were left open on the registry",
            m.upload_sessions,
        );
        r.register(
            "bytes",
            "Payload bytes pushed to and pulled from the registry",
            m.bytes,
        );
        r.register(
            "http_requests",
            "HTTP exchanges (redirect hops and token fetches included) by whether the connection was new or reused",
            m.http_requests,
        );
        r.register_with_unit(
            "http_phase_duration",
            "Duration of a phase of an HTTP exchange: dns, connect, tls, first_byte, transfer",
            Unit::Seconds,
            m.http_phase_duration,
        );
        r.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "Unix time at which the earliest-expiring leaf certificate of the latest run that opened a TLS connection expires",
            Unit::Seconds,
            m.tls_certificate_expiry,
        );
        r.register(
            "build_info",
            "Always 1; the version label says which build of the prober is running",
            m.build_info,
        );
        r.register(
            "config_reloads",
            "Configuration reloads by result",
            m.config_reloads,
        );
        r.register_with_unit(
            "config_last_reload_success_timestamp",
            "Unix time of the last successful configuration load or reload",
            Unit::Seconds,
            m.config_last_reload_success,
        );
        r.register(
            "config_last_reload_successful",
            "1 when the last configuration load or reload succeeded, 0 when it failed",
            m.config_last_reload_successful,
        );
        r.register("targets", "Configured probe targets", m.targets);
        r.register(
            "trace_exports",
            "Run traces by export result: sent to the OTLP endpoint, failed to send, or dropped because the export queue was full",
            m.trace_exports,
        );

        metrics
            .build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        for result in RunResult::ALL {
            let _ = metrics
                .config_reloads
                .get_or_create(&ReloadLabels { result });
        }
        for result in ExportResult::ALL {
            let _ = metrics
                .trace_exports
                .get_or_create(&ExportLabels { result });
        }
        // The prober does not start with an invalid configuration (it exits 64), so the
        // registration, which follows the initial load, counts as a successful load.
        metrics.config_last_reload_successful.set(1);
        metrics
            .config_last_reload_success
            .set(unix_seconds(SystemTime::now()));
        metrics
    }

    /// Creates every series of `target`'s closed label sets at zero, so `rate()` sees the first
    /// increment and `absent()` only fires for targets that are really missing.
    pub fn init_target(&self, target: &str) {
        let t = || target.to_string();
        for result in RunResult::ALL {
            let _ = self.runs.get_or_create(&RunLabels {
                target: t(),
                result,
            });
            for step in Step::ALL {
                let _ = self.steps.get_or_create(&StepResultLabels {
                    target: t(),
                    step,
                    result,
                });
            }
        }
        for reason in Reason::ALL {
            let _ = self.failures.get_or_create(&ReasonLabels {
                target: t(),
                reason,
            });
        }
        for step in Step::ALL.into_iter().filter(|s| s.is_cleanup()) {
            let _ = self
                .cleanup_failures
                .get_or_create(&StepLabels { target: t(), step });
        }
        for outcome in SessionOutcome::ALL {
            let _ = self.upload_sessions.get_or_create(&SessionLabels {
                target: t(),
                outcome,
            });
        }
        for direction in Direction::ALL {
            let _ = self.bytes.get_or_create(&DirectionLabels {
                target: t(),
                direction,
            });
        }
        for connection in Connection::ALL {
            let _ = self.http_requests.get_or_create(&ConnectionLabels {
                target: t(),
                connection,
            });
        }
        let _ = self
            .skipped_runs
            .get_or_create(&TargetLabels { target: t() });
        let _ = self
            .runs_in_flight
            .get_or_create(&TargetLabels { target: t() });
    }

    /// Counts one finished run.
    pub fn observe_run(&self, report: &RunReport) {
        let target = report.target.as_str();
        let t = || target.to_string();
        let finished = unix_seconds(report.started_at + report.duration_seconds);

        self.runs
            .get_or_create(&RunLabels {
                target: t(),
                result: RunResult::from_success(report.success),
            })
            .inc();
        self.run_duration
            .get_or_create(&TargetLabels { target: t() })
            .observe(report.duration_seconds.as_secs_f64());
        self.last_run
            .get_or_create(&TargetLabels { target: t() })
            .set(finished);
        if report.success {
            self.last_success
                .get_or_create(&TargetLabels { target: t() })
                .set(finished);
        } else if let Some(reason) = report.first_failure().and_then(|s| s.reason) {
            self.failures
                .get_or_create(&ReasonLabels {
                    target: t(),
                    reason,
                })
                .inc();
        }

        for step in &report.steps {
            self.observe_step(target, step);
        }
        self.observe_upload_sessions(target, &report.steps);

        // The earliest expiry is the one to alert on, whichever host (registry, token service,
        // blob storage behind a redirect) it belongs to. Reused connections carry no certificate.
        let expiry = report
            .steps
            .iter()
            .flat_map(|s| &s.requests)
            .filter_map(|r| r.peer_cert_not_after_unix)
            .min();
        if let Some(expiry) = expiry {
            self.tls_certificate_expiry
                .get_or_create(&TargetLabels { target: t() })
                .set(expiry as f64);
        }
    }

    fn observe_step(&self, target: &str, step: &StepReport) {
        let t = || target.to_string();
        self.steps
            .get_or_create(&StepResultLabels {
                target: t(),
                step: step.step,
                result: RunResult::from_success(step.success),
            })
            .inc();
        self.step_duration
            .get_or_create(&StepLabels {
                target: t(),
                step: step.step,
            })
            .observe(step.duration_seconds.as_secs_f64());
        if !step.success {
            if let Some(reason) = step.reason {
                self.step_failures
                    .get_or_create(&StepReasonLabels {
                        target: t(),
                        step: step.step,
                        reason,
                    })
                    .inc();
            }
            if step.step.is_cleanup() {
                self.cleanup_failures
                    .get_or_create(&StepLabels {
                        target: t(),
                        step: step.step,
                    })
                    .inc();
            }
        }
        match Direction::of(step.step) {
            Some(Direction::Push) => self.count_bytes(target, Direction::Push, step.bytes_sent),
            Some(Direction::Pull) => self.count_bytes(target, Direction::Pull, step.bytes_received),
            None => {}
        }

        for request in &step.requests {
            let connection = if request.reused_connection {
                Connection::Reused
            } else {
                Connection::New
            };
            self.http_requests
                .get_or_create(&ConnectionLabels {
                    target: t(),
                    connection,
                })
                .inc();
            let phases = [
                (Phase::Dns, request.dns_seconds),
                (Phase::Connect, request.connect_seconds),
                (Phase::Tls, request.tls_seconds),
                (Phase::FirstByte, request.first_byte_seconds),
                (Phase::Transfer, request.transfer_seconds),
            ];
            for (phase, seconds) in phases {
                if let Some(seconds) = seconds {
                    self.http_phase_duration
                        .get_or_create(&PhaseLabels { target: t(), phase })
                        .observe(seconds.as_secs_f64());
                }
            }
        }
    }

    fn count_bytes(&self, target: &str, direction: Direction, bytes: u64) {
        self.bytes
            .get_or_create(&DirectionLabels {
                target: target.to_string(),
                direction,
            })
            .inc_by(bytes);
    }

    /// Sessions are opened by `start_upload`, closed by a completed `upload_blob` or a
    /// `cancel_upload`; whatever a run opened and did not close stays open on the registry.
    fn observe_upload_sessions(&self, target: &str, steps: &[StepReport]) {
        let succeeded =
            |step: Step| steps.iter().filter(|s| s.step == step && s.success).count() as u64;
        let opened = succeeded(Step::StartUpload);
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
                self.upload_sessions
                    .get_or_create(&SessionLabels {
                        target: target.to_string(),
                        outcome,
                    })
                    .inc_by(n);
            }
        }
    }

    /// An overrun: the target's previous run was still going when this one was due.
    pub fn run_skipped(&self, target: &str) {
        self.skipped_runs
            .get_or_create(&TargetLabels {
                target: target.to_string(),
            })
            .inc();
    }

    /// A run of `target` started (in-flight +1).
    pub fn run_started(&self, target: &str) {
        self.runs_in_flight
            .get_or_create(&TargetLabels {
                target: target.to_string(),
            })
            .inc();
    }

    /// A run of `target` ended, however it ended (in-flight -1).
    pub fn run_finished(&self, target: &str) {
        self.runs_in_flight
            .get_or_create(&TargetLabels {
                target: target.to_string(),
            })
            .dec();
    }

    /// A configuration reload was attempted; `ok` says whether the new configuration is in use.
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .get_or_create(&ReloadLabels {
                result: RunResult::from_success(ok),
            })
            .inc();
        self.config_last_reload_successful.set(i64::from(ok));
        if ok {
            self.config_last_reload_success
                .set(unix_seconds(SystemTime::now()));
        }
    }

    /// `runs` run traces ended with `result` (an export carries the traces of several runs).
    pub fn trace_exports(&self, result: ExportResult, runs: u64) {
        self.trace_exports
            .get_or_create(&ExportLabels { result })
            .inc_by(runs);
    }

    /// The number of configured targets.
    pub fn set_targets(&self, n: usize) {
        self.targets.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// 1 ms to 65.5 s: a token fetch on a warm connection to a 1 GiB blob on a slow link.
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// 0.1 ms to 26 s: a cached DNS answer to a drip-fed body.
fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// 10 ms to 328 s: a run is cut at its timeout, plus cleanup's own deadline.
fn run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

// Steps and reasons are labels through their `as_str()`, the one source of their names.
impl EncodeLabelValue for Step {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// A closed label: an enum with its `ALL` and the snake_case values `as_str()` gives.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: [$name; [$($value),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// `result` of a run, a step or a configuration reload.
    RunResult {
        Success => "success",
        Failure => "failure",
    }
}

label_values! {
    /// `phase` of an HTTP exchange, as `HttpRecord` times them.
    Phase {
        Dns => "dns",
        Connect => "connect",
        Tls => "tls",
        FirstByte => "first_byte",
        Transfer => "transfer",
    }
}

label_values! {
    /// `connection`: whether an HTTP exchange opened a connection or reused a pooled one.
    Connection {
        New => "new",
        Reused => "reused",
    }
}

label_values! {
    /// `direction` of payload bytes.
    Direction {
        Push => "push",
        Pull => "pull",
    }
}

label_values! {
    /// `outcome` of a blob upload session.
    SessionOutcome {
        Opened => "opened",
        Completed => "completed",
        Cancelled => "cancelled",
        Abandoned => "abandoned",
    }
}

label_values! {
    /// `result` of exporting a run's trace.
    ExportResult {
        Success => "success",
        Failure => "failure",
        Dropped => "dropped",
    }
}

impl RunResult {
    fn from_success(success: bool) -> RunResult {
        if success {
            RunResult::Success
        } else {
            RunResult::Failure
        }
    }
}

impl Direction {
    /// Which payload a step's bytes are: what push steps send, what pull steps receive.
    fn of(step: Step) -> Option<Direction> {
        match step {
            Step::CheckBlob | Step::StartUpload | Step::UploadBlob | Step::PushManifest => {
                Some(Direction::Push)
            }
            Step::PullManifestByTag | Step::PullManifestByDigest | Step::PullBlob => {
                Some(Direction::Pull)
            }
            Step::Token | Step::DeleteManifest | Step::DeleteBlob | Step::CancelUpload => None,
        }
    }
}

// Label sets. Field order is label order in the output.

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RunLabels {
    target: String,
    result: RunResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    target: String,
    reason: Reason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    target: String,
    step: Step,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepResultLabels {
    target: String,
    step: Step,
    result: RunResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepReasonLabels {
    target: String,
    step: Step,
    reason: Reason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SessionLabels {
    target: String,
    outcome: SessionOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    target: String,
    direction: Direction,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnectionLabels {
    target: String,
    connection: Connection,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    target: String,
    phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: RunResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExportLabels {
    result: ExportResult,
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::probe::outcome::HttpRecord;

    const TARGET: &str = "t";

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// An exchange on a new connection, every phase timed, or on a reused one (no setup phases).
    fn request(url: &str, reused: bool, cert_not_after: Option<u64>) -> HttpRecord {
        HttpRecord {
            method: "GET".to_string(),
            url: url.to_string(),
            status: Some(200),
            reused_connection: reused,
            http_version: Some("HTTP/1.1"),
            dns_seconds: (!reused).then(|| secs(0.002)),
            connect_seconds: (!reused).then(|| secs(0.003)),
            tls_seconds: (!reused).then(|| secs(0.02)),
            first_byte_seconds: Some(secs(0.05)),
            transfer_seconds: Some(secs(0.1)),
            peer_cert_not_after_unix: cert_not_after,
            ..HttpRecord::default()
        }
    }

    fn step(step: Step, subject: &str, sent: u64, received: u64) -> StepReport {
        StepReport {
            step,
            subject: subject.to_string(),
            success: true,
            started_at: std::time::SystemTime::UNIX_EPOCH,
            duration_seconds: secs(0.2),
            reason: None,
            error: None,
            status: Some(200),
            registry_code: None,
            bytes_sent: sent,
            bytes_received: received,
            requests: vec![request(
                "https://registry.example/v2/probe/blobs/sha256:0123",
                true,
                None,
            )],
        }
    }

    fn failed(mut s: StepReport, reason: Reason) -> StepReport {
        s.success = false;
        s.reason = Some(reason);
        s.error = Some(format!(
            "{reason}: sha256:0123 at https://registry.example/v2/"
        ));
        s
    }

    fn run(success: bool, started_unix: u64, steps: Vec<StepReport>) -> RunReport {
        RunReport {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
            target: TARGET.to_string(),
            registry: "https://registry.example".to_string(),
            repository: "probe/prober".to_string(),
            tag: Some("probe-0123".to_string()),
            manifest_digest: Some("sha256:abcd".to_string()),
            success,
            cleanup_failed: false,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(started_unix),
            duration_seconds: secs(2.5),
            steps,
        }
    }

    /// A full cycle on one session, the token fetched on a new connection to a second host.
    fn successful_run() -> RunReport {
        let mut token = step(Step::Token, "token", 0, 700);
        token.requests = vec![request(
            "https://auth.example/token?scope=repository:probe",
            false,
            Some(1_900_000_000),
        )];
        let mut check = step(Step::CheckBlob, "layer 1", 0, 0);
        check.requests = vec![request(
            "https://registry.example/v2/probe/blobs/sha256:0123",
            false,
            Some(1_950_000_000),
        )];
        run(
            true,
            1_700_000_000,
            vec![
                token,
                check,
                step(Step::StartUpload, "layer 1", 0, 0),
                step(Step::UploadBlob, "layer 1", 1000, 0),
                step(Step::PushManifest, "probe-0123", 500, 0),
                step(Step::PullManifestByTag, "probe-0123", 0, 500),
                step(Step::PullBlob, "layer 1", 0, 1000),
                step(Step::DeleteManifest, "sha256:abcd", 0, 0),
                step(Step::DeleteBlob, "layer 1", 0, 0),
            ],
        )
    }

    /// Hand-built, not a real trace: two sessions opened, one completed, the cancel of the
    /// other failed, and a pulled blob that does not hash to its digest.
    fn failed_run() -> RunReport {
        run(
            false,
            1_700_000_060,
            vec![
                step(Step::StartUpload, "config", 0, 0),
                step(Step::StartUpload, "layer 1", 0, 0),
                step(Step::UploadBlob, "config", 300, 0),
                step(Step::PushManifest, "probe-0123", 500, 0),
                step(Step::PullManifestByTag, "probe-0123", 0, 500),
                failed(
                    step(Step::PullBlob, "layer 1", 0, 1000),
                    Reason::DigestMismatch,
                ),
                failed(step(Step::CancelUpload, "layer 1", 0, 0), Reason::Http5xx),
                step(Step::DeleteManifest, "sha256:abcd", 0, 0),
            ],
        )
    }

    fn metrics() -> (Registry, Metrics) {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.init_target(TARGET);
        (registry, metrics)
    }

    fn observed() -> String {
        let (registry, metrics) = metrics();
        metrics.observe_run(&successful_run());
        metrics.observe_run(&failed_run());
        metrics.run_started(TARGET);
        metrics.run_started(TARGET);
        metrics.run_finished(TARGET);
        metrics.run_skipped(TARGET);
        metrics.config_reload(false);
        metrics.set_targets(3);
        metrics.trace_exports(ExportResult::Success, 3);
        metrics.trace_exports(ExportResult::Dropped, 1);
        encode(&registry)
    }

    #[track_caller]
    fn assert_lines(text: &str, expected: &[&str]) {
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|line| !text.lines().any(|l| l == **line))
            .collect();
        assert!(missing.is_empty(), "missing lines {missing:#?} in\n{text}");
    }

    /// Sample lines (not comments) whose labels include `target="<target>"`.
    fn series_of<'a>(text: &'a str, target: &str) -> Vec<&'a str> {
        let label = format!("target=\"{target}\"");
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label))
            .collect()
    }

    /// Every label value of every sample line.
    fn label_values(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| Some(&l[l.find('{')? + 1..l.rfind('}')?]))
            .flat_map(|labels| labels.split("\","))
            .filter_map(|pair| pair.split_once("=\""))
            .map(|(_, value)| value.trim_end_matches('"'))
            .collect()
    }

    #[test]
    fn counts_runs_by_result_and_failed_runs_by_their_first_failure() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_runs_total{target="t",result="success"} 1"#,
                r#"registry_prober_runs_total{target="t",result="failure"} 1"#,
                r#"registry_prober_failures_total{target="t",reason="digest_mismatch"} 1"#,
                r#"registry_prober_failures_total{target="t",reason="http_5xx"} 0"#,
                r#"registry_prober_failures_total{target="t",reason="dns"} 0"#,
                r#"registry_prober_run_duration_seconds_count{target="t"} 2"#,
                r#"registry_prober_run_duration_seconds_sum{target="t"} 5.0"#,
                r#"registry_prober_last_run_timestamp_seconds{target="t"} 1700000062.5"#,
                r#"registry_prober_last_success_timestamp_seconds{target="t"} 1700000002.5"#,
            ],
        );
    }

    #[test]
    fn counts_steps_and_step_failures_by_step_and_reason() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_steps_total{target="t",step="pull_blob",result="success"} 1"#,
                r#"registry_prober_steps_total{target="t",step="pull_blob",result="failure"} 1"#,
                r#"registry_prober_steps_total{target="t",step="start_upload",result="success"} 3"#,
                r#"registry_prober_steps_total{target="t",step="pull_manifest_by_digest",result="success"} 0"#,
                r#"registry_prober_step_failures_total{target="t",step="pull_blob",reason="digest_mismatch"} 1"#,
                r#"registry_prober_step_failures_total{target="t",step="cancel_upload",reason="http_5xx"} 1"#,
                r#"registry_prober_cleanup_failures_total{target="t",step="cancel_upload"} 1"#,
                r#"registry_prober_cleanup_failures_total{target="t",step="delete_blob"} 0"#,
                r#"registry_prober_step_duration_seconds_count{target="t",step="pull_blob"} 2"#,
                r#"registry_prober_step_duration_seconds_bucket{le="0.256",target="t",step="pull_blob"} 2"#,
                r#"registry_prober_step_duration_seconds_bucket{le="0.128",target="t",step="pull_blob"} 0"#,
            ],
        );
    }

    #[test]
    fn counts_upload_sessions_left_open_as_abandoned() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_upload_sessions_total{target="t",outcome="opened"} 3"#,
                r#"registry_prober_upload_sessions_total{target="t",outcome="completed"} 2"#,
                r#"registry_prober_upload_sessions_total{target="t",outcome="cancelled"} 0"#,
                r#"registry_prober_upload_sessions_total{target="t",outcome="abandoned"} 1"#,
            ],
        );
    }

    #[test]
    fn counts_pushed_and_pulled_bytes_and_http_exchanges() {
        assert_lines(
            &observed(),
            &[
                // push: 1000 + 500 (first run) + 300 + 500 (second); the token's 700 is neither.
                r#"registry_prober_bytes_total{target="t",direction="push"} 2300"#,
                // pull: 500 + 1000 (first run) + 500 + 1000 (second, the corrupt blob too).
                r#"registry_prober_bytes_total{target="t",direction="pull"} 3000"#,
                r#"registry_prober_http_requests_total{target="t",connection="new"} 2"#,
                r#"registry_prober_http_requests_total{target="t",connection="reused"} 15"#,
                r#"registry_prober_http_phase_duration_seconds_count{target="t",phase="dns"} 2"#,
                r#"registry_prober_http_phase_duration_seconds_count{target="t",phase="tls"} 2"#,
                r#"registry_prober_http_phase_duration_seconds_count{target="t",phase="first_byte"} 17"#,
                r#"registry_prober_http_phase_duration_seconds_bucket{le="0.0032",target="t",phase="connect"} 2"#,
                r#"registry_prober_http_phase_duration_seconds_bucket{le="0.0016",target="t",phase="connect"} 0"#,
            ],
        );
    }

    #[test]
    fn keeps_the_earliest_certificate_expiry_of_the_run() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t"} 1900000000.0"#,
            ],
        );
    }

    #[test]
    fn tracks_runs_in_flight_skipped_runs_reloads_targets_and_trace_exports() {
        let text = observed();
        assert_lines(
            &text,
            &[
                r#"registry_prober_runs_in_flight{target="t"} 1"#,
                r#"registry_prober_skipped_runs_total{target="t"} 1"#,
                r#"registry_prober_config_reloads_total{result="success"} 0"#,
                r#"registry_prober_config_reloads_total{result="failure"} 1"#,
                "registry_prober_config_last_reload_successful 0",
                "registry_prober_targets 3",
                r#"registry_prober_trace_exports_total{result="success"} 3"#,
                r#"registry_prober_trace_exports_total{result="failure"} 0"#,
                r#"registry_prober_trace_exports_total{result="dropped"} 1"#,
                &format!(
                    r#"registry_prober_build_info{{version="{}"}} 1"#,
                    env!("CARGO_PKG_VERSION")
                ),
            ],
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn exports_no_timestamps_before_the_first_run() {
        let (registry, _metrics) = metrics();
        let text = encode(&registry);
        for absent in [
            "registry_prober_last_success_timestamp_seconds{",
            "registry_prober_last_run_timestamp_seconds{",
            "registry_prober_tls_certificate_expiry_timestamp_seconds{",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn a_new_target_has_61_series_and_an_observed_one_at_most_413_plus_step_failures() {
        let (registry, _metrics) = metrics();
        assert_eq!(series_of(&encode(&registry), TARGET).len(), 61);

        // Every step, every phase, no step failure: the largest a target gets without them.
        let (registry, metrics) = metrics();
        let mut every_step = successful_run();
        every_step.steps = Step::ALL
            .into_iter()
            .map(|s| {
                let mut s = step(s, "x", 0, 0);
                s.requests = vec![request("https://r.example/", false, Some(1))];
                s
            })
            .collect();
        metrics.observe_run(&every_step);
        assert_eq!(series_of(&encode(&registry), TARGET).len(), 413);
    }

    #[test]
    fn no_label_value_is_a_digest_a_url_or_a_path() {
        let text = observed();
        let values = label_values(&text);
        assert!(values.contains(&"digest_mismatch"), "parsed {values:?}");
        for value in values {
            assert!(
                !value.contains("sha256:") && !value.contains("://") && !value.contains('/'),
                "label value {value:?} in\n{text}"
            );
        }
    }

    #[test]
    fn docs_quote_every_help_text_and_list_every_label_value() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
        let docs = std::fs::read_to_string(path).expect("docs/metrics.md exists");
        let text = observed();
        let helps: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP "))
            .collect();
        assert_eq!(helps.len(), 22);
        for help in helps {
            let (name, help) = help.split_once(' ').expect("HELP name text");
            let help = help.trim_end_matches('.');
            assert!(
                docs.contains(help),
                "docs/metrics.md lacks the help of {name}: {help:?}"
            );
        }
        let values = Step::ALL
            .map(Step::as_str)
            .into_iter()
            .chain(Reason::ALL.map(Reason::as_str))
            .chain(RunResult::ALL.map(RunResult::as_str))
            .chain(Phase::ALL.map(Phase::as_str))
            .chain(Connection::ALL.map(Connection::as_str))
            .chain(Direction::ALL.map(Direction::as_str))
            .chain(SessionOutcome::ALL.map(SessionOutcome::as_str))
            .chain(ExportResult::ALL.map(ExportResult::as_str));
        for value in values {
            assert!(
                docs.contains(&format!("`{value}`")),
                "docs/metrics.md does not list `{value}`"
            );
        }
    }

    #[test]
    fn promtool_finds_no_problems() {
        let text = to_prometheus_text(&observed());
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED promtool_finds_no_problems: promtool is not installed");
                return;
            }
            Err(e) => panic!("cannot run promtool: {e}"),
        };
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .expect("promtool reads stdin");
        let out = child.wait_with_output().expect("promtool runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "promtool check metrics: {}\n{report}",
            out.status
        );
    }
}
