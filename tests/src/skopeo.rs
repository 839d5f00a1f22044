//! Driving skopeo, an independent registry client used for interoperability checks.

use crate::process::{run_with_timeout, tail};
use anyhow::bail;
use std::process::{Command, Output};
use std::time::Duration;

/// Deadline for one skopeo command.
pub const SKOPEO_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `skopeo ARGS...` and returns its output; errors (with skopeo's stderr) if it exits
/// non-zero or runs past [`SKOPEO_TIMEOUT`].
pub fn skopeo(args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new("skopeo");
    cmd.args(args);
    // No user registries.conf / auth.json from the machine may change the outcome.
    // A path that does not exist reads as an empty auth file.
    cmd.env(
        "REGISTRY_AUTH_FILE",
        std::env::temp_dir().join("registry-prober-e2e-no-such-auth.json"),
    );
    let out = run_with_timeout(&mut cmd, SKOPEO_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "skopeo {} failed ({}): {}",
            args.join(" "),
            out.status,
            tail(String::from_utf8_lossy(&out.stderr).trim(), 4000)
        );
    }
    Ok(out)
}

/// `skopeo copy [extra_args...] SRC DST`, e.g.
/// `skopeo_copy("oci:/tmp/img:v1", "docker://127.0.0.1:5000/probe/x:v1",
/// &["--preserve-digests", "--dest-tls-verify=false"])`.
///
/// skopeo 1.9 re-compresses uncompressed layers on push unless `--preserve-digests` is given;
/// for a plain-HTTP registry pass `--dest-tls-verify=false` / `--src-tls-verify=false`; for a
/// private CA pass `--dest-cert-dir DIR` / `--src-cert-dir DIR` where DIR holds `ca.crt`.
pub fn skopeo_copy(src: &str, dst: &str, extra_args: &[&str]) -> anyhow::Result<Output> {
    let mut args = vec!["copy"];
    args.extend_from_slice(extra_args);
    args.push(src);
    args.push(dst);
    skopeo(&args)
}
