//! Running `registry-prober run --config FILE` as a service in a test: its HTTP endpoints on a
//! free loopback port, its logs in a file, signals sent by PID, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::bins::prober_bin;
use crate::http::HttpClient;
use crate::ports::try_free_port;

/// A running prober service.
pub struct Service {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Service {
    /// Writes `targets_yaml` (the `targets:` list and any other top-level keys, without
    /// `listen`) into a config file and starts the service with JSON logs.
    pub fn start(config_body: &str) -> anyhow::Result<Service> {
        Self::start_with_env(config_body, &[])
    }

    /// [`Service::start`] with these environment variables set. The test's own `OTEL_*`
    /// variables are never passed on, so only what a test sets configures traces.
    pub fn start_with_env(config_body: &str, env: &[(&str, &str)]) -> anyhow::Result<Service> {
        Self::spawn(config_body, env, None)
    }

    /// [`Service::start`] in a mount namespace of its own where `hosts` is bind-mounted over
    /// /etc/hosts (`unshare --mount`, root only), so a test controls which names the prober's
    /// getaddrinfo resolves: emptying `hosts` (written in place, the bind keeps its inode) makes
    /// a name fail to resolve for the prober alone. The PID is the prober's (`exec`).
    pub fn start_with_hosts(config_body: &str, hosts: &Path) -> anyhow::Result<Service> {
        Self::spawn(config_body, &[], Some(hosts))
    }

    fn spawn(
        config_body: &str,
        env: &[(&str, &str)],
        hosts: Option<&Path>,
    ) -> anyhow::Result<Service> {
        let dir = tempfile::Builder::new()
            .prefix("prober-service-")
            .tempdir()
            .context("temp dir")?;
        let port = try_free_port()?;
        let config = dir.path().join("prober.yml");
        std::fs::write(&config, format!("listen: 127.0.0.1:{port}\n{config_body}"))
            .context("writing config")?;
        let log =
            std::fs::File::create(dir.path().join("prober.log")).context("creating log file")?;
        let mut cmd = match hosts {
            None => Command::new(prober_bin()?),
            Some(hosts) => {
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                    .arg(hosts)
                    .arg(prober_bin()?);
                cmd
            }
        };
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                cmd.env_remove(name);
            }
        }
        let child = cmd
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(&config)
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log handle")?)
            .stderr(log)
            .spawn()
            .context("starting registry-prober run")?;
        let mut svc = Service {
            child: Some(child),
            port,
            dir,
            config,
        };
        svc.wait_for("readyz to answer 200", Duration::from_secs(10), |s| {
            Ok(s.get("/readyz").map(|r| r.status == 200).unwrap_or(false))
        })?;
        Ok(svc)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// GET a path of the service.
    pub fn get(&self, path: &str) -> anyhow::Result<crate::http::Response> {
        HttpClient::new()
            .with_timeout(Duration::from_secs(5))
            .get(&format!("{}{path}", self.url()))
    }

    /// The /metrics text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let r = self.get("/metrics")?;
        if r.status != 200 {
            bail!("/metrics answered {}", r.status);
        }
        Ok(r.text())
    }

    /// The value of one exposition line, e.g.
    /// `registry_prober_runs_total{target="a",result="success"}`; None when absent.
    pub fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        Ok(metric_value(&self.metrics()?, series))
    }

    /// Polls `cond` every 100 ms until it holds or `timeout` passes (then an error naming `what`
    /// with the log tail).
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Service) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling the service")? {
                    bail!(
                        "the service exited ({status}) while waiting for {what}; log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if cond(self)? {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a signal by PID (`kill -s NAME PID`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the service is not running")?;
        let status = Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -s {name} {pid} failed: {status}");
        }
        Ok(())
    }

    /// Waits at most `timeout` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<i32> {
        let start = Instant::now();
        let child = self.child.as_mut().context("already stopped")?;
        loop {
            if let Some(status) = child.try_wait().context("waiting for the service")? {
                self.child = None;
                return Ok(status.code().unwrap_or(-1));
            }
            if start.elapsed() > timeout {
                bail!(
                    "the service did not exit within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole log (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prober.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        crate::process::tail(&self.log(), 4000)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of `series` (the exact text before the value) in an exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?.split(' ').next()?;
        value.parse().ok()
    })
}
