//! A slow resolver shows up in the dns phase only: the prober library probes a real
//! docker-registry under a host name (`registry.test`) that only a resolver hook knows, once
//! with a hook that sleeps 300 ms before answering and once with one that answers at once.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registry_prober::{HttpRecord, Prober, RawConfig, Resolve, RunReport, Target};
use registry_prober_e2e::Registry;

const HOST: &str = "registry.test";
const DELAY: Duration = Duration::from_millis(300);

/// Resolves `registry.test` (and nothing else) to 127.0.0.1 after `delay`, counting lookups.
struct SlowResolver {
    delay: Duration,
    lookups: AtomicUsize,
}

impl SlowResolver {
    fn new(delay: Duration) -> Arc<SlowResolver> {
        Arc::new(SlowResolver {
            delay,
            lookups: AtomicUsize::new(0),
        })
    }
}

impl Resolve for SlowResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>> {
        let known = host == HOST;
        let host = host.to_string();
        Box::pin(async move {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if known {
                Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} is not known to the test resolver"),
                ))
            }
        })
    }
}

/// The target as a config file would give it, with the registry under `registry.test`.
fn target(reg: &Registry) -> Target {
    let yaml = format!(
        "targets:\n  - name: dns\n    registry: http://{HOST}:{}\n    repository: registry-prober/dns\n    allow_plain_http: true\n    interval: 1m\n    timeout: 30s\n    image:\n      layer_sizes: [4KiB, 64KiB]\n",
        reg.port()
    );
    RawConfig::from_yaml(&yaml)
        .expect("config parses")
        .validate()
        .expect("config is valid")
        .targets
        .remove(0)
}

async fn run_with(reg: &Registry, resolver: Arc<SlowResolver>) -> RunReport {
    let prober = Prober::with_resolver(target(reg), resolver);
    prober.run().await
}

fn requests(report: &RunReport) -> Vec<&HttpRecord> {
    report.steps.iter().flat_map(|s| &s.requests).collect()
}

fn secs(d: Option<Duration>) -> f64 {
    d.map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_resolver_shows_up_in_the_dns_phase_only() {
    let reg = Registry::start_default().expect("registry starts");

    let slow = SlowResolver::new(DELAY);
    let report = run_with(&reg, slow.clone()).await;
    assert!(
        report.success,
        "the run passes despite slow DNS: {:?}",
        report.first_failure()
    );
    let all = requests(&report);
    let first = all[0];
    assert!(
        first.url.starts_with(&format!("http://{HOST}:")),
        "{}",
        first.url
    );
    let slow_dns = first.dns_seconds.expect("a name was looked up");
    let dns = slow_dns;
    assert!(dns >= DELAY, "dns phase {dns:?} holds the resolver's delay");
    assert!(dns < DELAY + Duration::from_secs(2), "{dns:?}");
    let connect = first.connect_seconds.expect("a new connection");
    assert!(connect < Duration::from_millis(250), "connect {connect:?}");
    let first_byte = first.first_byte_seconds.expect("a response head");
    assert!(
        first_byte < Duration::from_millis(250),
        "first byte {first_byte:?}"
    );
    // Every new connection looked the name up once (and paid the delay in dns); reused
    // ones did not look it up at all.
    let new: Vec<&&HttpRecord> = all.iter().filter(|r| !r.reused_connection).collect();
    assert!(new
        .iter()
        .all(|r| r.dns_seconds.is_some_and(|d| d >= DELAY)));
    assert!(all
        .iter()
        .filter(|r| r.reused_connection)
        .all(|r| r.dns_seconds.is_none()));
    assert_eq!(slow.lookups.load(Ordering::SeqCst), new.len());
    // The delay is in no connect phase of any request (first_byte of a PUT also holds the
    // registry's work on the body, so only the first request's is bounded above).
    for r in &all {
        assert!(
            secs(r.connect_seconds) < 0.25,
            "{} {}: connect {:?}",
            r.method,
            r.url,
            r.connect_seconds
        );
    }

    let fast = SlowResolver::new(Duration::ZERO);
    let report = run_with(&reg, fast.clone()).await;
    assert!(report.success, "{:?}", report.first_failure());
    let first = requests(&report)[0];
    let dns = first.dns_seconds.expect("a name was looked up");
    assert!(
        dns < Duration::from_millis(50),
        "dns phase {dns:?} without delay"
    );
    assert!(fast.lookups.load(Ordering::SeqCst) >= 1);
    eprintln!(
        "dns phase of the first request: {:.3} s with the 300 ms hook, {:.4} s without",
        slow_dns.as_secs_f64(),
        dns.as_secs_f64()
    );
}
