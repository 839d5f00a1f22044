//! No false pages: the prober service probes a healthy real registry (Debian's docker-registry)
//! through the fault proxy, scraped by a real Prometheus that evaluates the repository's alert
//! rules ([`super::rules`]) and sends to a real Alertmanager with its default timings and a
//! webhook receiver, while about 2% of the runs each meet one transient fault (a reset, a 503, a
//! slow drip): the soak picks the run, arms a one-shot proxy rule before it starts and records
//! what the run made of it. [`report`] lists every notification and fails on a critical one.
//!
//! `Speed` divides every production duration (prober intervals and timeouts, scrape and
//! evaluation, Alertmanager's timings, the rules' windows and `for`) by one factor: 1 is
//! production (the shipped rules unchanged), 10 the test suite's short version.

mod report;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;

pub use report::report;

use super::accounting::{self, Series};
use super::faults::{transient, Transient};
use super::rules::{self, LoadedAlert};
use super::{ms, sampler};
use crate::alertmanager::{Alertmanager, Timings};
use crate::fault_proxy::{FaultProxy, Rule};
use crate::prometheus::{samples, Answer, Prometheus, PrometheusOptions, ScrapeJob};
use crate::service::Service;
use crate::webhook::Webhook;
use crate::{Registry, RegistryOptions};

/// The scrape job the shipped rules select.
const JOB: &str = "registry-prober";
const INSTANCE: &str = "soak";
const GOLDEN_REPO: &str = "golden/base";
/// The share of runs that meet a transient fault.
const FAULT_SHARE: f64 = 0.02;
/// Runs of each target before the first fault may come.
const QUIET_RUNS: u64 = 3;

/// A target at production speed.
struct Plan {
    name: &'static str,
    repo: &'static str,
    interval: u64,
    timeout: u64,
    /// The rest of its config (`@GOLDEN@`: the golden image).
    rest: &'static str,
}

const TARGETS: [Plan; 3] = [
    Plan {
        name: "oci",
        repo: "soak/oci",
        interval: 30,
        timeout: 25,
        rest: "    image: {layer_sizes: [4KiB, 64KiB, 1MiB]}\n    golden_images: [\"@GOLDEN@\"]\n    canaries: {enabled: true, every: 24h, keep: 2, layer_sizes: [4KiB, 8KiB]}\n",
    },
    Plan {
        name: "docker",
        repo: "soak/docker",
        interval: 15,
        timeout: 12,
        rest: "    manifest_type: docker\n    image: {layer_sizes: [4KiB, 256KiB]}\n    upload: {mode: chunked, chunk_size: 64KiB}\n",
    },
    Plan {
        name: "mono",
        repo: "soak/mono",
        interval: 15,
        timeout: 12,
        rest: "    image: {layer_sizes: [16KiB]}\n    upload: {mode: monolithic}\n",
    },
];

/// How fast and how long: every production duration is divided by `factor`.
#[derive(Debug, Clone, Copy)]
pub struct Speed {
    pub factor: u32,
    pub duration: Duration,
}

impl Speed {
    fn scaled(&self, production: Duration) -> Duration {
        production / self.factor
    }

    fn secs(&self, production_secs: u64) -> Duration {
        self.scaled(Duration::from_secs(production_secs))
    }

    fn poll(&self) -> Duration {
        Duration::from_millis(if self.factor > 1 { 200 } else { 500 })
    }
}

/// One planned transient fault and what became of it.
#[derive(Debug)]
struct Injection {
    target: &'static str,
    kind: Transient,
    rule: Rule,
    what: String,
    /// Armed once the target has finished this many runs: the next run meets it.
    after_runs: u64,
    armed: bool,
    hit: Option<Hit>,
    outcome: Option<Ended>,
}

/// When the fault acted, and the target's counts just before.
#[derive(Debug, Clone)]
struct Hit {
    at: Duration,
    wall: SystemTime,
    counts: Counts,
}

#[derive(Debug, Clone)]
struct Ended {
    at: Duration,
    wall: SystemTime,
    failed: bool,
    /// `step/reason +n` of the failures the run added.
    steps: Vec<String>,
}

/// Finished and failed runs of a target, and its step failures by `step/reason`.
#[derive(Debug, Clone, Default)]
struct Counts {
    finished: f64,
    failed: f64,
    steps: BTreeMap<String, f64>,
}

impl Counts {
    fn of(series: &[Series], target: &str) -> Counts {
        Counts {
            finished: accounting::sum(series, "registry_prober_runs_total", &[("target", target)]),
            failed: accounting::sum(
                series,
                "registry_prober_runs_total",
                &[("target", target), ("result", "failure")],
            ),
            steps: series
                .iter()
                .filter(|s| {
                    s.name == "registry_prober_step_failures_total" && s.label("target") == target
                })
                .map(|s| {
                    (
                        format!("{}/{}", s.label("step"), s.label("reason")),
                        s.value,
                    )
                })
                .collect(),
        }
    }

    /// The step failures added since `before`.
    fn added_since(&self, before: &Counts) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|(k, v)| {
                let was = before.steps.get(k).copied().unwrap_or(0.0);
                (*v > was).then(|| format!("{k} +{}", v - was))
            })
            .collect()
    }
}

/// The chain: registry <- fault proxy <- prober <- Prometheus -> Alertmanager -> webhook.
pub struct Chain {
    webhook: Webhook,
    _alertmanager: Alertmanager,
    prometheus: Prometheus,
    prober: Service,
    proxy: FaultProxy,
    _registry: Registry,
    loaded: Vec<LoadedAlert>,
    rules: PathBuf,
    _rules_dir: tempfile::TempDir,
}

fn prober_config(speed: &Speed, registry: &str, golden: &str) -> String {
    let mut y = format!(
        "instance: {INSTANCE}\ndefaults: {{cleanup_timeout: {}}}\ntargets:\n",
        ms(speed.secs(10))
    );
    for t in &TARGETS {
        let _ = write!(
            y,
            "  - name: {}\n    registry: \"{registry}\"\n    repository: {}\n    interval: {}\n    timeout: {}\n    hygiene: {{interval: {}}}\n{}",
            t.name,
            t.repo,
            ms(speed.secs(t.interval)),
            ms(speed.secs(t.timeout)),
            ms(speed.secs(3600)),
            t.rest.replace("@GOLDEN@", golden)
        );
    }
    y
}

impl Chain {
    fn start(speed: &Speed) -> anyhow::Result<Chain> {
        let registry = Registry::start(RegistryOptions::default())?;
        let golden = super::push_golden(&registry, GOLDEN_REPO)?;
        let proxy = FaultProxy::start(&registry.url())?;
        let rules_dir = tempfile::Builder::new().prefix("soak-rules-").tempdir()?;
        let rules = rules::for_factor(rules_dir.path(), speed.factor)?;
        let webhook = Webhook::start()?;
        let p = Timings::production();
        let alertmanager = Alertmanager::start_with(
            &webhook.url(),
            &Timings {
                group_wait: speed.scaled(p.group_wait),
                group_interval: speed.scaled(p.group_interval),
                repeat_interval: speed.scaled(p.repeat_interval),
            },
        )?;
        let prober = Service::start(&prober_config(speed, &proxy.url(), &golden))?;
        let address = prober.url().trim_start_matches("http://").to_string();
        let prometheus = Prometheus::start_with(
            &[ScrapeJob::new(JOB, &address)],
            &PrometheusOptions {
                rule_files: vec![rules.clone()],
                alertmanagers: vec![alertmanager.host_port()],
                scrape_interval: Some(speed.secs(15)),
                evaluation_interval: Some(speed.secs(15)),
            },
        )?;
        let loaded = wait_for_rules(&prometheus)?;
        Ok(Chain {
            webhook,
            _alertmanager: alertmanager,
            prometheus,
            prober,
            proxy,
            _registry: registry,
            loaded,
            rules,
            _rules_dir: rules_dir,
        })
    }

    fn metrics(&self) -> anyhow::Result<Vec<Series>> {
        Ok(accounting::parse(&self.prober.metrics()?))
    }
}

/// The alerting rules once Prometheus has loaded them.
fn wait_for_rules(prometheus: &Prometheus) -> anyhow::Result<Vec<LoadedAlert>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Answer::Data(data)) = prometheus.rules() {
            let loaded = rules::loaded_alerts(&data);
            if !loaded.is_empty() {
                return Ok(loaded);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Prometheus loaded no alerting rule:\n{}",
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The plan: ~FAULT_SHARE of the runs expected over the soak (one of each kind at least),
/// each a run of a random target after its quiet runs, kinds in turn.
fn plan(speed: &Speed, rng: &mut rand::rngs::StdRng) -> Vec<Injection> {
    let runs_of =
        |t: &Plan| (speed.duration.as_secs_f64() / speed.secs(t.interval).as_secs_f64()) as u64;
    let mut runs: Vec<(usize, u64)> = Vec::new();
    for (i, t) in TARGETS.iter().enumerate() {
        runs.extend((QUIET_RUNS..runs_of(t).saturating_sub(2)).map(|r| (i, r)));
    }
    let expected: u64 = TARGETS.iter().map(runs_of).sum();
    let count = ((expected as f64 * FAULT_SHARE).round() as usize).max(Transient::ALL.len());
    runs.shuffle(rng);
    let mut chosen: Vec<(usize, u64)> = runs.into_iter().take(count).collect();
    // In time order (a run of every target takes about the same share of the soak).
    chosen.sort_by(|a, b| {
        let at = |&(t, r): &(usize, u64)| r as f64 * TARGETS[t].interval as f64;
        at(a).total_cmp(&at(b))
    });
    chosen
        .into_iter()
        .enumerate()
        .map(|(n, (t, after_runs))| {
            let target = &TARGETS[t];
            let kind = Transient::ALL[n % Transient::ALL.len()];
            let name = format!("fault-{n}-{}-{}", kind.name(), target.name);
            let (rule, what) = transient(kind, target.repo, speed.secs(target.timeout), rng, &name);
            Injection {
                target: target.name,
                kind,
                rule,
                what,
                after_runs,
                armed: false,
                hit: None,
                outcome: None,
            }
        })
        .collect()
}

/// What the soak saw.
pub struct Soak {
    speed: Speed,
    seed: u64,
    chain: Chain,
    injections: Vec<Injection>,
    samples: Vec<sampler::Sample>,
    started: Instant,
    started_wall: SystemTime,
    settle: Duration,
}

/// One look at the prober's metrics.
struct Snapshot {
    at: Instant,
    series: Vec<Series>,
}

/// Runs the soak for `speed.duration`, then lets the alerts pending at the end run their `for`.
pub fn run(speed: Speed, seed: u64) -> anyhow::Result<Soak> {
    eprintln!(
        "soak-false-pages: seed {seed}, {:?} at 1/{} speed",
        speed.duration, speed.factor
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let chain = Chain::start(&speed)?;
    let mut injections = plan(&speed, &mut rng);
    let pid = chain.prober.pid().unwrap_or_default();
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut samples = Vec::new();
    let mut next_sample = started;
    let every = speed.secs(10).max(Duration::from_secs(1));
    let mut prev: Option<Snapshot> = None;
    while started.elapsed() < speed.duration {
        let cur = Snapshot {
            at: Instant::now(),
            series: chain.metrics()?,
        };
        let faulted = chain.proxy.faulted();
        for inj in injections.iter_mut() {
            let counts = Counts::of(&cur.series, inj.target);
            if !inj.armed {
                if counts.finished >= inj.after_runs as f64 {
                    chain.proxy.add_rule(inj.rule.clone());
                    inj.armed = true;
                }
            } else if inj.hit.is_none() {
                let Some(f) = faulted.iter().find(|f| f.rule == inj.rule.name) else {
                    continue;
                };
                // The target's counts just before the fault: its run is the next to end.
                let before = [prev.as_ref(), Some(&cur)]
                    .into_iter()
                    .flatten()
                    .rfind(|s| s.at < f.at)
                    .map_or_else(|| counts.clone(), |s| Counts::of(&s.series, inj.target));
                inj.hit = Some(Hit {
                    at: f.at.saturating_duration_since(started),
                    wall: SystemTime::now() - f.at.elapsed(),
                    counts: before,
                });
            }
            if let (Some(hit), None) = (&inj.hit, &inj.outcome) {
                if counts.finished > hit.counts.finished {
                    inj.outcome = Some(Ended {
                        at: started.elapsed(),
                        wall: SystemTime::now(),
                        failed: counts.failed > hit.counts.failed,
                        steps: counts.added_since(&hit.counts),
                    });
                }
            }
        }
        prev = Some(cur);
        if Instant::now() >= next_sample {
            let sample = sampler::sample(pid, started.elapsed())?;
            if samples.len().is_multiple_of(30) {
                eprintln!(
                    "soak-false-pages: {:?} in: {} faults met, {} notifications, RSS {} KiB, load {:.1}",
                    started.elapsed(),
                    injections.iter().filter(|i| i.hit.is_some()).count(),
                    chain.webhook.alerts().len(),
                    sample.rss_kib,
                    sample.load1
                );
            }
            samples.push(sample);
            next_sample += every;
        }
        std::thread::sleep(speed.poll());
    }
    chain.proxy.clear_rules();
    // What the last faults started may still fire: wait out the longest `for` of the alerts
    // pending now, two evaluations and group_wait.
    let pending = pending_alerts(&chain.prometheus);
    let pending_for = chain
        .loaded
        .iter()
        .filter(|a| pending.contains(&a.name))
        .map(|a| a.for_seconds)
        .fold(0.0, f64::max);
    let settle = Duration::from_secs_f64(pending_for)
        + speed.secs(15) * 2
        + speed.scaled(Timings::production().group_wait)
        + Duration::from_secs(1);
    eprintln!("soak-false-pages: settling {settle:?} (pending now: {pending:?})");
    std::thread::sleep(settle);
    samples.push(sampler::sample(pid, started.elapsed())?);
    Ok(Soak {
        speed,
        seed,
        chain,
        injections,
        samples,
        started,
        started_wall,
        settle,
    })
}

/// Names of the alerts pending in Prometheus now.
fn pending_alerts(prometheus: &Prometheus) -> Vec<String> {
    match prometheus.query("ALERTS{alertstate=\"pending\"}") {
        Ok(Answer::Data(d)) => samples(&d)
            .into_iter()
            .filter_map(|(l, _)| l.get("alertname")?.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}
