//! Soaks: the prober service left running against a real registry for minutes (the short
//! versions in the test suite) or an hour (scripts/soak-false-pages, scripts/soak-chaos), with
//! faults on the wire, and what they record and check: the alert rules they load (`rules`),
//! the faults (`faults`), the run accounting from the prober's /metrics (`accounting`), memory,
//! descriptors and load from /proc (`sampler`), and what is left on the registry (`audit`).

pub mod accounting;
pub mod chaos;
pub mod audit;
pub mod false_pages;
pub mod faults;
pub mod rules;
pub mod sampler;

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// `SOAK_SECONDS` from the environment, or `default`: how long a soak runs.
pub fn duration_from_env(default: Duration) -> anyhow::Result<Duration> {
    match std::env::var("SOAK_SECONDS") {
        Ok(v) => v
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .with_context(|| format!("SOAK_SECONDS={v:?} is not a positive number of seconds")),
        Err(_) => Ok(default),
    }
}

/// `SOAK_SEED` from the environment (to replay a soak's choices), or a random seed.
pub fn seed_from_env() -> anyhow::Result<u64> {
    match std::env::var("SOAK_SEED") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("SOAK_SEED={v:?} is not a number")),
        Err(_) => Ok(rand::random()),
    }
}

/// Pushes a golden image (2 layers of 4 KiB, with `once --no-cleanup`) into `repo` of the
/// registry directly: `repo@sha256:...`, pinned for the prober's `golden_images`.
pub fn push_golden(registry: &crate::Registry, repo: &str) -> anyhow::Result<String> {
    let (code, report) = crate::prober::once_json(&[
        "--registry",
        &registry.url(),
        "--repository",
        repo,
        "--layers",
        "2",
        "--layer-size",
        "4KiB",
        "--no-cleanup",
    ])?;
    anyhow::ensure!(code == 0, "the golden image push failed: {report:#}");
    let digest = report["manifest_digest"]
        .as_str()
        .context("the golden push's report has no manifest_digest")?;
    Ok(format!("{repo}@{digest}"))
}

/// A Rust duration as a prober config or Prometheus duration (`1500ms`).
pub fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Lines of a log that say the process panicked (the default panic hook writes
/// `thread '...' panicked at ...` to stderr, outside the JSON log lines).
pub fn panics(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("panicked at") || l.contains("RUST_BACKTRACE"))
        .map(str::to_string)
        .collect()
}

/// The time of an RFC 3339 log timestamp.
pub fn log_time(timestamp: &str) -> Option<std::time::SystemTime> {
    let t = time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// A JSON log line of the prober: its message and fields.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub timestamp: String,
    pub level: String,
    pub message: String,
    pub fields: serde_json::Map<String, Value>,
}

impl LogLine {
    pub fn field(&self, name: &str) -> String {
        match self.fields.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }
}

/// The JSON lines of a `--log-format json` log (other lines skipped).
pub fn log_lines(log: &str) -> Vec<LogLine> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let mut fields = v["fields"].as_object().cloned().unwrap_or_default();
            let message = fields
                .remove("message")
                .and_then(|m| m.as_str().map(str::to_string))
                .unwrap_or_default();
            LogLine {
                timestamp: v["timestamp"].as_str().unwrap_or_default().to_string(),
                level: v["level"].as_str().unwrap_or_default().to_string(),
                message,
                fields,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_log_lines_and_finds_panics() {
        let log = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"WARN","fields":{"message":"Run failed","target_name":"a","status":503},"target":"x"}
thread 'tokio-runtime-worker' panicked at prober/src/x.rs:1:1:
not json
"#;
        let lines = log_lines(log);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message, "Run failed");
        assert_eq!(lines[0].field("target_name"), "a");
        assert_eq!(lines[0].field("status"), "503");
        assert_eq!(panics(log).len(), 1);
        assert_eq!(ms(Duration::from_millis(1500)), "1500ms");
        assert_eq!(
            log_time("1970-01-01T00:00:01.5Z"),
            Some(std::time::UNIX_EPOCH + Duration::from_millis(1500))
        );
    }
}
