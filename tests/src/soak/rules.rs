//! The alert rules a soak loads, always the repository's own: the shipped file
//! (alerts/registry-prober.rules.yml, which `mixin/build` renders from mixin/'s defaults and
//! `mixin/build --check` keeps current) when the soak runs at production speed, or the mixin
//! rendered with every window and `for` divided by the factor the soak divides its intervals by.
//! Nothing here names an alert or a setting: what the mixin has at run time is what is scaled.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::process::run_with_timeout;

/// The override merged over the mixin: every per-alert setting whose key ends in `for` or
/// `window` (any case) and holds a duration, divided by `@FACTOR@`. Read from the mixin's own
/// defaults, so alerts and settings added later are scaled too.
const SCALE_OVERRIDE: &str = "\
// Every window and `for` of the mixin's alert settings divided by @FACTOR@, for a soak whose
// prober, scrape and evaluation intervals are divided by the same factor (tests/src/soak/rules.rs).
local promql = import 'lib/promql.libsonnet';
local defaults = (import 'config.libsonnet')._config.registryProberAlerts;
local isTime(key) =
  local k = std.asciiLower(key);
  std.endsWith(k, 'for') || std.endsWith(k, 'window');
local scaled(d) =
  local ms = std.floor(promql.seconds(d) * 1000 / @FACTOR@ + 0.5);
  if ms % 1000 == 0 then '%ds' % (ms / 1000) else '%dms' % ms;
{
  _config+:: {
    registryProberAlerts+: {
      [alert]+: {
        [key]: scaled(defaults[alert][key])
        for key in std.objectFields(defaults[alert])
        if isTime(key) && std.isString(defaults[alert][key]) && promql.isDuration(defaults[alert][key])
      }
      for alert in std.objectFields(defaults)
    },
  },
}
";

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shipped rules file, as users take it.
pub fn shipped() -> PathBuf {
    repo_root().join("alerts/registry-prober.rules.yml")
}

/// The rules for a soak whose intervals are divided by `factor`: the shipped file itself at 1;
/// otherwise `mixin/build --config <scaling override> --output-dir dir`, checked by mixin/build
/// against the metric contract of the binary under test.
pub fn for_factor(dir: &Path, factor: u32) -> anyhow::Result<PathBuf> {
    if factor == 0 {
        bail!("a scale factor of 0");
    }
    if factor == 1 {
        let path = shipped();
        if !path.is_file() {
            bail!("{} is missing: run mixin/build", path.display());
        }
        return Ok(path);
    }
    let overrides = dir.join("scaled.libsonnet");
    std::fs::write(
        &overrides,
        SCALE_OVERRIDE.replace("@FACTOR@", &factor.to_string()),
    )
    .with_context(|| format!("writing {}", overrides.display()))?;
    let prober = crate::bins::prober_bin()?;
    let out = run_with_timeout(
        Command::new("python3")
            .arg(repo_root().join("mixin/build"))
            .arg("--config")
            .arg(&overrides)
            .arg("--output-dir")
            .arg(dir)
            .env("REGISTRY_PROBER_BIN", prober),
        Duration::from_secs(180),
    )?;
    if !out.status.success() {
        bail!(
            "mixin/build --config {} failed: {}{}",
            overrides.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(dir.join("registry-prober.rules.yml"))
}

/// An alerting rule as Prometheus loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedAlert {
    pub name: String,
    pub severity: String,
    /// Its `for`, in seconds.
    pub for_seconds: f64,
}

/// The alerting rules of a `/api/v1/rules` answer's data.
pub fn loaded_alerts(data: &Value) -> Vec<LoadedAlert> {
    let mut out = Vec::new();
    for group in data["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            if rule["type"] != "alerting" {
                continue;
            }
            out.push(LoadedAlert {
                name: rule["name"].as_str().unwrap_or_default().to_string(),
                severity: rule["labels"]["severity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                for_seconds: rule["duration"].as_f64().unwrap_or(0.0),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_alerting_rules_with_their_severity_and_for() {
        let data = serde_json::json!({"groups": [{"name": "g", "rules": [
            {"type": "recording", "name": "r"},
            {"type": "alerting", "name": "A", "duration": 300, "labels": {"severity": "critical"}},
            {"type": "alerting", "name": "B", "duration": 0, "labels": {}}
        ]}]});
        assert_eq!(
            loaded_alerts(&data),
            vec![
                LoadedAlert {
                    name: "A".into(),
                    severity: "critical".into(),
                    for_seconds: 300.0
                },
                LoadedAlert {
                    name: "B".into(),
                    severity: String::new(),
                    for_seconds: 0.0
                },
            ]
        );
    }
}
