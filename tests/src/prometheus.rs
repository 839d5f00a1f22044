//! A real Prometheus (Debian `prometheus`, 2.42) on a free 127.0.0.1 port that scrapes given
//! targets every second, or as configured (optionally evaluating rule files and sending alerts
//! to Alertmanagers),
//! its TSDB, config and log in a temp dir; queried through its HTTP API and stopped by PID
//! (SIGTERM, then SIGKILL) on [`Prometheus::stop`] or drop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::http::HttpClient;
use crate::process::{tail, Daemon};

/// Path of the Prometheus binary (Debian package `prometheus`).
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
/// Scrape (and rule evaluation) interval of the test Prometheus, unless its options say otherwise.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// How long [`Prometheus::start`] waits for `/-/ready`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One scrape job: its name and the `host:port` it scrapes at `/metrics`.
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    pub job: String,
    pub address: String,
    /// Target labels added to every scraped series (the chart's ServiceMonitor adds `location`).
    pub labels: Vec<(String, String)>,
}

impl ScrapeJob {
    pub fn new(job: &str, address: &str) -> ScrapeJob {
        ScrapeJob {
            job: job.into(),
            address: address.into(),
            labels: Vec::new(),
        }
    }

    /// The same job with `name="value"` on every series it scrapes.
    pub fn with_label(mut self, name: &str, value: &str) -> ScrapeJob {
        self.labels.push((name.into(), value.into()));
        self
    }
}

/// What else Prometheus is started with besides its scrape jobs; the default is nothing.
#[derive(Debug, Clone, Default)]
pub struct PrometheusOptions {
    /// Rule files (`rule_files`), evaluated every `evaluation_interval`.
    pub rule_files: Vec<PathBuf>,
    /// Alertmanagers (`host:port`) that firing alerts are sent to.
    pub alertmanagers: Vec<String>,
    /// `scrape_interval` (e.g. 15 s, as production setups run); [`SCRAPE_INTERVAL`] when
    /// `None`. The scrape timeout is the interval, at most 10 s.
    pub scrape_interval: Option<Duration>,
    /// `evaluation_interval`; [`SCRAPE_INTERVAL`] when `None`.
    pub evaluation_interval: Option<Duration>,
}

/// What Prometheus answered to a query: its `data`, or its own error (a PromQL parse or
/// execution error, with Prometheus's `errorType`).
#[derive(Debug, Clone)]
pub enum Answer {
    Data(Value),
    Error { kind: String, message: String },
}

/// A running Prometheus.
pub struct Prometheus {
    daemon: Daemon,
    /// Holds the config, TSDB and log until Prometheus is dropped.
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes a config scraping `jobs` every [`SCRAPE_INTERVAL`], starts Prometheus on a free
    /// loopback port and waits until `/-/ready` answers 200. A start that lost its port to
    /// another listener is retried on a fresh port.
    pub fn start(jobs: &[ScrapeJob]) -> anyhow::Result<Prometheus> {
        Self::start_with(jobs, &PrometheusOptions::default())
    }

    /// [`Prometheus::start`] that also loads `opts.rule_files` and sends alerts to
    /// `opts.alertmanagers`.
    pub fn start_with(jobs: &[ScrapeJob], opts: &PrometheusOptions) -> anyhow::Result<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .context("creating the Prometheus temp dir")?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, render_config(jobs, opts))
            .with_context(|| format!("writing {}", config_path.display()))?;
        let data = dir.path().join("data");
        let daemon = Daemon::start(
            "prometheus",
            PROMETHEUS_BIN,
            |port| {
                vec![
                    format!("--config.file={}", config_path.display()),
                    format!("--storage.tsdb.path={}", data.display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                ]
            },
            dir.path().join("prometheus.log"),
            "/-/ready",
            START_TIMEOUT,
        )?;
        Ok(Prometheus { daemon, _dir: dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.daemon.url()
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Evaluates `expr` as an instant query at the current time (`/api/v1/query`).
    /// Err only when Prometheus could not be asked; a PromQL error is [`Answer::Error`].
    pub fn query(&self, expr: &str) -> anyhow::Result<Answer> {
        self.api(&format!("/api/v1/query?query={}", urlencode(expr)))
    }

    /// Values of `label` on the series that match `selector` (`/api/v1/label/NAME/values`),
    /// which is what Grafana asks for `label_values(selector, label)`.
    pub fn label_values(&self, label: &str, selector: Option<&str>) -> anyhow::Result<Answer> {
        let mut path = format!("/api/v1/label/{}/values", urlencode(label));
        if let Some(s) = selector {
            path.push_str(&format!("?match[]={}", urlencode(s)));
        }
        self.api(&path)
    }

    /// The rule groups Prometheus loaded, with each rule's state (`/api/v1/rules`).
    pub fn rules(&self) -> anyhow::Result<Answer> {
        self.api("/api/v1/rules")
    }

    fn api(&self, path_and_query: &str) -> anyhow::Result<Answer> {
        let url = format!("{}{path_and_query}", self.url());
        let r = HttpClient::new()
            .with_timeout(Duration::from_secs(30))
            .get(&url)
            .with_context(|| format!("GET {url}"))?;
        let body: Value = r
            .json()
            .with_context(|| format!("GET {url} answered {}", r.status))?;
        match body["status"].as_str() {
            Some("success") => Ok(Answer::Data(body["data"].clone())),
            Some("error") => Ok(Answer::Error {
                kind: body["errorType"].as_str().unwrap_or("").into(),
                message: body["error"].as_str().unwrap_or("").into(),
            }),
            _ => bail!("GET {url} answered {} with {body}", r.status),
        }
    }

    /// Waits until Prometheus holds at least `n` samples of `up{job="JOB"} == 1`, i.e. `n`
    /// successful scrapes of the job. Asks every 250 ms, or every 2 s for waits of minutes.
    pub fn wait_for_scrapes(&self, job: &str, n: u32, timeout: Duration) -> anyhow::Result<()> {
        // up is 1 per successful scrape, 0 per failed one; a day holds every scrape of a test.
        let count = format!("sum(sum_over_time(up{{job=\"{job}\"}}[1d]))");
        let poll = if timeout > Duration::from_secs(120) {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(250)
        };
        let start = Instant::now();
        loop {
            let got = match self.query(&count) {
                Ok(Answer::Data(data)) => samples(&data).first().map_or(0.0, |(_, v)| *v),
                _ => 0.0,
            };
            if got >= f64::from(n) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "prometheus has {got} successful scrapes of job {job}, not {n}, after \
                     {timeout:?} ({count}); log:\n{}",
                    tail(&self.log(), 4000)
                );
            }
            std::thread::sleep(poll);
        }
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Stops the process (SIGTERM by PID, then SIGKILL). Idempotent; also done on drop.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}

/// The samples of a query's `data`: one (labels, value) per series of a vector, the last
/// point of each series of a matrix, or the scalar. Values that are not numbers ("NaN" parses
/// to NaN) are kept, so callers can tell "no series" from "series without a finite value".
pub fn samples(data: &Value) -> Vec<(serde_json::Map<String, Value>, f64)> {
    let value = |pair: &Value| -> f64 {
        pair.get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        (
                            r["metric"].as_object().cloned().unwrap_or_default(),
                            value(&r["value"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some("matrix") => data["result"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| {
                        let last = r["values"].as_array()?.last()?;
                        Some((
                            r["metric"].as_object().cloned().unwrap_or_default(),
                            value(last),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some("scalar") => vec![(serde_json::Map::new(), value(&data["result"]))],
        _ => Vec::new(),
    }
}

fn render_config(jobs: &[ScrapeJob], opts: &PrometheusOptions) -> String {
    let millis = |d: Option<Duration>| d.unwrap_or(SCRAPE_INTERVAL).as_millis().max(1);
    let (scrape, evaluation) = (
        millis(opts.scrape_interval),
        millis(opts.evaluation_interval),
    );
    let timeout = scrape.min(10_000);
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let mut y = format!(
        "global:\n  scrape_interval: {scrape}ms\n  scrape_timeout: {timeout}ms\n  evaluation_interval: {evaluation}ms\n"
    );
    if !opts.rule_files.is_empty() {
        y.push_str("rule_files:\n");
        for f in &opts.rule_files {
            y.push_str(&format!("  - {}\n", q(&f.to_string_lossy())));
        }
    }
    if !opts.alertmanagers.is_empty() {
        y.push_str("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets:\n");
        for a in &opts.alertmanagers {
            y.push_str(&format!("            - {}\n", q(a)));
        }
    }
    y.push_str("scrape_configs:\n");
    for j in jobs {
        y.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
            serde_json::Value::String(j.job.clone()),
            serde_json::Value::String(j.address.clone())
        ));
        if !j.labels.is_empty() {
            y.push_str("        labels:\n");
            for (name, value) in &j.labels {
                y.push_str(&format!(
                    "          {name}: {}\n",
                    serde_json::Value::String(value.clone())
                ));
            }
        }
    }
    y
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for query parameters).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencode_keeps_unreserved_characters_only() {
        assert_eq!(
            urlencode(r#"sum by (le) (x{a=~"b|c"}[1m])"#),
            "sum%20by%20%28le%29%20%28x%7Ba%3D~%22b%7Cc%22%7D%5B1m%5D%29"
        );
    }

    #[test]
    fn samples_read_vectors_matrices_scalars_and_nan() {
        let v: Value = serde_json::json!({"resultType": "vector", "result": [
            {"metric": {"a": "1"}, "value": [1.0, "2.5"]},
            {"metric": {}, "value": [1.0, "NaN"]}]});
        let s = samples(&v);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1, 2.5);
        assert!(s[1].1.is_nan());
        let m: Value = serde_json::json!({"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1.0, "1"], [2.0, "3"]]}]});
        assert_eq!(samples(&m)[0].1, 3.0);
        let sc: Value = serde_json::json!({"resultType": "scalar", "result": [1.0, "7"]});
        assert_eq!(samples(&sc)[0].1, 7.0);
        let empty: Value = serde_json::json!({"resultType": "vector", "result": []});
        assert!(samples(&empty).is_empty());
    }
}
