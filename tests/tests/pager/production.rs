//! Page time at production settings: the shipped rules as `mixin/build` renders them
//! (alerts/registry-prober.rules.yml, or the file in $PAGE_TIME_RULES) loaded unchanged, the
//! prober's defaults (image, timeout, canaries) at each interval of $PAGE_TIME_INTERVALS (30 s
//! and 15 s), Prometheus scraping and evaluating every 15 s, and Alertmanager routing as
//! alerts/alertmanager.example.yml does (group_by [alertname, location, target], group_wait
//! 30s, group_interval 5m, its inhibitions) with its receivers on the test's webhook.
//!
//! Each trial is a fresh chain: one rule window of healthy history (15 min by default, so the
//! ratio rules start from a steady state), the fault, then a fixed observation window in which
//! every notification is recorded. The trials run concurrently (each has its own servers on free
//! ports and mostly waits), with the machine's load average sampled throughout. Prints a
//! markdown table: seconds from the fault to each page at the webhook (median, min-max) against
//! the floor (runs the rule needs x interval + scrape + evaluation + group_wait + `for`).

use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;

/// The production-like prober config: the defaults but for the interval; a golden image and
/// canaries so old content is checked.
const PRODUCTION_CONFIG: &str = r#"defaults: {interval: @INTERVAL@@CONFIRMATIONS@}
targets:
  - name: pager
    registry: "@REGISTRY@"
    allow_plain_http: @PLAIN_HTTP@
    repository: registry-prober/probe
    golden_images: ["@GOLDEN@"]
    canaries:
      enabled: true
"#;

/// The faults measured, in table order.
const FAULTS: [Fault; 6] = [
    Fault::RegistryStopped,
    Fault::UploadsUnwritable,
    Fault::GoldenBlobCorrupted,
    Fault::GoldenBlobDeleted,
    Fault::DnsFailing,
    Fault::Intermittent,
];

/// What the measurement is run with; each from its environment variable, else the default.
#[derive(Debug, Clone)]
struct Plan {
    /// $PAGE_TIME_INTERVALS, seconds, comma-separated: 30,15.
    intervals: Vec<Duration>,
    /// $PAGE_TIME_REPEATS: 3 trials per fault and interval.
    repeats: usize,
    /// $PAGE_TIME_FAULTS: keys of [`Fault::key`], comma-separated; all of [`FAULTS`].
    faults: Vec<Fault>,
    /// $PAGE_TIME_SCRAPE_SECONDS: scrape and evaluation interval, 15.
    scrape: Duration,
    /// $PAGE_TIME_WARMUP_SECONDS: healthy history before the fault, 900 (the rules' 15m window).
    warmup: Duration,
    /// $PAGE_TIME_OBSERVE_SECONDS: how long each trial listens after the fault, 1200.
    observe: Duration,
    /// $PAGE_TIME_CONCURRENCY: trials at once; all of them.
    concurrency: usize,
    /// $PAGE_TIME_RULES: the rules file; alerts/registry-prober.rules.yml.
    rules: PathBuf,
    /// $PAGE_TIME_CONFIRMATION_RUNS: the prober's `confirmation_runs`; its default (2) when
    /// unset. The delay is always the default: 5 s, or a fifth of a shorter interval.
    confirmation_runs: Option<u32>,
    /// $PAGE_TIME_ALERTMANAGER: the Alertmanager config whose routing is used;
    /// alerts/alertmanager.example.yml.
    alertmanager: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} cannot be parsed")),
        Err(_) => default,
    }
}

impl Plan {
    fn from_env() -> Plan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let intervals: Vec<Duration> = env_or("PAGE_TIME_INTERVALS", "30,15".to_string())
            .split(',')
            .map(|s| {
                Duration::from_secs(
                    s.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("PAGE_TIME_INTERVALS: {s:?} is not seconds")),
                )
            })
            .collect();
        let faults: Vec<Fault> = match std::env::var("PAGE_TIME_FAULTS") {
            Ok(v) => v
                .split(',')
                .map(|k| {
                    FAULTS
                        .into_iter()
                        .find(|f| f.key() == k.trim())
                        .unwrap_or_else(|| {
                            panic!(
                                "PAGE_TIME_FAULTS: {k:?} is none of {:?}",
                                FAULTS.map(Fault::key)
                            )
                        })
                })
                .collect(),
            Err(_) => FAULTS.to_vec(),
        };
        let repeats: usize = env_or("PAGE_TIME_REPEATS", 3);
        assert!(repeats >= 1, "PAGE_TIME_REPEATS must be at least 1");
        let trials = intervals.len() * faults.len() * repeats;
        Plan {
            intervals,
            repeats,
            faults,
            scrape: Duration::from_secs(env_or("PAGE_TIME_SCRAPE_SECONDS", 15)),
            warmup: Duration::from_secs(env_or("PAGE_TIME_WARMUP_SECONDS", 900)),
            observe: Duration::from_secs(env_or("PAGE_TIME_OBSERVE_SECONDS", 1200)),
            concurrency: env_or("PAGE_TIME_CONCURRENCY", trials).max(1),
            rules: std::env::var_os("PAGE_TIME_RULES").map_or_else(
                || root.join("alerts/registry-prober.rules.yml"),
                PathBuf::from,
            ),
            confirmation_runs: std::env::var("PAGE_TIME_CONFIRMATION_RUNS").ok().map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("PAGE_TIME_CONFIRMATION_RUNS={v:?} is not a count"))
            }),
            alertmanager: std::env::var_os("PAGE_TIME_ALERTMANAGER").map_or_else(
                || root.join("alerts/alertmanager.example.yml"),
                PathBuf::from,
            ),
        }
    }

    fn settings(&self, interval: Duration) -> Settings {
        let example = &self.alertmanager;
        Settings {
            prober_config: PRODUCTION_CONFIG
                .replace("@INTERVAL@", &format!("{}s", interval.as_secs()))
                .replace(
                    "@CONFIRMATIONS@",
                    &self
                        .confirmation_runs
                        .map_or(String::new(), |n| format!(", confirmation_runs: {n}")),
                ),
            confirmation_runs: self.confirmation_runs.unwrap_or(DEFAULT_CONFIRMATION_RUNS),
            interval,
            scrape: self.scrape,
            evaluation: self.scrape,
            rules: RulesSource::File(self.rules.clone()),
            routing: Routing::Config(
                std::fs::read_to_string(example)
                    .unwrap_or_else(|e| panic!("{}: {e}", example.display())),
            ),
            warmup_scrapes: u32::try_from(self.warmup.as_secs() / self.scrape.as_secs().max(1))
                .unwrap_or(u32::MAX)
                + 1,
        }
    }
}

impl Fault {
    /// The fault's name in $PAGE_TIME_FAULTS.
    fn key(self) -> &'static str {
        match self {
            Fault::RegistryStopped => "registry_stopped",
            Fault::UploadsUnwritable => "uploads_unwritable",
            Fault::GoldenBlobCorrupted => "golden_blob_corrupted",
            Fault::GoldenBlobDeleted => "golden_blob_deleted",
            Fault::CanaryBlobDeleted => "canary_blob_deleted",
            Fault::DnsFailing => "dns_failing",
            Fault::Intermittent => "intermittent",
        }
    }
}

/// An alert as the table names it: its name and the labels that tell its instances apart.
fn page_name(a: &ReceivedAlert) -> String {
    let labels: Vec<String> = ["path", "step", "reason"]
        .iter()
        .filter(|k| !a.label(k).is_empty())
        .map(|k| format!("{k}={}", a.label(k)))
        .collect();
    if labels.is_empty() {
        a.name.clone()
    } else {
        format!("{}{{{}}}", a.name, labels.join(", "))
    }
}

/// One fault on one fresh chain.
struct Trial {
    fault: Fault,
    interval: Duration,
    rep: usize,
}

/// What a trial saw.
struct TrialResult {
    /// Every firing notification after the fault: (page name, severity, delay), first arrival
    /// of each page name only.
    pages: Vec<(String, String, Duration)>,
    /// Problems: pages before the fault, misdiagnoses, a lasting fault without a critical page.
    problems: Vec<String>,
    /// Runs after the fault: (failed, all).
    runs_after: (f64, f64),
    /// `step/reason xN` of the failed steps over the whole trial.
    failed_steps: Vec<String>,
    /// Floors of the rules, by alert name.
    floors: BTreeMap<String, Duration>,
}

fn run_trial(plan: &Plan, trial: &Trial) -> TrialResult {
    let settings = plan.settings(trial.interval);
    let mut chain = Chain::start(&settings, trial.fault.access());
    let before: Vec<String> = chain
        .webhook
        .firing()
        .iter()
        .map(ReceivedAlert::describe)
        .collect();
    let runs = |c: &Chain| (c.prober_runs("failure"), c.prober_runs("success"));
    let (failed0, ok0) = runs(&chain);
    let injected = chain.inject(trial.fault);
    eprintln!(
        "page-time: {} @{}s #{}: injected",
        trial.fault.name(),
        trial.interval.as_secs(),
        trial.rep
    );
    std::thread::sleep(plan.observe);
    let (failed1, ok1) = runs(&chain);
    let mut pages: Vec<(String, String, Duration)> = Vec::new();
    let mut problems: Vec<String> = before
        .iter()
        .map(|a| format!("paged before the fault: {a}"))
        .collect();
    for a in chain
        .webhook
        .firing()
        .into_iter()
        .filter(|a| a.at >= injected)
    {
        if trial.fault.forbidden().contains(&a.name.as_str()) {
            problems.push(format!("misdiagnosed as {}", a.describe()));
        }
        let name = page_name(&a);
        if !pages.iter().any(|(n, _, _)| *n == name) {
            pages.push((
                name,
                a.label("severity").to_string(),
                a.at.saturating_duration_since(injected),
            ));
        }
    }
    // Which alerts page depends on the rules and the inhibitions: every lasting fault must
    // page somehow. Whether 5% of failing requests must is what the measurement says.
    if trial.fault != Fault::Intermittent && !pages.iter().any(|(_, sev, _)| sev == "critical") {
        problems.push(format!(
            "no critical page within {}s",
            plan.observe.as_secs()
        ));
    }
    let mut floors = BTreeMap::new();
    for (name, _, _) in &pages {
        let alert = name.split('{').next().unwrap_or_default();
        if let Some(f) = floor(&settings, &chain.rules, alert) {
            floors.insert(alert.to_string(), f + unseen_for(trial));
        }
    }
    let failed_steps = failed_steps(&chain.prober.metrics().unwrap_or_default());
    chain.registry.stop();
    TrialResult {
        pages,
        problems,
        runs_after: (failed1 - failed0, (failed1 + ok1) - (failed0 + ok0)),
        failed_steps,
        floors,
    }
}

/// How much later than a run's interval a fault can first fail a run: a name that stops
/// resolving fails only the first run on new connections, the first scheduled run once the kept
/// connections have served the prober's `CONNECTION_MAX_AGE` (60 s, service/schedule.rs), when
/// the interval keeps them (under 30 s, `KEEP_CONNECTIONS_BELOW`): up to the whole intervals
/// that make 60 s, of which the floor already counts one. Nothing for the other faults.
fn unseen_for(trial: &Trial) -> Duration {
    let interval = trial.interval.as_secs().max(1);
    if trial.fault == Fault::DnsFailing && interval < 30 {
        Duration::from_secs(60u64.div_ceil(interval) * interval - interval)
    } else {
        Duration::ZERO
    }
}

/// The prober's default `confirmation_runs`.
const DEFAULT_CONFIRMATION_RUNS: u32 = 2;

/// The prober's default `confirmation_delay`: 5 s, or a fifth of a shorter interval.
fn confirmation_delay(interval: Duration) -> Duration {
    Duration::from_secs(5).min(interval / 5)
}

/// The least time from a fault to the page that `alert`'s rule allows, when its failures start
/// with the fault: the failed runs it needs (one interval each) + scrape + evaluation +
/// group_wait + `for`. Runs needed: TargetStale its `intervals`; the ratio rules (PathFailing,
/// PushFailingPullsWork) the larger of their minimum count and ratio x the runs in their window
/// (a window full of healthy runs); the content alerts one. TargetFailing: its `failedRuns`, of
/// which up to `confirmation_runs` are confirmations a `confirmation_delay` apart instead of an
/// interval. None for other alerts.
fn floor(settings: &Settings, rules: &Path, alert: &str) -> Option<Duration> {
    let text = rule_text(rules, alert);
    let pipeline = settings.scrape
        + settings.evaluation
        + settings.routing.group_wait()
        + rule_for(rules, alert);
    if alert == "RegistryProberTargetFailing" {
        let failed = number_after(&text, ") >= ")? as u32;
        let confirmations = settings.confirmation_runs.min(failed.saturating_sub(1));
        return Some(
            settings.interval * (failed - confirmations)
                + confirmation_delay(settings.interval) * confirmations
                + pipeline,
        );
    }
    let runs: u32 = match alert {
        "RegistryProberTargetStale" => number_after(&text, ") >= ")? as u32,
        "RegistryProberPathFailing" | "RegistryProberPushFailingPullsWork" => {
            let window = text
                .split("[")
                .nth(1)
                .and_then(|w| w.split(']').next())
                .map(parse_duration)?;
            let min = number_after(&text, "# in at least ")?;
            let ratio = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix(">= "))
                .filter_map(|v| v.parse::<f64>().ok())
                .find(|v| *v < 1.0)?;
            let in_window = window.as_secs_f64() / settings.interval.as_secs_f64();
            min.max((ratio * in_window).ceil()) as u32
        }
        "RegistryProberContentMismatch" | "RegistryProberContentLost" => 1,
        _ => return None,
    };
    Some(settings.interval * runs + pipeline)
}

/// The number that follows the first `after` in `text`.
fn number_after(text: &str, after: &str) -> Option<f64> {
    let rest = &text[text.find(after)? + after.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Samples the 1-minute load average every 10 s until `stop`.
fn sample_load(stop: &AtomicBool, samples: &Mutex<Vec<f64>>) {
    while !stop.load(Ordering::SeqCst) {
        if let Some(load) = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split(' ').next().and_then(|v| v.parse().ok()))
        {
            samples.lock().expect("load samples").push(load);
        }
        for _ in 0..100 {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn summary(values: &[f64], digits: usize) -> (String, String) {
    if values.is_empty() {
        return ("-".into(), "-".into());
    }
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    (
        format!("{:.*}", digits, median(&s)),
        format!("{:.*}-{:.*}", digits, s[0], digits, s[s.len() - 1]),
    )
}

/// The measuring mode of scripts/fault-to-page --production.
#[test]
#[ignore = "measuring mode, 35+ minutes: scripts/fault-to-page --production runs it"]
fn production() {
    let plan = Plan::from_env();
    let mut queue: VecDeque<Trial> = VecDeque::new();
    for interval in &plan.intervals {
        for fault in &plan.faults {
            for rep in 1..=plan.repeats {
                queue.push_back(Trial {
                    fault: *fault,
                    interval: *interval,
                    rep,
                });
            }
        }
    }
    let total = queue.len();
    eprintln!(
        "page-time: {total} trials, {} at once, warm-up {}s, observe {}s, rules {}",
        plan.concurrency,
        plan.warmup.as_secs(),
        plan.observe.as_secs(),
        plan.rules.display()
    );
    let queue = Mutex::new(queue);
    let results: Mutex<Vec<(Trial, Result<TrialResult, String>)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let load = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_load(&stop, &load));
        let workers: Vec<_> = (0..plan.concurrency.min(total))
            .map(|w| {
                let (queue, results, plan) = (&queue, &results, &plan);
                s.spawn(move || {
                    // Staggered starts: not every chain builds its servers in the same second.
                    std::thread::sleep(Duration::from_secs(2) * w as u32);
                    loop {
                        let Some(trial) = queue.lock().expect("queue").pop_front() else {
                            break;
                        };
                        let result =
                            std::panic::catch_unwind(AssertUnwindSafe(|| run_trial(plan, &trial)))
                                .map_err(|p| {
                                    p.downcast_ref::<String>()
                                        .cloned()
                                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                        .unwrap_or_else(|| "panicked".into())
                                });
                        eprintln!(
                            "page-time: {} @{}s #{}: {}",
                            trial.fault.name(),
                            trial.interval.as_secs(),
                            trial.rep,
                            match &result {
                                Ok(r) => r
                                    .pages
                                    .iter()
                                    .map(|(n, sev, d)| format!(
                                        "{n} {sev} +{:.0}s",
                                        d.as_secs_f64()
                                    ))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                Err(e) => format!("FAILED: {}", tail(e, 2000)),
                            }
                        );
                        results.lock().expect("results").push((trial, result));
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        stop.store(true, Ordering::SeqCst);
        let _ = sampler.join();
    });
    let results = results.into_inner().expect("results");
    let load = load.lock().expect("load").clone();
    let problems: Vec<String> = results
        .iter()
        .flat_map(|(t, r)| {
            let at = format!("{} @{}s #{}", t.fault.name(), t.interval.as_secs(), t.rep);
            match r {
                Ok(r) => r.problems.iter().map(|p| format!("{at}: {p}")).collect(),
                Err(e) => vec![format!("{at}: the trial failed: {}", tail(e, 4000))],
            }
        })
        .collect();
    println!(
        "{}",
        table(&plan, &results, &load, started.elapsed(), &problems)
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The markdown report.
fn table(
    plan: &Plan,
    results: &[(Trial, Result<TrialResult, String>)],
    load: &[f64],
    took: Duration,
    problems: &[String],
) -> String {
    let settings = plan.settings(plan.intervals[0]);
    let mut out = String::from("=== page-time ===\n");
    let (load_median, load_range) = summary(load, 1);
    out.push_str(&format!(
        "Rules: {} (unchanged). Prober: the defaults at interval {} (timeout min(25s, interval), image 4KiB+64KiB+1MiB), a golden image and canaries. Prometheus: scrape and evaluation every {}s. Alertmanager: the routing and inhibitions of {} (group_wait {}s), receivers on the webhook. Warm-up {}s of healthy runs, then the fault, then {}s of listening. {} trial(s) per fault and interval, {} at once; {:.0} min in all; 1-min load average median {load_median} (range {load_range}) on {} CPUs.\n\n",
        plan.rules.display(),
        plan.intervals
            .iter()
            .map(|i| format!("{}s", i.as_secs()))
            .collect::<Vec<_>>()
            .join(" and "),
        plan.scrape.as_secs(),
        plan.alertmanager.display(),
        settings.routing.group_wait().as_secs(),
        plan.warmup.as_secs(),
        plan.observe.as_secs(),
        plan.repeats,
        plan.concurrency,
        took.as_secs_f64() / 60.0,
        std::thread::available_parallelism().map_or(0, usize::from),
    ));
    out.push_str(
        "| fault | interval | page | severity | floor (s) | median (s) | min-max (s) | paged |\n",
    );
    out.push_str("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |\n");
    let mut notes = Vec::new();
    for interval in &plan.intervals {
        for fault in &plan.faults {
            let mine: Vec<&TrialResult> = results
                .iter()
                .filter(|(t, _)| t.fault == *fault && t.interval == *interval)
                .filter_map(|(_, r)| r.as_ref().ok())
                .collect();
            let n = mine.len();
            let at = format!("| {} | {}s ", fault.name(), interval.as_secs());
            // First page of each trial, then every page, critical first.
            let firsts: Vec<f64> = mine
                .iter()
                .filter_map(|r| {
                    r.pages
                        .iter()
                        .filter(|(_, sev, _)| sev == "critical")
                        .map(|(_, _, d)| d.as_secs_f64())
                        .reduce(f64::min)
                })
                .collect();
            let (m, r) = summary(&firsts, 0);
            out.push_str(&format!(
                "{at}| **first page** | critical | | **{m}** | {r} | {}/{n} |\n",
                firsts.len()
            ));
            let names: BTreeSet<(String, String)> = mine
                .iter()
                .flat_map(|r| r.pages.iter().map(|(p, sev, _)| (sev.clone(), p.clone())))
                .collect();
            for (sev, name) in names {
                let delays: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| r.pages.iter().find(|(p, _, _)| *p == name))
                    .map(|(_, _, d)| d.as_secs_f64())
                    .collect();
                let alert = name.split('{').next().unwrap_or_default().to_string();
                let floor = mine
                    .iter()
                    .find_map(|r| r.floors.get(&alert))
                    .map_or(String::new(), |f| format!("{:.0}", f.as_secs_f64()));
                let (m, r) = summary(&delays, 0);
                out.push_str(&format!(
                    "{at}| `{name}` | {sev} | {floor} | {m} | {r} | {}/{n} |\n",
                    delays.len()
                ));
            }
            let failed: f64 = mine.iter().map(|r| r.runs_after.0).sum();
            let all: f64 = mine.iter().map(|r| r.runs_after.1).sum();
            let steps: BTreeSet<String> = mine
                .iter()
                .flat_map(|r| {
                    r.failed_steps
                        .iter()
                        .map(|s| s.split(" x").next().unwrap_or_default().to_string())
                })
                .collect();
            notes.push(format!(
                "- {} @{}s: {failed} of {all} runs failed in the {}s after the fault ({} trials); failed steps: {}",
                fault.name(),
                interval.as_secs(),
                plan.observe.as_secs(),
                n,
                steps.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out.push_str(
        "\nfloor = runs the rule needs x interval + scrape + evaluation + group_wait + the rule's `for`; runs needed: TargetStale its `intervals`, PathFailing and PushFailingPullsWork max(min_failures, ratio x runs in the window), the content alerts 1; TargetFailing its `failedRuns`, each confirmation run counting `confirmation_delay` instead of an interval; DNS failing under a 30s interval: the first failed run comes up to a minute after the fault instead of an interval (kept connections are renewed once a minute). **first page**: the first critical page of each trial, whichever alert it was. \"paged\": trials in which the page came within the observation window.\n\n",
    );
    out.push_str(&notes.join("\n"));
    out.push_str("\n\nProblems (pages before the fault, misdiagnoses, lasting faults without a critical page, failed trials):\n");
    if problems.is_empty() {
        out.push_str("- none\n");
    }
    for p in problems {
        // The first line: a failed trial's message carries its chain's logs.
        out.push_str(&format!("- {}\n", p.lines().next().unwrap_or_default()));
    }
    out.push_str("=== end ===\n");
    out
}
