//! Prometheus metrics: the service's counting sink. `Metrics` is the only writer of every family;
//! the scheduler feeds it finished `RunReport`s and sweeps and the server encodes the registry for
//! /metrics. The families, their labels and their HELP texts are the contract in docs/metrics.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::config::{Target, ORIGIN};
use crate::probe::outcome::{MountOutcome, Reason, RunReport, Step, StepReport, SweepReport};

/// The `Content-Type` of what [`encode`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this.
const PREFIX: &str = "registry_prober";

/// A gauge holding a float (unix timestamps and intervals in seconds).
type FloatGauge = Gauge<f64, AtomicU64>;

/// The length of the last text encoded: the next buffer is allocated at that size once, instead
/// of doubling its way up (which at a thousand targets holds ~1.5x the ~44 MB text at the end).
static LAST_TEXT_LEN: AtomicUsize = AtomicUsize::new(0);

fn text_buffer() -> String {
    let last = LAST_TEXT_LEN.load(Ordering::Relaxed);
    String::with_capacity(last + last / 16 + 4096)
}

/// The two text formats /metrics serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0, for scrapers that ask for it (Prometheus does).
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for scrapers and linters that do not negotiate
    /// OpenMetrics (curl, promtool 2.42): a counter's family is named with its `_total` and
    /// there is no `# UNIT` or `# EOF`, the translation Prometheus itself makes when it ingests
    /// OpenMetrics. Translated line by line as it is encoded, so only one text is ever held.
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// The OpenMetrics text of `registry` (for /metrics), ending with `# EOF`.
pub fn encode(registry: &Registry) -> String {
    encode_as(registry, Format::OpenMetrics)
}

/// Content type of the Prometheus text format (0.0.4), for scrapers that do not ask for OpenMetrics.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `registry` in `format`, as one string.
pub fn encode_as(registry: &Registry, format: Format) -> String {
    let text = encode_into(registry, format, text_buffer());
    LAST_TEXT_LEN.store(text.len(), Ordering::Relaxed);
    text
}

/// `registry` in `format`, gzipped as it is encoded: the whole text is never held (at 1,000
/// targets it is ~44 MB, its gzip ~2.4 MB).
pub fn encode_gzip(registry: &Registry, format: Format) -> Vec<u8> {
    encode_into(registry, format, Gzip::new()).finish()
}

fn encode_into<W: fmt::Write>(registry: &Registry, format: Format, out: W) -> W {
    let expect = "writing to memory cannot fail and every label value encodes";
    match format {
        Format::OpenMetrics => {
            let mut out = out;
            prometheus_client::encoding::text::encode(&mut out, registry).expect(expect);
            out
        }
        Format::Text => {
            let mut text = TextFormat::new(out);
            prometheus_client::encoding::text::encode(&mut text, registry).expect(expect);
            text.finish()
        }
    }
}

#[cfg(test)]
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut text = TextFormat::new(String::new());
    text.write_str(openmetrics)
        .expect("writing to a String cannot fail");
    text.finish()
}

/// Writes OpenMetrics text through as the Prometheus text format: `# HELP` is held until the
/// next line says whether the family is a counter (whose name then gains `_total`).
struct TextFormat<W> {
    out: W,
    line: String,
    help: Option<String>,
}

impl<W: fmt::Write> TextFormat<W> {
    fn new(out: W) -> TextFormat<W> {
        TextFormat {
            out,
            line: String::new(),
            help: None,
        }
    }

    fn end_line(&mut self) -> fmt::Result {
        let line = std::mem::take(&mut self.line);
        let result = self.translate(&line);
        self.line = line;
        self.line.clear();
        result
    }

    fn translate(&mut self, line: &str) -> fmt::Result {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            return Ok(());
        }
        if line.starts_with("# HELP ") {
            self.flush_help()?;
            self.help = Some(line.to_string());
            return Ok(());
        }
        let Some(counter) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        else {
            self.flush_help()?;
            return writeln!(self.out, "{line}");
        };
        if let Some(help) = self.help.take() {
            match help
                .strip_prefix("# HELP ")
                .and_then(|h| h.strip_prefix(counter))
            {
                Some(rest) if rest.starts_with(' ') => {
                    writeln!(self.out, "# HELP {counter}_total{rest}")?
                }
                _ => writeln!(self.out, "{help}")?,
            }
        }
        writeln!(self.out, "# TYPE {counter}_total counter")
    }

    fn flush_help(&mut self) -> fmt::Result {
        match self.help.take() {
            Some(help) => writeln!(self.out, "{help}"),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> W {
        if !self.line.is_empty() {
            let _ = self.end_line();
        }
        let _ = self.flush_help();
        self.out
    }
}

impl<W: fmt::Write> fmt::Write for TextFormat<W> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while let Some(end) = s.find('\n') {
            self.line.push_str(&s[..end]);
            self.end_line()?;
            s = &s[end + 1..];
        }
        self.line.push_str(s);
        Ok(())
    }
}

/// Text in, gzip out, through a 64 KiB buffer (the encoder writes many small pieces).
struct Gzip {
    pending: String,
    encoder: flate2::write::GzEncoder<Vec<u8>>,
}

impl Gzip {
    const BUFFER: usize = 64 * 1024;

    fn new() -> Gzip {
        Gzip {
            pending: String::with_capacity(Self::BUFFER),
            // The fastest level: the text is repetitive enough that it still shrinks ~20x.
            encoder: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
        }
    }

    fn drain(&mut self) -> fmt::Result {
        use std::io::Write as _;
        self.encoder
            .write_all(self.pending.as_bytes())
            .map_err(|_| fmt::Error)?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.drain()
            .and_then(|()| self.encoder.finish().map_err(|_| fmt::Error))
            .expect("gzip into memory cannot fail")
    }
}

impl fmt::Write for Gzip {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.pending.push_str(s);
        if self.pending.len() >= Self::BUFFER {
            self.drain()?;
        }
        Ok(())
    }
}

/// Why a scheduled run of a size class did not start.
/// Every metric the prober exports. Each field is a handle on shared state (an `Arc` inside),
/// so a clone counts into the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    runs: Tracked<RunLabels, Counter>,
    failures: Tracked<FailureLabels, Counter>,
    run_duration: Tracked<ClassLabels, Histogram>,
    last_run: Tracked<ClassLabels, FloatGauge>,
    last_success: Tracked<ClassLabels, FloatGauge>,
    skipped_runs: Tracked<SkipLabels, Counter>,
    runs_in_flight: Tracked<ClassLabels, Gauge>,
    target_interval: Tracked<ClassLabels, FloatGauge>,
    steps: Tracked<StepResultLabels, Counter>,
    step_duration: Tracked<StepDurationLabels, Histogram>,
    step_failures: Tracked<StepReasonLabels, Counter>,
    cleanup_failures: Tracked<CleanupLabels, Counter>,
    upload_sessions: Tracked<SessionLabels, Counter>,
    bytes: Tracked<BytesLabels, Counter>,
    blob_throughput: Tracked<ThroughputLabels, Histogram>,
    propagation_delay: Tracked<PathLabels, Histogram>,
    http_requests: Tracked<ConnectionLabels, Counter>,
    http_phase_duration: Tracked<PhaseLabels, Histogram>,
    tls_certificate_expiry: Tracked<PathLabels, FloatGauge>,
    canaries: Tracked<TargetLabels, Gauge>,
    canary_oldest_push: Tracked<TargetLabels, FloatGauge>,
    sweeps: Tracked<SweepLabels, Counter>,
    swept_objects: Tracked<SweptLabels, Counter>,
    blob_mounts: Tracked<MountLabels, Counter>,
    schedule_lag: Histogram,
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
            runs: Tracked::new(Family::default()),
            failures: Tracked::new(Family::default()),
            run_duration: Tracked::new(Family::new_with_constructor(run_histogram)),
            last_run: Tracked::new(Family::default()),
            last_success: Tracked::new(Family::default()),
            skipped_runs: Tracked::new(Family::default()),
            runs_in_flight: Tracked::new(Family::default()),
            target_interval: Tracked::new(Family::default()),
            steps: Tracked::new(Family::default()),
            step_duration: Tracked::new(Family::new_with_constructor(step_histogram)),
            step_failures: Tracked::new(Family::default()),
            cleanup_failures: Tracked::new(Family::default()),
            upload_sessions: Tracked::new(Family::default()),
            bytes: Tracked::new(Family::default()),
            blob_throughput: Tracked::new(Family::new_with_constructor(throughput_histogram)),
            propagation_delay: Tracked::new(Family::new_with_constructor(propagation_histogram)),
            http_requests: Tracked::new(Family::default()),
            http_phase_duration: Tracked::new(Family::new_with_constructor(phase_histogram)),
            tls_certificate_expiry: Tracked::new(Family::default()),
            canaries: Tracked::new(Family::default()),
            canary_oldest_push: Tracked::new(Family::default()),
            sweeps: Tracked::new(Family::default()),
            swept_objects: Tracked::new(Family::default()),
            blob_mounts: Tracked::new(Family::default()),
            schedule_lag: schedule_lag_histogram(),
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
            "Probe runs that finished, by size class and result; a run fails when any of its steps fails",
            m.runs.family,
        );
        r.register(
            "failures",
            "Failed probe runs by size class and the reason of the first failed step",
            m.failures.family,
        );
        r.register_with_unit(
            "run_duration",
            "Wall-clock duration of a probe run, cleanup included",
            Unit::Seconds,
            m.run_duration.family,
        );
        r.register_with_unit(
            "last_run_timestamp",
            "Unix time at which the last probe run of the size class finished",
            Unit::Seconds,
            m.last_run.family,
        );
        r.register_with_unit(
            "last_success_timestamp",
            "Unix time at which the last successful probe run of the size class finished; absent until a run succeeds",
            Unit::Seconds,
            m.last_success.family,
        );
        r.register(
            "skipped_runs",
            "Scheduled runs not started, by cause: overrun (the previous run of the size class still going) or rate_limited (waiting out the registry's Retry-After)",
            m.skipped_runs.family,
        );
        r.register(
            "runs_in_flight",
            "Probe runs currently in progress",
            m.runs_in_flight.family,
        );
        r.register_with_unit(
            "target_interval",
            "Configured interval between the starts of two runs of the size class",
            Unit::Seconds,
            m.target_interval.family,
        );
        r.register(
            "steps",
            "Probe steps executed, by path, step and result",
            m.steps.family,
        );
        r.register_with_unit(
            "step_duration",
            "Duration of a probe step, token fetches and redirects included",
            Unit::Seconds,
            m.step_duration.family,
        );
        r.register(
            "step_failures",
            "Failed probe steps by path, step and reason; series appear on first occurrence",
            m.step_failures.family,
        );
        r.register(
            "cleanup_failures",
            "Failed cleanup steps, each of which left something behind on the registry",
            m.cleanup_failures.family,
        );
        r.register(
            "upload_sessions",
            "Blob upload sessions by outcome; abandoned ones were left open on the registry",
            m.upload_sessions.family,
        );
        r.register(
            "bytes",
            "Payload bytes pushed to and pulled from the registry, by path",
            m.bytes.family,
        );
        r.register_with_unit(
            "blob_throughput",
            "Payload bytes per second of each successful blob upload and blob pull",
            Unit::Other("bytes_per_second".to_string()),
            m.blob_throughput.family,
        );
        r.register_with_unit(
            "propagation_delay",
            "Time from the manifest PUT on the origin until a replicated pull path served the manifest",
            Unit::Seconds,
            m.propagation_delay.family,
        );
        r.register(
            "http_requests",
            "HTTP exchanges (redirect hops and token fetches included) by path and by whether the connection was new or reused",
            m.http_requests.family,
        );
        r.register_with_unit(
            "http_phase_duration",
            "Duration of a phase of an HTTP exchange: dns, connect, tls, first_byte, transfer",
            Unit::Seconds,
            m.http_phase_duration.family,
        );
        r.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "Unix time at which the earliest-expiring leaf certificate of the latest run that opened a TLS connection on the path expires",
            Unit::Seconds,
            m.tls_certificate_expiry.family,
        );
        r.register(
            "canaries",
            "Aged canaries the target keeps and checks, vanished ones included",
            m.canaries.family,
        );
        r.register_with_unit(
            "canary_oldest_push_timestamp",
            "Unix time at which the oldest kept canary was pushed; absent while there is none",
            Unit::Seconds,
            m.canary_oldest_push.family,
        );
        r.register(
            "sweeps",
            "Hygiene sweeps of the prober's own leftovers, by result",
            m.sweeps.family,
        );
        r.register(
            "swept_objects",
            "Leftovers removed by hygiene sweeps: tags of earlier runs and upload sessions",
            m.swept_objects.family,
        );
        r.register(
            "blob_mounts",
            "Cross-repository blob mounts by outcome: mounted (201) or fallback (202, uploaded instead)",
            m.blob_mounts.family,
        );
        r.register_with_unit(
            "schedule_lag",
            "How late a run started after it was due, waiting for a concurrency slot included",
            Unit::Seconds,
            m.schedule_lag,
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
    /// increment and `absent()` only fires for targets that are really missing. Called again
    /// after a reload, it leaves existing series (and their values) alone; it only (re)sets
    /// each size class's configured interval.
    pub fn init_target(&self, target: &Target) {
        let target_name = Name::from(target.name.as_str());
        let t = || target_name.clone();
        for class in &target.sizes {
            let class_name = Name::from(class.name.as_str());
            let c = || class_name.clone();
            for result in RunResult::ALL {
                self.runs.touch(RunLabels {
                    target: t(),
                    size_class: c(),
                    result,
                });
            }
            for reason in Reason::ALL {
                self.failures.touch(FailureLabels {
                    target: t(),
                    size_class: c(),
                    reason,
                });
            }
            for cause in SkipCause::ALL {
                self.skipped_runs.touch(SkipLabels {
                    target: t(),
                    size_class: c(),
                    cause,
                });
            }
            let class_labels = || ClassLabels {
                target: t(),
                size_class: c(),
            };
            self.runs_in_flight.touch(class_labels());
            self.target_interval
                .set(class_labels(), class.interval.as_secs_f64());
        }
        let paths = std::iter::once(ORIGIN).chain(target.paths.iter().map(|p| p.name.as_str()));
        for path in paths {
            let path_name = Name::from(path);
            let p = || path_name.clone();
            let origin = path == ORIGIN;
            for step in Step::ALL
                .into_iter()
                .filter(|s| origin || runs_on_pull_paths(*s))
            {
                for result in RunResult::ALL {
                    self.steps.touch(StepResultLabels {
                        target: t(),
                        path: p(),
                        step,
                        result,
                    });
                }
            }
            // Pushes go to the origin only.
            for direction in Direction::ALL
                .into_iter()
                .filter(|d| origin || *d == Direction::Pull)
            {
                self.bytes.touch(BytesLabels {
                    target: t(),
                    path: p(),
                    direction,
                });
            }
            for connection in Connection::ALL {
                self.http_requests.touch(ConnectionLabels {
                    target: t(),
                    path: p(),
                    connection,
                });
            }
        }
        for step in Step::ALL.into_iter().filter(|s| s.is_cleanup()) {
            self.cleanup_failures
                .touch(CleanupLabels { target: t(), step });
        }
        for outcome in SessionOutcome::ALL {
            self.upload_sessions.touch(SessionLabels {
                target: t(),
                outcome,
            });
        }
        for result in RunResult::ALL {
            self.sweeps.touch(SweepLabels {
                target: t(),
                result,
            });
        }
        for kind in SweptKind::ALL {
            self.swept_objects.touch(SweptLabels { target: t(), kind });
        }
        if target.mount.is_some() {
            for outcome in Mount::ALL {
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

    /// Removes every series of targets that are no longer configured, and of size classes and
    /// pull paths (and mount or canary families) no longer configured for the targets that are,
    /// after a configuration reload. The series of what stays configured keep their values.
    pub fn retain_targets(&self, targets: &[Target]) {
        let configured = Configured::new(targets);
        let kept = |l: &dyn Scope| configured.target_of(l).is_some();
        self.runs.retain(kept);
        self.failures.retain(kept);
        self.run_duration.retain(kept);
        self.last_run.retain(kept);
        self.last_success.retain(kept);
        self.skipped_runs.retain(kept);
        self.runs_in_flight.retain(kept);
        self.target_interval.retain(kept);
        self.steps.retain(kept);
        self.step_duration.retain(kept);
        self.step_failures.retain(kept);
        self.cleanup_failures.retain(kept);
        self.upload_sessions.retain(kept);
        self.bytes.retain(kept);
        self.blob_throughput.retain(kept);
        self.propagation_delay.retain(kept);
        self.http_requests.retain(kept);
        self.http_phase_duration.retain(kept);
        self.tls_certificate_expiry.retain(kept);
        self.sweeps.retain(kept);
        self.swept_objects.retain(kept);
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

    /// Counts one finished run: its result, its steps per path, its transfers, the propagation
    /// delays, mount and canaries it saw, and the certificates it met.
    pub fn observe_run(&self, report: &RunReport) {
        let target = report.target.as_str();
        let class = report.size_class.as_str();
        let (target_name, class_name) = (Name::from(target), Name::from(class));
        let t = || target_name.clone();
        let class_labels = || ClassLabels {
            target: t(),
            size_class: class_name.clone(),
        };
        let finished = unix_seconds(report.started_at + report.duration_seconds);

        self.runs.inc_by(
            RunLabels {
                target: t(),
                size_class: Name::from(class),
                result: RunResult::from_success(report.success),
            },
            1,
        );
        self.run_duration
            .observe(class_labels(), report.duration_seconds.as_secs_f64());
        self.last_run.set(class_labels(), finished);
        if report.success {
            self.last_success.set(class_labels(), finished);
        } else if let Some(reason) = report.first_failure().and_then(|s| s.reason) {
            self.failures.inc_by(
                FailureLabels {
                    target: t(),
                    size_class: Name::from(class),
                    reason,
                },
                1,
            );
        }

        for step in &report.steps {
            self.observe_step(target, class, step);
        }
        self.observe_upload_sessions(target, report);
        self.observe_certificates(target, &report.steps);

        // A path that missed its deadline has no delay: its `wait_propagation` step failed with
        // `propagation_timeout`, which is where that is counted.
        for propagation in &report.propagation {
            if let Some(delay) = propagation.delay_seconds {
                self.propagation_delay.observe(
                    PathLabels {
                        target: t(),
                        path: Name::from(propagation.path.as_str()),
                    },
                    delay.as_secs_f64(),
                );
            }
        }
        if let Some(outcome) = report.mount {
            self.blob_mounts.inc_by(
                MountLabels {
                    target: t(),
                    outcome: Mount::from(outcome),
                },
                1,
            );
        }
        if let Some(canaries) = &report.canaries {
            self.canaries.with(TargetLabels { target: t() }, |g| {
                g.set(i64::from(canaries.count));
            });
            match canaries.oldest_pushed_at {
                Some(pushed) => self
                    .canary_oldest_push
                    .set(TargetLabels { target: t() }, unix_seconds(pushed)),
                // No canary left: an old timestamp would claim an age nothing has.
                None => self
                    .canary_oldest_push
                    .remove(&TargetLabels { target: t() }),
            }
        }
    }

    fn observe_step(&self, target: &str, class: &str, step: &StepReport) {
        let (target_name, path_name) = (Name::from(target), Name::from(step.path.as_str()));
        let t = || target_name.clone();
        let p = || path_name.clone();
        self.steps.inc_by(
            StepResultLabels {
                target: t(),
                path: p(),
                step: step.step,
                result: RunResult::from_success(step.success),
            },
            1,
        );
        self.step_duration.observe(
            StepDurationLabels {
                target: t(),
                path: p(),
                size_class: Name::from(class),
                step: step.step,
            },
            step.duration_seconds.as_secs_f64(),
        );
        if !step.success {
            if let Some(reason) = step.reason {
                self.step_failures.inc_by(
                    StepReasonLabels {
                        target: t(),
                        path: p(),
                        step: step.step,
                        reason,
                    },
                    1,
                );
            }
            if step.step.is_cleanup() {
                self.cleanup_failures.inc_by(
                    CleanupLabels {
                        target: t(),
                        step: step.step,
                    },
                    1,
                );
            }
        }
        if let Some(direction) = Direction::of(step.step) {
            let bytes = match direction {
                Direction::Push => step.bytes_sent,
                Direction::Pull => step.bytes_received,
            };
            self.bytes.inc_by(
                BytesLabels {
                    target: t(),
                    path: p(),
                    direction,
                },
                bytes,
            );
        }
        if let Some(direction) = Direction::of_blob_transfer(step.step) {
            // A failed transfer's rate says nothing about the link (it may have stopped early),
            // and a zero duration has no rate.
            if step.success && !step.duration_seconds.is_zero() {
                let bytes = match direction {
                    Direction::Push => step.bytes_sent,
                    Direction::Pull => step.bytes_received,
                };
                self.blob_throughput.observe(
                    ThroughputLabels {
                        target: t(),
                        path: p(),
                        size_class: Name::from(class),
                        direction,
                    },
                    bytes as f64 / step.duration_seconds.as_secs_f64(),
                );
            }
        }

        for request in &step.requests {
            let connection = if request.reused_connection {
                Connection::Reused
            } else {
                Connection::New
            };
            self.http_requests.inc_by(
                ConnectionLabels {
                    target: t(),
                    path: p(),
                    connection,
                },
                1,
            );
            let phases = [
                (Phase::Dns, request.dns_seconds),
                (Phase::Connect, request.connect_seconds),
                (Phase::Tls, request.tls_seconds),
                (Phase::FirstByte, request.first_byte_seconds),
                (Phase::Transfer, request.transfer_seconds),
            ];
            for (phase, seconds) in phases {
                if let Some(seconds) = seconds {
                    self.http_phase_duration.observe(
                        PhaseLabels {
                            target: t(),
                            path: p(),
                            phase,
                        },
                        seconds.as_secs_f64(),
                    );
                }
            }
        }
    }

    /// Sessions are opened by `start_upload`, or by a mount the registry answered with 202
    /// (fallback), and closed by a completed `upload_blob` or a `cancel_upload`; whatever a run
    /// opened and did not close stays open on the registry.
    fn observe_upload_sessions(&self, target: &str, report: &RunReport) {
        let steps = &report.steps;
        let succeeded =
            |step: Step| steps.iter().filter(|s| s.step == step && s.success).count() as u64;
        let fallback = u64::from(report.mount == Some(MountOutcome::Fallback));
        let opened = succeeded(Step::StartUpload) + fallback;
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
                        target: Name::from(target),
                        outcome,
                    },
                    n,
                );
            }
        }
    }

    /// Per path, the earliest expiry is the one to alert on, whichever host (registry, token
    /// service, blob storage behind a redirect) it belongs to. Reused connections carry no
    /// certificate, so a path whose run only reused connections keeps its previous value.
    fn observe_certificates(&self, target: &str, steps: &[StepReport]) {
        let mut earliest: BTreeMap<&str, u64> = BTreeMap::new();
        for step in steps {
            for not_after in step
                .requests
                .iter()
                .filter_map(|r| r.peer_cert_not_after_unix)
            {
                earliest
                    .entry(step.path.as_str())
                    .and_modify(|e| *e = (*e).min(not_after))
                    .or_insert(not_after);
            }
        }
        for (path, not_after) in earliest {
            self.tls_certificate_expiry.set(
                PathLabels {
                    target: Name::from(target),
                    path: Name::from(path),
                },
                not_after as f64,
            );
        }
    }

    /// Counts one hygiene sweep and what it removed.
    pub fn observe_sweep(&self, sweep: &SweepReport) {
        let target_name = Name::from(sweep.target.as_str());
        let t = || target_name.clone();
        self.sweeps.inc_by(
            SweepLabels {
                target: t(),
                result: RunResult::from_success(sweep.errors.is_empty()),
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

    /// A scheduled run of `size_class` did not start, for `cause`.
    pub fn run_skipped(&self, target: &str, size_class: &str, cause: SkipCause) {
        self.skipped_runs.inc_by(
            SkipLabels {
                target: Name::from(target),
                size_class: Name::from(size_class),
                cause,
            },
            1,
        );
    }

    /// A run of `target`'s `size_class` started (in-flight +1).
    pub fn run_started(&self, target: &str, size_class: &str) {
        self.runs_in_flight.with(
            ClassLabels {
                target: Name::from(target),
                size_class: Name::from(size_class),
            },
            |g| {
                g.inc();
            },
        );
    }

    /// A run of `target`'s `size_class` ended, however it ended (in-flight -1).
    pub fn run_finished(&self, target: &str, size_class: &str) {
        self.runs_in_flight.with(
            ClassLabels {
                target: Name::from(target),
                size_class: Name::from(size_class),
            },
            |g| {
                g.dec();
            },
        );
    }

    /// How late a run started after it was due.
    pub fn schedule_lag(&self, lag: Duration) {
        self.schedule_lag.observe(lag.as_secs_f64());
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

/// Steps that run against pull paths besides the origin: pulls, the token each path's auth may
/// need, and the propagation wait of replicated paths.
fn runs_on_pull_paths(step: Step) -> bool {
    step.is_pull() || matches!(step, Step::WaitPropagation | Step::Token)
}

/// 10 ms to 328 s: a run is cut at its timeout, plus cleanup's own deadline.
fn run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// 1 ms to 65.5 s: a token fetch on a warm connection to a 1 GiB blob on a slow link.
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// 0.1 ms to 26 s: a cached DNS answer to a drip-fed body.
fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// 50 ms to 410 s: a replica that polls its origin to one that syncs every few minutes.
fn propagation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// 64 KiB/s to 16 GiB/s: a throttled link to a blob served from a local cache.
fn throughput_histogram() -> Histogram {
    Histogram::new(exponential_buckets(65_536.0, 2.0, 19))
}

/// 1 ms to 65.5 s: timer noise to runs that waited a long time for a concurrency slot.
fn schedule_lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// A family that remembers the label sets it created, so a reload can remove the series of
/// what is no longer configured: prometheus-client's `Family` removes a series but cannot list
/// them. The record's lock is held while a series is created or removed, so the two never
/// disagree.
#[derive(Debug)]
struct Tracked<L, M> {
    family: Family<L, M>,
    created: Arc<Mutex<HashSet<L>>>,
}

impl<L, M> Clone for Tracked<L, M> {
    fn clone(&self) -> Self {
        Tracked {
            family: self.family.clone(),
            created: Arc::clone(&self.created),
        }
    }
}

impl<L: Clone + Hash + Eq + Scope, M> Tracked<L, M> {
    fn new(family: Family<L, M>) -> Self {
        Tracked {
            family,
            created: Arc::default(),
        }
    }

    fn record(&self) -> MutexGuard<'_, HashSet<L>> {
        // A panic while the lock was held cannot leave the set half-updated (an insert or a
        // remove), so a poisoned record is still right.
        self.created.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` to the series of `labels`, creating it at zero if needed.
    fn with(&self, labels: L, f: impl FnOnce(&M)) {
        let mut created = self.record();
        f(&self.family.get_or_create(&labels));
        created.insert(labels);
    }

    /// Creates the series of `labels` at zero, or leaves it as it is.
    fn touch(&self, labels: L) {
        self.with(labels, |_| {});
    }

    fn remove(&self, labels: &L) {
        let mut created = self.record();
        created.remove(labels);
        self.family.remove(labels);
    }

    /// Removes every series whose labels `keep` refuses.
    fn retain(&self, keep: impl Fn(&dyn Scope) -> bool) {
        let mut created = self.record();
        created.retain(|labels| {
            let kept = keep(labels);
            if !kept {
                self.family.remove(labels);
            }
            kept
        });
    }
}

impl<L: Clone + Hash + Eq + Scope> Tracked<L, Counter> {
    fn inc_by(&self, labels: L, n: u64) {
        self.with(labels, |c| {
            c.inc_by(n);
        });
    }
}

impl<L: Clone + Hash + Eq + Scope> Tracked<L, FloatGauge> {
    fn set(&self, labels: L, value: f64) {
        self.with(labels, |g| {
            g.set(value);
        });
    }
}

impl<L: Clone + Hash + Eq + Scope> Tracked<L, Histogram> {
    fn observe(&self, labels: L, value: f64) {
        self.with(labels, |h| h.observe(value));
    }
}

/// What configured things a series belongs to: its target, and its size class and path when
/// it has those labels.
/// A label value shared by every series of a target, size class or path: one allocation per
/// name instead of one per series (a thousand targets hold hundreds of thousands of series).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Name(Arc<str>);

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name(Arc::from(name))
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(&self.0)
    }
}

trait Scope {
    fn target(&self) -> &str;
    fn size_class(&self) -> Option<&str> {
        None
    }
    fn path(&self) -> Option<&str> {
        None
    }
}

/// The configuration a reload keeps, to judge series by.
struct Configured<'a> {
    targets: HashMap<&'a str, &'a Target>,
}

impl<'a> Configured<'a> {
    fn new(targets: &'a [Target]) -> Self {
        Configured {
            targets: targets.iter().map(|t| (t.name.as_str(), t)).collect(),
        }
    }

    /// The target of a series, when it, and the size class and path the series names, are
    /// still configured.
    fn target_of(&self, labels: &dyn Scope) -> Option<&'a Target> {
        let target = *self.targets.get(labels.target())?;
        if let Some(class) = labels.size_class() {
            target.sizes.iter().find(|c| c.name == class)?;
        }
        if let Some(path) = labels.path() {
            if path != ORIGIN {
                target.paths.iter().find(|p| p.name == path)?;
            }
        }
        Some(target)
    }
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
    /// `cause` of a skipped run: `overrun`, the previous run of the size class was still going;
    /// `rate_limited`, the registry answered 429 (Retry-After) and the schedule waits it out.
    SkipCause {
        Overrun => "overrun",
        RateLimited => "rate_limited",
    }
}

label_values! {
    /// `result` of a run, a step, a sweep or a configuration reload.
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
    /// `outcome` of a cross-repository blob mount: the label of a `MountOutcome`.
    Mount {
        Mounted => "mounted",
        Fallback => "fallback",
    }
}

label_values! {
    /// `kind` of a leftover a hygiene sweep removed.
    SweptKind {
        Tag => "tag",
        UploadSession => "upload_session",
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

impl From<MountOutcome> for Mount {
    fn from(outcome: MountOutcome) -> Mount {
        match outcome {
            MountOutcome::Mounted => Mount::Mounted,
            MountOutcome::Fallback => Mount::Fallback,
        }
    }
}

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
}

// Label sets. Field order is label order in the output.

/// Label sets of per-target families. A `[size_class]` or `[path]` after a set makes those
/// labels part of its `Scope`, which a reload judges it by.
macro_rules! label_sets {
    ($($name:ident { $($field:ident: $ty:ty),+ } $([$($scope:ident),+])?;)+) => {
        $(
            #[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
            struct $name {
                $($field: $ty,)+
            }

            impl Scope for $name {
                fn target(&self) -> &str {
                    &self.target
                }
                $($(
                    fn $scope(&self) -> Option<&str> {
                        Some(&self.$scope)
                    }
                )+)?
            }
        )+
    };
}

label_sets! {
    TargetLabels { target: Name };
    ClassLabels { target: Name, size_class: Name } [size_class];
    RunLabels { target: Name, size_class: Name, result: RunResult } [size_class];
    FailureLabels { target: Name, size_class: Name, reason: Reason } [size_class];
    SkipLabels { target: Name, size_class: Name, cause: SkipCause } [size_class];
    StepResultLabels { target: Name, path: Name, step: Step, result: RunResult } [path];
    StepDurationLabels { target: Name, path: Name, size_class: Name, step: Step } [path, size_class];
    StepReasonLabels { target: Name, path: Name, step: Step, reason: Reason } [path];
    CleanupLabels { target: Name, step: Step };
    SessionLabels { target: Name, outcome: SessionOutcome };
    BytesLabels { target: Name, path: Name, direction: Direction } [path];
    ThroughputLabels { target: Name, path: Name, size_class: Name, direction: Direction } [path, size_class];
    PathLabels { target: Name, path: Name } [path];
    ConnectionLabels { target: Name, path: Name, connection: Connection } [path];
    PhaseLabels { target: Name, path: Name, phase: Phase } [path];
    SweepLabels { target: Name, result: RunResult };
    SweptLabels { target: Name, kind: SweptKind };
    MountLabels { target: Name, outcome: Mount };
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
    use crate::config::RawConfig;
    use crate::probe::outcome::{CanarySummary, HttpRecord, PropagationReport};

    const TARGET: &str = "t";

    /// `t` with two size classes, a replicated pull path `cache`, canaries and mounts.
    const FULL: &str = r#"
targets:
  - name: t
    registry: https://registry.example
    repository: probe/prober
    sizes:
      - class: small
        layer_sizes: [4KiB]
      - class: large
        layer_sizes: [64MiB]
        interval: 10m
    paths:
      - name: cache
        registry: https://cache.example
        propagation_timeout: 30s
    canaries:
      enabled: true
    mount:
      enabled: true
"#;

    /// `t` written without any v2 key: one size class, `default`, and no pull path.
    const PLAIN: &str = r#"
targets:
  - name: t
    registry: https://registry.example
    repository: probe/prober
"#;

    fn targets(yaml: &str) -> Vec<Target> {
        let raw: RawConfig = serde_yaml::from_str(yaml).expect("the test config parses");
        raw.validate().expect("the test config is valid").targets
    }

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

    /// A successful step on the origin, 0.2 s, one exchange on a reused connection.
    fn step(step: Step, subject: &str, sent: u64, received: u64) -> StepReport {
        StepReport {
            step,
            path: ORIGIN.into(),
            subject: subject.to_string(),
            success: true,
            started_at: SystemTime::UNIX_EPOCH,
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

    fn on(path: &str, mut s: StepReport) -> StepReport {
        s.path = path.to_string();
        s
    }

    fn failed(mut s: StepReport, reason: Reason) -> StepReport {
        s.success = false;
        s.reason = Some(reason);
        s.error = Some(format!(
            "{reason}: sha256:0123 at https://registry.example/v2/"
        ));
        s
    }

    fn new_connection(mut s: StepReport, url: &str, cert_not_after: u64) -> StepReport {
        s.requests = vec![request(url, false, Some(cert_not_after))];
        s
    }

    fn run(
        size_class: &str,
        success: bool,
        started_unix: u64,
        steps: Vec<StepReport>,
    ) -> RunReport {
        RunReport {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
            target: TARGET.to_string(),
            size_class: size_class.to_string(),
            registry: "https://registry.example".to_string(),
            repository: "probe/prober".to_string(),
            tag: Some("probe-0123".to_string()),
            manifest_digest: Some("sha256:abcd".to_string()),
            success,
            cleanup_failed: false,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(started_unix),
            duration_seconds: secs(2.5),
            steps,
            retry_after: None,
            propagation: Vec::new(),
            mount: None,
            canaries: None,
        }
    }

    /// A full cycle of the small class on one session, the token fetched on a new connection to
    /// a second host, the pushed image pulled through the origin and the cache, which served it
    /// 1.5 s after the push.
    fn successful_run() -> RunReport {
        let mut report = run(
            "small",
            true,
            1_700_000_000,
            vec![
                new_connection(
                    step(Step::Token, "token", 0, 700),
                    "https://auth.example/token?scope=repository:probe",
                    1_900_000_000,
                ),
                new_connection(
                    step(Step::CheckBlob, "layer 1", 0, 0),
                    "https://registry.example/v2/probe/blobs/sha256:0123",
                    1_950_000_000,
                ),
                step(Step::StartUpload, "layer 1", 0, 0),
                // 5 MB/s: between the 4 MiB/s and 8 MiB/s buckets.
                step(Step::UploadBlob, "layer 1", 1_000_000, 0),
                step(Step::MountBlob, "layer 1", 0, 0),
                step(Step::PushManifest, "probe-0123", 500, 0),
                on(
                    "cache",
                    new_connection(
                        step(Step::WaitPropagation, "probe-0123", 0, 0),
                        "https://cache.example/v2/probe/manifests/probe-0123",
                        1_800_000_000,
                    ),
                ),
                step(Step::PullManifestByTag, "probe-0123", 0, 500),
                step(Step::PullBlob, "layer 1", 0, 1000),
                on("cache", step(Step::PullManifestByTag, "probe-0123", 0, 500)),
                on("cache", step(Step::PullBlob, "layer 1", 0, 1000)),
                step(Step::DeleteManifest, "sha256:abcd", 0, 0),
                step(Step::DeleteBlob, "layer 1", 0, 0),
            ],
        );
        report.propagation = vec![PropagationReport {
            path: "cache".into(),
            delay_seconds: Some(secs(1.5)),
        }];
        report.mount = Some(MountOutcome::Mounted);
        report.canaries = Some(CanarySummary {
            count: 3,
            oldest_pushed_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_000_000)),
        });
        report
    }

    /// Hand-built, not a real trace, of the large class: two sessions opened and one completed,
    /// the cancel of the other failed, a mount fell back to an upload, the cache never served
    /// the image, and a pulled blob does not hash to its digest.
    fn failed_run() -> RunReport {
        let mut report = run(
            "large",
            false,
            1_700_000_060,
            vec![
                step(Step::StartUpload, "config", 0, 0),
                step(Step::StartUpload, "layer 1", 0, 0),
                step(Step::UploadBlob, "config", 300, 0),
                // The registry answered the mount with 202; the prober uploaded instead.
                step(Step::MountBlob, "layer 1", 0, 0),
                step(Step::UploadBlob, "layer 1", 300, 0),
                step(Step::PushManifest, "probe-0123", 500, 0),
                on(
                    "cache",
                    failed(
                        step(Step::WaitPropagation, "probe-0123", 0, 0),
                        Reason::PropagationTimeout,
                    ),
                ),
                step(Step::PullManifestByTag, "probe-0123", 0, 500),
                failed(
                    step(Step::PullBlob, "layer 1", 0, 1000),
                    Reason::DigestMismatch,
                ),
                failed(step(Step::CancelUpload, "layer 1", 0, 0), Reason::Http5xx),
                step(Step::DeleteManifest, "sha256:abcd", 0, 0),
            ],
        );
        report.propagation = vec![PropagationReport {
            path: "cache".into(),
            delay_seconds: None,
        }];
        report.mount = Some(MountOutcome::Fallback);
        report
    }

    /// Every step each path of `t` can run, each on a new connection, every transfer a success,
    /// and everything a run of the first class reports when `full`.
    fn every_step_run(size_class: &str, paths: &[&str], full: bool) -> RunReport {
        let mut steps = Vec::new();
        for path in std::iter::once(ORIGIN).chain(paths.iter().copied()) {
            for s in Step::ALL
                .into_iter()
                .filter(|s| path == ORIGIN || runs_on_pull_paths(*s))
            {
                steps.push(on(
                    path,
                    new_connection(step(s, "x", 1000, 1000), "https://r.example/", 1),
                ));
            }
        }
        let mut report = run(size_class, true, 1_700_000_000, steps);
        report.propagation = paths
            .iter()
            .map(|p| PropagationReport {
                path: p.to_string(),
                delay_seconds: Some(secs(1.0)),
            })
            .collect();
        if full {
            report.mount = Some(MountOutcome::Mounted);
            report.canaries = Some(CanarySummary {
                count: 1,
                oldest_pushed_at: Some(SystemTime::UNIX_EPOCH),
            });
        }
        report
    }

    fn metrics(yaml: &str) -> (Registry, Metrics) {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        for target in targets(yaml) {
            metrics.init_target(&target);
        }
        (registry, metrics)
    }

    fn observed() -> String {
        let (registry, metrics) = metrics(FULL);
        metrics.observe_run(&successful_run());
        metrics.observe_run(&failed_run());
        metrics.run_started(TARGET, "small");
        metrics.run_started(TARGET, "small");
        metrics.run_finished(TARGET, "small");
        metrics.run_skipped(TARGET, "small", SkipCause::Overrun);
        metrics.run_skipped(TARGET, "large", SkipCause::RateLimited);
        metrics.run_skipped(TARGET, "large", SkipCause::RateLimited);
        metrics.observe_sweep(&SweepReport {
            target: TARGET.into(),
            tags_deleted: 2,
            sessions_cancelled: 1,
            errors: Vec::new(),
            steps: Vec::new(),
        });
        metrics.observe_sweep(&SweepReport {
            target: TARGET.into(),
            tags_deleted: 1,
            sessions_cancelled: 0,
            errors: vec!["delete_manifest (registry-prober-default-1-ab): http_5xx".into()],
            steps: Vec::new(),
        });
        metrics.schedule_lag(secs(0.003));
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

    #[track_caller]
    fn assert_absent(text: &str, prefixes: &[&str]) {
        let present: Vec<&str> = text
            .lines()
            .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
            .collect();
        assert!(present.is_empty(), "unexpected lines {present:#?}");
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
    fn counts_runs_per_size_class_and_failed_runs_by_their_first_failure() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
                r#"registry_prober_runs_total{target="t",size_class="small",result="failure"} 0"#,
                r#"registry_prober_runs_total{target="t",size_class="large",result="failure"} 1"#,
                r#"registry_prober_failures_total{target="t",size_class="large",reason="propagation_timeout"} 1"#,
                r#"registry_prober_failures_total{target="t",size_class="large",reason="digest_mismatch"} 0"#,
                r#"registry_prober_failures_total{target="t",size_class="small",reason="dns"} 0"#,
                r#"registry_prober_run_duration_seconds_count{target="t",size_class="small"} 1"#,
                r#"registry_prober_run_duration_seconds_sum{target="t",size_class="large"} 2.5"#,
                r#"registry_prober_last_run_timestamp_seconds{target="t",size_class="large"} 1700000062.5"#,
                r#"registry_prober_last_success_timestamp_seconds{target="t",size_class="small"} 1700000002.5"#,
                r#"registry_prober_target_interval_seconds{target="t",size_class="small"} 30.0"#,
                r#"registry_prober_target_interval_seconds{target="t",size_class="large"} 600.0"#,
            ],
        );
        assert_absent(
            &observed(),
            &[r#"registry_prober_last_success_timestamp_seconds{target="t",size_class="large"}"#],
        );
    }

    #[test]
    fn counts_steps_per_path_and_step_failures_by_step_and_reason() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_steps_total{target="t",path="origin",step="pull_blob",result="success"} 1"#,
                r#"registry_prober_steps_total{target="t",path="origin",step="pull_blob",result="failure"} 1"#,
                r#"registry_prober_steps_total{target="t",path="cache",step="pull_blob",result="success"} 1"#,
                r#"registry_prober_steps_total{target="t",path="cache",step="wait_propagation",result="success"} 1"#,
                r#"registry_prober_steps_total{target="t",path="cache",step="wait_propagation",result="failure"} 1"#,
                r#"registry_prober_steps_total{target="t",path="origin",step="start_upload",result="success"} 3"#,
                r#"registry_prober_steps_total{target="t",path="cache",step="pull_golden_blob",result="success"} 0"#,
                r#"registry_prober_step_failures_total{target="t",path="cache",step="wait_propagation",reason="propagation_timeout"} 1"#,
                r#"registry_prober_step_failures_total{target="t",path="origin",step="pull_blob",reason="digest_mismatch"} 1"#,
                r#"registry_prober_step_failures_total{target="t",path="origin",step="cancel_upload",reason="http_5xx"} 1"#,
                r#"registry_prober_cleanup_failures_total{target="t",step="cancel_upload"} 1"#,
                r#"registry_prober_cleanup_failures_total{target="t",step="delete_blob"} 0"#,
                r#"registry_prober_step_duration_seconds_count{target="t",path="origin",size_class="small",step="pull_blob"} 1"#,
                r#"registry_prober_step_duration_seconds_count{target="t",path="origin",size_class="large",step="pull_blob"} 1"#,
                r#"registry_prober_step_duration_seconds_bucket{le="0.256",target="t",path="cache",size_class="small",step="pull_blob"} 1"#,
                r#"registry_prober_step_duration_seconds_bucket{le="0.128",target="t",path="cache",size_class="small",step="pull_blob"} 0"#,
            ],
        );
    }

    #[test]
    fn pre_creates_on_pull_paths_only_the_steps_they_run() {
        let (registry, _metrics) = metrics(FULL);
        let text = encode(&registry);
        assert_lines(
            &text,
            &[
                r#"registry_prober_steps_total{target="t",path="cache",step="token",result="failure"} 0"#,
                r#"registry_prober_steps_total{target="t",path="cache",step="head_blob",result="failure"} 0"#,
                r#"registry_prober_steps_total{target="t",path="origin",step="list_tags",result="success"} 0"#,
                r#"registry_prober_bytes_total{target="t",path="cache",direction="pull"} 0"#,
                r#"registry_prober_http_requests_total{target="t",path="cache",connection="new"} 0"#,
                r#"registry_prober_blob_mounts_total{target="t",outcome="fallback"} 0"#,
                r#"registry_prober_canaries{target="t"} 0"#,
                r#"registry_prober_skipped_runs_total{target="t",size_class="large",cause="rate_limited"} 0"#,
                r#"registry_prober_runs_in_flight{target="t",size_class="large"} 0"#,
            ],
        );
        assert_absent(
            &text,
            &[
                r#"registry_prober_steps_total{target="t",path="cache",step="upload_blob""#,
                r#"registry_prober_steps_total{target="t",path="cache",step="list_tags""#,
                r#"registry_prober_steps_total{target="t",path="cache",step="delete_manifest""#,
                r#"registry_prober_bytes_total{target="t",path="cache",direction="push"}"#,
                "registry_prober_canary_oldest_push_timestamp_seconds{",
            ],
        );
        // Without mount and canaries configured, their series do not exist.
        let (registry, _metrics) = metrics(PLAIN);
        assert_absent(
            &encode(&registry),
            &[
                "registry_prober_blob_mounts_total{",
                "registry_prober_canaries{",
            ],
        );
    }

    #[test]
    fn counts_upload_sessions_left_open_as_abandoned() {
        assert_lines(
            &observed(),
            &[
                // 1 + 2 started, 1 opened by the mount that fell back.
                r#"registry_prober_upload_sessions_total{target="t",outcome="opened"} 4"#,
                r#"registry_prober_upload_sessions_total{target="t",outcome="completed"} 3"#,
                r#"registry_prober_upload_sessions_total{target="t",outcome="cancelled"} 0"#,
                r#"registry_prober_upload_sessions_total{target="t",outcome="abandoned"} 1"#,
            ],
        );
    }

    #[test]
    fn counts_bytes_and_http_exchanges_per_path() {
        assert_lines(
            &observed(),
            &[
                // push: 1000000 + 500 (first run) + 300 + 300 + 500 (second); the token's 700 is
                // neither.
                r#"registry_prober_bytes_total{target="t",path="origin",direction="push"} 1001600"#,
                // pull: 500 + 1000 (first run) + 500 + 1000 (second, the corrupt blob too).
                r#"registry_prober_bytes_total{target="t",path="origin",direction="pull"} 3000"#,
                r#"registry_prober_bytes_total{target="t",path="cache",direction="pull"} 1500"#,
                r#"registry_prober_http_requests_total{target="t",path="origin",connection="new"} 2"#,
                r#"registry_prober_http_requests_total{target="t",path="origin",connection="reused"} 18"#,
                r#"registry_prober_http_requests_total{target="t",path="cache",connection="new"} 1"#,
                r#"registry_prober_http_requests_total{target="t",path="cache",connection="reused"} 3"#,
                r#"registry_prober_http_phase_duration_seconds_count{target="t",path="origin",phase="dns"} 2"#,
                r#"registry_prober_http_phase_duration_seconds_count{target="t",path="cache",phase="tls"} 1"#,
                r#"registry_prober_http_phase_duration_seconds_count{target="t",path="origin",phase="first_byte"} 20"#,
                r#"registry_prober_http_phase_duration_seconds_bucket{le="0.0032",target="t",path="origin",phase="connect"} 2"#,
                r#"registry_prober_http_phase_duration_seconds_bucket{le="0.0016",target="t",path="origin",phase="connect"} 0"#,
            ],
        );
    }

    #[test]
    fn observes_the_throughput_of_successful_blob_transfers_only() {
        let text = observed();
        assert_lines(
            &text,
            &[
                r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="origin",size_class="small",direction="push"} 1"#,
                r#"registry_prober_blob_throughput_bytes_per_second_sum{target="t",path="origin",size_class="small",direction="push"} 5000000.0"#,
                r#"registry_prober_blob_throughput_bytes_per_second_bucket{le="4194304.0",target="t",path="origin",size_class="small",direction="push"} 0"#,
                r#"registry_prober_blob_throughput_bytes_per_second_bucket{le="8388608.0",target="t",path="origin",size_class="small",direction="push"} 1"#,
                r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="cache",size_class="small",direction="pull"} 1"#,
                r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="origin",size_class="large",direction="push"} 2"#,
            ],
        );
        // The large class's only blob pull failed (digest mismatch).
        assert_absent(
            &text,
            &[
                r#"registry_prober_blob_throughput_bytes_per_second_count{target="t",path="origin",size_class="large",direction="pull"}"#,
            ],
        );
    }

    #[test]
    fn observes_propagation_delays_of_paths_that_served_the_image_in_time() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_propagation_delay_seconds_count{target="t",path="cache"} 1"#,
                r#"registry_prober_propagation_delay_seconds_sum{target="t",path="cache"} 1.5"#,
                r#"registry_prober_propagation_delay_seconds_bucket{le="1.6",target="t",path="cache"} 1"#,
                r#"registry_prober_propagation_delay_seconds_bucket{le="0.8",target="t",path="cache"} 0"#,
            ],
        );
    }

    #[test]
    fn keeps_the_earliest_certificate_expiry_of_the_run_per_path() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="origin"} 1900000000.0"#,
                r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="cache"} 1800000000.0"#,
            ],
        );
    }

    #[test]
    fn counts_mounts_and_tracks_canaries_until_none_is_left() {
        let (registry, metrics) = metrics(FULL);
        metrics.observe_run(&successful_run());
        metrics.observe_run(&failed_run());
        assert_lines(
            &encode(&registry),
            &[
                r#"registry_prober_blob_mounts_total{target="t",outcome="mounted"} 1"#,
                r#"registry_prober_blob_mounts_total{target="t",outcome="fallback"} 1"#,
                r#"registry_prober_canaries{target="t"} 3"#,
                r#"registry_prober_canary_oldest_push_timestamp_seconds{target="t"} 1699000000.0"#,
            ],
        );

        let mut gone = successful_run();
        gone.canaries = Some(CanarySummary {
            count: 0,
            oldest_pushed_at: None,
        });
        metrics.observe_run(&gone);
        let text = encode(&registry);
        assert_lines(&text, &[r#"registry_prober_canaries{target="t"} 0"#]);
        assert_absent(
            &text,
            &["registry_prober_canary_oldest_push_timestamp_seconds{"],
        );
    }

    #[test]
    fn counts_sweeps_by_result_and_swept_objects_by_kind() {
        assert_lines(
            &observed(),
            &[
                r#"registry_prober_sweeps_total{target="t",result="success"} 1"#,
                r#"registry_prober_sweeps_total{target="t",result="failure"} 1"#,
                r#"registry_prober_swept_objects_total{target="t",kind="tag"} 3"#,
                r#"registry_prober_swept_objects_total{target="t",kind="upload_session"} 1"#,
            ],
        );
    }

    #[test]
    fn tracks_skips_by_cause_runs_in_flight_schedule_lag_reloads_and_targets() {
        let text = observed();
        assert_lines(
            &text,
            &[
                r#"registry_prober_runs_in_flight{target="t",size_class="small"} 1"#,
                r#"registry_prober_runs_in_flight{target="t",size_class="large"} 0"#,
                r#"registry_prober_skipped_runs_total{target="t",size_class="small",cause="overrun"} 1"#,
                r#"registry_prober_skipped_runs_total{target="t",size_class="small",cause="rate_limited"} 0"#,
                r#"registry_prober_skipped_runs_total{target="t",size_class="large",cause="rate_limited"} 2"#,
                "registry_prober_schedule_lag_seconds_count 1",
                r#"registry_prober_schedule_lag_seconds_bucket{le="0.004"} 1"#,
                r#"registry_prober_schedule_lag_seconds_bucket{le="0.002"} 0"#,
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
        let (registry, _metrics) = metrics(FULL);
        assert_absent(
            &encode(&registry),
            &[
                "registry_prober_last_success_timestamp_seconds{",
                "registry_prober_last_run_timestamp_seconds{",
                "registry_prober_tls_certificate_expiry_timestamp_seconds{",
                "registry_prober_canary_oldest_push_timestamp_seconds{",
            ],
        );
    }

    #[test]
    fn the_gzipped_text_is_the_text() {
        use std::io::Read as _;
        let (registry, metrics) = metrics(FULL);
        metrics.observe_run(&successful_run());
        metrics.observe_run(&failed_run());
        for format in [Format::OpenMetrics, Format::Text] {
            let mut unzipped = String::new();
            flate2::read::GzDecoder::new(&encode_gzip(&registry, format)[..])
                .read_to_string(&mut unzipped)
                .expect("valid gzip");
            assert_eq!(unzipped, encode_as(&registry, format), "{format:?}");
        }
        assert!(encode_as(&registry, Format::Text)
            .contains("# TYPE registry_prober_runs_total counter\n"));
    }

    #[test]
    fn a_new_target_has_85_series_and_an_observed_one_at_most_641_plus_step_failures() {
        let (registry, _metrics) = metrics(PLAIN);
        assert_eq!(series_of(&encode(&registry), TARGET).len(), 85);

        // Every step, every phase, every transfer, no step failure: the most a target with one
        // size class and no pull path gets without them.
        let (registry, metrics) = metrics(PLAIN);
        metrics.observe_run(&every_step_run("default", &[], false));
        assert_eq!(series_of(&encode(&registry), TARGET).len(), 641);
    }

    #[test]
    fn series_grow_with_size_classes_and_paths_as_documented() {
        // docs/metrics.md: pre-created 53 + 32 C + 23 P (+2 mount, +1 canaries); at most
        // 164 + 477 C + 151 P + 222 C P (+2 mount, +2 canaries) without step failures.
        let (c, p) = (2, 1);
        let (registry, metrics) = metrics(FULL);
        assert_eq!(
            series_of(&encode(&registry), TARGET).len(),
            53 + 32 * c + 23 * p + 2 + 1
        );
        metrics.observe_run(&every_step_run("small", &["cache"], true));
        metrics.observe_run(&every_step_run("large", &["cache"], false));
        assert_eq!(
            series_of(&encode(&registry), TARGET).len(),
            164 + 477 * c + 151 * p + 222 * c * p + 2 + 2
        );
    }

    #[test]
    fn a_reload_removes_the_series_of_what_is_no_longer_configured_and_keeps_the_rest() {
        let two_targets = format!(
            "{FULL}{}",
            r#"
  - name: u
    registry: https://other.example
    repository: probe/prober
"#
        );
        let (registry, metrics) = metrics(&two_targets);
        metrics.observe_run(&successful_run());
        metrics.observe_run(&failed_run());
        let mut other = successful_run();
        other.target = "u".into();
        other.size_class = "default".into();
        other.steps.retain(|s| s.path == ORIGIN);
        other.propagation.clear();
        other.mount = None;
        other.canaries = None;
        metrics.observe_run(&other);
        metrics.observe_sweep(&SweepReport {
            target: "u".into(),
            tags_deleted: 1,
            sessions_cancelled: 0,
            errors: Vec::new(),
            steps: Vec::new(),
        });
        assert!(!series_of(&encode(&registry), "u").is_empty());

        // `u` is gone; `t` keeps its class `small` but loses `large`, the cache, mounts and
        // canaries.
        let kept = targets(
            r#"
targets:
  - name: t
    registry: https://registry.example
    repository: probe/prober
    sizes:
      - class: small
        layer_sizes: [4KiB]
"#,
        );
        metrics.retain_targets(&kept);
        for target in &kept {
            metrics.init_target(target);
        }
        let text = encode(&registry);
        assert_eq!(series_of(&text, "u"), Vec::<&str>::new());
        for gone in [
            r#"size_class="large""#,
            r#"path="cache""#,
            "registry_prober_blob_mounts_total{",
            "registry_prober_canaries{",
            "registry_prober_canary_oldest_push_timestamp_seconds{",
        ] {
            let left: Vec<&str> = series_of(&text, TARGET)
                .into_iter()
                .filter(|l| l.contains(gone))
                .collect();
            assert!(left.is_empty(), "{gone} left {left:#?}");
        }
        assert_lines(
            &text,
            &[
                r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
                r#"registry_prober_steps_total{target="t",path="origin",step="start_upload",result="success"} 3"#,
                r#"registry_prober_bytes_total{target="t",path="origin",direction="push"} 1001600"#,
                r#"registry_prober_run_duration_seconds_count{target="t",size_class="small"} 1"#,
                r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="origin"} 1900000000.0"#,
            ],
        );

        // Configured again, a removed target starts from zero.
        for target in targets(&two_targets) {
            metrics.init_target(&target);
        }
        assert_lines(
            &encode(&registry),
            &[
                r#"registry_prober_runs_total{target="u",size_class="default",result="success"} 0"#,
                r#"registry_prober_sweeps_total{target="u",result="success"} 0"#,
                r#"registry_prober_runs_total{target="t",size_class="large",result="failure"} 0"#,
                r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
            ],
        );

        metrics.retain_targets(&[]);
        assert_eq!(series_of(&encode(&registry), TARGET), Vec::<&str>::new());
    }

    #[test]
    fn no_label_value_is_a_digest_a_url_or_a_path() {
        let text = observed();
        let values = label_values(&text);
        assert!(values.contains(&"digest_mismatch"), "parsed {values:?}");
        assert!(values.contains(&"cache"), "parsed {values:?}");
        for value in values {
            assert!(
                !value.contains("sha256:") && !value.contains("://") && !value.contains('/'),
                "label value {value:?} in\n{text}"
            );
        }
    }

    #[test]
    fn docs_quote_every_help_text_and_list_every_family_and_label_value() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
        let docs = std::fs::read_to_string(path).expect("docs/metrics.md exists");
        let text = observed();
        let helps: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP "))
            .collect();
        assert_eq!(helps.len(), 31);
        for help in helps {
            let (name, help) = help.split_once(' ').expect("HELP name text");
            let help = help.trim_end_matches('.');
            assert!(
                docs.contains(help),
                "docs/metrics.md lacks the help of {name}: {help:?}"
            );
        }
        // Under the name one queries: a counter's samples end in `_total`.
        for family in to_prometheus_text(&text)
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' ').map(|(name, _)| name))
        {
            assert!(
                docs.contains(&format!("`{family}`")),
                "docs/metrics.md does not list `{family}`"
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
            .chain(SkipCause::ALL.map(SkipCause::as_str))
            .chain(SweptKind::ALL.map(SweptKind::as_str))
            .chain(Mount::ALL.map(Mount::as_str))
            .chain([ORIGIN, crate::config::DEFAULT_SIZE_CLASS])
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
