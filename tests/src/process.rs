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
