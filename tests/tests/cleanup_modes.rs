//! Registries that refuse DELETE, against the real docker-registry: with deletes disabled it
//! answers 405 UNSUPPORTED, and the fault proxy in front of it answers as a registry without a
//! DELETE route does (an HTML 404), or as one that lost the manifest (MANIFEST_UNKNOWN). The
//! first two are `unsupported` and counted as left behind, without failing the run; only the
//! last is lost content. And cleanup mode `rotate`, which pushes under a few rotating tags and
//! deletes nothing.

use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::prober::{once_json, steps};
use registry_prober_e2e::{Registry, RegistryOptions};
use serde_json::Value;

const REPO: &str = "registry-prober/cleanup";

fn once(url: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "--registry",
        url,
        "--repository",
        REPO,
        "--layers",
        "2",
        "--layer-size",
        "4KiB",
    ];
    args.extend_from_slice(extra);
    once_json(&args).expect("once runs")
}

fn step<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == name)
        .collect()
}

/// The bytes of the run's config and layers: what a run that deletes nothing leaves.
fn image_bytes(report: &Value) -> u64 {
    step(report, "upload_blob")
        .iter()
        .map(|s| s["bytes_sent"].as_u64().expect("bytes"))
        .sum()
}

#[test]
fn deletes_disabled_is_unsupported_counted_as_left_behind_and_the_run_passes() {
    let reg = Registry::start(RegistryOptions {
        delete_enabled: false,
        ..RegistryOptions::default()
    })
    .expect("registry starts");
    let (code, report) = once(&reg.url(), &[]);
    assert_eq!(
        code, 0,
        "a registry that refuses DELETE does not fail the run: {report:#}"
    );
    assert_eq!(report["success"], true);
    assert_eq!(report["cleanup_failed"], false);
    let deletes = step(&report, "delete_manifest");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["success"], false);
    assert_eq!(deletes[0]["reason"], "unsupported");
    assert_eq!(deletes[0]["status"], 405);
    assert_eq!(deletes[0]["registry_code"], "UNSUPPORTED");
    let error = deletes[0]["error"].as_str().expect("error");
    assert!(error.contains("set cleanup.mode: rotate"), "{error}");
    assert!(
        step(&report, "delete_blob").is_empty(),
        "after the refusal the run asks no more"
    );
    assert_eq!(report["left_behind"]["manifests"], 1);
    assert_eq!(report["left_behind"]["bytes"], image_bytes(&report));
}

#[test]
fn an_html_404_for_what_the_run_pushed_is_no_delete_route_not_lost_content() {
    let reg = Registry::start_default().expect("registry starts");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "no-delete-route",
            "/v2/",
            Fault::Status {
                status: 404,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: "<html><body><h1>404 Not Found</h1></body></html>".into(),
            },
        )
        .method(http::Method::DELETE),
    );
    let (code, report) = once(&proxy.url(), &[]);
    assert_eq!(code, 0, "{report:#}");
    let deletes = step(&report, "delete_manifest");
    assert_eq!(deletes[0]["reason"], "unsupported", "{report:#}");
    assert_eq!(deletes[0]["status"], 404);
    assert!(
        !steps(&report).iter().any(|(_, _, reason)| matches!(
            reason.as_deref(),
            Some("manifest_unknown" | "blob_unknown")
        )),
        "no lost-content reason: {report:#}"
    );
    assert_eq!(report["left_behind"]["manifests"], 1);
}

#[test]
fn manifest_unknown_on_delete_of_what_the_run_pushed_is_lost_content() {
    let reg = Registry::start_default().expect("registry starts");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "lost",
            "/manifests/sha256:",
            Fault::Status {
                status: 404,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .into(),
            },
        )
        .method(http::Method::DELETE),
    );
    let (code, report) = once(&proxy.url(), &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cleanup_failed"], true);
    let deletes = step(&report, "delete_manifest");
    assert_eq!(deletes[0]["reason"], "manifest_unknown");
    assert!(report.get("left_behind").is_none(), "{report:#}");
}

#[test]
fn rotate_mode_pushes_under_a_few_rotating_tags_and_deletes_nothing() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prober.yml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - name: rotating\n    registry: {}\n    repository: {REPO}\n    image: {{layer_sizes: [4KiB]}}\n    cleanup: {{mode: rotate, rotate_tags: 2}}\n",
            reg.url()
        ),
    )
    .expect("config written");
    let config = config.display().to_string();
    let mut tags = Vec::new();
    // `once` starts a new process, so each run is the first turn: its tag is rotating-0; the
    // service takes turns (unit-tested). Two runs under one tag leave one image untagged.
    for _ in 0..2 {
        let (code, report) = once_json(&["--config", &config]).expect("once runs");
        assert_eq!(code, 0, "{report:#}");
        assert!(step(&report, "delete_manifest").is_empty());
        assert!(step(&report, "delete_blob").is_empty());
        assert_eq!(report["left_behind"]["manifests"], 1);
        assert_eq!(report["left_behind"]["bytes"], image_bytes(&report));
        tags.push(report["tag"].as_str().expect("tag").to_string());
    }
    assert_eq!(tags, ["registry-prober-default-default-rotating-0"; 2]);
    let storage = reg.storage();
    assert_eq!(
        storage.tags(REPO).expect("tags"),
        ["registry-prober-default-default-rotating-0"]
    );
    assert_eq!(
        storage.manifest_revisions(REPO).expect("revisions").len(),
        2,
        "the untagged image stays for the registry's lifecycle policy"
    );
    assert_eq!(
        storage.upload_dirs(REPO).expect("uploads"),
        Vec::<String>::new(),
        "no upload session is left open"
    );
}
