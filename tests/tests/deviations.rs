//! Deviations from the distribution spec that real clients tolerate, made by the fault proxy in
//! front of the real docker-registry (which follows the spec): each is counted on the step that
//! met it and the run passes; on a `strict` target the step fails, naming the deviation.

use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::prober::once_json;
use registry_prober_e2e::{Registry, RegistryAuth, RegistryOptions};
use serde_json::Value;

const REPO: &str = "registry-prober/deviations";

fn once(url: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "--registry",
        url,
        "--repository",
        REPO,
        "--layers",
        "1",
        "--layer-size",
        "4KiB",
        // Uncompressed: the layer is exactly 4096 bytes, the Range ends the tests expect.
        "--compression",
        "none",
    ];
    args.extend_from_slice(extra);
    once_json(&args).expect("once runs")
}

/// (step, deviation kind) of every deviation in the report.
fn deviations(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| {
            s["deviations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |d| {
                    (
                        s["step"].as_str().unwrap_or_default().to_string(),
                        d["kind"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect()
}

fn failed_step(report: &Value) -> &Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["success"] == false)
        .expect("a failed step")
}

#[test]
fn an_upload_range_end_off_by_one_is_tolerated_and_counted() {
    let reg = Registry::start_default().expect("registry starts");
    // The config blob's length is the same every run (fixed-width JSON): learn it first.
    let (_, first) = once(&reg.url(), &[]);
    let config_len = first["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| {
            s["step"] == "upload_blob"
                && s["subject"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("config"))
        })
        .and_then(|s| s["bytes_sent"].as_u64())
        .expect("the config upload");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    // Streamed: one PATCH per blob, the config's first. Each reports the bytes it holds as
    // the Range's end, one past the last byte's index.
    for (name, end) in [("config", config_len), ("layer", 4096)] {
        proxy.add_rule(
            Rule::new(
                name,
                "/blobs/uploads/",
                Fault::SetHeader {
                    name: "Range".into(),
                    value: format!("0-{end}"),
                },
            )
            .method(http::Method::PATCH)
            .times(1),
        );
    }
    let (code, report) = once(&proxy.url(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        deviations(&report),
        [
            ("upload_blob".to_string(), "range_off_by_one".to_string()),
            ("upload_blob".to_string(), "range_off_by_one".to_string())
        ]
    );
    let detail = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find_map(|s| s["deviations"][0]["detail"].as_str())
        .expect("a detail");
    assert!(
        detail.contains(&format!(
            "registry holds Range 0-{config_len} after this chunk, expected 0-{}",
            config_len - 1
        )),
        "{detail}"
    );
}

#[test]
fn a_201_answered_as_200_passes_but_fails_a_strict_target() {
    let reg = Registry::start_default().expect("registry starts");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "ok-not-created",
            "/manifests/",
            Fault::SetStatus { status: 200 },
        )
        .method(http::Method::PUT),
    );
    let (code, report) = once(&proxy.url(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        deviations(&report),
        [("push_manifest".to_string(), "unexpected_status".to_string())]
    );

    let (code, report) = once(&proxy.url(), &["--strict"]);
    assert_eq!(code, 1, "{report:#}");
    let failed = failed_step(&report);
    assert_eq!(failed["step"], "push_manifest");
    assert_eq!(failed["reason"], "protocol");
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains("200 OK where the spec gives 201 Created") && error.contains("strict"),
        "{error}"
    );
}

#[test]
fn a_head_without_docker_content_digest_is_tolerated_and_counted() {
    let reg = Registry::start_default().expect("registry starts");
    let (_, golden) = once(&reg.url(), &["--no-cleanup"]);
    let golden = format!(
        "{REPO}@{}",
        golden["manifest_digest"].as_str().expect("digest")
    );
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "no-digest",
            "/blobs/sha256:",
            Fault::RemoveHeader {
                name: "Docker-Content-Digest".into(),
            },
        )
        .method(http::Method::HEAD),
    );
    let (code, report) = once(&proxy.url(), &["--golden", &golden]);
    assert_eq!(code, 0, "{report:#}");
    let found = deviations(&report);
    assert_eq!(
        found.len(),
        2,
        "config and layer of the golden image: {found:?}"
    );
    assert!(found
        .iter()
        .all(|(step, kind)| step == "head_blob" && kind == "missing_digest_header"));
}

#[test]
fn a_registry_without_a_tag_list_or_an_auth_challenge_still_passes() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", "s3cret"),
        ..RegistryOptions::default()
    })
    .expect("registry starts");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "no-tag-list",
            "/tags/list",
            Fault::Status {
                status: 404,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: "<html>404 page not found</html>".into(),
            },
        )
        .method(http::Method::GET),
    );
    proxy.add_rule(Rule::new(
        "no-challenge",
        "/v2/",
        Fault::RemoveHeader {
            name: "WWW-Authenticate".into(),
        },
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pw"), "s3cret\n").expect("password file");
    let config = dir.path().join("prober.yml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - name: quirky\n    registry: {}\n    repository: {REPO}\n    image: {{layer_sizes: [4KiB]}}\n    canaries: {{enabled: true}}\n    auth: {{username: prober, password_file: {}}}\n",
            proxy.url(),
            dir.path().join("pw").display()
        ),
    )
    .expect("config written");
    let (code, report) =
        once_json(&["--config", &config.display().to_string()]).expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    let found = deviations(&report);
    assert!(
        found.contains(&("ping".to_string(), "missing_auth_challenge".to_string())),
        "{found:?}"
    );
    assert!(
        found.contains(&("list_tags".to_string(), "tag_list_unsupported".to_string())),
        "{found:?}"
    );
    // Without the tag list the canary is still pushed and checked (the run knows it).
    assert_eq!(report["canaries"]["count"], 1, "{report:#}");
}
