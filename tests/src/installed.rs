//! The registry servers that `scripts/install-registries` installs: their pinned versions come
//! from `tests/registries/pins` (the installer reads the same file), their programs from
//! `${XDG_CACHE_HOME:-$HOME/.cache}/registry-prober/registries/NAME-VERSION/`; and [`Running`],
//! one of them started on a free loopback port with its files in a temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::process::Daemon;

/// The pins file, compiled in so a test names exactly the version the installer installs.
const PINS: &str = include_str!("../registries/pins");

/// The pinned version of `name` in `tests/registries/pins`.
pub fn pinned_version(name: &str) -> anyhow::Result<&'static str> {
    PINS.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some(name))
                .then(|| fields.next())
                .flatten()
        })
        .with_context(|| format!("{name} is not pinned in tests/registries/pins"))
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/registry-prober/registries`, as the installer computes it.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("registry-prober").join("registries"))
}

/// The installed program `relative` (e.g. `bin/ferro-oci-server`) of the pinned `name`, or an
/// error that says how to install it.
pub fn program(name: &str, relative: &str) -> anyhow::Result<(PathBuf, &'static str)> {
    let version = pinned_version(name)?;
    let path = cache_dir()?
        .join(format!("{name}-{version}"))
        .join(relative);
    if !path.is_file() {
        bail!(
            "{name} {version} is not installed ({} is missing): run scripts/install-registries",
            path.display()
        );
    }
    Ok((path, version))
}

/// An installed registry server running on a free 127.0.0.1 port, its storage, config and log
/// in a temp dir (removed on drop), stopped by PID on drop (SIGTERM, then SIGKILL).
pub struct Running {
    daemon: Daemon,
    version: &'static str,
    dir: tempfile::TempDir,
}

impl Running {
    /// Starts the pinned `name` (its program at `relative` in its install dir):
    /// `command(program, temp dir, port)` builds the command for a port (writing any config
    /// file into the temp dir); ready once `GET <ready_path>` answers 200, or 401 with a
    /// challenge, within `timeout`.
    pub fn start(
        name: &'static str,
        relative: &str,
        ready_path: &str,
        timeout: Duration,
        command: impl Fn(&Path, &Path, u16) -> anyhow::Result<Command>,
    ) -> anyhow::Result<Running> {
        let (program, version) = program(name, relative)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .with_context(|| format!("creating a temp dir for {name}"))?;
        let daemon = Daemon::start_command(
            name,
            |port| command(&program, dir.path(), port),
            dir.path().join(format!("{name}.log")),
            ready_path,
            timeout,
        )?;
        Ok(Running {
            daemon,
            version,
            dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.daemon.url()
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        self.daemon.host_port()
    }

    /// The pinned version running.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// The temp dir holding its files; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_the_tests_run_is_pinned_to_an_exact_version() {
        for name in ["ferro-oci-server", "container-registry", "zuul-registry"] {
            let version = pinned_version(name).expect("pinned");
            assert!(
                version.split('.').count() == 3
                    && version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "{name} {version}"
            );
        }
        assert!(pinned_version("zot").is_err());
    }
}
