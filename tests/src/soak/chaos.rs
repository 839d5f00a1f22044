//! The chaos soak: the prober service probes a real registry (Debian's docker-registry), two
//! targets through the fault proxy and one directly, while the proxy puts random faults of its
//! whole catalogue on random requests, the registry is killed and restarted, and the config is
//! reloaded every few minutes (SIGHUP after an atomic rewrite, SIGHUP alone, a ConfigMap-style
//! `..data` symlink swap with no signal, and now and then a bad config). Then a calm phase
//! lets the hygiene sweeps run past their age margin, the prober is stopped with SIGTERM, and
//! [`report`] checks that every scheduled run is accounted for, nothing panicked, RSS and open
//! descriptors stayed flat after the warm-up, and the storage holds no run tags and no live
//! upload sessions.

mod config;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};

pub use report::report;

use super::accounting::{self, ClassAccount};
use super::audit::{self, Audit};
use super::faults;
use super::sampler::{self, Sample};
use crate::fault_proxy::{FaultProxy, Faulted};
use crate::service::Service;
use crate::{Registry, RegistryOptions};
use config::{Configs, Reload};

pub(crate) const INSTANCE: &str = "chaos";
pub(crate) const GOLDEN_REPO: &str = "golden/base";

/// The pace of a soak: how long, how often things happen, and the prober's intervals.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub duration: Duration,
    /// The targets' base interval; timeouts and the rest follow from it.
    pub interval: Duration,
    pub hygiene: Duration,
    /// Between two faults (uniform).
    pub fault_gap: (Duration, Duration),
    pub reload_every: (Duration, Duration),
    pub restart_every: (Duration, Duration),
    /// How long the registry stays down at a restart, at most.
    pub max_downtime: Duration,
    pub sample_every: Duration,
    /// RSS and descriptors are compared after this, over windows of `window`.
    pub warm_up: Duration,
    pub window: Duration,
}

impl Pace {
    /// An hour: faults every 2-10 s, reloads every 2-4 min, restarts every 3-6 min.
    pub fn hour(duration: Duration) -> Pace {
        Pace {
            duration,
            interval: Duration::from_secs(3),
            hygiene: Duration::from_secs(60),
            fault_gap: (Duration::from_secs(2), Duration::from_secs(10)),
            reload_every: (Duration::from_secs(120), Duration::from_secs(240)),
            restart_every: (Duration::from_secs(180), Duration::from_secs(360)),
            max_downtime: Duration::from_secs(5),
            sample_every: Duration::from_secs(5),
            warm_up: Duration::from_secs(600),
            window: Duration::from_secs(300),
        }
    }

    /// A minute of the same, for the test suite.
    pub fn short() -> Pace {
        Pace {
            duration: Duration::from_secs(60),
            interval: Duration::from_millis(1500),
            hygiene: Duration::from_secs(10),
            fault_gap: (Duration::from_millis(500), Duration::from_secs(2)),
            reload_every: (Duration::from_secs(8), Duration::from_secs(12)),
            restart_every: (Duration::from_secs(20), Duration::from_secs(30)),
            max_downtime: Duration::from_secs(2),
            sample_every: Duration::from_secs(1),
            warm_up: Duration::from_secs(15),
            window: Duration::from_secs(15),
        }
    }

    fn timeout(&self) -> Duration {
        self.interval.mul_f64(0.8)
    }
}

/// One fault armed on the proxy.
#[derive(Debug, Clone)]
pub(crate) struct Armed {
    pub(crate) kind: &'static str,
    pub(crate) rule: String,
}

/// A registry restart: when it went down and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Restart {
    pub(crate) at: Duration,
    pub(crate) downtime: Duration,
}

/// Everything the soak saw.
pub struct Soak {
    pub(crate) pace: Pace,
    pub(crate) seed: u64,
    pub(crate) armed: Vec<Armed>,
    pub(crate) faulted: Vec<Faulted>,
    pub(crate) requests: Vec<(String, String)>,
    pub(crate) restarts: Vec<Restart>,
    pub(crate) reloads: Vec<(Duration, Reload)>,
    pub(crate) samples: Vec<Sample>,
    /// Per (target, class), `unaccounted` of every look, in order, and when the calm began.
    pub(crate) unaccounted: BTreeMap<(String, String), Vec<f64>>,
    pub(crate) calm_from: usize,
    pub(crate) accounts: BTreeMap<(String, String), ClassAccount>,
    pub(crate) final_metrics: Vec<accounting::Series>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) log: String,
    pub(crate) audit: Audit,
    pub(crate) started: Instant,
    pub(crate) started_wall: std::time::SystemTime,
    pub(crate) calm: Duration,
}

/// Runs the chaos for `pace.duration`, then the calm phase, stops the prober and audits.
pub fn run(pace: Pace, seed: u64) -> anyhow::Result<Soak> {
    eprintln!("soak-chaos: seed {seed}, {:?} of chaos", pace.duration);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut registry = Registry::start(RegistryOptions::default())?;
    let golden = super::push_golden(&registry, GOLDEN_REPO)?;
    let proxy = FaultProxy::start(&registry.url())?;
    let configs = Configs::new(&pace, &proxy.url(), &registry.url(), &golden);
    let mut prober = Service::start(&configs.body(0))?;
    let mut files = configs.install(&prober)?;
    let pid = prober.pid().unwrap_or_default();
    let repos = configs.repos();
    let between = |rng: &mut rand::rngs::StdRng, (lo, hi): (Duration, Duration)| {
        lo + (hi - lo).mul_f64(rng.random::<f64>())
    };

    let started = Instant::now();
    let mut soak = Soak {
        pace,
        seed,
        armed: Vec::new(),
        faulted: Vec::new(),
        requests: Vec::new(),
        restarts: Vec::new(),
        reloads: Vec::new(),
        samples: Vec::new(),
        unaccounted: BTreeMap::new(),
        calm_from: 0,
        accounts: BTreeMap::new(),
        final_metrics: Vec::new(),
        exit_code: None,
        log: String::new(),
        audit: Audit::default(),
        started,
        started_wall: std::time::SystemTime::now(),
        calm: Duration::ZERO,
    };
    let mut next_fault = started;
    let mut next_reload = started + between(&mut rng, pace.reload_every);
    let mut next_restart = started + between(&mut rng, pace.restart_every);
    let mut next_sample = started;
    let mut reload_turn = 0usize;
    while started.elapsed() < pace.duration {
        let now = Instant::now();
        if now >= next_fault {
            proxy.clear_rules();
            let name = format!("chaos-{}", soak.armed.len());
            let (kind, rule) = faults::chaos(&mut rng, &repos, pace.timeout(), &name);
            proxy.add_rule(rule);
            soak.armed.push(Armed { kind, rule: name });
            next_fault = now + between(&mut rng, pace.fault_gap);
        }
        if now >= next_reload {
            let reload = files.next(&prober, reload_turn, &mut rng)?;
            reload_turn += 1;
            soak.reloads.push((started.elapsed(), reload));
            next_reload = now + between(&mut rng, pace.reload_every);
        }
        if now >= next_restart {
            let downtime = pace.max_downtime.mul_f64(rng.random::<f64>());
            let at = started.elapsed();
            registry.stop();
            std::thread::sleep(downtime);
            restart(&mut registry)?;
            soak.restarts.push(Restart { at, downtime });
            next_restart = Instant::now() + between(&mut rng, pace.restart_every);
        }
        if now >= next_sample {
            look(&mut soak, &prober, pid)?;
            next_sample += pace.sample_every;
            if soak.samples.len().is_multiple_of(PROGRESS_EVERY) {
                progress(&soak);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Calm: no faults, the registry up, a good config; the sweeps remove what runs left behind
    // once it is older than any run can be (the longest run + 60 s), so wait for two sweeps
    // after that.
    proxy.clear_rules();
    files.settle(&prober)?;
    soak.calm_from = soak.samples.len();
    let calm_start = Instant::now();
    let margin = configs.max_run_time() + Duration::from_secs(60);
    std::thread::sleep(margin);
    let sweeps_then = sweeps(&prober)?;
    let deadline = Instant::now() + pace.hygiene * 3 + Duration::from_secs(30);
    loop {
        look(&mut soak, &prober, pid)?;
        let now = sweeps(&prober)?;
        if sweeps_then
            .iter()
            .all(|(t, n)| now.get(t).is_some_and(|m| *m >= n + 2.0))
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no two hygiene sweeps per target within {:?} of the calm ({sweeps_then:?} -> {now:?})",
            deadline - calm_start
        );
        std::thread::sleep(pace.sample_every.min(Duration::from_secs(1)));
    }
    // A few more looks at a calm schedule for the accounting.
    for _ in 0..10 {
        look(&mut soak, &prober, pid)?;
        std::thread::sleep(pace.interval / 3);
    }
    soak.calm = calm_start.elapsed();
    let text = prober.metrics()?;
    soak.accounts = accounting::accounts(&text);
    soak.final_metrics = accounting::parse(&text);
    prober.signal("TERM")?;
    soak.exit_code = prober.wait_exit(Duration::from_secs(60)).ok();
    soak.log = prober.log();
    soak.faulted = proxy.faulted();
    soak.requests = proxy.requests();
    let seen: Vec<String> = soak.requests.iter().map(|(_, t)| t.clone()).collect();
    soak.audit = audit::audit(&registry, INSTANCE, &seen)?;
    Ok(soak)
}

/// Samples between two progress lines on stderr.
const PROGRESS_EVERY: usize = 60;

/// One line on stderr: where the soak is.
fn progress(soak: &Soak) {
    let last = soak.samples.last();
    let worst = soak
        .unaccounted
        .values()
        .filter_map(|v| v.last())
        .fold(0.0, |a: f64, b| a.max(b.abs()));
    eprintln!(
        "soak-chaos: {:?} in: {} faults armed, {} restarts, {} reloads, RSS {} KiB, {} fds, load {:.1}, largest unaccounted now {worst}",
        soak.started.elapsed(),
        soak.armed.len(),
        soak.restarts.len(),
        soak.reloads.len(),
        last.map_or(0, |s| s.rss_kib),
        last.map_or(0, |s| s.fds),
        last.map_or(0.0, |s| s.load1),
    );
}

/// Samples the process and the accounting.
fn look(soak: &mut Soak, prober: &Service, pid: u32) -> anyhow::Result<()> {
    soak.samples
        .push(sampler::sample(pid, soak.started.elapsed())?);
    let text = prober.metrics()?;
    for (class, account) in accounting::accounts(&text) {
        soak.unaccounted
            .entry(class)
            .or_default()
            .push(account.unaccounted());
    }
    Ok(())
}

/// Hygiene sweeps per target so far, whatever their result.
fn sweeps(prober: &Service) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for s in accounting::parse(&prober.metrics()?) {
        if s.name == "registry_prober_sweeps_total" {
            *out.entry(s.label("target").to_string()).or_default() += s.value;
        }
    }
    Ok(out)
}

/// Starts the registry again on its port; a port another process took in the meantime fails
/// the soak after a few tries.
fn restart(registry: &mut Registry) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..5 {
        match registry.restart() {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("restart failed")))
}

/// Where the config files live: the path the prober was given, a symlink to `..data/prober.yml`.
pub(crate) fn config_dir(prober: &Service) -> PathBuf {
    prober
        .config_path()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
