//! The compatibility matrix as the tests observe it: every registry server implementation the
//! tests run behind one trait, each `once` report boiled down to one cell per step (`ok`, or the
//! failure's reason and status), and the observations written as JSON under the target dir,
//! where `scripts/registries-table` renders them into docs/registries.md (and checks that the
//! committed table is what the tests saw).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use crate::container_registry::ContainerRegistryServer;
use crate::ferro::Ferro;
use crate::installed::Running;
use crate::registry::{Registry, RegistryAuth};
use crate::zuul::{self, Zuul};

/// The steps of one probe cycle, in the order they run: the columns of the table.
pub const CYCLE_STEPS: [&str; 12] = [
    "ping",
    "token",
    "check_blob",
    "start_upload",
    "upload_blob",
    "push_manifest",
    "pull_manifest_by_tag",
    "pull_manifest_by_digest",
    "pull_blob",
    "delete_manifest",
    "delete_blob",
    "cancel_upload",
];

/// The steps of a golden image's verification.
pub const GOLDEN_STEPS: [&str; 3] = ["pull_golden_manifest", "head_blob", "pull_golden_blob"];

/// A registry server under test, as the compatibility tests drive it.
pub trait Server {
    /// Its name in the table and file name of its observations, e.g. `ferro-oci-server`
    /// (`distribution` is Debian's docker-registry).
    fn implementation(&self) -> &'static str;
    fn version(&self) -> String;
    /// `http://127.0.0.1:PORT`.
    fn url(&self) -> String;
    /// User and password the prober and skopeo log in with, when it has auth.
    fn credentials(&self) -> Option<(String, String)>;
    /// How it authenticates, as the table says it.
    fn auth(&self) -> &'static str;

    /// `127.0.0.1:PORT`, for skopeo references.
    fn host_port(&self) -> String {
        let url = self.url();
        url.split_once("://")
            .map_or(url.clone(), |(_, rest)| rest.to_string())
    }
}

impl Server for Registry {
    fn implementation(&self) -> &'static str {
        "distribution"
    }
    fn version(&self) -> String {
        distribution_version()
    }
    fn url(&self) -> String {
        Registry::url(self)
    }
    fn credentials(&self) -> Option<(String, String)> {
        match &self.options().auth {
            RegistryAuth::Htpasswd { username, password } => {
                Some((username.clone(), password.clone()))
            }
            _ => None,
        }
    }
    fn auth(&self) -> &'static str {
        match &self.options().auth {
            RegistryAuth::None => "none",
            RegistryAuth::Htpasswd { .. } => "basic (htpasswd)",
            RegistryAuth::Token { .. } => "bearer (token server)",
        }
    }
}

/// The Debian package's version of docker-registry, e.g. `2.8.2`, from `--version`
/// (`docker-registry github.com/docker/distribution 2.8.2+ds1`).
fn distribution_version() -> String {
    std::process::Command::new(crate::registry::REGISTRY_BIN)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let word = text.split_whitespace().last()?.to_string();
            Some(word.split('+').next().unwrap_or(&word).to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

impl Server for Ferro {
    fn implementation(&self) -> &'static str {
        "ferro-oci-server"
    }
    fn version(&self) -> String {
        Running::version(self).to_string()
    }
    fn url(&self) -> String {
        Running::url(self)
    }
    fn credentials(&self) -> Option<(String, String)> {
        None
    }
    fn auth(&self) -> &'static str {
        "none (it has none)"
    }
}

impl Server for Zuul {
    fn implementation(&self) -> &'static str {
        "zuul-registry"
    }
    fn version(&self) -> String {
        Running::version(self).to_string()
    }
    fn url(&self) -> String {
        Running::url(self)
    }
    fn credentials(&self) -> Option<(String, String)> {
        Some((zuul::USER.to_string(), self.password().to_string()))
    }
    fn auth(&self) -> &'static str {
        "bearer (its /auth/token realm)"
    }
}

impl Server for ContainerRegistryServer {
    fn implementation(&self) -> &'static str {
        "container-registry"
    }
    fn version(&self) -> String {
        Running::version(self).to_string()
    }
    fn url(&self) -> String {
        Running::url(self)
    }
    fn credentials(&self) -> Option<(String, String)> {
        let user = crate::container_registry::USER.to_string();
        self.password().map(|pw| (user, pw.to_string()))
    }
    fn auth(&self) -> &'static str {
        match self.password() {
            Some(_) => "basic (master password)",
            None => "none",
        }
    }
}

/// One step's cell: `ok` when every run of it passed (it runs once per blob), else the first
/// failure's `<reason> <status>` (`<reason>` alone when no HTTP status came with it).
pub type Cell = (String, String);

/// The cells of `steps` in a `once --output json` report, in the order of `steps`; a step that
/// did not run has no cell.
pub fn cells(report: &Value, steps: &[&str]) -> Vec<Cell> {
    let all = report["steps"].as_array().cloned().unwrap_or_default();
    steps
        .iter()
        .filter_map(|&name| {
            let runs: Vec<&Value> = all.iter().filter(|s| s["step"] == name).collect();
            if runs.is_empty() {
                return None;
            }
            let cell = match runs.iter().find(|s| s["success"] != Value::Bool(true)) {
                None => "ok".to_string(),
                Some(failed) => {
                    let reason = failed["reason"].as_str().unwrap_or("unknown");
                    match failed["status"].as_u64() {
                        Some(status) => format!("{reason} {status}"),
                        None => reason.to_string(),
                    }
                }
            };
            Some((name.to_string(), cell))
        })
        .collect()
}

/// Expected cells written as in the table: `[("ping", "ok"), ("delete_blob", "blob_unknown 404")]`.
pub fn expect(cells: &[(&str, &str)]) -> Vec<Cell> {
    cells
        .iter()
        .map(|(s, c)| (s.to_string(), c.to_string()))
        .collect()
}

/// The requests that uploaded layer 1 in a report, as `METHOD status` joined by ", " (e.g.
/// `POST 202, PATCH 202, PUT 201`): how a mode went on the wire. Empty when no layer upload ran.
pub fn layer_upload(report: &Value) -> String {
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    let Some(step) = steps.iter().find(|s| {
        s["step"] == "upload_blob"
            && s["subject"]
                .as_str()
                .is_some_and(|x| x.starts_with("layer 1"))
    }) else {
        return String::new();
    };
    step["requests"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| format!("{} {}", r["method"].as_str().unwrap_or("?"), r["status"]))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The kinds of protocol deviation a report's steps tolerated, each once, in the order first seen.
pub fn deviations(report: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = Vec::new();
    for step in report["steps"].as_array().into_iter().flatten() {
        for d in step["deviations"].as_array().into_iter().flatten() {
            let kind = d["kind"].as_str().unwrap_or("?").to_string();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    kinds
}

/// Every step of a report as (step, subject, seconds), in the order they ran.
pub fn durations(report: &Value) -> Vec<(String, String, f64)> {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or("?").to_string(),
                s["subject"].as_str().unwrap_or("").to_string(),
                s["duration_seconds"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// One `once` per upload mode.
#[derive(Debug, Serialize)]
pub struct ModeRun {
    pub mode: String,
    pub exit_code: i32,
    pub cells: Vec<Cell>,
    /// [`layer_upload`] of the run.
    pub layer_upload: String,
    /// [`deviations`] of the run.
    pub deviations: Vec<String>,
    /// [`durations`] of the run (not in the committed table: they vary run to run).
    pub durations: Vec<(String, String, f64)>,
}

/// What one implementation did in the compatibility tests.
#[derive(Debug, Serialize)]
pub struct Observed {
    pub implementation: String,
    pub version: String,
    pub auth: String,
    pub modes: Vec<ModeRun>,
    /// What skopeo made of an image the prober pushed (and left with --no-cleanup): `ok` when
    /// it copied it to a dir: with every digest as pushed, else why not.
    pub skopeo_pulls_prober_push: String,
    /// The prober's golden-image steps on an image skopeo pushed.
    pub prober_pulls_skopeo_push: Vec<Cell>,
}

impl Observed {
    /// Writes the observations to `<target dir>/registry-compat/<implementation>.json`, where
    /// `scripts/registries-table` reads them. `target_tmpdir` is the test crate's
    /// `CARGO_TARGET_TMPDIR` (`<target dir>/tmp`).
    pub fn write(&self, target_tmpdir: &Path) -> anyhow::Result<PathBuf> {
        let dir = target_tmpdir
            .parent()
            .context("CARGO_TARGET_TMPDIR has no parent")?
            .join("registry-compat");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", self.implementation));
        let json = serde_json::to_string_pretty(self).context("serializing observations")?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_ran_per_blob_is_ok_only_when_every_run_passed() {
        let report = serde_json::json!({"steps": [
            {"step": "ping", "success": true},
            {"step": "delete_blob", "success": true},
            {"step": "delete_blob", "success": false, "reason": "blob_unknown", "status": 404},
            {"step": "upload_blob", "success": false, "reason": "protocol"},
        ]});
        assert_eq!(
            cells(&report, &CYCLE_STEPS),
            expect(&[
                ("ping", "ok"),
                ("upload_blob", "protocol"),
                ("delete_blob", "blob_unknown 404")
            ])
        );
    }
}
