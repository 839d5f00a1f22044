//! The pager path end to end: a real docker-registry -> registry-prober (1 s interval) -> a real
//! Prometheus (1 s scrape and evaluation) loading the rules of the mixin (mixin/), rendered with
//! short windows -> a real Alertmanager (group_wait 0s) -> a webhook receiver in the test. Each fault
//! must page with the right alert, and a healthy registry with a few transient errors must not
//! page at all. `fault_to_page_table` (ignored; scripts/fault-to-page) measures the seconds
//! from a fault to the webhook POST over several repetitions; `production` (ignored;
//! scripts/fault-to-page --production) does so at production settings: the shipped rules,
//! a 30 s and 15 s prober interval, 15 s scrape and evaluation, the example Alertmanager routing.

#[path = "pager/production.rs"]
mod production;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http::Method;
use registry_prober_e2e::alertmanager::{self, Alertmanager};
use registry_prober_e2e::fault_proxy::{Fault as ProxyFault, FaultProxy, Rule};
use registry_prober_e2e::prober::once_json;
use registry_prober_e2e::process::{run_with_timeout, tail};
use registry_prober_e2e::prometheus::{
    samples, Answer, Prometheus, PrometheusOptions, ScrapeJob, SCRAPE_INTERVAL,
};
use registry_prober_e2e::service::Service;
use registry_prober_e2e::webhook::{ReceivedAlert, Webhook};
use registry_prober_e2e::{Registry, RegistryOptions};
use serde_json::Value;

/// The scrape job: the rules select `job="registry-prober"`.
const JOB: &str = "registry-prober";
const TARGET: &str = "pager";
const REPO: &str = "registry-prober/probe";
const GOLDEN_REPO: &str = "golden/base";
/// The prober's interval (and run timeout).
const INTERVAL: Duration = Duration::from_secs(1);
/// nobody:nogroup: the registry runs unprivileged so a chmod of its storage bites.
const UNPRIVILEGED: (u32, u32) = (65534, 65534);

/// Successful scrapes before a fault: one rule window (15 s) of healthy history, so the ratio
/// rules start from a steady state rather than from an empty window.
const WARMUP_SCRAPES: u32 = 16;
/// The generous bound on fault-to-page.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// After the expected pages, how long to keep listening for others (the longest `for` of the
/// rules a fault can trip, plus the pipeline).
const SETTLE: Duration = Duration::from_secs(10);
/// The healthy run with transient errors.
const HEALTHY: Duration = Duration::from_secs(60);
/// Repetitions per fault in the measuring mode.
const REPEATS_ENV: &str = "FAULT_TO_PAGE_REPEATS";

/// The mixin's alert settings (mixin/config.libsonnet) scaled for a 1 s interval, scrape and
/// evaluation: every window and `for` divided by 60 (a production minute is a second here),
/// thresholds and counts unchanged. Merged over the mixin as a user's override would be.
const SHORT_RULES: &str = "\
// The _config defaults with every window and `for` divided by 60, for a 1 s prober interval,
// scrape and evaluation (tests/tests/pager.rs).
{
  _config+:: {
    registryProberAlerts+: {
      RegistryProberPathFailing+: { 'for': '5s', window: '15s' },
      RegistryProberPushFailingPullsWork+: { 'for': '5s', window: '15s' },
      RegistryProberContentMismatch+: { window: '1m' },
      RegistryProberContentLost+: { window: '1m' },
      RegistryProberTargetStale+: { reasonsWindow: '1m' },
      RegistryProberDown+: { 'for': '5s' },
      RegistryProberAbsent+: { 'for': '10s' },
      RegistryProberStepLatencyRegression+: { 'for': '15s', window: '30s', baselineWindow: '24m' },
      RegistryProberPropagationSlow+: { 'for': '15s', window: '30s' },
      RegistryProberPropagationFailing+: { 'for': '5s', window: '15s' },
      RegistryProberCleanupFailing+: { 'for': '15s', window: '1m' },
      RegistryProberUploadSessionsAbandoned+: { 'for': '5s', window: '1m' },
      RegistryProberSweepsFailing+: { window: '6m' },
      RegistryProberTLSCertificateExpiring+: { warningFor: '1m', criticalFor: '15s' },
      RegistryProberRateLimited+: { 'for': '15s', window: '1m' },
      RegistryProberRunsOverrunning+: { 'for': '15s', window: '1m' },
      RegistryProberScheduleLagging+: { 'for': '15s', window: '15s' },
      RegistryProberConfigReloadFailed+: { 'for': '10s' },
    },
  },
}
";

/// The prober: one target with a fresh 2-layer image, a golden image pinned by digest and one
/// aged canary. Placeholders: @REGISTRY@, @GOLDEN@, @PLAIN_HTTP@ (a registry reached by host
/// name is plain HTTP only when allowed).
const PROBER_CONFIG: &str = r#"defaults: {interval: 1s, timeout: 1s}
targets:
  - name: pager
    registry: "@REGISTRY@"
    allow_plain_http: @PLAIN_HTTP@
    repository: registry-prober/probe
    image:
      layer_sizes: [4KiB, 4KiB]
    golden_images: ["@GOLDEN@"]
    canaries:
      enabled: true
      every: 24h
      keep: 1
      layer_sizes: [4KiB, 8KiB]
"#;

/// The host name the prober reaches the registry by when a fault needs DNS ([`Access::Hosts`]);
/// only the prober's own /etc/hosts knows it.
const REGISTRY_HOST: &str = "registry.pager.test";

/// How the chain runs: the prober's config, Prometheus's intervals, the rules, the Alertmanager
/// routing, and the healthy history before a fault.
#[derive(Debug, Clone)]
struct Settings {
    /// The prober's config with @REGISTRY@, @GOLDEN@ and @PLAIN_HTTP@ placeholders.
    prober_config: String,
    /// The prober's interval, for floors.
    interval: Duration,
    scrape: Duration,
    evaluation: Duration,
    rules: RulesSource,
    routing: Routing,
    /// Successful scrapes before a fault.
    warmup_scrapes: u32,
    /// The prober's `confirmation_runs`, for floors.
    confirmation_runs: u32,
}

#[derive(Debug, Clone)]
enum RulesSource {
    /// The mixin rendered with [`SHORT_RULES`].
    Short,
    /// A rendered rules file, loaded as it is.
    File(PathBuf),
}

#[derive(Debug, Clone)]
enum Routing {
    /// Every alert its own group, sent at once ([`alertmanager::GROUP_WAIT`]).
    Immediate,
    /// This Alertmanager config (alerts/alertmanager.example.yml) with its receivers on the
    /// webhook.
    Config(String),
}

impl Routing {
    /// The `group_wait` of the top-level route.
    fn group_wait(&self) -> Duration {
        match self {
            Routing::Immediate => alertmanager::GROUP_WAIT,
            Routing::Config(yaml) => yaml
                .lines()
                .find_map(|l| l.strip_prefix("  group_wait: "))
                .map_or(Duration::ZERO, |d| parse_duration(d.trim())),
        }
    }
}

impl Settings {
    /// The fast pager tests: 1 s everywhere, windows / 60, alerts sent at once.
    fn short() -> Settings {
        Settings {
            prober_config: PROBER_CONFIG.to_string(),
            interval: INTERVAL,
            scrape: SCRAPE_INTERVAL,
            evaluation: SCRAPE_INTERVAL,
            rules: RulesSource::Short,
            routing: Routing::Immediate,
            warmup_scrapes: WARMUP_SCRAPES,
            confirmation_runs: 2,
        }
    }
}

/// How the prober reaches the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// At its 127.0.0.1 address.
    Direct,
    /// Through a fault proxy.
    Proxy,
    /// By [`REGISTRY_HOST`], which the prober's own /etc/hosts (a file the chain holds) maps to
    /// 127.0.0.1.
    Hosts,
}

// --- the faults and what they must page ------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Fault {
    /// The registry process is killed: nothing answers.
    RegistryStopped,
    /// The repository's `_uploads` directory is made read-only (the registry runs as nobody):
    /// `POST .../blobs/uploads/` answers 500, every read still works.
    UploadsUnwritable,
    /// A layer of the golden image rots on disk (same size, one byte flipped).
    GoldenBlobCorrupted,
    /// A layer of the golden image loses its data (its repository link stays).
    GoldenBlobDeleted,
    /// A layer of the canary loses its data (its repository link stays).
    CanaryBlobDeleted,
    /// The registry's host name stops resolving (the prober's /etc/hosts is emptied; the name
    /// is unknown to DNS).
    DnsFailing,
    /// 5% of all requests, drawn at random, answer 503 (the fault proxy); the rest work.
    Intermittent,
}

impl Fault {
    /// The faults of the fast tests and of scripts/fault-to-page.
    const SHORT: [Fault; 4] = [
        Fault::RegistryStopped,
        Fault::UploadsUnwritable,
        Fault::GoldenBlobCorrupted,
        Fault::CanaryBlobDeleted,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::RegistryStopped => "registry stopped",
            Fault::UploadsUnwritable => "uploads unwritable",
            Fault::GoldenBlobCorrupted => "golden blob corrupted",
            Fault::GoldenBlobDeleted => "golden blob deleted",
            Fault::CanaryBlobDeleted => "canary blob deleted",
            Fault::DnsFailing => "DNS failing",
            Fault::Intermittent => "5% of requests fail",
        }
    }

    fn access(self) -> Access {
        match self {
            Fault::DnsFailing => Access::Hosts,
            Fault::Intermittent => Access::Proxy,
            _ => Access::Direct,
        }
    }

    /// The pages the fault must produce.
    fn expected(self) -> Vec<Expected> {
        let t = ("target", TARGET);
        match self {
            Fault::RegistryStopped => vec![
                // the run and its 2 confirmation runs fail at the ping
                Expected::new(
                    "RegistryProberTargetFailing",
                    &[
                        t,
                        ("size_class", "default"),
                        ("path", "origin"),
                        ("step", "ping"),
                    ],
                    3,
                ),
                // no success for 5 intervals
                Expected::new(
                    "RegistryProberTargetStale",
                    &[t, ("size_class", "default")],
                    5,
                ),
                // >= 25% of a step's executions failed over 15s, >= 3 of them
                Expected::new("RegistryProberPathFailing", &[t, ("path", "origin")], 3),
            ],
            Fault::UploadsUnwritable => vec![
                Expected::new(
                    "RegistryProberTargetFailing",
                    &[t, ("path", "origin"), ("step", "start_upload")],
                    3,
                ),
                Expected::new(
                    "RegistryProberPushFailingPullsWork",
                    &[t, ("step", "start_upload")],
                    3,
                ),
            ],
            Fault::GoldenBlobCorrupted => vec![Expected::new(
                "RegistryProberContentMismatch",
                &[
                    t,
                    ("path", "origin"),
                    ("step", "pull_golden_blob"),
                    ("reason", "digest_mismatch"),
                ],
                1,
            )],
            Fault::GoldenBlobDeleted | Fault::CanaryBlobDeleted => vec![Expected::new(
                "RegistryProberContentLost",
                &[t, ("path", "origin"), ("reason", "blob_unknown")],
                1,
            )],
            // The run's first request, the ping, fails to resolve.
            Fault::DnsFailing => vec![
                Expected::new(
                    "RegistryProberTargetFailing",
                    &[t, ("path", "origin"), ("step", "ping")],
                    3,
                ),
                Expected::new(
                    "RegistryProberTargetStale",
                    &[t, ("size_class", "default")],
                    5,
                ),
                Expected::new(
                    "RegistryProberPathFailing",
                    &[t, ("path", "origin"), ("step", "ping")],
                    3,
                ),
            ],
            // Whether it must page is what the measurement says.
            Fault::Intermittent => Vec::new(),
        }
    }

    /// Alerts that would misdiagnose the fault.
    fn forbidden(self) -> &'static [&'static str] {
        match self {
            // Pulls fail too: not "pushes fail while pulls work".
            Fault::RegistryStopped => &[
                "RegistryProberPushFailingPullsWork",
                "RegistryProberContentMismatch",
                "RegistryProberContentLost",
            ],
            Fault::UploadsUnwritable => {
                &["RegistryProberContentMismatch", "RegistryProberContentLost"]
            }
            Fault::GoldenBlobCorrupted => &[
                "RegistryProberContentLost",
                "RegistryProberPushFailingPullsWork",
            ],
            Fault::GoldenBlobDeleted | Fault::CanaryBlobDeleted => &[
                "RegistryProberContentMismatch",
                "RegistryProberPushFailingPullsWork",
            ],
            Fault::DnsFailing => &[
                "RegistryProberPushFailingPullsWork",
                "RegistryProberContentMismatch",
                "RegistryProberContentLost",
            ],
            // A 503 is neither changed nor lost content.
            Fault::Intermittent => &["RegistryProberContentMismatch", "RegistryProberContentLost"],
        }
    }
}

/// A page a fault must produce: the alert, the labels it must carry, and how many failed runs
/// its rule needs at the least (its `min_failures`, or `intervals` for TargetStale).
#[derive(Debug, Clone)]
struct Expected {
    alert: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    runs_needed: u32,
}

impl Expected {
    fn new(alert: &'static str, labels: &[(&'static str, &'static str)], runs: u32) -> Expected {
        Expected {
            alert,
            labels: labels.to_vec(),
            runs_needed: runs,
        }
    }

    fn describe(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", self.alert, labels.join(", "))
    }

    /// The least time from a fault to the webhook the pipeline allows: the failed runs the
    /// rule needs (one interval each), a scrape, an evaluation, group_wait and the rule's `for`.
    fn floor(&self, rules: &Path) -> Duration {
        INTERVAL * self.runs_needed
            + SCRAPE_INTERVAL
            + SCRAPE_INTERVAL // evaluation_interval is the scrape interval
            + alertmanager::GROUP_WAIT
            + rule_for(rules, self.alert)
    }
}

// --- the chain -------------------------------------------------------------------------------

/// registry (-> fault proxy) -> prober -> Prometheus -> Alertmanager -> webhook.
struct Chain {
    webhook: Webhook,
    _alertmanager: Alertmanager,
    prometheus: Prometheus,
    prober: Service,
    proxy: Option<FaultProxy>,
    registry: Registry,
    /// The golden image's layer digests.
    golden_layers: Vec<String>,
    rules: PathBuf,
    /// The prober's /etc/hosts ([`Access::Hosts`]).
    hosts: Option<PathBuf>,
    /// Successful scrapes before a fault.
    warmup_scrapes: u32,
    /// Successful runs the warm-up must have seen: two thirds of the runs it lasts, at most 10.
    warmup_successes: u32,
    scrape: Duration,
    /// Holds the generated rules and the hosts file.
    _dir: tempfile::TempDir,
}

impl Chain {
    /// Starts every server, pushes the golden image and waits until Prometheus holds the
    /// settings' warm-up of healthy scrapes, the canary exists and the rules are evaluated.
    /// The prober reaches the registry as `access` says.
    fn start(settings: &Settings, access: Access) -> Chain {
        let registry = Registry::start(RegistryOptions {
            run_as: Some(UNPRIVILEGED),
            ..RegistryOptions::default()
        })
        .expect("registry starts");
        let (code, golden) = once_json(&[
            "--registry",
            &registry.url(),
            "--repository",
            GOLDEN_REPO,
            "--layers",
            "2",
            "--layer-size",
            "4KiB",
            "--no-cleanup",
        ])
        .expect("once runs");
        assert_eq!(code, 0, "the golden image is pushed: {golden:#}");
        let golden_digest = golden["manifest_digest"]
            .as_str()
            .expect("the golden manifest digest")
            .to_string();
        let golden_layers = manifest_layers(&registry, &golden_digest);
        assert_eq!(golden_layers.len(), 2, "{golden_layers:?}");

        let proxy = (access == Access::Proxy)
            .then(|| FaultProxy::start(&registry.url()).expect("proxy starts"));
        let dir = tempfile::Builder::new()
            .prefix("pager-chain-")
            .tempdir()
            .expect("tempdir");
        let rules = match &settings.rules {
            RulesSource::Short => generate_short_rules(dir.path()),
            RulesSource::File(path) => path.clone(),
        };
        let webhook = Webhook::start().expect("webhook receiver starts");
        let am = match &settings.routing {
            Routing::Immediate => Alertmanager::start(&webhook.url()),
            Routing::Config(yaml) => Alertmanager::start_with_config(
                &alertmanager::with_webhook_receivers(yaml, &webhook.url())
                    .expect("the Alertmanager config has receivers"),
            ),
        }
        .expect("alertmanager starts");
        let (registry_url, hosts) = match access {
            Access::Direct => (registry.url(), None),
            Access::Proxy => (proxy.as_ref().expect("a proxy").url(), None),
            Access::Hosts => {
                let hosts = dir.path().join("hosts");
                std::fs::write(&hosts, format!("127.0.0.1 {REGISTRY_HOST}\n"))
                    .expect("hosts file written");
                (
                    format!("http://{REGISTRY_HOST}:{}", registry.port()),
                    Some(hosts),
                )
            }
        };
        let config = settings
            .prober_config
            .replace("@REGISTRY@", &registry_url)
            .replace("@PLAIN_HTTP@", &hosts.is_some().to_string())
            .replace("@GOLDEN@", &format!("{GOLDEN_REPO}@{golden_digest}"));
        let prober = match &hosts {
            None => Service::start(&config),
            Some(hosts) => Service::start_with_hosts(&config, hosts),
        }
        .expect("prober starts");
        let address = prober.url().trim_start_matches("http://").to_string();
        let prometheus = Prometheus::start_with(
            &[ScrapeJob::new(JOB, &address)],
            &PrometheusOptions {
                rule_files: vec![rules.clone()],
                alertmanagers: vec![am.host_port()],
                scrape_interval: Some(settings.scrape),
                evaluation_interval: Some(settings.evaluation),
            },
        )
        .expect("prometheus starts");
        let chain = Chain {
            webhook,
            _alertmanager: am,
            prometheus,
            prober,
            proxy,
            registry,
            golden_layers,
            rules,
            hosts,
            warmup_scrapes: settings.warmup_scrapes,
            warmup_successes: ((settings.scrape * settings.warmup_scrapes).as_secs_f64()
                / settings.interval.as_secs_f64()
                * 2.0
                / 3.0)
                .clamp(1.0, 10.0) as u32,
            scrape: settings.scrape,
            _dir: dir,
        };
        chain.warm_up();
        chain
    }

    fn warm_up(&self) {
        // The scrapes take warmup_scrapes scrape intervals; allow half as much again and 60 s.
        let scrapes = self.scrape * self.warmup_scrapes;
        self.prometheus
            .wait_for_scrapes(
                JOB,
                self.warmup_scrapes,
                scrapes + scrapes / 2 + Duration::from_secs(60),
            )
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.diagnostics()));
        let deadline = Instant::now() + Duration::from_secs(30) + self.scrape * 2;
        // The recording rules have values once the rule file is loaded and evaluated.
        let recorded = "count({__name__=~\"target_path_size_class_step:registry_prober_step_duration_seconds:p95_.*\"})";
        while !(self.canary_layer().is_some() && self.value(recorded) > 0.0) {
            assert!(
                Instant::now() < deadline,
                "no canary, or the rules are not evaluated ({recorded})\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // A run failing during the warm-up (a loaded machine can push one past its 1 s
        // timeout) is not a fault; a page before the fault is, and the tests check that.
        let failed = self.prober_runs("failure");
        if failed > 0.0 {
            eprintln!(
                "warm-up: {failed} failed runs before the fault: {}",
                failed_steps(&self.prober.metrics().unwrap_or_default()).join(", ")
            );
        }
        assert!(
            self.prober_runs("success") >= f64::from(self.warmup_successes),
            "fewer than {} successful runs after the warm-up\n{}",
            self.warmup_successes,
            self.diagnostics()
        );
    }

    /// Runs of the target by result, from the prober's /metrics.
    fn prober_runs(&self, result: &str) -> f64 {
        self.prober
            .metric(&format!(
                "registry_prober_runs_total{{target=\"{TARGET}\",size_class=\"default\",result=\"{result}\"}}"
            ))
            .expect("prober metrics")
            .unwrap_or(0.0)
    }

    /// The first value of an instant query, 0 when it has none.
    fn value(&self, expr: &str) -> f64 {
        match self.prometheus.query(expr) {
            Ok(Answer::Data(data)) => samples(&data).first().map_or(0.0, |(_, v)| *v),
            _ => 0.0,
        }
    }

    /// A layer of the canary the prober keeps, once it pushed one.
    fn canary_layer(&self) -> Option<String> {
        let storage = self.registry.storage();
        let tag = storage
            .tags(REPO)
            .ok()?
            .into_iter()
            .find(|t| t.contains("-canary-"))?;
        let manifest = storage.tag_target(REPO, &tag).ok()??;
        manifest_layers(&self.registry, &manifest)
            .into_iter()
            .next()
    }

    /// Does the fault to the running chain; returns the instant it took effect.
    fn inject(&mut self, fault: Fault) -> Instant {
        let storage = self.registry.storage();
        match fault {
            Fault::RegistryStopped => self.registry.stop(),
            Fault::UploadsUnwritable => {
                // A completed upload removes its session directory but keeps `_uploads`; the
                // registry (as nobody) can no longer create sessions in it. The repository
                // directory itself stays writable: making it read-only would not stop uploads.
                let uploads = storage.repo_dir(REPO).join("_uploads");
                assert!(
                    uploads.is_dir(),
                    "{} exists after a push",
                    uploads.display()
                );
                std::fs::set_permissions(&uploads, std::fs::Permissions::from_mode(0o555))
                    .expect("chmod 555 _uploads");
            }
            Fault::GoldenBlobCorrupted => storage
                .corrupt_blob(&self.golden_layers[0])
                .expect("golden layer corrupted"),
            Fault::GoldenBlobDeleted => storage
                .delete_blob(&self.golden_layers[0])
                .expect("golden layer deleted"),
            Fault::CanaryBlobDeleted => {
                let layer = self.canary_layer().expect("a canary layer");
                storage.delete_blob(&layer).expect("canary layer deleted");
            }
            // Written in place: the prober's bind mount keeps the file's inode.
            Fault::DnsFailing => std::fs::write(
                self.hosts
                    .as_ref()
                    .expect("the chain was started with Access::Hosts"),
                "",
            )
            .expect("hosts file emptied"),
            Fault::Intermittent => self
                .proxy
                .as_ref()
                .expect("the chain was started with Access::Proxy")
                .add_rule(Rule::new("intermittent_503", "/", ProxyFault::status(503)).chance(0.05)),
        }
        Instant::now()
    }

    /// What to look at when a page does not come: the alerts Prometheus holds, the prober's
    /// failed steps, and the logs' tails.
    fn diagnostics(&self) -> String {
        let alerts = match self.prometheus.query("ALERTS") {
            Ok(Answer::Data(data)) => samples(&data)
                .iter()
                .map(|(labels, _)| Value::Object(labels.clone()).to_string())
                .collect::<Vec<_>>()
                .join("\n  "),
            other => format!("{other:?}"),
        };
        let failing: Vec<String> = self
            .prober
            .metrics()
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                (l.starts_with("registry_prober_step_failures_total")
                    || (l.starts_with("registry_prober_runs_total")))
                    && !l.ends_with(" 0")
            })
            .map(String::from)
            .collect();
        format!(
            "Prometheus ALERTS:\n  {alerts}\nprober counters:\n  {}\nwebhook received:\n  {}\nprober log:\n{}\nprometheus log:\n{}",
            failing.join("\n  "),
            self.webhook
                .alerts()
                .iter()
                .map(|a| format!("{} {}", a.status, a.describe()))
                .collect::<Vec<_>>()
                .join("\n  "),
            tail(&self.prober.log(), 3000),
            tail(&self.prometheus.log(), 2000),
        )
    }
}

/// `mixin/build --config SHORT_RULES --output-dir DIR`: the mixin's rules with short windows,
/// checked against the metric contract of the binary under test.
fn generate_short_rules(dir: &Path) -> PathBuf {
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mixin/build");
    let overrides = dir.join("short.libsonnet");
    std::fs::write(&overrides, SHORT_RULES).expect("override written");
    let prober = registry_prober_e2e::bins::prober_bin().expect("the prober binary");
    let out = run_with_timeout(
        Command::new("python3")
            .arg(&build)
            .arg("--config")
            .arg(&overrides)
            .arg("--output-dir")
            .arg(dir)
            .env("REGISTRY_PROBER_BIN", prober),
        Duration::from_secs(120),
    )
    .expect("mixin/build runs");
    assert!(
        out.status.success(),
        "mixin/build --config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("registry-prober.rules.yml")
}

/// The text of an alerting rule in a generated rules file, from its `- alert:` line to the
/// next rule or group.
fn rule_text(rules: &Path, alert: &str) -> String {
    let text = std::fs::read_to_string(rules).expect("rules file");
    let start = text
        .find(&format!("- alert: {alert}\n"))
        .unwrap_or_else(|| panic!("{alert} is not in {}", rules.display()));
    let rule = &text[start + 1..];
    let end = [rule.find("- alert: "), rule.find("- name: ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rule.len());
    rule[..end].to_string()
}

/// The `for` of an alerting rule in a generated rules file (0 when it has none).
fn rule_for(rules: &Path, alert: &str) -> Duration {
    rule_text(rules, alert)
        .lines()
        .find_map(|l| l.trim().strip_prefix("for: "))
        .map_or(Duration::ZERO, |d| parse_duration(d.trim()))
}

fn parse_duration(d: &str) -> Duration {
    let split = d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len());
    let n: u64 = d[..split]
        .parse()
        .unwrap_or_else(|_| panic!("duration {d:?}"));
    match &d[split..] {
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => panic!("unit {other:?} in {d:?}"),
    }
}

/// The layer digests of a stored manifest.
fn manifest_layers(registry: &Registry, manifest_digest: &str) -> Vec<String> {
    let path = registry
        .storage()
        .blob_data_path(manifest_digest)
        .expect("manifest blob path");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).expect("manifest read"))
        .expect("manifest JSON");
    doc["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

// --- one fault, one healthy run --------------------------------------------------------------

/// An expected page: the alert and its delay after the fault, or why it did not come.
type Page = Result<(ReceivedAlert, Duration), String>;

/// What one injection of a fault produced.
struct FaultRun {
    fault: Fault,
    /// Each expected page with its arrival after the injection, or why it did not come.
    pages: Vec<(Expected, Page)>,
    /// Firing alerts received before the injection (false pages).
    before: Vec<ReceivedAlert>,
    /// Every firing alert received after the injection, with its delay.
    after: Vec<(ReceivedAlert, Duration)>,
    floors: Vec<Duration>,
}

impl FaultRun {
    /// Every way the run went wrong: a missing page, a page before the fault, a forbidden page.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (expected, page) in &self.pages {
            match page {
                Err(e) => out.push(format!(
                    "{}: {} did not page: {e}",
                    self.fault.name(),
                    expected.describe()
                )),
                Ok((alert, _)) if alert.label("severity") != "critical" => out.push(format!(
                    "{}: {} paged with severity {:?}, not critical",
                    self.fault.name(),
                    alert.describe(),
                    alert.label("severity")
                )),
                Ok(_) => {}
            }
        }
        for a in &self.before {
            out.push(format!(
                "{}: paged before the fault: {}",
                self.fault.name(),
                a.describe()
            ));
        }
        for (a, _) in &self.after {
            if self.fault.forbidden().contains(&a.name.as_str()) {
                out.push(format!(
                    "{}: misdiagnosed as {}",
                    self.fault.name(),
                    a.describe()
                ));
            }
        }
        out
    }
}

/// A fresh chain, the fault, and every page it produced.
fn inject_and_wait(fault: Fault) -> FaultRun {
    let mut chain = Chain::start(&Settings::short(), fault.access());
    let before = chain.webhook.firing();
    let injected = chain.inject(fault);
    let mut pages = Vec::new();
    let mut floors = Vec::new();
    for expected in fault.expected() {
        floors.push(expected.floor(&chain.rules));
        let page = chain
            .webhook
            .wait_for_firing(expected.alert, &expected.labels, injected, PAGE_TIMEOUT)
            .map(|a| {
                let delay = a.at.saturating_duration_since(injected);
                (a, delay)
            })
            .map_err(|e| format!("{e:#}\n{}", chain.diagnostics()));
        pages.push((expected, page));
    }
    std::thread::sleep(SETTLE);
    let after = chain
        .webhook
        .firing()
        .into_iter()
        .filter(|a| a.at >= injected)
        .map(|a| {
            let delay = a.at.saturating_duration_since(injected);
            (a, delay)
        })
        .collect();
    let run = FaultRun {
        fault,
        pages,
        before,
        after,
        floors,
    };
    for ((expected, page), floor) in run.pages.iter().zip(&run.floors) {
        if let Ok((alert, delay)) = page {
            println!(
                "fault-to-page: {} -> {} in {:.2}s (floor {:.0}s)",
                fault.name(),
                alert.describe(),
                delay.as_secs_f64(),
                floor.as_secs_f64()
            );
        } else {
            println!(
                "fault-to-page: {} -> {} MISSED",
                fault.name(),
                expected.describe()
            );
        }
    }
    for (a, delay) in &run.after {
        println!(
            "  paged after {:.2}s: {} severity={}",
            delay.as_secs_f64(),
            a.describe(),
            a.label("severity")
        );
    }
    run
}

fn assert_pages(fault: Fault) {
    let run = inject_and_wait(fault);
    let problems = run.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What the healthy run produced.
struct HealthyRun {
    /// Every firing alert received over the whole chain's life.
    pages: Vec<ReceivedAlert>,
    /// The transient errors injected, by proxy rule name.
    transients: Vec<&'static str>,
    failed_runs: f64,
    runs: f64,
    /// `step/reason xN` of every failed step, from the prober's /metrics.
    failed_steps: Vec<String>,
}

/// A healthy registry behind a fault proxy for [`HEALTHY`], with one transient error of each
/// kind spread over it, each failing a single request (`times(1)`) and so a single run.
fn healthy_run_with_transient_errors() -> HealthyRun {
    let chain = Chain::start(&Settings::short(), Access::Proxy);
    let proxy = chain.proxy.as_ref().expect("a proxy");
    let transients: Vec<Rule> = vec![
        // start_upload, http_5xx
        Rule::new(
            "upload_503",
            "/v2/registry-prober/probe/blobs/uploads/",
            ProxyFault::status(503),
        )
        .method(Method::POST),
        // pull_golden_blob, io: a reset is not a content mismatch
        Rule::new(
            "golden_blob_reset",
            "/v2/golden/base/blobs/sha256:",
            ProxyFault::ResetMidBody { after: 10 },
        )
        .method(Method::GET),
        // pull_canary_manifest, http_5xx
        Rule::new("canary_manifest_500", "-canary-", ProxyFault::status(500)).method(Method::GET),
        // a blob GET that never answers: the run hits its deadline (timeout)
        Rule::new(
            "blob_hang",
            "/v2/registry-prober/probe/blobs/sha256:",
            ProxyFault::Hang,
        )
        .method(Method::GET),
    ];
    let names: Vec<&'static str> = vec![
        "upload_503",
        "golden_blob_reset",
        "canary_manifest_500",
        "blob_hang",
    ];
    let start = Instant::now();
    let spacing = HEALTHY / (transients.len() as u32 + 1);
    for (i, rule) in transients.into_iter().enumerate() {
        let due = start + spacing * (i as u32 + 1);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let name = rule.name.clone();
        let failed_before = chain.prober_runs("failure");
        proxy.add_rule(rule.times(1));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(proxy.hits(&name) == 1 && chain.prober_runs("failure") > failed_before) {
            assert!(
                Instant::now() < deadline,
                "transient {name} did not fail a run (hits {})\n{}",
                proxy.hits(&name),
                chain.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep((start + HEALTHY).saturating_duration_since(Instant::now()));
    let pages = chain.webhook.firing();
    let failed_runs = chain.prober_runs("failure");
    let runs = failed_runs + chain.prober_runs("success");
    if !pages.is_empty() {
        println!("healthy run paged:\n{}", chain.diagnostics());
    }
    HealthyRun {
        pages,
        transients: names,
        failed_runs,
        runs,
        failed_steps: failed_steps(&chain.prober.metrics().expect("prober metrics")),
    }
}

/// `step/reason xN` for each `registry_prober_step_failures_total` series of an exposition.
fn failed_steps(exposition: &str) -> Vec<String> {
    let label = |line: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        line.find(&key)
            .map(|at| &line[at + key.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    exposition
        .lines()
        .filter(|l| l.starts_with("registry_prober_step_failures_total{"))
        .map(|l| {
            let count = l.rsplit(' ').next().unwrap_or_default();
            format!("{}/{} x{count}", label(l, "step"), label(l, "reason"))
        })
        .collect()
}

// --- the tests -------------------------------------------------------------------------------

#[test]
fn a_healthy_registry_with_transient_errors_never_pages() {
    let run = healthy_run_with_transient_errors();
    println!(
        "healthy run: {} runs, {} failed by {} transient errors ({}; failed steps: {}), {} false pages",
        run.runs,
        run.failed_runs,
        run.transients.len(),
        run.transients.join(", "),
        run.failed_steps.join(", "),
        run.pages.len()
    );
    // Each transient error failed a run (checked as it was injected); more failed runs than
    // transients would be failures of a healthy registry, worth a look but not a page.
    assert!(
        run.failed_runs >= run.transients.len() as f64,
        "{} failed runs for {} transient errors",
        run.failed_runs,
        run.transients.len()
    );
    let pages: Vec<String> = run.pages.iter().map(ReceivedAlert::describe).collect();
    assert!(pages.is_empty(), "false pages: {pages:#?}");
}

#[test]
fn a_stopped_registry_pages_target_stale_and_path_failing() {
    assert_pages(Fault::RegistryStopped);
}

#[test]
fn unwritable_uploads_page_push_failing_pulls_work() {
    assert_pages(Fault::UploadsUnwritable);
}

#[test]
fn a_corrupted_golden_blob_pages_content_mismatch() {
    assert_pages(Fault::GoldenBlobCorrupted);
}

#[test]
fn a_deleted_canary_blob_pages_content_lost() {
    assert_pages(Fault::CanaryBlobDeleted);
}

/// The measuring mode of scripts/fault-to-page: every fault $FAULT_TO_PAGE_REPEATS times (3
/// by default) on a fresh chain each, one after the other (no other chain competing for the
/// CPU), then the healthy run; prints the fault-to-page table in markdown.
#[test]
#[ignore = "measuring mode, several minutes: scripts/fault-to-page runs it"]
fn fault_to_page_table() {
    let repeats: usize = std::env::var(REPEATS_ENV)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{REPEATS_ENV}={v:?} is not a count"))
        })
        .unwrap_or(3);
    assert!(repeats >= 1, "{REPEATS_ENV} must be at least 1");
    // (fault, expected alert) -> delays; floors; every other page seen.
    // Keyed by (fault, index in Fault::expected, alert) so the table keeps that order.
    let mut delays: BTreeMap<(Fault, usize, String), Vec<f64>> = BTreeMap::new();
    let mut floors: BTreeMap<(Fault, usize, String), f64> = BTreeMap::new();
    let mut also: BTreeMap<Fault, BTreeMap<String, (String, Vec<f64>)>> = BTreeMap::new();
    let mut problems = Vec::new();
    for fault in Fault::SHORT {
        for rep in 1..=repeats {
            eprintln!("fault-to-page: {} ({rep}/{repeats})", fault.name());
            let run = inject_and_wait(fault);
            problems.extend(
                run.problems()
                    .into_iter()
                    .map(|p| format!("run {rep}: {p}")),
            );
            for (i, ((expected, page), floor)) in run.pages.iter().zip(&run.floors).enumerate() {
                let key = (fault, i, expected.describe());
                floors.insert(key.clone(), floor.as_secs_f64());
                let entry = delays.entry(key).or_default();
                if let Ok((_, delay)) = page {
                    entry.push(delay.as_secs_f64());
                }
            }
            for (a, delay) in &run.after {
                let seen = also.entry(fault).or_default();
                let slot = seen
                    .entry(a.describe())
                    .or_insert_with(|| (a.label("severity").to_string(), Vec::new()));
                slot.1.push(delay.as_secs_f64());
            }
        }
    }
    eprintln!("fault-to-page: healthy run ({}s)", HEALTHY.as_secs());
    let healthy = healthy_run_with_transient_errors();

    let mut out = String::new();
    out.push_str("=== fault-to-page ===\n");
    out.push_str(&format!(
        "Prober interval {}s, scrape {}s, evaluation {}s, group_wait {}s; rules: the mixin's _config with windows and `for` / 60 (tests/tests/pager.rs SHORT_RULES). {repeats} repetition(s) per fault, each on a fresh chain.\n\n",
        INTERVAL.as_secs(),
        SCRAPE_INTERVAL.as_secs(),
        SCRAPE_INTERVAL.as_secs(),
        alertmanager::GROUP_WAIT.as_secs()
    ));
    out.push_str("| fault | page | floor (s) | median (s) | min-max (s) | paged |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: |\n");
    for (key, ds) in &delays {
        let (fault, _, alert) = key;
        let floor = floors[key];
        let (median, range) = if ds.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            let mut s = ds.clone();
            s.sort_by(f64::total_cmp);
            (
                format!("{:.1}", median(&s)),
                format!("{:.1}-{:.1}", s[0], s[s.len() - 1]),
            )
        };
        out.push_str(&format!(
            "| {} | `{alert}` | {floor:.0} | {median} | {range} | {}/{repeats} |\n",
            fault.name(),
            ds.len()
        ));
    }
    out.push_str(
        "\nfloor = failed runs the rule needs x interval + scrape + evaluation + group_wait + the rule's `for` \
         (runs needed: min_failures 3 for PathFailing and PushFailingPullsWork, intervals 5 for TargetStale, 1 for the content alerts).\n\n",
    );
    out.push_str("Every page each fault produced (median seconds after the fault, repetitions that paged it):\n\n");
    for (fault, seen) in &also {
        for (alert, (severity, ds)) in seen {
            let mut s = ds.clone();
            s.sort_by(f64::total_cmp);
            out.push_str(&format!(
                "- {}: `{alert}` {severity}, {:.1}s, {}/{repeats}\n",
                fault.name(),
                median(&s),
                s.len()
            ));
        }
    }
    out.push_str(&format!(
        "\nHealthy run: {}s, {} runs, {} failed by transient errors ({}; failed steps: {}): {} false pages{}\n",
        HEALTHY.as_secs(),
        healthy.runs,
        healthy.failed_runs,
        healthy.transients.join(", "),
        healthy.failed_steps.join(", "),
        healthy.pages.len(),
        if healthy.pages.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                healthy
                    .pages
                    .iter()
                    .map(ReceivedAlert::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    out.push_str("=== end ===\n");
    println!("{out}");
    problems.extend(
        healthy
            .pages
            .iter()
            .map(|a| format!("healthy run: false page {}", a.describe())),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}
