//! The false-page soak's report: runs by target, every transient fault with the run it met and
//! what that run made of it, failed runs no fault explains (with the load average then), every
//! notification the webhook received with the faults that preceded it, the alerts Prometheus
//! held pending or firing and when, load and RSS. A critical notification, a fault that never
//! met a run, or a panic is a problem.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Counts, Soak, TARGETS};
use crate::alertmanager::Timings;
use crate::prometheus::{samples, Answer};
use crate::soak::sampler::Spread;
use crate::soak::{log_lines, log_time, ms, panics};

/// `+hh:mm:ss` since the soak started.
fn at(d: Duration) -> String {
    let s = d.as_secs();
    format!("+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The report text and the problems that fail the soak.
pub fn report(soak: &Soak) -> anyhow::Result<(String, Vec<String>)> {
    let mut problems = Vec::new();
    let mut out = String::new();
    let c = &soak.chain;
    let speed = &soak.speed;
    writeln!(
        out,
        "Soak of {:?} (+{:?} settling) at 1/{} of production speed, seed {} (SOAK_SEED replays its choices). \
         Prober intervals {:?} and {:?}, scrape and evaluation {:?}, Alertmanager group_wait {:?} and group_interval {:?}; \
         rules: {} ({} alerting rules, {} of them critical).",
        speed.duration,
        soak.settle,
        speed.factor,
        soak.seed,
        speed.secs(30),
        speed.secs(15),
        speed.secs(15),
        speed.scaled(Timings::production().group_wait),
        speed.scaled(Timings::production().group_interval),
        c.rules.display(),
        c.loaded.len(),
        c.loaded.iter().filter(|a| a.severity == "critical").count(),
    )?;
    let series = c.metrics()?;
    let mut total = 0.0;
    writeln!(out, "\nRuns by target:")?;
    for t in &TARGETS {
        let counts = Counts::of(&series, t.name);
        total += counts.finished;
        writeln!(
            out,
            "- {} (every {:?}, timeout {:?}): {} runs, {} failed",
            t.name,
            speed.secs(t.interval),
            speed.secs(t.timeout),
            counts.finished,
            counts.failed
        )?;
    }
    let met = soak.injections.iter().filter(|i| i.hit.is_some()).count();
    writeln!(
        out,
        "\nTransient faults: {} planned, {met} met a run ({:.1}% of {total} runs):",
        soak.injections.len(),
        met as f64 * 100.0 / total.max(1.0),
    )?;
    for (i, inj) in soak.injections.iter().enumerate() {
        let result = match (&inj.hit, &inj.outcome) {
            (Some(h), Some(e)) => {
                let took = format!(
                    "ended {:.1}s later",
                    e.at.saturating_sub(h.at).as_secs_f64()
                );
                match (e.failed, e.steps.is_empty()) {
                    (true, _) => format!("run failed, {took}: {}", e.steps.join(", ")),
                    (false, true) => format!("run succeeded, {took}"),
                    (false, false) => format!(
                        "run succeeded, {took}; failed steps: {}",
                        e.steps.join(", ")
                    ),
                }
            }
            (Some(_), None) => "its run had not ended".to_string(),
            (None, _) => "never met a run".to_string(),
        };
        let when = inj
            .hit
            .as_ref()
            .map_or("--:--:--".to_string(), |h| at(h.at));
        writeln!(
            out,
            "{i}. {when} {} {}: {} -> {result}",
            inj.target,
            inj.kind.name(),
            inj.what
        )?;
        if inj.hit.is_none() {
            problems.push(format!(
                "fault {i} ({} on {}) never met a run",
                inj.kind.name(),
                inj.target
            ));
        }
    }
    let log = c.prober.log();
    unexplained_failures(soak, &log, &mut out)?;
    notifications(soak, &mut out, &mut problems)?;
    writeln!(out, "\nPrometheus ALERTS over the soak (pending: a rule's condition held, `for` not yet; firing: sent):")?;
    for line in alert_history(soak) {
        writeln!(out, "- {line}")?;
    }
    let load = Spread::of(soak.samples.iter().map(|s| s.load1));
    let rss = Spread::of(soak.samples.iter().map(|s| s.rss_kib as f64 / 1024.0));
    let show = |s: Option<Spread>| s.map_or("-".to_string(), |s| s.to_string());
    writeln!(
        out,
        "\nLoad average (1 min; the machine has 2 shared cores): {}\nProber RSS MiB: {}",
        show(load),
        show(rss)
    )?;
    let panicked = panics(&log);
    if !panicked.is_empty() {
        problems.push(format!("the prober panicked: {panicked:?}"));
    }
    Ok((out, problems))
}

/// Failed runs no injected fault explains (the registry's, or the machine's: the load then).
fn unexplained_failures(soak: &Soak, log: &str, out: &mut String) -> anyhow::Result<()> {
    let since = |t: SystemTime| t.duration_since(soak.started_wall).unwrap_or_default();
    let explained = |target: &str, t: SystemTime| {
        soak.injections.iter().any(|i| {
            i.target == target
                && i.hit.as_ref().is_some_and(|h| {
                    let end = i.outcome.as_ref().map_or_else(SystemTime::now, |e| e.wall);
                    h.wall - Duration::from_secs(1) <= t && t <= end + Duration::from_secs(1)
                })
        })
    };
    let lines: Vec<String> = log_lines(log)
        .into_iter()
        .filter(|l| l.message.starts_with("Run failed"))
        .filter_map(|l| {
            let t = log_time(&l.timestamp)?;
            let target = l.field("target_name");
            if explained(&target, t) {
                return None;
            }
            let load = soak
                .samples
                .iter()
                .min_by_key(|s| s.at.abs_diff(since(t)))
                .map_or(f64::NAN, |s| s.load1);
            Some(format!(
                "{} {target}: {} {} (load {load:.1}): {}",
                at(since(t)),
                l.field("step"),
                l.field("reason"),
                l.field("error")
            ))
        })
        .collect();
    writeln!(out, "\nFailed runs no fault explains: {}", lines.len())?;
    for l in lines {
        writeln!(out, "- {l}")?;
    }
    Ok(())
}

/// Every notification the webhook received; a firing critical one is a false page.
fn notifications(soak: &Soak, out: &mut String, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let received = soak.chain.webhook.alerts();
    writeln!(
        out,
        "\nAlert log (every notification the webhook received):"
    )?;
    if received.is_empty() {
        writeln!(out, "- none")?;
    }
    for a in &received {
        let t = a.at.saturating_duration_since(soak.started);
        let target = a.label("target");
        let before: Vec<String> = soak
            .injections
            .iter()
            .filter(|i| target.is_empty() || i.target == target)
            .filter_map(|i| Some((i, i.hit.as_ref().filter(|h| h.at <= t)?)))
            .map(|(i, h)| format!("{} on {} at {}", i.kind.name(), i.target, at(h.at)))
            .collect();
        writeln!(
            out,
            "- {} {} {} severity={}: {}\n  faults before it: {}",
            at(t),
            a.status,
            a.describe(),
            a.label("severity"),
            a.annotations.get("description").map_or("", String::as_str),
            if before.is_empty() {
                "none".to_string()
            } else {
                before.join("; ")
            }
        )?;
        if a.status == "firing" && a.label("severity") == "critical" {
            problems.push(format!("false page at {}: {}", at(t), a.describe()));
        }
    }
    Ok(())
}

/// Every ALERTS series of the soak: state, alert and labels, when first and last seen, and for
/// how many evaluations.
fn alert_history(soak: &Soak) -> Vec<String> {
    let prometheus = &soak.chain.prometheus;
    let range = format!("{}s", soak.started.elapsed().as_secs() + 60);
    let step = ms(soak.speed.secs(15));
    let query = |expr: String| -> BTreeMap<String, f64> {
        match prometheus.query(&expr) {
            Ok(Answer::Data(d)) => samples(&d)
                .into_iter()
                .map(|(labels, v)| {
                    let mut kv: Vec<String> = labels
                        .iter()
                        .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect();
                    kv.sort();
                    (kv.join(", "), v)
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    };
    let count = query(format!("count_over_time(ALERTS[{range}])"));
    let first = query(format!("min_over_time(timestamp(ALERTS)[{range}:{step}])"));
    let last = query(format!("max_over_time(timestamp(ALERTS)[{range}:{step}])"));
    let start = soak
        .started_wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let rel = |unix: Option<&f64>| {
        unix.map_or("?".to_string(), |u| {
            if *u < start {
                format!("-{:.0}s", start - u)
            } else {
                at(Duration::from_secs_f64(u - start))
            }
        })
    };
    if count.is_empty() {
        return vec!["none".to_string()];
    }
    count
        .iter()
        .map(|(labels, n)| {
            format!(
                "{{{labels}}} from {} to {} ({n} evaluations)",
                rel(first.get(labels)),
                rel(last.get(labels))
            )
        })
        .collect()
}
