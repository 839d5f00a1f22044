//! The fault suite: the real prober service probes a real docker-registry (run as `nobody`, so
//! file permissions bite) through the fault proxy, with a golden image, aged canaries and a
//! pull-through cache as a second path. Faults users meet are injected one at a time (on the
//! wire, in the storage, as outages); each must show up with its step and reason, and the
//! prober must recover and keep reporting. Writes the fault table to target/fault-suite.md.
//! TLS faults (expired and wrong-host certificates) run as `once` runs in their own test.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use http::Method;
use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::prober::{self, once_json, same_period};
use registry_prober_e2e::service::Service;
use registry_prober_e2e::{prober_bin, Registry, RegistryOptions, Storage, TestCa};
use serde_json::Value;

/// The probe repository: run images and canaries.
const REPO: &str = "registry-prober/suite";
/// Golden image repository (pushed once before the service starts, never by the service).
const GOLDEN_REPO: &str = "golden/base";
const TARGET: &str = "main";
/// nobody/nogroup: the origin registry runs unprivileged.
const NOBODY: (u32, u32) = (65534, 65534);
/// One run of the target at most this often; the run deadline equals it (the config requires
/// timeout <= interval), and each step has 1 s.
const INTERVAL: &str = "3s";
/// Longest wait for a fault to show, and for a recovery.
const DETECT_TIMEOUT: Duration = Duration::from_secs(60);
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the hygiene sweep to remove a run tag left behind during an outage: the
/// sweep only deletes run tags older than the longest run plus 60 s, and runs every 10 s here.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(120);

/// What a fault must look like in the first failed run that started after it was injected.
struct Expect {
    step: &'static str,
    path: &'static str,
    /// Any of these reasons.
    reasons: &'static [&'static str],
}

/// A point in the service's history: the newest run recorded (before injecting) and the wall
/// clock (after injecting), so runs that started later surely met the fault.
#[derive(Clone, Copy, Debug)]
struct Mark {
    seq: i64,
    at: f64,
}

/// How a fault was seen.
struct Detection {
    /// The first run (finished after the injection) whose first failure is the expected one.
    run: Value,
    /// Runs finished after the injection up to and including `run`.
    cycles: usize,
    /// Seconds from the injection until `run` finished.
    seconds: f64,
}

/// One line of the table.
struct Row {
    fault: String,
    injected: String,
    step: String,
    path: String,
    reason: String,
    detect_cycles: usize,
    detect_seconds: f64,
    /// None for faults checked with single `once` runs.
    recover_cycles: Option<usize>,
    evidence: String,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The target's runs from the status page JSON, oldest first.
fn runs(svc: &Service) -> anyhow::Result<Vec<Value>> {
    let page = svc.get("/?format=json")?.json()?;
    let target = page["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == TARGET))
        .ok_or_else(|| anyhow::anyhow!("target {TARGET} is not on the status page: {page}"))?;
    let mut runs = target["runs"].as_array().cloned().unwrap_or_default();
    runs.reverse();
    Ok(runs)
}

fn seq(run: &Value) -> i64 {
    run["seq"].as_i64().expect("a run has a seq")
}

fn started(run: &Value) -> f64 {
    run["started_at_unix"].as_f64().expect("a run has a start")
}

fn finished(run: &Value) -> f64 {
    started(run)
        + run["duration_seconds"]
            .as_f64()
            .expect("a run has a duration")
}

fn newest_seq(svc: &Service) -> i64 {
    runs(svc)
        .expect("status page")
        .last()
        .map(seq)
        .unwrap_or(-1)
}

/// The run's first failure as (step, path, reason, error line).
fn first_failure(run: &Value) -> Option<(String, String, String, String)> {
    let f = run.get("first_failure")?;
    let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
    Some((s("step"), s("path"), s("reason"), s("error_line")))
}

fn describe(run: &Value) -> String {
    match first_failure(run) {
        None => format!("run {} passed", seq(run)),
        Some((step, path, reason, line)) => {
            format!(
                "run {} failed at {step} on {path} ({reason}): {line}",
                seq(run)
            )
        }
    }
}

fn shows(run: &Value, expect: &Expect) -> bool {
    first_failure(run).is_some_and(|(step, path, reason, _)| {
        step == expect.step && path == expect.path && expect.reasons.contains(&reason.as_str())
    })
}

/// The steps of a run named `step` on `path`.
fn steps_of<'a>(run: &'a Value, step: &str, path: &str) -> Vec<&'a Value> {
    run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step && s["path"] == path)
        .collect()
}

fn assert_all_passed(run: &Value, step: &str, path: &str) -> usize {
    let found = steps_of(run, step, path);
    assert!(
        !found.is_empty() && found.iter().all(|s| s["success"] == true),
        "{step} on {path} should pass in {}: {found:#?}",
        describe(run)
    );
    found.len()
}

/// Waits until a run that started after the injection failed; the first such run must show
/// the fault as expected (runs in flight at the injection may fail elsewhere, e.g. in a step
/// the fault reached midway). The detecting run is the first run finished after the
/// injection that shows it.
fn detect(svc: &mut Service, mark: Mark, what: &str, expect: &Expect) -> Detection {
    let mut seen: Vec<Value> = Vec::new();
    svc.wait_for(&format!("{what} to show"), DETECT_TIMEOUT, |s| {
        let after: Vec<Value> = runs(s)?.into_iter().filter(|r| seq(r) > mark.seq).collect();
        let done = after
            .iter()
            .any(|r| r["success"] == false && started(r) >= mark.at);
        seen = after;
        Ok(done)
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let history: Vec<String> = seen.iter().map(describe).collect();
    let first_after = seen
        .iter()
        .find(|r| r["success"] == false && started(r) >= mark.at)
        .expect("waited for it");
    assert!(
        shows(first_after, expect),
        "{what}: expected {} on {} with {:?}; runs since the injection:\n{}",
        expect.step,
        expect.path,
        expect.reasons,
        history.join("\n")
    );
    let missed: Vec<&String> = seen
        .iter()
        .zip(&history)
        .filter(|(r, _)| r["success"] == true && started(r) >= mark.at)
        .map(|(_, d)| d)
        .collect();
    assert!(
        missed.is_empty(),
        "{what}: runs that started after the injection passed: {missed:?}"
    );
    let index = seen
        .iter()
        .position(|r| shows(r, expect))
        .expect("the first run after the injection shows it");
    let run = seen[index].clone();
    Detection {
        seconds: finished(&run) - mark.at,
        cycles: index + 1,
        run,
    }
}

/// Waits until a run that started after the fault was removed passed; every run that started
/// after that must pass. Returns the runs finished after the removal up to that success.
fn recover(svc: &mut Service, mark: Mark, what: &str) -> usize {
    let mut seen: Vec<Value> = Vec::new();
    svc.wait_for(&format!("recovery from {what}"), RECOVER_TIMEOUT, |s| {
        let after: Vec<Value> = runs(s)?.into_iter().filter(|r| seq(r) > mark.seq).collect();
        let done = after
            .iter()
            .any(|r| r["success"] == true && started(r) >= mark.at);
        seen = after;
        Ok(done)
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let index = seen
        .iter()
        .position(|r| r["success"] == true && started(r) >= mark.at)
        .expect("waited for it");
    let failed_later: Vec<String> = seen[..index]
        .iter()
        .filter(|r| started(r) >= mark.at)
        .map(describe)
        .collect();
    assert!(
        failed_later.is_empty(),
        "{what}: runs started after the fault was removed still failed: {failed_later:?}"
    );
    assert_eq!(
        svc.get("/healthz").expect("healthz").status,
        200,
        "the prober is healthy after {what}"
    );
    index + 1
}

/// Value of the series of `name` whose labels include all of `labels` (summed over the rest).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let inner = rest.strip_suffix('}')?;
            let have: Vec<(&str, &str)> = inner
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once("=\"")?;
                    Some((k, v.trim_end_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|l| have.contains(l))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// An error line for the table: digests cut to 12 hex digits, upload-state queries dropped,
/// at most `max` characters, safe in a markdown cell.
fn truncate(s: &str, max: usize) -> String {
    let mut short = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("sha256:") {
        short.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 64 {
            short.push_str(&rest[..12]);
            short.push_str("...");
            rest = &rest[64..];
        }
    }
    short.push_str(rest);
    let s = short
        .split(' ')
        .map(|w| match w.find("?_state=") {
            Some(i) => format!("{}?...", &w[..i]),
            None => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let s = s.replace('|', "\\|").replace('\n', " ");
    if s.chars().count() <= max {
        return s;
    }
    format!("{}...", s.chars().take(max).collect::<String>())
}

/// (size, digest) of the config and layers of a manifest stored in `storage`.
fn manifest_blobs(storage: &Storage, manifest: &str) -> Vec<(u64, String)> {
    let path = storage.blob_data_path(manifest).expect("manifest path");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).expect("manifest read"))
        .expect("manifest JSON");
    let mut out = vec![(
        doc["config"]["size"].as_u64().expect("config size"),
        doc["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string(),
    )];
    for l in doc["layers"].as_array().expect("layers") {
        out.push((
            l["size"].as_u64().expect("size"),
            l["digest"].as_str().expect("digest").to_string(),
        ));
    }
    out
}

/// A blob's data file, kept to put back after an outage "lost" it.
struct LostBlob {
    data: Vec<u8>,
    path: PathBuf,
}

impl LostBlob {
    /// Keeps a copy of the blob's data, to put back later.
    fn backup(storage: &Storage, digest: &str) -> LostBlob {
        let path = storage.blob_data_path(digest).expect("blob path");
        let data = std::fs::read(&path).expect("blob data read");
        LostBlob { data, path }
    }

    /// Removes the blob's directory, as a lost file would.
    fn lose(&self, storage: &Storage, digest: &str) {
        storage.delete_blob(digest).expect("blob deleted");
    }

    /// Puts the data back, owned by the registry's user.
    fn restore(&self) {
        let dir = self.path.parent().expect("blob dir");
        std::fs::create_dir_all(dir).expect("blob dir created");
        std::fs::write(&self.path, &self.data).expect("blob data written");
        for p in [dir, self.path.as_path()] {
            std::os::unix::fs::chown(p, Some(NOBODY.0), Some(NOBODY.1)).expect("chown");
        }
    }
}

/// A markdown summary of a registry's storage: per repository its tags, manifests, live upload
/// sessions and leftover `_uploads` entries; and the blob count.
fn storage_state(storage: &Storage) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "| repository | tags | manifest revisions | live upload sessions | `_uploads` entries |"
    )
    .expect("string");
    writeln!(out, "| --- | --- | --- | --- | --- |").expect("string");
    for repo in storage.repositories().expect("repositories") {
        let tags = storage.tags(&repo).expect("tags");
        let shown = if tags.is_empty() {
            "none".to_string()
        } else {
            tags.iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            out,
            "| `{repo}` | {} | {} | {} | {} |",
            shown,
            storage.manifest_revisions(&repo).expect("revisions").len(),
            storage.uploads(&repo).expect("uploads").len(),
            storage.upload_dirs(&repo).expect("upload dirs").len(),
        )
        .expect("string");
    }
    writeln!(
        out,
        "\nBlobs in the store: {}.",
        storage.blobs().expect("blobs").len()
    )
    .expect("string");
    out
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| fault | injected as | step | path | reason | cycles to detect | seconds to detect | cycles to recover | first failure (error line) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        writeln!(
            out,
            "| {} | {} | `{}` | {} | `{}` | {} | {:.1} | {} | {} |",
            r.fault,
            r.injected,
            r.step,
            r.path,
            r.reason,
            r.detect_cycles,
            r.detect_seconds,
            r.recover_cycles
                .map_or_else(|| "n/a".to_string(), |c| c.to_string()),
            r.evidence
        )
        .expect("string");
    }
    out
}

/// target/<file>, next to the prober binary's profile directory.
fn target_dir_file(name: &str) -> PathBuf {
    let bin = prober_bin().expect("prober binary");
    bin.parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join(name)
}

/// The fault suite's test bed.
struct Bed {
    origin: Registry,
    cache: Registry,
    proxy: FaultProxy,
    svc: Service,
    rows: Vec<Row>,
}

impl Bed {
    fn mark_before(&self) -> i64 {
        newest_seq(&self.svc)
    }

    /// Injects with `inject`, waits for the fault to show as expected, removes it with
    /// `remove`, waits for a clean run, and adds the row. Returns the detecting run.
    fn fault(
        &mut self,
        fault: &str,
        injected: &str,
        expect: Expect,
        inject: impl FnOnce(&mut Bed),
        remove: impl FnOnce(&mut Bed, &Value),
    ) -> Value {
        eprintln!("fault suite: injecting {fault}");
        let seq = self.mark_before();
        inject(self);
        let mark = Mark {
            seq,
            at: unix_now(),
        };
        let d = detect(&mut self.svc, mark, fault, &expect);
        let (step, path, reason, line) = first_failure(&d.run).expect("a failure");
        eprintln!(
            "fault suite: {fault} -> {step} on {path} ({reason}) after {} run(s): {line}",
            d.cycles
        );
        let seq = self.mark_before();
        remove(self, &d.run);
        let mark = Mark {
            seq,
            at: unix_now(),
        };
        let recover_cycles = recover(&mut self.svc, mark, fault);
        self.rows.push(Row {
            fault: fault.to_string(),
            injected: injected.to_string(),
            step,
            path,
            reason,
            detect_cycles: d.cycles,
            detect_seconds: d.seconds,
            recover_cycles: Some(recover_cycles),
            evidence: truncate(&line, 260),
        });
        d.run
    }

    /// A proxy rule as the fault, cleared to remove it.
    fn rule_fault(&mut self, fault: &str, injected: &str, expect: Expect, rule: Rule) -> Value {
        self.fault(
            fault,
            injected,
            expect,
            |b| b.proxy.add_rule(rule),
            |b, _| b.proxy.clear_rules(),
        )
    }
}

fn blob_get(name: &str, fault: Fault) -> Rule {
    Rule::new(name, "/blobs/sha256:", fault).method(Method::GET)
}

fn upload_post(name: &str, fault: Fault) -> Rule {
    Rule::new(name, "/blobs/uploads/", fault).method(Method::POST)
}

#[test]
fn every_fault_shows_with_its_step_and_reason_and_the_prober_recovers_from_each() {
    let suite_started = Instant::now();
    let origin = Registry::start(RegistryOptions {
        run_as: Some(NOBODY),
        ..RegistryOptions::default()
    })
    .expect("origin starts as nobody");
    let status = std::fs::read_to_string(format!("/proc/{}/status", origin.pid()))
        .expect("the registry's /proc status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
        "the origin runs as nobody: {status}"
    );
    // The golden image: pushed once, straight to the origin, and left in place.
    let (code, golden) = once_json(&[
        "--registry",
        &origin.url(),
        "--repository",
        GOLDEN_REPO,
        "--layers",
        "2",
        "--layer-size",
        "16KiB",
        "--no-cleanup",
    ])
    .expect("golden push runs");
    assert_eq!(code, 0, "{golden:#}");
    let golden_manifest = golden["manifest_digest"]
        .as_str()
        .expect("golden digest")
        .to_string();
    let golden_ref = format!("{GOLDEN_REPO}@{golden_manifest}");
    let golden_blobs = manifest_blobs(&origin.storage(), &golden_manifest);

    let proxy = FaultProxy::start(&origin.url()).expect("proxy starts");
    let cache = Registry::start(RegistryOptions {
        proxy_remote: Some(origin.url()),
        ..RegistryOptions::default()
    })
    .expect("cache starts");
    let svc = Service::start(&format!(
        "shutdown_grace: 30s\ntargets:\n  - name: {TARGET}\n    registry: {}\n    repository: {REPO}\n    interval: {INTERVAL}\n    timeout: {INTERVAL}\n    step_timeout: 1s\n    cleanup_timeout: 3s\n    image:\n      layer_sizes: [4KiB, 64KiB]\n    golden_images: [\"{golden_ref}\"]\n    canaries:\n      enabled: true\n      every: 1h\n      keep: 3\n      layer_sizes: [4KiB, 8KiB]\n    hygiene:\n      interval: 10s\n    paths:\n      - name: cache\n        registry: {}\n",
        proxy.url(),
        cache.url()
    ))
    .expect("service starts");
    let mut bed = Bed {
        origin,
        cache,
        proxy,
        svc,
        rows: Vec::new(),
    };

    // Healthy first: two clean runs, the cache path probed as its own path.
    bed.svc
        .wait_for("two clean runs", Duration::from_secs(60), |s| {
            Ok(runs(s)?.iter().filter(|r| r["success"] == true).count() >= 2)
        })
        .expect("healthy");
    let healthy = runs(&bed.svc)
        .expect("runs")
        .into_iter()
        .rev()
        .find(|r| r["success"] == true)
        .expect("a clean run");
    for path in ["origin", "cache"] {
        assert_all_passed(&healthy, "pull_manifest_by_tag", path);
        assert_all_passed(&healthy, "pull_manifest_by_digest", path);
        assert_eq!(
            assert_all_passed(&healthy, "pull_blob", path),
            3,
            "config + 2 layers via {path}"
        );
        assert_all_passed(&healthy, "pull_golden_manifest", path);
        assert_eq!(assert_all_passed(&healthy, "pull_golden_blob", path), 3);
        assert_all_passed(&healthy, "pull_canary_manifest", path);
        assert_eq!(assert_all_passed(&healthy, "pull_canary_blob", path), 3);
    }
    assert!(steps_of(&healthy, "upload_blob", "cache").is_empty());
    let healthy_seconds: Vec<f64> = runs(&bed.svc)
        .expect("runs")
        .iter()
        .filter(|r| r["success"] == true)
        .map(|r| r["duration_seconds"].as_f64().unwrap_or_default())
        .collect();
    eprintln!("fault suite: healthy run durations {healthy_seconds:?}");
    let text = bed.svc.metrics().expect("metrics");
    assert!(
        metric(
            &text,
            "registry_prober_steps_total",
            &[("target", TARGET), ("path", "cache"), ("result", "success")]
        ) > 0.0,
        "no successful steps counted for path cache"
    );

    // Outages first: a run cut off by one may leave its tag behind, which only the hygiene
    // sweep removes (once the tag is older than any run can be), so give it the whole suite.
    bed.fault(
        "origin registry stopped",
        "`kill` of docker-registry behind the proxy; restarted on the same port and storage",
        Expect {
            step: "ping",
            path: "origin",
            reasons: &["http_5xx"],
        },
        |b| b.origin.stop(),
        |b, run| {
            let (_, _, _, line) = first_failure(run).expect("failure");
            assert!(line.contains("502"), "{line}");
            b.origin.restart().expect("origin restarts");
        },
    );
    bed.fault(
        "cache registry stopped",
        "`kill` of the pull-through cache; restarted on the same port and storage",
        Expect {
            step: "ping",
            path: "cache",
            reasons: &["connect"],
        },
        |b| b.cache.stop(),
        |b, run| {
            // The origin path passed in the same run.
            assert_all_passed(run, "push_manifest", "origin");
            assert_all_passed(run, "pull_blob", "origin");
            b.cache.restart().expect("cache restarts");
        },
    );

    // On the wire.
    bed.rule_fault(
        "connection reset mid-body",
        "blob GET: RST after 512 body bytes",
        Expect {
            step: "pull_blob",
            path: "origin",
            reasons: &["io"],
        },
        blob_get("reset", Fault::ResetMidBody { after: 512 }),
    );
    bed.rule_fault(
        "truncated body",
        "blob GET: FIN after 512 body bytes",
        Expect {
            step: "pull_blob",
            path: "origin",
            reasons: &["io", "size_mismatch"],
        },
        blob_get("truncate", Fault::Truncate { after: 512 }),
    );
    bed.rule_fault(
        "flipped byte",
        "blob GET: byte 10 XOR 0xFF",
        Expect {
            step: "pull_blob",
            path: "origin",
            reasons: &["digest_mismatch"],
        },
        blob_get("flip", Fault::FlipByte { offset: 10 }),
    );
    bed.rule_fault(
        "headers delayed past the step deadline",
        "blob GET: head held 2 s (step_timeout 1 s)",
        Expect {
            step: "pull_blob",
            path: "origin",
            reasons: &["timeout"],
        },
        blob_get(
            "delay",
            Fault::DelayHeaders {
                delay: Duration::from_secs(2),
            },
        ),
    );
    bed.rule_fault(
        "body dripped slower than the step deadline",
        "blob GET: 64 bytes every 100 ms",
        Expect {
            step: "pull_blob",
            path: "origin",
            reasons: &["timeout"],
        },
        blob_get(
            "drip",
            Fault::Drip {
                bytes_per_tick: 64,
                tick: Duration::from_millis(100),
            },
        ),
    );
    bed.rule_fault(
        "hang",
        "manifest GET: request read, never answered",
        Expect {
            step: "pull_manifest_by_tag",
            path: "origin",
            reasons: &["timeout"],
        },
        Rule::new("hang", "/manifests/", Fault::Hang).method(Method::GET),
    );
    // An upload whose closing PUT never gets an answer: the session stays open at the
    // registry until cleanup cancels it.
    let run = bed.rule_fault(
        "hang on upload close",
        "upload PUT: request read, never answered",
        Expect {
            step: "upload_blob",
            path: "origin",
            reasons: &["timeout"],
        },
        Rule::new("hang-put", "/blobs/uploads/", Fault::Hang).method(Method::PUT),
    );
    let cancels = steps_of(&run, "cancel_upload", "origin");
    assert!(
        !cancels.is_empty() && cancels.iter().all(|s| s["success"] == true),
        "cleanup cancelled the open session: {cancels:#?}"
    );
    for status in [500, 503] {
        let run = bed.rule_fault(
            &format!("{status} on upload start"),
            &format!("upload POST: {status} with a registry error body"),
            Expect {
                step: "start_upload",
                path: "origin",
                reasons: &["http_5xx"],
            },
            upload_post(
                "5xx",
                Fault::Status {
                    status,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body:
                        r#"{"errors":[{"code":"UNKNOWN","message":"injected by the fault suite"}]}"#
                            .into(),
                },
            ),
        );
        let (_, _, _, line) = first_failure(&run).expect("failure");
        assert!(
            line.contains(&format!(
                "POST {}/v2/{REPO}/blobs/uploads/",
                bed.proxy.url()
            )) && line.contains(&status.to_string()),
            "{line}"
        );
    }

    // 429: the run stops sending, and the schedule waits out Retry-After (skipped runs).
    let skipped = |svc: &Service| {
        metric(
            &svc.metrics().expect("metrics"),
            "registry_prober_skipped_runs_total",
            &[("target", TARGET), ("cause", "rate_limited")],
        )
    };
    let skipped_before = skipped(&bed.svc);
    bed.fault(
        "429 with Retry-After",
        "upload POST: 429, `Retry-After: 7`, TOOMANYREQUESTS",
        Expect {
            step: "start_upload",
            path: "origin",
            reasons: &["rate_limited"],
        },
        |b| {
            b.proxy.add_rule(upload_post(
                "429",
                Fault::Status {
                    status: 429,
                    headers: vec![
                        ("Retry-After".into(), "7".into()),
                        ("Content-Type".into(), "application/json".into()),
                    ],
                    body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.into(),
                },
            ))
        },
        |b, run| {
            // Nothing but cleanup after the 429: no pulls, golden images or canaries.
            assert!(steps_of(run, "pull_golden_manifest", "origin").is_empty());
            b.svc
                .wait_for(
                    "a run skipped as rate_limited",
                    Duration::from_secs(30),
                    |s| Ok(skipped(s) > skipped_before),
                )
                .expect("skipped");
            b.proxy.clear_rules();
        },
    );
    let skipped_runs = skipped(&bed.svc) - skipped_before;

    // In the storage, as a bad disk or a broken replication would.
    let (_, golden_layer) = golden_blobs
        .iter()
        .max_by_key(|(size, _)| *size)
        .cloned()
        .expect("a golden layer");
    let storage = bed.origin.storage();
    let lost = LostBlob::backup(&storage, &golden_layer);
    let run = bed.fault(
        "golden image blob data deleted",
        "`blobs/sha256/../<layer>/` of the golden image removed from the origin's storage",
        Expect {
            step: "head_blob",
            path: "origin",
            reasons: &["blob_unknown"],
        },
        |_| lost.lose(&storage, &golden_layer),
        |_, _| lost.restore(),
    );
    check_lost_blob(&run, "pull_golden_blob", &golden_layer);

    let canary = canary_tags(&storage).pop().expect("a canary");
    let canary_manifest = storage
        .tag_target(REPO, &canary)
        .expect("tag link")
        .expect("tagged");
    // Config, then its layers in order: the last is the 8 KiB one (gzip-compressed, so not
    // 8,192 bytes on the wire).
    let (_, canary_layer) = manifest_blobs(&storage, &canary_manifest)
        .pop()
        .expect("the canary's 8 KiB layer");
    let lost = LostBlob::backup(&storage, &canary_layer);
    let run = bed.fault(
        "canary blob data deleted",
        "`blobs/sha256/../<layer>/` of the kept canary removed from the origin's storage",
        Expect {
            step: "head_blob",
            path: "origin",
            reasons: &["blob_unknown"],
        },
        |_| lost.lose(&storage, &canary_layer),
        |_, _| lost.restore(),
    );
    check_lost_blob(&run, "pull_canary_blob", &canary_layer);
    // Never re-pushed: its period still has exactly this canary (a new period, if the suite
    // crossed an `every` boundary, rightly gets a canary of its own).
    assert_eq!(
        same_period(&canary_tags(&storage), &canary),
        vec![canary.clone()],
        "never re-pushed"
    );

    let uploads_dir = storage.repo_dir(REPO).join("_uploads");
    let run = bed.fault(
        "upload directory unwritable",
        "`chmod 555` of the probe repository's `_uploads` (registry runs as nobody)",
        Expect {
            step: "start_upload",
            path: "origin",
            reasons: &["http_5xx"],
        },
        |_| {
            std::fs::create_dir_all(&uploads_dir).expect("_uploads exists");
            std::os::unix::fs::chown(&uploads_dir, Some(NOBODY.0), Some(NOBODY.1)).expect("chown");
            std::fs::set_permissions(&uploads_dir, std::fs::Permissions::from_mode(0o555))
                .expect("chmod 555");
        },
        |_, _| {
            std::fs::set_permissions(&uploads_dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 755");
        },
    );
    let (_, _, _, line) = first_failure(&run).expect("failure");
    assert!(
        line.contains(&format!(
            "POST {}/v2/{REPO}/blobs/uploads/",
            bed.proxy.url()
        )) && line.contains("500"),
        "names the URL and the status: {line}"
    );
    for path in ["origin", "cache"] {
        assert_all_passed(&run, "pull_golden_manifest", path);
        assert_eq!(assert_all_passed(&run, "pull_golden_blob", path), 3);
        assert_all_passed(&run, "pull_canary_blob", path);
    }
    assert!(
        bed.origin.log().contains("permission denied"),
        "the registry saw EACCES"
    );

    // Leftovers of the outages go with the sweep; then stop gracefully.
    let svc = &mut bed.svc;
    svc.wait_for(
        "only canaries left in the probe repository",
        SWEEP_TIMEOUT,
        |_| Ok(stray_tags(&storage).is_empty()),
    )
    .unwrap_or_else(|e| panic!("{e:#}\nstray tags: {:?}", stray_tags(&storage)));
    let text = svc.metrics().expect("metrics");
    let swept = metric(
        &text,
        "registry_prober_swept_objects_total",
        &[("target", TARGET), ("kind", "tag")],
    );
    let runs_total = metric(&text, "registry_prober_runs_total", &[("target", TARGET)]);
    let failed_total = metric(
        &text,
        "registry_prober_runs_total",
        &[("target", TARGET), ("result", "failure")],
    );
    // The metrics agree with the status page: every fault was counted with its reason, and
    // with its path and step.
    for row in &bed.rows {
        let reason = row.reason.as_str();
        assert!(
            metric(
                &text,
                "registry_prober_failures_total",
                &[("target", TARGET), ("reason", reason)]
            ) >= 1.0,
            "failures_total has no {reason} for {}",
            row.fault
        );
        assert!(
            metric(
                &text,
                "registry_prober_step_failures_total",
                &[
                    ("target", TARGET),
                    ("path", row.path.as_str()),
                    ("step", row.step.as_str()),
                    ("reason", reason)
                ]
            ) >= 1.0,
            "step_failures_total has no {} {} {reason} for {}",
            row.path,
            row.step,
            row.fault
        );
    }
    svc.signal("TERM").expect("SIGTERM");
    let code = svc.wait_exit(Duration::from_secs(40)).expect("exits");
    assert_eq!(code, 0, "graceful stop");
    let log = svc.log();
    std::fs::write(target_dir_file("fault-suite-prober.log"), &log).expect("log written");
    assert_eq!(
        storage.uploads(REPO).expect("uploads"),
        Vec::<String>::new(),
        "live upload sessions left"
    );
    // What may stay under `_uploads`: sessions the prober cancelled, which Distribution 2.8
    // empties but does not remove (`hashstates/` only; see Storage::uploads).
    for entry in storage.upload_dirs(REPO).expect("upload dirs") {
        let dir = uploads_dir.join(&entry);
        assert!(
            !dir.join("data").exists() && !dir.join("startedat").exists(),
            "{} still holds an upload",
            dir.display()
        );
    }
    assert_eq!(stray_tags(&storage), Vec::<String>::new());
    assert_eq!(
        same_period(&canary_tags(&storage), &canary),
        vec![canary],
        "the canary survived the suite"
    );

    let mut doc = String::new();
    writeln!(
        doc,
        "Fault suite run of {}: {} faults in {:.0} s; {runs_total} runs of target `{TARGET}` ({failed_total} failed), {skipped_runs} skipped as rate_limited, {swept} leftover run tag(s) swept by hygiene.\n",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a formattable time"),
        bed.rows.len(),
        suite_started.elapsed().as_secs_f64()
    )
    .expect("string");
    doc.push_str(&table(&bed.rows));
    writeln!(
        doc,
        "\nStorage of the origin after the suite (service stopped):\n\n{}",
        storage_state(&storage)
    )
    .expect("string");
    println!("{doc}");
    let out = target_dir_file("fault-suite.md");
    std::fs::write(&out, &doc).expect("table written");
    eprintln!("fault suite: table written to {}", out.display());
}

/// The run that saw a lost blob: the fresh image went up and came back, and both the HEAD
/// and the GET of the lost blob failed as blob_unknown naming it.
fn check_lost_blob(run: &Value, get_step: &str, digest: &str) {
    for step in [
        "check_blob",
        "start_upload",
        "upload_blob",
        "push_manifest",
        "pull_blob",
    ] {
        assert_all_passed(run, step, "origin");
    }
    for step in ["head_blob", get_step] {
        let failed: Vec<&Value> = steps_of(run, step, "origin")
            .into_iter()
            .filter(|s| s["success"] == false)
            .collect();
        assert_eq!(failed.len(), 1, "one {step} failed: {failed:#?}");
        assert_eq!(failed[0]["reason"], "blob_unknown", "{:#}", failed[0]);
        let error = failed[0]["error"].as_str().expect("error");
        assert!(error.contains(digest), "{step} names {digest}: {error}");
    }
    // The pull-through cache keeps its own copy: through it the old content still reads back.
    for step in ["head_blob", get_step] {
        assert_all_passed(run, step, "cache");
    }
}

fn canary_tags(storage: &Storage) -> Vec<String> {
    prober::canary_tags(storage.tags(REPO).expect("tags"))
}

/// Prober tags in the probe repository that are not canaries.
fn stray_tags(storage: &Storage) -> Vec<String> {
    storage
        .tags(REPO)
        .expect("tags")
        .into_iter()
        .filter(|t| t.starts_with("registry-prober-") && !t.contains("-canary-"))
        .collect()
}

/// A CA and a leaf for `registry.example.com` only (not 127.0.0.1): the wrong host for a
/// client that connects to 127.0.0.1. Returns (cert, key, ca) paths.
fn wrong_host_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(vec!["registry.example.com".to_string()]).expect("leaf params");
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("leaf cert");
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("pem written");
        p
    };
    (
        write("wrong-host.pem", cert.pem()),
        write("wrong-host-key.pem", key.serialize_pem()),
        write("wrong-host-ca.pem", ca.pem()),
    )
}

#[test]
fn tls_faults_fail_the_first_step_with_reason_tls() {
    // Plain HTTP behind the TLS proxy: without relative URLs the registry would name
    // `http://` upload locations (it cannot know the client came over TLS).
    let origin = Registry::start(RegistryOptions {
        env: vec![("REGISTRY_HTTP_RELATIVEURLS".into(), "true".into())],
        ..RegistryOptions::default()
    })
    .expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new().expect("ca");
    let once = |proxy: &FaultProxy, ca_file: &Path| {
        once_json(&[
            "--registry",
            &proxy.url(),
            "--repository",
            REPO,
            "--ca-file",
            &ca_file.display().to_string(),
            "--layers",
            "1",
            "--layer-size",
            "4KiB",
            "--timeout",
            "10s",
        ])
        .expect("once runs")
    };
    // Control: the same CA's valid certificate passes.
    let good = ca.issue_server_cert(dir.path()).expect("cert");
    let proxy = FaultProxy::start_tls(&origin.url(), &good).expect("proxy");
    let (code, report) = once(&proxy, &good.ca);
    assert_eq!(code, 0, "{report:#}");
    drop(proxy);

    let expired = ca.issue_expired_server_cert(dir.path()).expect("cert");
    let (cert, key, wrong_ca) = wrong_host_cert(dir.path());
    let wrong = registry_prober_e2e::TlsFiles {
        cert,
        key,
        ca: wrong_ca,
    };
    let mut rows = Vec::new();
    for (fault, files, says) in [
        ("expired certificate", &expired, "expired"),
        ("wrong-host certificate", &wrong, "not valid for name"),
    ] {
        let proxy = FaultProxy::start_tls(&origin.url(), files).expect("proxy");
        let (code, report) = once(&proxy, &files.ca);
        assert_eq!(code, 1, "{report:#}");
        let steps = report["steps"].as_array().expect("steps");
        let first = &steps[0];
        assert_eq!(first["success"], false, "{report:#}");
        assert_eq!(first["reason"], "tls", "{first:#}");
        let error = first["error"].as_str().expect("error");
        assert!(error.to_lowercase().contains(says), "{fault}: {error}");
        // Nothing got through: every step failed the handshake or never ran.
        assert!(steps.iter().all(|s| s["success"] == false), "{report:#}");
        assert_eq!(origin.storage().uploads(REPO).expect("uploads").len(), 0);
        rows.push(Row {
            fault: fault.to_string(),
            injected: format!("HTTPS fault proxy presenting the {fault} (`once` run)"),
            step: first["step"].as_str().unwrap_or_default().to_string(),
            path: first["path"].as_str().unwrap_or_default().to_string(),
            reason: "tls".into(),
            detect_cycles: 1,
            detect_seconds: report["duration_seconds"].as_f64().unwrap_or_default(),
            recover_cycles: None,
            evidence: truncate(error, 260),
        });
    }
    let doc = table(&rows);
    println!("{doc}");
    std::fs::write(target_dir_file("fault-suite-tls.md"), doc).expect("table written");
}
