//! A real Alertmanager (Debian `prometheus-alertmanager`, 0.25) on a free 127.0.0.1 port, no
//! cluster listener, that sends every alert to one webhook as soon as it arrives (or routes them
//! as a given config does, e.g. the shipped example's, with its receivers pointed at the
//! webhook); its config, data and log in a temp dir. Stopped by PID (SIGTERM, then SIGKILL) on
//! drop.

use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::http::HttpClient;
use crate::process::Daemon;

/// Path of the Alertmanager binary (Debian package `prometheus-alertmanager`).
pub const ALERTMANAGER_BIN: &str = "/usr/bin/prometheus-alertmanager";
/// How long [`Alertmanager::start`] waits for `/-/ready`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// `group_wait`: a new alert group is sent at once.
pub const GROUP_WAIT: Duration = Duration::ZERO;
/// `group_interval`: changes to a group (another alert, a resolution) go out within a second.
pub const GROUP_INTERVAL: Duration = Duration::from_secs(1);
/// `repeat_interval`: longer than any test, so each alert is sent once while it fires.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A running Alertmanager.
pub struct Alertmanager {
    daemon: Daemon,
    /// Holds the config, data and log until Alertmanager is dropped.
    _dir: tempfile::TempDir,
}

/// How Alertmanager batches notifications: `group_wait`, `group_interval`, `repeat_interval`.
/// The default is the tests' ([`GROUP_WAIT`], [`GROUP_INTERVAL`], [`REPEAT_INTERVAL`]);
/// [`Timings::production`] is Alertmanager's own defaults.
#[derive(Debug, Clone)]
pub struct Timings {
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            group_wait: GROUP_WAIT,
            group_interval: GROUP_INTERVAL,
            repeat_interval: REPEAT_INTERVAL,
        }
    }
}

impl Timings {
    /// Alertmanager's defaults: group_wait 30s, group_interval 5m, repeat_interval 4h.
    pub fn production() -> Timings {
        Timings {
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

impl Alertmanager {
    /// Writes a config that routes every alert to `webhook_url` (one group per label set,
    /// [`GROUP_WAIT`], [`GROUP_INTERVAL`], [`REPEAT_INTERVAL`], resolutions sent too), starts
    /// Alertmanager on a free loopback port and waits until `/-/ready` answers 200. A start
    /// that lost its port to another listener is retried on a fresh port.
    pub fn start(webhook_url: &str) -> anyhow::Result<Alertmanager> {
        Self::start_with(webhook_url, &Timings::default())
    }

    /// [`Alertmanager::start`] with other notification timings.
    pub fn start_with(webhook_url: &str, timings: &Timings) -> anyhow::Result<Alertmanager> {
        Self::start_with_config(&render_config(webhook_url, timings))
    }

    /// [`Alertmanager::start`] with this whole config (YAML) instead.
    pub fn start_with_config(config: &str) -> anyhow::Result<Alertmanager> {
        let dir = tempfile::Builder::new()
            .prefix("alertmanager-")
            .tempdir()
            .context("creating the Alertmanager temp dir")?;
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let data = dir.path().join("data");
        let daemon = Daemon::start(
            "alertmanager",
            ALERTMANAGER_BIN,
            |port| {
                vec![
                    format!("--config.file={}", config_path.display()),
                    format!("--storage.path={}", data.display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    // Empty: no gossip listener (by default it binds every interface on 9094).
                    "--cluster.listen-address=".to_string(),
                ]
            },
            dir.path().join("alertmanager.log"),
            "/-/ready",
            START_TIMEOUT,
        )?;
        Ok(Alertmanager { daemon, _dir: dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.daemon.url()
    }

    /// `127.0.0.1:PORT`, for Prometheus's `alerting.alertmanagers` static targets.
    pub fn host_port(&self) -> String {
        self.daemon.host_port()
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// The alerts Alertmanager holds now (`GET /api/v2/alerts`), for diagnostics.
    pub fn alerts(&self) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/api/v2/alerts", self.url());
        HttpClient::new()
            .with_timeout(Duration::from_secs(10))
            .get(&url)
            .with_context(|| format!("GET {url}"))?
            .json()
    }

    /// Everything Alertmanager logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Stops the process (SIGTERM by PID, then SIGKILL). Idempotent; also done on drop.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}

fn render_config(webhook_url: &str, t: &Timings) -> String {
    // group_by ['...']: every label set is its own group, so each alert is its own
    // notification and its arrival time is its own.
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    format!(
        "route:\n  receiver: webhook\n  group_by: ['...']\n  group_wait: {}\n  group_interval: {}\n  repeat_interval: {}\nreceivers:\n  - name: webhook\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
        ms(t.group_wait),
        ms(t.group_interval.max(Duration::from_millis(1))),
        ms(t.repeat_interval),
        serde_json::Value::String(webhook_url.to_string())
    )
}

/// `config` (an Alertmanager config such as alerts/alertmanager.example.yml, written as that file
/// is: a top-level `receivers:` list of `  - name: NAME` entries) with every receiver sending to
/// `webhook_url` (resolutions too), and its routes, grouping, timings and inhibitions unchanged.
pub fn with_webhook_receivers(config: &str, webhook_url: &str) -> anyhow::Result<String> {
    let lines: Vec<&str> = config.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "receivers:")
        .context("the config has no top-level `receivers:`")?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with('#'))
        .map_or(lines.len(), |i| start + 1 + i);
    // Comments and blank lines just before the next key belong to it.
    let mut end = end;
    while end > start + 1 && (lines[end - 1].is_empty() || lines[end - 1].starts_with('#')) {
        end -= 1;
    }
    let names: Vec<&str> = lines[start + 1..end]
        .iter()
        .filter_map(|l| l.strip_prefix("  - name: "))
        .map(str::trim)
        .collect();
    if names.is_empty() {
        bail!("`receivers:` names no receiver (`  - name: NAME` lines)");
    }
    let url = serde_json::Value::String(webhook_url.to_string());
    let mut out: Vec<String> = lines[..=start].iter().map(|l| l.to_string()).collect();
    for name in names {
        out.push(format!(
            "  - name: {name}\n    webhook_configs:\n      - url: {url}\n        send_resolved: true"
        ));
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_routes_everything_to_the_webhook_at_once() {
        let y = render_config("http://127.0.0.1:1/alerts", &Timings::default());
        assert!(y.contains("group_wait: 0ms\n"), "{y}");
        assert!(y.contains("group_interval: 1000ms\n"), "{y}");
        assert!(y.contains("repeat_interval: 86400000ms\n"), "{y}");
        assert!(y.contains("- url: \"http://127.0.0.1:1/alerts\"\n"), "{y}");
    }

    #[test]
    fn the_example_keeps_its_routing_with_every_receiver_on_the_webhook() {
        let example = "route:\n  receiver: tickets\n  group_wait: 30s\nreceivers:\n  - name: pager\n  - name: tickets\n# inhibitions\ninhibit_rules:\n  - equal: [target]\n";
        let y = with_webhook_receivers(example, "http://127.0.0.1:1/alerts").expect("rewritten");
        assert!(
            y.starts_with("route:\n  receiver: tickets\n  group_wait: 30s\nreceivers:\n"),
            "{y}"
        );
        assert_eq!(
            y.matches("      - url: \"http://127.0.0.1:1/alerts\"\n")
                .count(),
            2,
            "{y}"
        );
        assert!(y.contains("  - name: pager\n    webhook_configs:\n"), "{y}");
        assert!(
            y.ends_with("# inhibitions\ninhibit_rules:\n  - equal: [target]\n"),
            "{y}"
        );
        assert!(with_webhook_receivers("route: {}\n", "http://x").is_err());
    }
}
