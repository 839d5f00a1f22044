//! Running a command to completion with a deadline, so no test can hang on a child process.

use anyhow::{bail, Context as _};
use std::io::Read as _;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Output of a finished command: [`std::process::Output`].
pub type ProcessOutput = Output;

/// Runs `cmd` (stdin closed, stdout and stderr captured) and waits at most `timeout`. On
/// timeout the child is killed (by its PID, via `Child::kill`) and reaped, and an error with
/// the output so far is returned. A non-zero exit is *not* an error here: check `status`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut out = child.stdout.take().context("child stdout was not piped")?;
    let mut err = child.stderr.take().context("child stderr was not piped")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status: Option<ExitStatus> = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            break Some(status);
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "{what} did not finish within {timeout:?} and was killed; stderr: {}; stdout: {}",
            tail(&String::from_utf8_lossy(&stderr), 4000),
            tail(&String::from_utf8_lossy(&stdout), 2000)
        ),
    }
}

/// The last `max` bytes of `s` (on a char boundary), prefixed with "..." when cut.
pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// A server the tests start and own: output in a log file, ready once `GET <url><ready_path>`
/// answers 200 (or 401 with a WWW-Authenticate challenge: up, and asking for credentials), stopped by PID (SIGTERM, up to 10 s to shut down, then SIGKILL) on
/// [`Daemon::stop`] or drop.
pub struct Daemon {
    name: &'static str,
    child: Option<std::process::Child>,
    port: u16,
    log_path: std::path::PathBuf,
}

impl Daemon {
    /// Starts `bin` with `args(port)` on a free loopback port and waits at most `timeout` for
    /// it to be ready. A start that lost its port to another listener ("address already in
    /// use" in its log) is retried on a fresh port, up to 5 attempts.
    pub fn start(
        name: &'static str,
        bin: &str,
        args: impl Fn(u16) -> Vec<String>,
        log_path: std::path::PathBuf,
        ready_path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Daemon> {
        Self::start_command(
            name,
            |port| {
                let mut cmd = Command::new(bin);
                cmd.args(args(port));
                Ok(cmd)
            },
            log_path,
            ready_path,
            timeout,
        )
    }

    /// [`Daemon::start`] for a server configured by more than its arguments: `command(port)`
    /// builds the whole command (environment, a config file written for that port). Its
    /// stdin, stdout and stderr are set here.
    pub fn start_command(
        name: &'static str,
        command: impl Fn(u16) -> anyhow::Result<Command>,
        log_path: std::path::PathBuf,
        ready_path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Daemon> {
        let mut daemon = Daemon {
            name,
            child: None,
            port: 0,
            log_path,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            daemon.port = crate::ports::try_free_port()?;
            let cmd = command(daemon.port)?;
            match daemon.spawn_and_wait(cmd, ready_path, timeout) {
                Ok(()) => return Ok(daemon),
                Err(e) if attempt < 5 && lost_its_port(&daemon.log()) => {
                    let _ = std::fs::remove_file(&daemon.log_path);
                    eprintln!("{name} start: port taken by another listener, retrying ({e:#})");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn_and_wait(
        &mut self,
        mut cmd: Command,
        ready_path: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let name = self.name;
        let log = std::fs::File::create(&self.log_path)
            .with_context(|| format!("creating {}", self.log_path.display()))?;
        let what = format!("{:?}", cmd.get_program());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + timeout;
        let client = crate::http::HttpClient::new().with_timeout(Duration::from_millis(500));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child
                    .try_wait()
                    .with_context(|| format!("polling {name}"))?
                {
                    self.child = None;
                    bail!(
                        "{name} exited during startup ({status}); log:\n{}",
                        tail(&self.log(), 4000)
                    );
                }
            }
            if let Ok(r) = client.get(&format!("{}{ready_path}", self.url())) {
                // A server that guards every path with auth is up when it asks for credentials.
                if r.status == 200 || (r.status == 401 && r.header("www-authenticate").is_some()) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!(
                    "{name} on port {} was not ready within {timeout:?}; log:\n{}",
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

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Everything the process logged so far.
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

/// Whether a server's log says it could not bind its port because another listener has it: Go
/// and Rust servers say "address already in use" (in either case), CherryPy "Port N not free".
fn lost_its_port(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || (log.contains("port ") && log.contains("not free"))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
