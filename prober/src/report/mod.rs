//! Reporting what runs produced. For `once`: a readable step-by-step text report or one JSON
//! object. (The service's sinks, metrics, the status page and traces, build on the same
//! RunReport.)

pub mod export;
pub mod health;
pub mod metrics;
pub mod status;
pub mod text;
pub mod trace;

use crate::outcome::RunReport;

/// One JSON object: target, success, steps [{step, success, duration_seconds, reason, error, ...}].
pub fn json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report)
        .expect("a RunReport always serializes: plain data, string keys")
}
