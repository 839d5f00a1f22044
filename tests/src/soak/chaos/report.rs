//! The chaos soak's report and verdict: the run accounting per size class, the faults injected
//! by kind, restarts and reloads, the RSS and descriptor series, the load, and the storage
//! afterwards with every live upload session traced to its cause.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::config::Method;
use super::{Soak, INSTANCE};
use crate::soak::accounting;
use crate::soak::audit::Session;
use crate::soak::sampler::{flatness, Flatness, Spread};
use crate::soak::{log_lines, panics, LogLine};

/// The most RSS and open descriptors may grow after the warm-up, in percent.
pub const MAX_GROWTH_PERCENT: f64 = 5.0;

fn at(d: Duration) -> String {
    let s = d.as_secs();
    format!("+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The report text and the problems that fail the soak. `check_flatness`: whether RSS and
/// descriptor growth past [`MAX_GROWTH_PERCENT`] is a problem (a soak of a minute only reports
/// it: its windows are too short to tell a leak from a warm-up).
pub fn report(soak: &Soak, check_flatness: bool) -> anyhow::Result<(String, Vec<String>)> {
    let mut out = String::new();
    let mut problems = Vec::new();
    let p = &soak.pace;
    writeln!(
        out,
        "Chaos for {:?}, then {:?} of calm; seed {} (SOAK_SEED replays the choices). Base interval {:?}, \
         timeouts 0.8 of it, hygiene sweeps every {:?}.",
        p.duration, soak.calm, soak.seed, p.interval, p.hygiene
    )?;
    accounting_section(soak, &mut out, &mut problems)?;
    faults_section(soak, &mut out)?;
    series_section(soak, check_flatness, &mut out, &mut problems)?;
    storage_section(soak, &mut out, &mut problems)?;
    let panicked = panics(&soak.log);
    writeln!(out, "\nPanics in the prober's log: {}", panicked.len())?;
    for line in &panicked {
        writeln!(out, "- {line}")?;
    }
    if !panicked.is_empty() {
        problems.push(format!("the prober panicked: {panicked:?}"));
    }
    writeln!(out, "Exit after SIGTERM: {:?}", soak.exit_code)?;
    if soak.exit_code != Some(0) {
        problems.push(format!(
            "the prober did not exit 0 after SIGTERM: {:?}",
            soak.exit_code
        ));
    }
    Ok((out, problems))
}

fn accounting_section(
    soak: &Soak,
    out: &mut String,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "\nRun accounting (the prober's /metrics at the end; unaccounted = scheduled + confirmation runs - succeeded - failed - skipped - in flight):\n\
         | target | class | scheduled | confirmation runs | succeeded | failed | skipped | in flight | unaccounted (calm looks) | unaccounted (whole soak, min..max) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |"
    )?;
    let mut sum = [0.0; 6];
    for ((target, class), a) in &soak.accounts {
        let looks = soak.unaccounted.get(&(target.clone(), class.clone()));
        let calm: Vec<f64> = looks
            .map(|v| v.iter().skip(soak.calm_from).copied().collect())
            .unwrap_or_default();
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for v in &calm {
            *counts.entry(*v as i64).or_default() += 1;
        }
        let whole = looks.and_then(|v| Spread::of(v.iter().copied()));
        let skipped: Vec<String> = a
            .skipped
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        writeln!(
            out,
            "| {target} | {class} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.scheduled,
            a.confirmations,
            a.succeeded,
            a.failed,
            if skipped.is_empty() {
                "0".to_string()
            } else {
                skipped.join(", ")
            },
            a.in_flight,
            counts
                .iter()
                .map(|(v, n)| format!("{v}: {n}x"))
                .collect::<Vec<_>>()
                .join(", "),
            whole.map_or("-".to_string(), |s| format!("{}..{}", s.min, s.max)),
        )?;
        for (i, v) in [
            a.scheduled,
            a.confirmations,
            a.succeeded,
            a.failed,
            a.skipped_total(),
            a.in_flight,
        ]
        .into_iter()
        .enumerate()
        {
            sum[i] += v;
        }
        // A lost run is an offset that never goes away: most calm looks must see none.
        let zeros = counts.get(&0).copied().unwrap_or(0);
        if calm.is_empty() || zeros * 2 < calm.len() || counts.keys().any(|v| v.abs() > 1) {
            problems.push(format!(
                "{target}/{class}: scheduled runs not accounted for in the calm: {counts:?} (value: looks)"
            ));
        }
    }
    writeln!(
        out,
        "| all | | {} | {} | {} | {} | {} | {} | | |",
        sum[0], sum[1], sum[2], sum[3], sum[4], sum[5]
    )?;
    let by = |name: &str, label: &str| -> Vec<String> {
        let mut m: BTreeMap<String, f64> = BTreeMap::new();
        for s in soak.final_metrics.iter().filter(|s| s.name == name) {
            *m.entry(s.label(label).to_string()).or_default() += s.value;
        }
        let mut v: Vec<(String, f64)> = m.into_iter().filter(|(_, n)| *n > 0.0).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.into_iter().map(|(k, n)| format!("{k} {n}")).collect()
    };
    writeln!(out)?;
    for (what, family, label) in [
        (
            "Failed runs by the reason of their first failed step",
            "failures",
            "reason",
        ),
        ("Upload sessions by outcome", "upload_sessions", "outcome"),
        ("Hygiene sweeps by result", "sweeps", "result"),
        ("Objects the sweeps removed", "swept_objects", "kind"),
        (
            "Config reloads by result (the prober's count)",
            "config_reloads",
            "result",
        ),
    ] {
        let values = by(&format!("registry_prober_{family}_total"), label);
        writeln!(out, "{what}: {}", values.join(", "))?;
    }
    Ok(())
}

fn faults_section(soak: &Soak, out: &mut String) -> anyhow::Result<()> {
    let kind_of: BTreeMap<&str, &str> = soak
        .armed
        .iter()
        .map(|a| (a.rule.as_str(), a.kind))
        .collect();
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for a in &soak.armed {
        by_kind.entry(a.kind).or_default().0 += 1;
    }
    for f in &soak.faulted {
        if let Some(kind) = kind_of.get(f.rule.as_str()) {
            by_kind.entry(kind).or_default().1 += 1;
        }
    }
    writeln!(
        out,
        "\nFaults: {} armed, {} requests hit (kind: armed/requests hit): {}",
        soak.armed.len(),
        soak.faulted.len(),
        by_kind
            .iter()
            .map(|(k, (a, h))| format!("{k} {a}/{h}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    let downtime = Spread::of(soak.restarts.iter().map(|r| r.downtime.as_secs_f64()));
    writeln!(
        out,
        "Registry restarts: {} (at {}), down for {}",
        soak.restarts.len(),
        soak.restarts
            .iter()
            .map(|r| at(r.at))
            .collect::<Vec<_>>()
            .join(", "),
        downtime.map_or("-".to_string(), |s| format!("{s} s"))
    )?;
    let mut methods: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, r) in &soak.reloads {
        *methods.entry(r.method.name()).or_default() += 1;
    }
    let bad = soak
        .reloads
        .iter()
        .filter(|(_, r)| r.method == Method::BadSwap)
        .count();
    writeln!(
        out,
        "Config reloads made: {} ({}); {} of them bad configs the prober must refuse; then one back to the first variant for the calm\n{}",
        soak.reloads.len(),
        methods
            .iter()
            .map(|(m, n)| format!("{n} {m}"))
            .collect::<Vec<_>>()
            .join(", "),
        bad,
        soak.reloads
            .iter()
            .map(|(t, r)| format!(
                "  {} {}{}",
                at(*t),
                r.method.name(),
                r.variant.map_or(String::new(), |v| format!(" -> variant {v}"))
            ))
            .collect::<Vec<_>>()
            .join("\n")
    )?;
    Ok(())
}

fn series_section(
    soak: &Soak,
    check: bool,
    out: &mut String,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let p = &soak.pace;
    let chaos: Vec<_> = soak
        .samples
        .iter()
        .filter(|s| s.at <= p.duration)
        .copied()
        .collect();
    let show = |name: &str, f: Option<Flatness>, unit: &str| {
        match f {
        Some(f) => format!(
            "{name}: first {:?} after the {:?} warm-up {} {unit}, last {:?} of the chaos {} {unit}: {:+.1}%",
            p.window, p.warm_up, f.first, p.window, f.last, f.growth_percent
        ),
        None => format!("{name}: the chaos is too short for two {:?} windows after a {:?} warm-up", p.window, p.warm_up),
    }
    };
    let rss = flatness(&chaos, p.warm_up, p.window, |s| s.rss_kib as f64 / 1024.0);
    let fds = flatness(&chaos, p.warm_up, p.window, |s| s.fds as f64);
    let all = |f: &dyn Fn(&crate::soak::sampler::Sample) -> f64| {
        Spread::of(soak.samples.iter().map(f)).map_or("-".to_string(), |s| s.to_string())
    };
    writeln!(
        out,
        "\nProber RSS MiB over the whole soak: {}",
        all(&|s| s.rss_kib as f64 / 1024.0)
    )?;
    writeln!(out, "{}", show("RSS", rss, "MiB"))?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let anon = flatness(&chaos, p.warm_up, p.window, |s| mib(s.anon_kib));
    let file = flatness(&chaos, p.warm_up, p.window, |s| mib(s.file_kib));
    writeln!(
        out,
        "- {}",
        show("of which anonymous (heap, stacks)", anon, "MiB")
    )?;
    writeln!(
        out,
        "- {}",
        show(
            "of which file pages (the binary's code and data)",
            file,
            "MiB"
        )
    )?;
    writeln!(
        out,
        "Open descriptors over the whole soak: {}",
        all(&|s| s.fds as f64)
    )?;
    writeln!(out, "{}", show("Descriptors", fds, ""))?;
    writeln!(
        out,
        "Load average (1 min; 2 shared cores): {}",
        all(&|s| s.load1)
    )?;
    let minutes: Vec<String> = soak
        .samples
        .chunks(
            (Duration::from_secs(300).as_secs_f64() / p.sample_every.as_secs_f64()).max(1.0)
                as usize,
        )
        .filter_map(|c| {
            let median = |f: &dyn Fn(&crate::soak::sampler::Sample) -> f64| {
                Spread::of(c.iter().map(f)).map(|s| s.median)
            };
            let fds = Spread::of(c.iter().map(|s| s.fds as f64))?;
            let threads = Spread::of(c.iter().map(|s| s.threads as f64))?;
            let rss = Spread::of(c.iter().map(|s| mib(s.rss_kib)))?;
            Some(format!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0}..{:.0} | {:.0}..{:.0} | {:.1} |",
                at(c.first()?.at),
                rss.median,
                median(&|s| mib(s.anon_kib))?,
                median(&|s| mib(s.heap_kib))?,
                median(&|s| mib(s.arena_kib))?,
                median(&|s| mib(s.anon_kib.saturating_sub(s.heap_kib + s.arena_kib)))?,
                Spread::of(c.iter().map(|s| s.arenas as f64))?.max,
                median(&|s| mib(s.file_kib))?,
                rss.max,
                threads.min,
                threads.max,
                fds.min,
                fds.max,
                median(&|s| s.load1)?,
            ))
        })
        .collect();
    writeln!(
        out,
        "\nAnonymous memory by holder: the brk heap, glibc's thread arenas (how many: the most \
         seen), the rest (stacks, blocks mapped on their own, musl's allocations). Medians of \
         each 5 minutes, MiB.\n\n\
         | from | RSS | anonymous | brk heap | arenas | other | arena count | file pages | RSS max | threads | fds | load |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |\n{}",
        minutes.join("\n")
    )?;
    if check {
        for (name, f) in [("RSS", rss), ("open descriptors", fds)] {
            match f {
                Some(f) if f.growth_percent > MAX_GROWTH_PERCENT => problems.push(format!(
                    "{name} grew {:.1}% after the warm-up (median {:.1} -> {:.1})",
                    f.growth_percent, f.first.median, f.last.median
                )),
                None => problems.push(format!("{name}: too few samples to tell")),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The prober's log lines that name `needle` (in their message or any field), each as its
/// timestamp, message and fields.
fn naming(log: &[LogLine], needle: &str) -> Vec<String> {
    log.iter()
        .filter(|l| {
            l.message.contains(needle) || l.fields.values().any(|v| v.to_string().contains(needle))
        })
        .map(|l| {
            format!(
                "{} {} {}",
                l.timestamp,
                l.message,
                serde_json::Value::Object(l.fields.clone())
            )
        })
        .collect()
}

/// Why a live session was left: the prober never learned its URL (its POST's answer was lost
/// on the wire, or the registry was killed as it answered), or a bug.
fn explain(soak: &Session, s: &Soak, log: &[LogLine]) -> Result<String, String> {
    let wall = |d: Duration| s.started_wall + d;
    let near = |t: SystemTime, opened: SystemTime| {
        let gap = if t > opened {
            t.duration_since(opened)
        } else {
            opened.duration_since(t)
        };
        gap.unwrap_or_default() <= Duration::from_secs(3)
    };
    let used: Vec<&(String, String)> = s
        .requests
        .iter()
        .filter(|(_, t)| t.contains(&soak.uuid))
        .collect();
    if !used.is_empty() {
        // Known and refused: the prober's cancel said the registry refuses its URL's state,
        // because a request carrying the body broke after the registry took it.
        let refused = log.iter().any(|l| {
            l.field("step") == "cancel_upload"
                && l.field("reason") == "blob_upload_invalid"
                && (l.field("subject").contains(&soak.uuid)
                    || l.field("error").contains(&soak.uuid))
        });
        let broke: Vec<String> = s
            .faulted
            .iter()
            .filter(|f| f.target.contains(&soak.uuid) && (f.method == "PATCH" || f.method == "PUT"))
            .map(|f| {
                let kind = s
                    .armed
                    .iter()
                    .find(|a| a.rule == f.rule)
                    .map_or("?", |a| a.kind);
                format!("{} {} ({kind})", f.method, f.rule)
            })
            .collect();
        if refused {
            let why = if broke.is_empty() {
                "no fault on it: a request broke as the registry was killed".to_string()
            } else {
                format!("after {}", broke.join(", "))
            };
            return Ok(format!(
                "the registry refuses the prober's URL for it (stale state, {why}); the prober's cancel \
                 failed with blob_upload_invalid and counted it abandoned: no client can cancel it, the \
                 registry's upload purging will"
            ));
        }
        // What the prober logged of it (its steps' subjects and errors name the URL), for the
        // cause.
        let said = naming(log, &soak.uuid);
        return Err(format!(
            "the prober knew it ({} requests on it through the proxy, the last {:?}) and left it \
             open; its log names it {} times: {said:#?}",
            used.len(),
            used.last(),
            said.len()
        ));
    }
    let Some(opened) = soak.opened else {
        return Err("no time to trace it by".to_string());
    };
    let post = s.faulted.iter().find(|f| {
        f.method == "POST"
            && f.target
                .contains(&format!("/v2/{}/blobs/uploads/", soak.repo))
            && near(wall(f.at.saturating_duration_since(s.started)), opened)
    });
    if let Some(f) = post {
        let kind = s
            .armed
            .iter()
            .find(|a| a.rule == f.rule)
            .map_or("?", |a| a.kind);
        return Ok(format!(
            "its POST's answer met fault {} ({kind}): the prober never learned its URL",
            f.rule
        ));
    }
    // Under load the prober may give up on the POST (its step deadline) after the registry
    // opened the session: the answer with its URL is never read. Its run's log line names the
    // POST; the run ends, and logs, within seconds of it.
    let cut = log.iter().find(|l| {
        let error = l.field("error");
        l.field("reason") == "timeout"
            && error.starts_with("POST ")
            && error.contains(&format!("/v2/{}/blobs/uploads/", soak.repo))
            && crate::soak::log_time(&l.timestamp).is_some_and(|t| {
                t >= opened
                    && t.duration_since(opened).unwrap_or_default() <= Duration::from_secs(15)
            })
    });
    if let Some(l) = cut {
        return Ok(format!(
            "its POST was cut at the step deadline ({}: {}): the prober never learned its URL",
            l.timestamp,
            l.field("error")
        ));
    }
    if let Some(r) = s.restarts.iter().find(|r| near(wall(r.at), opened)) {
        return Ok(format!(
            "opened as the registry was killed at {}: the prober never saw its URL",
            at(r.at)
        ));
    }
    // What the prober logged of the repository's runs around then, for whoever reads this.
    let around: Vec<String> = log
        .iter()
        .filter(|l| {
            l.field("error").contains(&format!("/v2/{}/", soak.repo))
                && crate::soak::log_time(&l.timestamp).is_some_and(|t| near(t, opened))
        })
        .map(|l| format!("{} {} {}", l.timestamp, l.field("reason"), l.field("error")))
        .collect();
    Err(format!(
        "never used on the wire after it was opened, and no fault, restart or cut POST near its \
         start; the prober's failures on the repository within 3 s: {around:?}"
    ))
}

fn storage_section(
    soak: &Soak,
    out: &mut String,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let a = &soak.audit;
    writeln!(
        out,
        "\nStorage after the prober stopped (instance {INSTANCE}; filesystem and API):\n{}",
        a.describe()
    )?;
    // Parsed once: each tag left and each live session looks through it.
    let lines = log_lines(&soak.log);
    if !a.run_tags.is_empty() {
        problems.push(format!("run tags left: {:?}", a.run_tags));
        // What the prober said of each (its run, the sweeps that tried it), for the cause.
        for t in &a.run_tags {
            let said = naming(&lines, &t.tag);
            let shown = said.len().saturating_sub(5);
            writeln!(
                out,
                "- run tag {}:{} left; the prober's log names it {} times, the last: {:#?}",
                t.repo,
                t.tag,
                said.len(),
                &said[shown..]
            )?;
        }
    }
    if !a.disagreements().is_empty() {
        problems.push(format!(
            "storage and tags/list disagree: {:?}",
            a.disagreements()
        ));
    }
    for session in a.live_sessions() {
        match explain(session, soak, &lines) {
            Ok(why) => writeln!(
                out,
                "- live session {}/{}: {why}",
                session.repo, session.uuid
            )?,
            Err(why) => {
                writeln!(
                    out,
                    "- live session {}/{}: UNEXPLAINED: {why}",
                    session.repo, session.uuid
                )?;
                problems.push(format!(
                    "live upload session {}/{}: {why}",
                    session.repo, session.uuid
                ));
            }
        }
    }
    let unused = accounting::sum(
        &soak.final_metrics,
        "registry_prober_upload_sessions_total",
        &[("outcome", "abandoned")],
    );
    writeln!(
        out,
        "Sessions the prober itself counted as abandoned: {unused}"
    )?;
    // A tag whose manifest a registry kill took but not the tag: the sweep re-points it at a
    // fresh image and deletes that.
    let dangling: Vec<String> = lines
        .iter()
        .filter(|l| l.message.contains("for a tag the tag list names"))
        .map(|l| {
            format!(
                "{} {} {}",
                l.timestamp,
                l.field("target_name"),
                l.field("tag")
            )
        })
        .collect();
    writeln!(
        out,
        "Dangling run tags the sweeps met (listed, but 404 MANIFEST_UNKNOWN): {}",
        dangling.len()
    )?;
    for d in dangling {
        writeln!(out, "- {d}")?;
    }
    Ok(())
}
