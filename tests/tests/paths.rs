//! Every registry path and old content, against real docker-registry instances: a pull-through
//! cache probed as its own path, a replica that lags (propagation waited for and measured) or
//! never catches up, aged canaries (pushed once, kept, verified, rotated, loud when lost or
//! changed), a cross-repository mount, size classes and rate limits.

use std::path::Path;
use std::time::Duration;

use http::Method;
use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::prober::{self, first_failure, once_json, same_period};
use registry_prober_e2e::service::Service;
use registry_prober_e2e::{Registry, RegistryOptions};
use serde_json::Value;

const REPO: &str = "registry-prober/paths";

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("prober.yml");
    std::fs::write(&path, body).expect("config written");
    path.display().to_string()
}

/// `once` with `yaml` as its config file (written to a temp dir) and `extra` arguments.
fn once_yaml(yaml: &str, extra: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    once_config(&write_config(dir.path(), yaml), extra)
}

/// `once --config FILE [extra]` with the JSON report.
fn once_config(config: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--config", config];
    args.extend_from_slice(extra);
    once_json(&args).expect("once runs")
}

fn steps<'a>(report: &'a Value, step: &str, path: &str) -> Vec<&'a Value> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step && s["path"] == path)
        .collect()
}

fn all_passed(report: &Value, step: &str, path: &str) -> usize {
    let found = steps(report, step, path);
    assert!(
        found.iter().all(|s| s["success"] == true),
        "{step} on {path} failed: {found:#?}"
    );
    found.len()
}

fn canary_tags(reg: &Registry) -> Vec<String> {
    prober::canary_tags(reg.storage().tags(REPO).expect("tags"))
}

/// The run's own image is gone again (only canaries may stay).
fn assert_only_canaries_left(reg: &Registry) {
    let tags = reg.storage().tags(REPO).expect("tags");
    let stray: Vec<&String> = tags.iter().filter(|t| !t.contains("-canary-")).collect();
    assert!(stray.is_empty(), "tags left behind: {stray:?}");
    assert_eq!(
        reg.storage().uploads(REPO).expect("uploads"),
        Vec::<String>::new()
    );
}

#[test]
fn a_pull_through_cache_is_probed_as_its_own_path() {
    let origin = Registry::start_default().expect("origin starts");
    let cache = Registry::start(RegistryOptions {
        proxy_remote: Some(origin.url()),
        ..RegistryOptions::default()
    })
    .expect("cache starts");
    let (code, report) = once_yaml(
        &format!(
            "targets:\n  - name: cached\n    registry: {}\n    repository: {REPO}\n    image:\n      layer_sizes: [4KiB, 64KiB]\n    paths:\n      - name: cache\n        registry: {}\n",
            origin.url(),
            cache.url()
        ),
        &[],
    );
    assert_eq!(code, 0, "{report:#}");
    for path in ["origin", "cache"] {
        assert_eq!(all_passed(&report, "pull_manifest_by_tag", path), 1);
        assert_eq!(all_passed(&report, "pull_manifest_by_digest", path), 1);
        assert_eq!(
            all_passed(&report, "pull_blob", path),
            3,
            "config + 2 layers via {path}"
        );
    }
    // Pushes and cleanup go to the origin only.
    assert!(steps(&report, "upload_blob", "cache").is_empty());
    assert!(steps(&report, "delete_manifest", "cache").is_empty());
    // The cache really fetched from the origin: it now holds the blobs it served.
    assert!(!cache.storage().blobs().expect("cache blobs").is_empty());
    assert_only_canaries_left(&origin);
}

#[test]
fn a_lagging_replica_is_polled_until_it_serves_the_image_and_the_delay_is_reported() {
    let origin = Registry::start_default().expect("origin starts");
    let replica = FaultProxy::start(&origin.url()).expect("proxy starts");
    // The replica answers 404 to the first 3 polls of the manifest: replication lag.
    replica.add_rule(
        Rule::new("lag", "/manifests/registry-prober-", Fault::status(404))
            .method(Method::HEAD)
            .times(3),
    );
    let (code, report) = once_yaml(
        &format!(
            "targets:\n  - name: replicated\n    registry: {}\n    repository: {REPO}\n    image:\n      layer_sizes: [4KiB]\n    paths:\n      - name: replica\n        registry: {}\n        propagation_timeout: 10s\n        poll_interval: 200ms\n",
            origin.url(),
            replica.url()
        ),
        &[],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(replica.hits("lag"), 3);
    let wait = steps(&report, "wait_propagation", "replica");
    assert_eq!(wait.len(), 1);
    assert_eq!(wait[0]["requests"].as_array().expect("requests").len(), 4);
    let delay = report["propagation"][0]["delay_seconds"]
        .as_f64()
        .expect("a delay");
    assert_eq!(report["propagation"][0]["path"], "replica");
    assert!(
        delay >= 0.6,
        "3 polls 200 ms apart before it appeared, got {delay}"
    );
    assert!(delay < 5.0, "{delay}");
    assert_eq!(all_passed(&report, "pull_blob", "replica"), 2);
    assert_only_canaries_left(&origin);
}

#[test]
fn a_replica_that_never_catches_up_fails_with_propagation_timeout() {
    let origin = Registry::start_default().expect("origin starts");
    let replica = FaultProxy::start(&origin.url()).expect("proxy starts");
    replica.add_rule(
        Rule::new("never", "/manifests/registry-prober-", Fault::status(404)).method(Method::HEAD),
    );
    let (code, report) = once_yaml(
        &format!(
            "targets:\n  - name: replicated\n    registry: {}\n    repository: {REPO}\n    image:\n      layer_sizes: [4KiB]\n    paths:\n      - name: replica\n        registry: {}\n        propagation_timeout: 1s\n        poll_interval: 250ms\n",
            origin.url(),
            replica.url()
        ),
        &[],
    );
    assert_eq!(code, 1, "{report:#}");
    let failure = first_failure(&report).expect("a failure");
    assert_eq!(failure["step"], "wait_propagation");
    assert_eq!(failure["path"], "replica");
    assert_eq!(failure["reason"], "propagation_timeout");
    let error = failure["error"].as_str().expect("error");
    assert!(error.contains("did not propagate within 1s"), "{error}");
    assert!(report["propagation"][0]["delay_seconds"].is_null());
    // The origin path still passed, and nothing was pulled through the replica.
    assert_eq!(all_passed(&report, "pull_blob", "origin"), 2);
    assert!(steps(&report, "pull_blob", "replica").is_empty());
    assert_only_canaries_left(&origin);
}

fn canary_config(dir: &Path, reg: &Registry, every: &str, keep: u32) -> String {
    write_config(
        dir,
        &format!(
            "targets:\n  - name: aged\n    registry: {}\n    repository: {REPO}\n    image:\n      layer_sizes: [4KiB]\n    canaries:\n      enabled: true\n      every: {every}\n      keep: {keep}\n      layer_sizes: [4KiB, 8KiB]\n",
            reg.url()
        ),
    )
}

fn canary_steps<'a>(report: &'a Value, step: &str) -> Vec<&'a Value> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step)
        .collect()
}

#[test]
fn a_canary_is_pushed_once_then_kept_and_verified_by_later_runs() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = canary_config(dir.path(), &reg, "1h", 3);

    let (code, first) = once_config(&config, &[]);
    assert_eq!(code, 0, "{first:#}");
    let pushed: Vec<&Value> = canary_steps(&first, "push_manifest")
        .into_iter()
        .filter(|s| s["subject"].as_str().unwrap_or("").contains("-canary-"))
        .collect();
    assert_eq!(pushed.len(), 1, "{first:#}");
    let tags = canary_tags(&reg);
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(
        tags[0].starts_with("registry-prober-default-canary-"),
        "{tags:?}"
    );
    assert_eq!(first["canaries"]["count"], 1);

    // A new process: it finds the canary in the tag list and verifies it, without pushing.
    let (code, second) = once_config(&config, &[]);
    assert_eq!(code, 0, "{second:#}");
    assert_eq!(
        canary_steps(&second, "push_manifest").len(),
        1,
        "only the run's own image"
    );
    let manifests = canary_steps(&second, "pull_canary_manifest");
    assert_eq!(manifests.len(), 1);
    assert!(manifests[0]["subject"]
        .as_str()
        .expect("subject")
        .contains(&tags[0]));
    assert_eq!(
        canary_steps(&second, "pull_canary_blob").len(),
        3,
        "config + 2 layers"
    );
    assert_eq!(canary_steps(&second, "head_blob").len(), 3);
    assert_eq!(
        same_period(&canary_tags(&reg), &tags[0]),
        tags,
        "the canary is kept, not re-pushed"
    );
    assert_only_canaries_left(&reg);
}

#[test]
fn a_canary_whose_blob_was_lost_fails_loudly_while_fresh_pushes_pass() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = canary_config(dir.path(), &reg, "1h", 3);
    let (code, first) = once_config(&config, &[]);
    assert_eq!(code, 0, "{first:#}");
    let tag = canary_tags(&reg).pop().expect("a canary");
    let manifest = reg
        .storage()
        .tag_target(REPO, &tag)
        .expect("tag link")
        .expect("tagged");
    // The canary's manifest names its layers; lose the data of the second (8 KiB of tar,
    // gzipped).
    let (_, layer) = manifest_layers(&reg, &manifest)
        .into_iter()
        .nth(1)
        .expect("the 8 KiB layer");
    reg.storage().delete_blob(&layer).expect("blob deleted");

    let (code, second) = once_config(&config, &[]);
    assert_eq!(code, 1, "{second:#}");
    // The fresh image still went up and came back.
    for step in ["upload_blob", "push_manifest", "pull_blob"] {
        assert!(all_passed(&second, step, "origin") >= 1, "{step}");
    }
    let failed: Vec<&Value> = second["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["success"] == false)
        .collect();
    assert!(!failed.is_empty());
    for f in &failed {
        assert!(
            matches!(f["step"].as_str(), Some("pull_canary_blob" | "head_blob")),
            "{f:#}"
        );
        assert!(
            matches!(
                f["reason"].as_str(),
                Some("blob_unknown" | "size_mismatch" | "digest_mismatch")
            ),
            "{f:#}"
        );
        assert!(
            f["error"].as_str().expect("error").contains(&layer[7..]),
            "{f:#}"
        );
    }
    // Loud, never silently re-pushed: the same single canary.
    assert_eq!(same_period(&canary_tags(&reg), &tag), vec![tag]);
}

#[test]
fn a_canary_whose_manifest_was_replaced_is_content_changed() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = canary_config(dir.path(), &reg, "1h", 3);
    let (code, first) = once_config(&config, &[]);
    assert_eq!(code, 0, "{first:#}");
    let tag = canary_tags(&reg).pop().expect("a canary");
    // Someone pushes another image under the canary's tag.
    let other = leave_image(&reg);
    put_manifest(&reg, &tag, &other);

    let (code, second) = once_config(&config, &[]);
    assert_eq!(code, 1, "{second:#}");
    let failure = first_failure(&second).expect("a failure");
    assert_eq!(failure["step"], "pull_canary_manifest", "{second:#}");
    assert_eq!(failure["reason"], "content_changed");
    let error = failure["error"].as_str().expect("error");
    assert!(error.contains(&tag) && error.contains("changed"), "{error}");
}

#[test]
fn canaries_rotate_keeping_the_newest() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    // A new canary every second, two kept.
    let config = canary_config(dir.path(), &reg, "1s", 2);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (code, report) = once_config(&config, &[]);
        assert_eq!(code, 0, "{report:#}");
        seen.extend(canary_tags(&reg));
        assert!(canary_tags(&reg).len() <= 2, "{:?}", canary_tags(&reg));
        std::thread::sleep(Duration::from_millis(1100));
    }
    seen.sort();
    seen.dedup();
    assert!(
        seen.len() >= 3,
        "canaries were pushed and rotated out: {seen:?}"
    );
    // The rotated-out canaries' manifests are deleted too, not only untagged.
    let revisions = reg.storage().manifest_revisions(REPO).expect("revisions");
    assert!(revisions.len() <= 2, "{revisions:?}");
}

#[test]
fn a_blob_is_mounted_into_another_repository_and_cleanup_unlinks_it() {
    let reg = Registry::start_default().expect("registry starts");
    let (code, report) = once_yaml(
        &format!(
            "targets:\n  - name: mounting\n    registry: {}\n    repository: {REPO}\n    image:\n      layer_sizes: [4KiB]\n    mount:\n      enabled: true\n      repository: registry-prober/mounted\n",
            reg.url()
        ),
        &[],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(all_passed(&report, "mount_blob", "origin"), 1);
    assert_eq!(report["mount"], "mounted");
    let mount = steps(&report, "mount_blob", "origin")[0];
    assert_eq!(mount["requests"][0]["status"], 201);
    assert_eq!(
        reg.storage()
            .layer_links("registry-prober/mounted")
            .expect("links"),
        Vec::<String>::new(),
        "cleanup unlinked the mounted blob"
    );
}

#[test]
fn once_runs_the_size_class_asked_for() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!(
            "targets:\n  - name: tiers\n    registry: {}\n    repository: {REPO}\n    image:\n      compression: none\n    upload:\n      mode: chunked\n      chunk_size: 64KiB\n    sizes:\n      - class: small\n        layer_sizes: [4KiB]\n      - class: medium\n        layer_sizes: [1MiB, 1MiB]\n        chunk_size: 256KiB\n",
            reg.url()
        ),
    );
    let (code, report) = once_config(&config, &["--size-class", "medium"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["size_class"], "medium");
    let uploads = steps(&report, "upload_blob", "origin");
    assert_eq!(uploads.len(), 3);
    // 1 MiB (of uncompressed tar) in 256 KiB chunks: 4 PATCHes and the closing PUT per layer.
    let patches = uploads
        .iter()
        .flat_map(|s| s["requests"].as_array().expect("requests"))
        .filter(|r| r["method"] == "PATCH")
        .count();
    assert_eq!(patches, 1 + 4 + 4, "config + 2 layers");
    let inv =
        registry_prober_e2e::prober::prober(&["once", "--config", &config, "--size-class", "huge"])
            .expect("runs");
    assert_eq!(inv.code, 64);
    assert!(
        inv.stderr
            .contains("no size class \"huge\" (it has: small, medium)"),
        "{}",
        inv.stderr
    );
}

#[test]
fn each_size_class_runs_on_its_own_schedule() {
    let reg = Registry::start_default().expect("registry starts");
    let mut svc = Service::start(&format!(
        "targets:\n  - name: tiers\n    registry: {}\n    repository: {REPO}\n    sizes:\n      - class: small\n        layer_sizes: [4KiB]\n        interval: 500ms\n      - class: large\n        layer_sizes: [4MiB]\n        interval: 3s\n",
        reg.url()
    ))
    .expect("service starts");
    let series = |class: &str| {
        format!("registry_prober_runs_total{{target=\"tiers\",size_class=\"{class}\",result=\"success\"}}")
    };
    svc.wait_for("a large run", Duration::from_secs(15), |s| {
        Ok(s.metric(&series("large"))?.unwrap_or(0.0) >= 1.0)
    })
    .expect("large ran");
    let small = svc
        .metric(&series("small"))
        .expect("metrics")
        .unwrap_or(0.0);
    let large = svc
        .metric(&series("large"))
        .expect("metrics")
        .unwrap_or(0.0);
    assert!(small >= 3.0 * large, "small {small} vs large {large}");
    let text = svc.metrics().expect("metrics");
    assert!(
        text.contains(
            "registry_prober_target_interval_seconds{target=\"tiers\",size_class=\"large\"} 3"
        ),
        "{text}"
    );
}

#[test]
fn a_429_with_retry_after_delays_the_next_run_instead_of_hammering() {
    let reg = Registry::start_default().expect("registry starts");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "limited",
            "/blobs/uploads/",
            Fault::Status {
                status: 429,
                headers: vec![("Retry-After".into(), "4".into())],
                body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.into(),
            },
        )
        .method(Method::POST)
        .times(1),
    );
    let mut svc = Service::start(&format!(
        "targets:\n  - name: limited\n    registry: {}\n    repository: {REPO}\n    interval: 500ms\n    image:\n      layer_sizes: [4KiB]\n",
        proxy.url()
    ))
    .expect("service starts");
    let failures = "registry_prober_failures_total{target=\"limited\",size_class=\"default\",reason=\"rate_limited\"}";
    svc.wait_for("the rate-limited run", Duration::from_secs(10), |s| {
        Ok(s.metric(failures)?.unwrap_or(0.0) >= 1.0)
    })
    .expect("rate limited");
    let runs = |s: &Service| -> f64 {
        ["success", "failure"]
            .iter()
            .map(|r| {
                s.metric(&format!(
                    "registry_prober_runs_total{{target=\"limited\",size_class=\"default\",result=\"{r}\"}}"
                ))
                .expect("metrics")
                .unwrap_or(0.0)
            })
            .sum()
    };
    let at_429 = runs(&svc);
    let seen = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        runs(&svc),
        at_429,
        "no run while the registry asked us to wait"
    );
    let skipped = svc
        .metric("registry_prober_skipped_runs_total{target=\"limited\",size_class=\"default\",cause=\"rate_limited\"}")
        .expect("metrics")
        .unwrap_or(0.0);
    assert!(skipped >= 3.0, "ticks every 500 ms were skipped: {skipped}");
    svc.wait_for("runs to resume and pass", Duration::from_secs(10), |s| {
        Ok(s
            .metric("registry_prober_runs_total{target=\"limited\",size_class=\"default\",result=\"success\"}")?
            .unwrap_or(0.0)
            >= 1.0)
    })
    .expect("resumed");
    // The wait counts from the 429, not from the next tick: the next run comes about 4 s
    // after it (within a tick and a run), not a whole interval later.
    let resumed = seen.elapsed();
    assert!(
        resumed < Duration::from_millis(5500),
        "runs resumed {resumed:?} after the 429 asked for 4 s"
    );
    assert_eq!(proxy.hits("limited"), 1);
}

/// Pushes a small image that stays and returns its manifest's bytes.
fn leave_image(reg: &Registry) -> Vec<u8> {
    prober::leave_image(&reg.url(), REPO).expect("an image left")
}

/// PUT `manifest` under `tag`: 201.
fn put_manifest(reg: &Registry, tag: &str, manifest: &[u8]) {
    prober::put_manifest(&reg.url(), REPO, tag, manifest).expect("PUT manifest");
}

/// (size, digest) of the layers of a stored manifest.
fn manifest_layers(reg: &Registry, manifest_digest: &str) -> Vec<(u64, String)> {
    let path = reg
        .storage()
        .blob_data_path(manifest_digest)
        .expect("manifest blob path");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).expect("manifest read"))
        .expect("manifest JSON");
    doc["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["size"].as_u64().expect("size"),
                l["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_failed_canary_push_does_not_keep_the_runs_own_image_from_being_cleaned_up() {
    let reg = Registry::start_default().expect("registry starts");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "canary_put",
            "/manifests/registry-prober-default-canary-",
            Fault::status(500),
        )
        .method(Method::PUT),
    );
    let (code, report) = once_yaml(
        &format!(
            "targets:\n  - name: aged\n    registry: {}\n    repository: {REPO}\n    image:\n      layer_sizes: [4KiB]\n    canaries:\n      enabled: true\n      every: 1h\n      layer_sizes: [4KiB]\n",
            proxy.url()
        ),
        &[],
    );
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(proxy.hits("canary_put"), 1);
    let failure = first_failure(&report).expect("a failure");
    assert_eq!(failure["step"], "push_manifest");
    assert!(failure["subject"]
        .as_str()
        .expect("subject")
        .contains("-canary-"));
    // Both manifests were cleaned up: the run's (stored) and the canary's (never stored: its
    // DELETE answers 404, which is not a cleanup failure).
    let deletes = steps(&report, "delete_manifest", "origin");
    assert_eq!(deletes.len(), 2, "{report:#}");
    assert!(deletes.iter().all(|s| s["success"] == true), "{deletes:#?}");
    assert_eq!(report["cleanup_failed"], false);
    assert_eq!(
        reg.storage().tags(REPO).expect("tags"),
        Vec::<String>::new()
    );
    assert_eq!(
        reg.storage().manifest_revisions(REPO).expect("revisions"),
        Vec::<String>::new()
    );
}
