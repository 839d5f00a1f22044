//! The text report of one run, for an on-call engineer at a terminal: one line per step with
//! its phase timings, and under a failed step its error and HTTP transcript.

use std::fmt::Write;
use std::time::Duration;

use crate::outcome::{HttpRecord, RunReport, StepReport};

pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "target {:?}: {} repository {}",
        report.target, report.registry, report.repository
    );
    let _ = writeln!(
        out,
        "size class {}, {} upload",
        report.size_class, report.upload_mode
    );
    let _ = writeln!(out, "trace {}", report.trace_id);
    if let Some(tag) = &report.tag {
        let _ = writeln!(
            out,
            "tag {tag}  manifest {}",
            report.manifest_digest.as_deref().unwrap_or("-")
        );
    }
    for r in &report.referrers {
        let _ = writeln!(out, "referrers via {}: {}", r.path, r.mode.as_str());
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<24} {:<28} {:<6} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10}",
        "STEP",
        "SUBJECT",
        "RESULT",
        "DURATION",
        "DNS",
        "CONNECT",
        "TLS",
        "TTFB",
        "TRANSFER",
        "BYTES"
    );
    for step in &report.steps {
        render_step(&mut out, step);
    }
    let failed: Vec<&StepReport> = report.steps.iter().filter(|s| !s.success).collect();
    let _ = writeln!(out);
    if report.success {
        let _ = writeln!(
            out,
            "result: OK, {} steps in {}",
            report.steps.len(),
            secs(report.duration_seconds)
        );
    } else {
        let first = failed
            .first()
            .map(|s| {
                format!(
                    "; first: {} reason {}",
                    s.step,
                    s.reason.map(|r| r.as_str()).unwrap_or("-")
                )
            })
            .unwrap_or_default();
        let cleanup = if report.cleanup_failed {
            " (cleanup left something behind)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "result: FAILED, {} of {} steps failed{first}{cleanup}, in {}",
            failed.len(),
            report.steps.len(),
            secs(report.duration_seconds)
        );
    }
    out
}

fn render_step(out: &mut String, step: &StepReport) {
    let sum = |f: fn(&HttpRecord) -> Option<Duration>| -> Option<Duration> {
        step.requests.iter().filter_map(f).reduce(|a, b| a + b)
    };
    let bytes = step.bytes_sent + step.bytes_received;
    let _ = writeln!(
        out,
        "{:<24} {:<28} {:<6} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10}",
        step.step.as_str(),
        truncate(&step.subject, 28),
        if step.success { "ok" } else { "FAIL" },
        secs(step.duration_seconds),
        opt(sum(|r| r.dns_seconds)),
        opt(sum(|r| r.connect_seconds)),
        opt(sum(|r| r.tls_seconds)),
        opt(sum(|r| r.first_byte_seconds)),
        opt(sum(|r| r.transfer_seconds)),
        bytes
    );
    if let Some(err) = &step.error {
        let reason = step.reason.map(|r| r.as_str()).unwrap_or("-");
        let _ = writeln!(out, "    reason {reason}: {err}");
        for r in &step.requests {
            let status = r
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "---".into());
            let _ = write!(out, "    > {} {} -> {status}", r.method, r.url);
            if !r.error_codes.is_empty() {
                let _ = write!(out, " {}", r.error_codes.join(","));
            }
            if let Some(m) = &r.error_message {
                let _ = write!(out, " {m:?}");
            }
            if let Some(e) = &r.error {
                let _ = write!(out, " error: {e}");
            }
            let _ = writeln!(out);
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2}s")
    } else {
        format!("{:.1}ms", s * 1000.0)
    }
}

fn opt(d: Option<Duration>) -> String {
    d.map(secs).unwrap_or_else(|| "-".into())
}
