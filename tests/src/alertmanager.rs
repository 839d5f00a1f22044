//! A real Alertmanager (Debian `prometheus-alertmanager`, 0.25) on a free 127.0.0.1 port, no
//! cluster listener, that sends every alert to one webhook as soon as it arrives; its config,
//! data and log in a temp dir. Stopped by PID (SIGTERM, then SIGKILL) on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::http::HttpClient;
use crate::ports::try_free_port;
use crate::process::tail;

/// Path of the Alertmanager binary (Debian package `prometheus-alertmanager`).
pub const ALERTMANAGER_BIN: &str = "/usr/bin/prometheus-alertmanager";
/// How long [`Alertmanager::start`] waits for `/-/ready`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// `group_wait`: a new alert group is sent at once.
pub const GROUP_WAIT: Duration = Duration::ZERO;
/// `group_interval`: changes to a group (another alert, a resolution) go out within a second.
pub const GROUP_INTERVAL: Duration = Duration::from_secs(1);
/// `repeat_interval`: longer than any test, so each alert is sent once while it fires.
pub const REPEAT_INTERVAL: &str = "24h";

/// A running Alertmanager.
pub struct Alertmanager {
    child: Option<Child>,
    port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Writes a config that routes every alert to `webhook_url` (one group per label set,
    /// [`GROUP_WAIT`], [`GROUP_INTERVAL`], [`REPEAT_INTERVAL`], resolutions sent too), starts
    /// Alertmanager on a free loopback port and waits until `/-/ready` answers 200. A start
    /// that lost its port to another listener is retried on a fresh port.
    pub fn start(webhook_url: &str) -> anyhow::Result<Alertmanager> {
        let dir = tempfile::Builder::new()
            .prefix("alertmanager-")
            .tempdir()
            .context("creating the Alertmanager temp dir")?;
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, render_config(webhook_url))
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut am = Alertmanager {
            child: None,
            port: 0,
            log_path: dir.path().join("alertmanager.log"),
            config_path,
            dir,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            am.port = try_free_port()?;
            match am.spawn_and_wait() {
                Ok(()) => return Ok(am),
                Err(e) if attempt < 5 && am.log().contains("address already in use") => {
                    let _ = std::fs::remove_file(&am.log_path);
                    eprintln!(
                        "alertmanager start: port taken by another listener, retrying ({e:#})"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(&self.log_path)
            .with_context(|| format!("creating {}", self.log_path.display()))?;
        let child = Command::new(ALERTMANAGER_BIN)
            .arg(format!("--config.file={}", self.config_path.display()))
            .arg(format!(
                "--storage.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // Empty: no gossip listener (by default it binds every interface on 9094).
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {ALERTMANAGER_BIN}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let client = HttpClient::new().with_timeout(Duration::from_millis(500));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling alertmanager")? {
                    self.child = None;
                    bail!(
                        "alertmanager exited during startup ({status}); log:\n{}",
                        tail(&self.log(), 4000)
                    );
                }
            }
            if let Ok(r) = client.get(&format!("{}/-/ready", self.url())) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!(
                    "alertmanager on port {} was not ready within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    tail(&self.log(), 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, for Prometheus's `alerting.alertmanagers` static targets.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the process: SIGTERM by PID, up to 10 s to shut down, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}

fn render_config(webhook_url: &str) -> String {
    // group_by ['...']: every label set is its own group, so each alert is its own
    // notification and its arrival time is its own.
    format!(
        "route:\n  receiver: webhook\n  group_by: ['...']\n  group_wait: {}s\n  group_interval: {}s\n  repeat_interval: {REPEAT_INTERVAL}\nreceivers:\n  - name: webhook\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
        GROUP_WAIT.as_secs(),
        GROUP_INTERVAL.as_secs(),
        serde_json::Value::String(webhook_url.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_routes_everything_to_the_webhook_at_once() {
        let y = render_config("http://127.0.0.1:1/alerts");
        assert!(y.contains("group_wait: 0s\n"), "{y}");
        assert!(y.contains("group_interval: 1s\n"), "{y}");
        assert!(y.contains("- url: \"http://127.0.0.1:1/alerts\"\n"), "{y}");
    }
}
