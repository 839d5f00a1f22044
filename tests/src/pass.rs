//! A throwaway password store for Debian's `docker-credential-pass`, as TESTBED.md describes:
//! a GPG key without a passphrase in a temp GNUPGHOME, `pass init` in a temp
//! PASSWORD_STORE_DIR. The prober finds it through those two variables; the GPG agent the
//! store starts is stopped on drop.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::process::run_with_timeout;

/// The helper's program, from Debian's `golang-docker-credential-helpers`.
pub const PASS_HELPER: &str = "/usr/bin/docker-credential-pass";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A password store with a key of its own.
pub struct PassStore {
    gnupg: tempfile::TempDir,
    store: tempfile::TempDir,
}

impl PassStore {
    /// Makes the key and initialises the store (~2 s, most of it key generation).
    pub fn new() -> anyhow::Result<PassStore> {
        if !Path::new(PASS_HELPER).exists() {
            bail!("{PASS_HELPER} is missing: run scripts/install-deps (golang-docker-credential-helpers, pass, gnupg)");
        }
        // Short paths: gpg-agent's socket lives in GNUPGHOME and a socket path is at most
        // 107 bytes.
        let gnupg = tempfile::Builder::new().prefix("gpg-").tempdir_in("/tmp")?;
        let store = tempfile::Builder::new().prefix("pass-").tempdir()?;
        let pass = PassStore { gnupg, store };
        pass.run(
            "gpg",
            &[
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "registry-prober test <test@example.invalid>",
                "default",
                "default",
                "never",
            ],
        )?;
        let keys = pass.run("gpg", &["--list-keys", "--with-colons"])?;
        let fingerprint = keys
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .context("gpg listed no fingerprint for the new key")?
            .to_string();
        pass.run("pass", &["init", &fingerprint])?;
        Ok(pass)
    }

    /// GNUPGHOME and PASSWORD_STORE_DIR, for the prober's environment.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GNUPGHOME", self.gnupg.path().display().to_string()),
            (
                "PASSWORD_STORE_DIR",
                self.store.path().display().to_string(),
            ),
        ]
    }

    /// `docker-credential-pass store` of these credentials for `server`.
    pub fn store(&self, server: &str, username: &str, secret: &str) -> anyhow::Result<()> {
        let input = tempfile::NamedTempFile::new()?;
        let json = serde_json::json!({"ServerURL": server, "Username": username, "Secret": secret});
        std::fs::write(input.path(), json.to_string())?;
        let script = format!("exec {PASS_HELPER} store < \"$1\"");
        let input = input.path().display().to_string();
        self.run("sh", &["-c", &script, "sh", &input]).map(|_| ())
    }

    /// Runs `program args` in the store's environment and returns its stdout.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = run_with_timeout(Command::new(program).args(args).envs(self.env()), TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "{program} {} failed with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let _ = self.run("gpgconf", &["--kill", "all"]);
    }
}
