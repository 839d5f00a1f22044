//! zuul-registry (PyPI, the version pinned in `tests/registries/pins`, in the venv
//! `scripts/install-registries` made) on a free 127.0.0.1 port (`registry.address`), filesystem
//! storage and its config and log in a temp dir. Stopped by PID on drop.
//!
//! Auth is its own: every path answers 401 with `Bearer realm="<public-url>/auth/token"`, and
//! that realm gives a write token for the configured user's basic credentials (a read token to
//! anyone, as no read-only user is configured). Its Python start takes a few seconds.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::installed::Running;

/// How long [`Zuul::start`] waits for `GET /v2/` to ask for a token (~3 s on an idle machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The user with write access in its config.
pub const USER: &str = "prober";

/// A running zuul-registry: [`Running`]'s url, version, dir and log.
pub struct Zuul {
    server: Running,
    password: String,
}

impl Zuul {
    /// Writes a config with one write user ([`USER`], a random password) and storage in the
    /// temp dir, starts the installed, pinned zuul-registry and waits until `GET /v2/` answers
    /// 401 with its challenge.
    pub fn start() -> anyhow::Result<Zuul> {
        let password = hex::encode(rand::random::<[u8; 12]>());
        let server = Running::start(
            "zuul-registry",
            "venv/bin/zuul-registry",
            "/v2/",
            START_TIMEOUT,
            |program, dir, port| {
                let storage = dir.join("storage");
                std::fs::create_dir_all(&storage)
                    .with_context(|| format!("creating {}", storage.display()))?;
                let config_path = dir.join("registry.yaml");
                std::fs::write(&config_path, render_config(port, &password, &storage)?)
                    .with_context(|| format!("writing {}", config_path.display()))?;
                let mut cmd = Command::new(program);
                cmd.arg("-c").arg(&config_path).arg("serve");
                Ok(cmd)
            },
        )?;
        Ok(Zuul { server, password })
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::ops::Deref for Zuul {
    type Target = Running;

    fn deref(&self) -> &Running {
        &self.server
    }
}

/// Its `registry.yaml`: loopback only, the public URL the token realm is built from, one write
/// user, filesystem storage. `secret` is required by its config loader (it signs tokens with a
/// fixed key of its own, not with this).
fn render_config(port: u16, password: &str, storage: &Path) -> anyhow::Result<String> {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let mut y = String::new();
    writeln!(y, "registry:")?;
    writeln!(y, "  address: {}", q("127.0.0.1"))?;
    writeln!(y, "  port: {port}")?;
    writeln!(
        y,
        "  public-url: {}",
        q(&format!("http://127.0.0.1:{port}"))
    )?;
    writeln!(
        y,
        "  secret: {}",
        q(&hex::encode(rand::random::<[u8; 16]>()))
    )?;
    writeln!(y, "  users:")?;
    writeln!(
        y,
        "    - {{name: {}, pass: {}, access: write}}",
        q(USER),
        q(password)
    )?;
    writeln!(y, "  storage:")?;
    writeln!(y, "    driver: filesystem")?;
    writeln!(y, "    root: {}", q(&storage.to_string_lossy()))?;
    Ok(y)
}
