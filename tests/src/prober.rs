//! Running the real `registry-prober` binary: `once` with its JSON report parsed, and
//! `check-config`, each under a deadline; and images left in a registry as a crashed run leaves
//! them.

use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::bins::prober_bin;
use crate::http::HttpClient;
use crate::process::run_with_timeout;

/// No single `once` in the tests may take longer than this.
pub const ONCE_TIMEOUT: Duration = Duration::from_secs(120);

/// What one `registry-prober` invocation produced.
#[derive(Debug)]
pub struct Invocation {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Invocation {
    /// The `--output json` report.
    pub fn report(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "stdout is not a JSON report:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `registry-prober <args>`.
pub fn prober(args: &[&str]) -> anyhow::Result<Invocation> {
    prober_with_env(args, &[])
}

/// Runs `registry-prober <args>` with these environment variables set. The test's own `OTEL_*`
/// variables are never passed on, so only what a test sets configures traces.
pub fn prober_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Invocation> {
    let mut cmd = Command::new(prober_bin()?);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(name);
        }
    }
    let out = run_with_timeout(cmd.envs(env.iter().copied()).args(args), ONCE_TIMEOUT)?;
    Ok(Invocation {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `registry-prober once --output json <args>` and returns the exit code and report.
pub fn once_json(args: &[&str]) -> anyhow::Result<(i32, Value)> {
    let mut all = vec!["once", "--output", "json"];
    all.extend_from_slice(args);
    let inv = prober(&all)?;
    let report = inv.report()?;
    Ok((inv.code, report))
}

/// The steps of a report as (step, success, reason) triples, for compact assertions.
pub fn steps(report: &Value) -> Vec<(String, bool, Option<String>)> {
    report["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["step"].as_str().unwrap_or_default().to_string(),
                        s["success"].as_bool().unwrap_or(false),
                        s["reason"].as_str().map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The first failed step of a report, if any.
pub fn first_failure(report: &Value) -> Option<&Value> {
    report["steps"]
        .as_array()?
        .iter()
        .find(|s| s["success"] == Value::Bool(false))
}

/// The prober's canary tags among `tags` (`registry-prober-<instance>-canary-<period>-<seed>`).
pub fn canary_tags(tags: Vec<String>) -> Vec<String> {
    tags.into_iter()
        .filter(|t| t.contains("-canary-"))
        .collect()
}

/// The tags of `tags` whose canary period is that of `canary`: a test that crosses an `every`
/// boundary rightly sees the new period's canary too, and "never re-pushed" is a statement
/// about one period.
pub fn same_period(tags: &[String], canary: &str) -> Vec<String> {
    let period = |t: &str| t.rsplit('-').nth(1).map(str::to_string);
    tags.iter()
        .filter(|t| period(t) == period(canary))
        .cloned()
        .collect()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes a small OCI image to `registry` (a base URL) that stays (`once --no-cleanup`) and
/// returns its manifest's bytes.
pub fn leave_image(registry: &str, repository: &str) -> anyhow::Result<Vec<u8>> {
    let args = ["--registry", registry, "--repository", repository];
    let mut all = args.to_vec();
    all.extend(["--layers", "1", "--layer-size", "4KiB", "--no-cleanup"]);
    let (code, report) = once_json(&all)?;
    anyhow::ensure!(code == 0, "once --no-cleanup exited {code}: {report:#}");
    let tag = report["tag"].as_str().context("the report names no tag")?;
    let url = format!("{registry}/v2/{repository}/manifests/{tag}");
    let r = HttpClient::new().request("GET", &url, &[("Accept", OCI_MANIFEST)], &[])?;
    anyhow::ensure!(r.status == 200, "GET {url}: {} {}", r.status, r.text());
    Ok(r.body)
}

/// PUT an OCI image `manifest` under `tag`: 201.
pub fn put_manifest(
    registry: &str,
    repository: &str,
    tag: &str,
    manifest: &[u8],
) -> anyhow::Result<()> {
    let url = format!("{registry}/v2/{repository}/manifests/{tag}");
    let r = HttpClient::new().request("PUT", &url, &[("Content-Type", OCI_MANIFEST)], manifest)?;
    anyhow::ensure!(r.status == 201, "PUT {url}: {} {}", r.status, r.text());
    Ok(())
}
