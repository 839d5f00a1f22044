//! Multi-platform indexes and OCI 1.1 artifacts end to end: against Distribution 2.8 (no
//! referrers API: the prober keeps the referrers tag `sha256-<hex>`) and ferro-oci-server (the
//! referrers API and OCI-Subject); skopeo reads what the prober pushed; canaries carry
//! artifacts, kept beside other clients' referrers and missed when lost; and bad input (an
//! index naming a manifest that is gone, a golden index without a platform, a referrers answer
//! that is not an index) fails one step with a precise reason.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::ferro::Ferro;
use registry_prober_e2e::oci::sha256_digest;
use registry_prober_e2e::prober::{canary_tags, once_json, steps};
use registry_prober_e2e::{
    skopeo, skopeo_copy, write_oci_layout, HttpClient, Registry, RegistryOptions,
};
use serde_json::{json, Value};

const REPO: &str = "registry-prober/referrers";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const TWO_PLATFORMS: [&str; 4] = [
    "--platforms",
    "linux/amd64,linux/arm64",
    "--pull-platforms",
    "all",
];

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

fn named<'r>(report: &'r Value, step: &str) -> Vec<&'r Value> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step)
        .collect()
}

fn subjects(report: &Value, step: &str) -> Vec<String> {
    named(report, step)
        .iter()
        .map(|s| s["subject"].as_str().expect("subject").to_string())
        .collect()
}

fn all_passed(report: &Value, step: &str) -> bool {
    let found = named(report, step);
    !found.is_empty() && found.iter().all(|s| s["success"] == true)
}

/// The digest of the artifact the run looked up (the subject of `pull_artifact`).
fn artifact_digest(report: &Value) -> String {
    subjects(report, "pull_artifact")[0]
        .rsplit(' ')
        .next()
        .expect("a digest")
        .to_string()
}

fn get(url: &str, accept: &str) -> registry_prober_e2e::Response {
    HttpClient::new()
        .request("GET", url, &[("Accept", accept)], &[])
        .expect("GET answers")
}

#[test]
fn an_index_and_an_artifact_go_through_distribution_by_the_referrers_tag_and_leave_nothing() {
    let reg = Registry::start_default().expect("registry starts");
    let mut args = TWO_PLATFORMS.to_vec();
    args.extend(["--artifact", "--artifact-type", "application/spdx+json"]);
    let (code, report) = once(&reg.url(), &args);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        subjects(&report, "push_manifest"),
        ["linux/amd64", "linux/arm64"]
    );
    assert!(all_passed(&report, "push_index"), "{report:#}");
    assert_eq!(
        subjects(&report, "pull_platform_manifest"),
        ["linux/amd64", "linux/arm64"]
    );
    // Distribution 2.8 answers the push without OCI-Subject and the referrers API with 404:
    // the prober keeps the referrers tag (added on push, taken out in cleanup) and reads it.
    assert!(all_passed(&report, "push_artifact"));
    assert_eq!(named(&report, "update_referrers_tag").len(), 2);
    let listed = named(&report, "list_referrers");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["success"], true);
    assert_eq!(listed[0]["requests"][0]["status"], 404);
    assert!(all_passed(&report, "pull_referrers_tag"));
    assert!(all_passed(&report, "pull_artifact"));
    assert!(subjects(&report, "pull_blob").contains(&"artifact payload".to_string()));
    assert_eq!(
        report["referrers"],
        json!([{"path": "origin", "mode": "tag_schema"}])
    );
    assert_eq!(
        report["manifest_digest"],
        named(&report, "pull_manifest_by_digest")[0]["subject"]
    );

    // Nothing left but the empty config blob every artifact shares: no tag (the run's, the
    // referrers tag), no manifest (index, platforms, artifact, referrers indexes), no blob.
    let storage = reg.storage();
    assert_eq!(storage.tags(REPO).expect("tags"), Vec::<String>::new());
    assert_eq!(
        storage.manifest_revisions(REPO).expect("revisions"),
        Vec::<String>::new()
    );
    assert_eq!(
        storage.layer_links(REPO).expect("links"),
        [sha256_digest(b"{}")]
    );
}

#[test]
fn ferro_lists_the_artifact_in_its_referrers_api_and_says_oci_subject() {
    let ferro = Ferro::start().expect("ferro-oci-server starts");
    let (code, report) = once(
        &ferro.url(),
        &[
            "--platforms",
            "linux/amd64,linux/arm64/v8",
            "--pull-platforms",
            "linux/arm64",
            "--artifact",
            "--referrers-filter",
        ],
    );
    assert_eq!(code, 0, "{report:#}\n{}", ferro.log());
    // containerd's matcher: linux/arm64 is served by the linux/arm64/v8 entry.
    assert_eq!(subjects(&report, "pull_platform_manifest"), ["linux/arm64"]);
    // OCI-Subject on the push: no referrers tag to keep.
    assert!(all_passed(&report, "push_artifact"));
    assert!(
        named(&report, "update_referrers_tag").is_empty(),
        "{report:#}"
    );
    let listed = named(&report, "list_referrers");
    assert_eq!(listed[0]["success"], true);
    assert_eq!(listed[0]["requests"][0]["status"], 200);
    let url = listed[0]["requests"][0]["url"].as_str().expect("url");
    assert!(
        url.contains("/referrers/sha256:")
            && url.contains("artifactType=application%2Fvnd.registry-prober.artifact.v1%2Bjson"),
        "{url}"
    );
    assert!(named(&report, "pull_referrers_tag").is_empty());
    assert!(all_passed(&report, "pull_artifact"));
    assert_eq!(
        report["referrers"],
        json!([{"path": "origin", "mode": "api"}])
    );
    assert!(all_passed(&report, "delete_manifest"));
}

#[test]
fn skopeo_copies_the_index_with_all_platforms_and_reads_the_artifact_and_its_referrers_tag() {
    let reg = Registry::start_default().expect("registry starts");
    let mut args = TWO_PLATFORMS.to_vec();
    args.extend(["--artifact", "--no-cleanup"]);
    let (code, report) = once(&reg.url(), &args);
    assert_eq!(code, 0, "{report:#}");
    let tag = report["tag"].as_str().expect("tag");
    let index_digest = report["manifest_digest"].as_str().expect("digest");
    let host = reg.host_port();

    let out = tempfile::tempdir().expect("tempdir");
    let layout = out.path().join("copy");
    skopeo_copy(
        &format!("docker://{host}/{REPO}:{tag}"),
        &format!("oci:{}:copy", layout.display()),
        &["--all", "--preserve-digests", "--src-tls-verify=false"],
    )
    .expect("skopeo copies the index with every platform");
    let copied: Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json")).expect("the layout's index.json"),
    )
    .expect("JSON");
    assert_eq!(copied["manifests"][0]["digest"], index_digest);
    let index: Value = read_blob(&layout, index_digest);
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            // Every platform's manifest and blobs came along.
            let manifest = read_blob(&layout, m["digest"].as_str().expect("digest"));
            let config = read_blob(
                &layout,
                manifest["config"]["digest"].as_str().expect("config"),
            );
            assert_eq!(
                (&config["os"], &config["architecture"]),
                (&p["os"], &p["architecture"])
            );
            format!(
                "{}/{}",
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    let artifact = artifact_digest(&report);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/{REPO}@{artifact}"),
    ])
    .expect("skopeo reads the artifact");
    let manifest: Value = serde_json::from_slice(&raw.stdout).expect("JSON");
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.registry-prober.artifact.v1+json"
    );
    assert_eq!(manifest["subject"]["digest"], index_digest);
    assert_eq!(manifest["subject"]["mediaType"], INDEX);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );

    let referrers_tag = format!("sha256-{}", index_digest.trim_start_matches("sha256:"));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/{REPO}:{referrers_tag}"),
    ])
    .expect("skopeo reads the referrers tag");
    let listed: Value = serde_json::from_slice(&raw.stdout).expect("JSON");
    assert_eq!(listed["mediaType"], INDEX);
    assert_eq!(
        listed["manifests"],
        json!([{
            "mediaType": MANIFEST,
            "digest": artifact,
            "size": manifest_size(&reg, &artifact),
            "artifactType": "application/vnd.registry-prober.artifact.v1+json",
        }])
    );
}

fn read_blob(layout: &Path, digest: &str) -> Value {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(&path).expect("blob in the layout")).expect("JSON")
}

fn manifest_size(reg: &Registry, digest: &str) -> usize {
    get(
        &format!("{}/v2/{REPO}/manifests/{digest}", reg.url()),
        MANIFEST,
    )
    .body
    .len()
}

#[test]
fn an_index_naming_a_platform_manifest_that_is_gone_fails_pull_platform_manifest() {
    let reg = Registry::start_default().expect("registry starts");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    // The index by digest passes; the platform manifest after it is gone.
    proxy.add_rule(
        Rule::new(
            "gone",
            "/manifests/sha256:",
            Fault::Status {
                status: 404,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .into(),
            },
        )
        .method(http::Method::GET)
        .after(1)
        .times(1),
    );
    let (code, report) = once(&proxy.url(), &TWO_PLATFORMS);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(proxy.hits("gone"), 1);
    let failed = named(&report, "pull_platform_manifest");
    assert_eq!(failed.len(), 1, "the pull stops at the first: {report:#}");
    assert_eq!(failed[0]["success"], false);
    assert_eq!(failed[0]["reason"], "manifest_unknown");
    assert_eq!(failed[0]["status"], 404);
    assert_eq!(failed[0]["registry_code"], "MANIFEST_UNKNOWN");
    let error = failed[0]["error"].as_str().expect("error");
    assert!(error.starts_with("GET http://127.0.0.1:"), "{error}");
    assert!(
        error.contains(&format!("/v2/{REPO}/manifests/sha256:")),
        "{error}"
    );
    // Cleanup still undoes everything.
    assert!(all_passed(&report, "delete_manifest"));
    assert_eq!(named(&report, "delete_manifest").len(), 3);
}

/// A golden index `golden/idx:v1` over two images skopeo pushed (linux/amd64, linux/arm64);
/// returns the arm64 image's manifest digest.
fn push_golden_index(reg: &Registry) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = Vec::new();
    let mut arm = String::new();
    for arch in ["amd64", "arm64"] {
        let image = write_oci_layout(&dir.path().join(arch), arch, &[1000]).expect("layout");
        skopeo_copy(
            &image.oci_ref(),
            &format!("docker://{}/golden/idx:{arch}", reg.host_port()),
            &["--preserve-digests", "--dest-tls-verify=false"],
        )
        .expect("skopeo pushes");
        entries.push(json!({
            "mediaType": MANIFEST,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
        arm = image.manifest_digest;
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX, "manifests": entries,
    }))
    .expect("JSON");
    let put = HttpClient::new()
        .request(
            "PUT",
            &format!("{}/v2/golden/idx/manifests/v1", reg.url()),
            &[("Content-Type", INDEX)],
            &index,
        )
        .expect("PUT answers");
    assert_eq!(put.status, 201, "{}", put.text());
    arm
}

#[test]
fn a_golden_index_is_verified_on_every_platform_or_the_ones_configured() {
    let reg = Registry::start_default().expect("registry starts");
    let arm = push_golden_index(&reg);
    let golden = |platforms: Option<&str>| {
        let mut args = vec!["--golden", "golden/idx:v1"];
        if let Some(p) = platforms {
            args.extend(["--golden-platforms", p]);
        }
        once(&reg.url(), &args)
    };
    let (code, report) = golden(None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(named(&report, "pull_golden_manifest").len(), 3);
    assert_eq!(named(&report, "pull_golden_blob").len(), 4);

    let (code, report) = golden(Some("linux/arm64"));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        subjects(&report, "pull_golden_manifest"),
        ["golden/idx:v1", "golden/idx:v1 > linux/arm64"]
    );

    let (code, report) = golden(Some("linux/s390x"));
    assert_eq!(code, 1, "{report:#}");
    let failed = named(&report, "pull_golden_manifest");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["reason"], "platform_missing");
    assert_eq!(
        failed[0]["error"],
        "index of golden/idx:v1 lists no manifest for linux/s390x; it lists: linux/amd64, linux/arm64"
    );

    // The arm64 manifest goes: the index still names it, and its pull fails as lost content.
    delete_manifest(&reg, "golden/idx", &arm);
    let (code, report) = golden(Some("linux/arm64"));
    assert_eq!(code, 1, "{report:#}");
    let failed = named(&report, "pull_golden_manifest");
    assert_eq!(failed[1]["subject"], "golden/idx:v1 > linux/arm64");
    assert_eq!(failed[1]["reason"], "manifest_unknown");
    assert_eq!(failed[1]["registry_code"], "MANIFEST_UNKNOWN");
}

#[test]
fn a_referrers_answer_that_is_not_an_index_fails_list_referrers_as_protocol() {
    // ferro's answer replaced by a JSON array; Distribution's 404 by an HTML page.
    let ferro = Ferro::start().expect("ferro-oci-server starts");
    let reg = Registry::start_default().expect("registry starts");
    for (upstream, fault, why) in [
        (
            ferro.url(),
            Fault::ReplaceBody {
                body: br#"["not", "an index"]"#.to_vec(),
                content_type: Some("application/json".into()),
            },
            "is not an image index: a JSON array",
        ),
        (
            reg.url(),
            Fault::Status {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: "<html>maintenance</html>".into(),
            },
            "is not an image index: not JSON",
        ),
    ] {
        let proxy = FaultProxy::start(&upstream).expect("proxy starts");
        proxy.add_rule(Rule::new("not-an-index", "/referrers/sha256:", fault));
        let (code, report) = once(&proxy.url(), &["--artifact"]);
        assert_eq!(code, 1, "{report:#}");
        let failed = named(&report, "list_referrers");
        assert_eq!(failed.len(), 1, "{report:#}");
        assert_eq!(failed[0]["success"], false, "{report:#}");
        assert_eq!(failed[0]["reason"], "protocol");
        let error = failed[0]["error"].as_str().expect("error");
        assert!(
            error.starts_with("GET http://127.0.0.1:")
                && error.contains("the referrers answer")
                && error.contains(why),
            "{error}"
        );
        assert!(named(&report, "pull_artifact").is_empty());
        // The artifact is still cleaned up.
        assert!(all_passed(&report, "delete_manifest"), "{report:#}");
        assert!(report.get("referrers").is_none(), "{report:#}");
    }
}

#[test]
fn a_registry_that_refuses_delete_keeps_the_index_and_artifact_counted_as_left_behind() {
    let reg = Registry::start(RegistryOptions {
        delete_enabled: false,
        ..RegistryOptions::default()
    })
    .expect("registry starts");
    let mut args = TWO_PLATFORMS.to_vec();
    args.push("--artifact");
    let (code, report) = once(&reg.url(), &args);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["cleanup_failed"], false);
    // The emptied referrers index, then the artifact (the first manifest asked): refused, the
    // run stops asking. Index, two platform manifests, artifact and the referrers index stay.
    let deletes = named(&report, "delete_manifest");
    assert_eq!(deletes.len(), 2, "{report:#}");
    assert!(deletes.iter().all(|d| d["reason"] == "unsupported"));
    assert_eq!(report["left_behind"]["manifests"], 5);
    let uploaded: u64 = named(&report, "upload_blob")
        .iter()
        .filter(|s| s["subject"] != "artifact config (2 bytes)")
        .map(|s| s["bytes_sent"].as_u64().expect("bytes"))
        .sum();
    assert_eq!(report["left_behind"]["bytes"], uploaded);
}

fn canary_config(dir: &Path, url: &str, every: &str, keep: u32) -> String {
    let path = dir.join("prober.yml");
    std::fs::write(
        &path,
        format!(
            "targets:\n  - name: canaries\n    registry: {url}\n    repository: {REPO}\n    interval: 2m\n    timeout: 60s\n    image: {{layers: 1, layer_size: 4KiB}}\n    canaries: {{enabled: true, every: {every}, keep: {keep}, layer_sizes: [4KiB], artifact: true}}\n"
        ),
    )
    .expect("write config");
    path.display().to_string()
}

fn once_config(config: &str) -> (i32, Value) {
    once_json(&["--config", config]).expect("once runs")
}

/// The referrers tag of the canary `tag` and the index it names.
fn canary_referrers(reg: &Registry, tag: &str) -> (String, Value, String) {
    let storage = reg.storage();
    let subject = storage
        .tag_target(REPO, tag)
        .expect("tag")
        .expect("the canary is tagged");
    let referrers_tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
    let resp = get(
        &format!("{}/v2/{REPO}/manifests/{referrers_tag}", reg.url()),
        INDEX,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let digest = sha256_digest(&resp.body);
    (referrers_tag, resp.json().expect("JSON"), digest)
}

#[test]
fn a_canary_artifact_lost_from_its_referrers_fails_as_referrer_missing() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = canary_config(dir.path(), &reg.url(), "1h", 2);
    let (code, report) = once_config(&config);
    assert_eq!(code, 0, "{report:#}");
    let tags = canary_tags(reg.storage().tags(REPO).expect("tags"));
    assert_eq!(tags.len(), 1);
    assert!(tags[0].contains("-canary-a-"), "{tags:?}");
    let prefix = format!("canary {}: ", tags[0]);
    assert!(subjects(&report, "push_artifact")[0].starts_with(&prefix));
    assert!(all_passed(&report, "pull_referrers_tag"));
    assert!(subjects(&report, "pull_canary_blob").contains(&format!("{prefix}artifact payload")));

    // The canary's referrers tag goes (its index deleted), as a storage loss would take it.
    let (_, _, index) = canary_referrers(&reg, &tags[0]);
    delete_manifest(&reg, REPO, &index);
    let (code, report) = once_config(&config);
    assert_eq!(code, 1, "{report:#}");
    let failed: Vec<&Value> = named(&report, "pull_referrers_tag")
        .into_iter()
        .filter(|s| s["success"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["reason"], "referrer_missing");
    assert_eq!(failed[0]["status"], 404);
    let error = failed[0]["error"].as_str().expect("error");
    assert!(
        error.contains("the registry has no referrers API and its referrers tag sha256-"),
        "{error}"
    );
    // Its blobs are still checked, and pass: one loss does not hide another, nor fake one.
    assert!(all_passed(&report, "pull_canary_blob"), "{report:#}");
}

#[test]
fn rotating_a_canary_out_takes_its_artifact_out_of_the_referrers_tag_and_keeps_the_others() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = canary_config(dir.path(), &reg.url(), "2s", 1);
    let (code, report) = once_config(&config);
    assert_eq!(code, 0, "{report:#}");
    let first = canary_tags(reg.storage().tags(REPO).expect("tags"))
        .pop()
        .expect("a canary");
    let (referrers_tag, index, _) = canary_referrers(&reg, &first);
    let subject = reg
        .storage()
        .tag_target(REPO, &first)
        .expect("tag")
        .expect("tagged");

    // Another client's referrer of the same canary: a signature-like artifact.
    let client = HttpClient::new();
    let foreign = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.signature.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2}],
        "subject": {"mediaType": MANIFEST, "digest": subject, "size": manifest_size(&reg, &subject)},
    }))
    .expect("JSON");
    let foreign_digest = sha256_digest(&foreign);
    let put = |reference: &str, media_type: &str, body: &[u8]| {
        let resp = client
            .request(
                "PUT",
                &format!("{}/v2/{REPO}/manifests/{reference}", reg.url()),
                &[("Content-Type", media_type)],
                body,
            )
            .expect("PUT answers");
        assert_eq!(resp.status, 201, "{}", resp.text());
    };
    put(&foreign_digest, MANIFEST, &foreign);
    let entry = json!({
        "mediaType": MANIFEST, "digest": foreign_digest, "size": foreign.len(),
        "artifactType": "application/vnd.example.signature.v1+json",
    });
    let mut both = index.clone();
    both["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(entry.clone());
    put(
        &referrers_tag,
        INDEX,
        &serde_json::to_vec(&both).expect("JSON"),
    );

    // Into the next period: a new canary, and the first one rotated out with its artifact.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(2.0 - now % 2.0 + 0.1));
    let (code, report) = once_config(&config);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        subjects(&report, "delete_manifest")
            .iter()
            .any(|s| s == &format!("expired canary {first}: artifact")),
        "{report:#}"
    );
    assert!(!reg.storage().tags(REPO).expect("tags").contains(&first));
    let (_, left, _) = canary_referrers_by_tag(&reg, &referrers_tag);
    assert_eq!(
        left["manifests"],
        json!([entry]),
        "the other client's referrer stays"
    );
    assert!(steps(&report).iter().all(|(_, ok, _)| *ok), "{report:#}");
}

/// The index under the referrers tag `tag`.
fn canary_referrers_by_tag(reg: &Registry, tag: &str) -> (String, Value, String) {
    let resp = get(&format!("{}/v2/{REPO}/manifests/{tag}", reg.url()), INDEX);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let digest = sha256_digest(&resp.body);
    (tag.to_string(), resp.json().expect("JSON"), digest)
}

#[test]
fn the_sweep_removes_a_crashed_runs_index_its_platforms_and_its_artifact() {
    let reg = Registry::start_default().expect("registry starts");
    let mut args = TWO_PLATFORMS.to_vec();
    args.extend(["--artifact", "--no-cleanup"]);
    let (code, report) = once(&reg.url(), &args);
    assert_eq!(code, 0, "{report:#}");
    // As a run that crashed long ago would have left it: the index under an old run tag.
    let tag = report["tag"].as_str().expect("tag");
    let index = get(&format!("{}/v2/{REPO}/manifests/{tag}", reg.url()), INDEX);
    let put = HttpClient::new()
        .request(
            "PUT",
            &format!(
                "{}/v2/{REPO}/manifests/registry-prober-default-1000000000-0000beef",
                reg.url()
            ),
            &[("Content-Type", INDEX)],
            &index.body,
        )
        .expect("PUT answers");
    assert_eq!(put.status, 201, "{}", put.text());
    let storage = reg.storage();
    assert_eq!(
        storage.manifest_revisions(REPO).expect("revisions").len(),
        5
    );

    let mut svc = registry_prober_e2e::service::Service::start(&format!(
        "targets:\n  - name: swept\n    registry: {}\n    repository: {REPO}\n    interval: 1h\n    timeout: 20s\n    artifact: {{enabled: true}}\n",
        reg.url()
    ))
    .expect("service starts");
    svc.wait_for("the sweep", Duration::from_secs(20), |s| {
        Ok(
            s.metric("registry_prober_sweeps_total{target=\"swept\",result=\"success\"}")?
                .unwrap_or(0.0)
                >= 1.0,
        )
    })
    .expect("swept");
    // Distribution untags every tag of a deleted manifest: the run's own tag went with the old
    // one. Index, platform manifests, artifact, the referrers tag and its index, every blob but
    // the empty config are gone.
    assert_eq!(storage.tags(REPO).expect("tags"), Vec::<String>::new());
    assert_eq!(
        storage.manifest_revisions(REPO).expect("revisions"),
        Vec::<String>::new()
    );
    assert_eq!(
        storage.layer_links(REPO).expect("links"),
        [sha256_digest(b"{}")]
    );
}

/// DELETEs a manifest through the registry API, as a storage loss would take it: 202.
fn delete_manifest(reg: &Registry, repository: &str, reference: &str) {
    let deleted = HttpClient::new()
        .request(
            "DELETE",
            &format!("{}/v2/{repository}/manifests/{reference}", reg.url()),
            &[],
            &[],
        )
        .expect("DELETE answers");
    assert_eq!(deleted.status, 202, "DELETE {repository}@{reference}");
}
