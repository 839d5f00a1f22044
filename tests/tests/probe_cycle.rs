//! The probe cycle end to end against Debian's real docker-registry: plain HTTP, basic auth,
//! TLS, token auth, both upload modes and manifest types, cleanup, and skopeo both ways.

use std::path::Path;

use registry_prober_e2e::prober::{first_failure, once_json, prober, steps};
use registry_prober_e2e::{
    skopeo_copy, write_oci_layout, Grant, HttpClient, Registry, RegistryAuth, RegistryOptions,
    TestCa, TokenServer,
};
use serde_json::Value;

const REPO: &str = "registry-prober/e2e";

/// The registry's storage holds nothing of ours: no tags, no manifest revisions, no upload
/// sessions, no layer links in the repository.
fn assert_nothing_left_behind(reg: &Registry, repo: &str) {
    let st = reg.storage();
    assert_eq!(
        st.tags(repo).expect("tags"),
        Vec::<String>::new(),
        "tags left in {repo}"
    );
    assert_eq!(
        st.upload_dirs(repo).expect("uploads"),
        Vec::<String>::new(),
        "_uploads entries left in {repo}"
    );
    assert_eq!(
        st.manifest_revisions(repo).expect("revisions"),
        Vec::<String>::new(),
        "manifests left in {repo}"
    );
    assert_eq!(
        st.layer_links(repo).expect("layer links"),
        Vec::<String>::new(),
        "blob links left in {repo}"
    );
}

fn count(report: &Value, step: &str) -> usize {
    steps(report)
        .iter()
        .filter(|(s, ok, _)| s == step && *ok)
        .count()
}

fn all_steps_passed(report: &Value) {
    assert_eq!(report["success"], Value::Bool(true), "report: {report:#}");
    assert!(first_failure(report).is_none());
}

fn write_password(dir: &Path, password: &str) -> String {
    let path = dir.join("password");
    std::fs::write(&path, format!("{password}\n")).expect("write password file");
    path.display().to_string()
}

#[test]
fn a_plain_http_cycle_pushes_pulls_verifies_and_leaves_nothing_behind() {
    let reg = Registry::start_default().expect("registry starts");
    let (code, report) =
        once_json(&["--registry", &reg.url(), "--repository", REPO]).expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    all_steps_passed(&report);
    // Default image: config + 3 layers (4 KiB, 64 KiB, 1 MiB).
    for step in [
        "check_blob",
        "start_upload",
        "upload_blob",
        "pull_blob",
        "delete_blob",
    ] {
        assert_eq!(count(&report, step), 4, "{step} in {report:#}");
    }
    for step in [
        "push_manifest",
        "pull_manifest_by_tag",
        "pull_manifest_by_digest",
        "delete_manifest",
    ] {
        assert_eq!(count(&report, step), 1, "{step}");
    }
    let pulled: u64 = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "pull_blob" && s["subject"] != "config")
        .map(|s| s["bytes_received"].as_u64().expect("bytes"))
        .sum();
    // Every byte of the (gzipped) layers pushed came back.
    let pushed: u64 = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| {
            s["step"] == "upload_blob"
                && s["subject"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("layer"))
        })
        .map(|s| s["bytes_sent"].as_u64().expect("bytes"))
        .sum();
    assert!(pulled > 0);
    assert_eq!(pulled, pushed);
    // Every request after the first reused the connection.
    let requests: Vec<&Value> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["requests"].as_array().expect("requests"))
        .collect();
    assert!(requests.len() > 20);
    assert_eq!(requests[0]["reused_connection"], Value::Bool(false));
    assert!(requests[0]["connect_seconds"].as_f64().is_some());
    assert!(
        requests
            .iter()
            .skip(1)
            .filter(|r| r["reused_connection"] == Value::Bool(true))
            .count()
            >= requests.len() - 3
    );
    assert_nothing_left_behind(&reg, REPO);
}

#[test]
fn the_text_report_names_every_step_and_the_result() {
    let reg = Registry::start_default().expect("registry starts");
    let inv = prober(&[
        "once",
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--layers",
        "1",
        "--layer-size",
        "4KiB",
    ])
    .expect("runs");
    assert_eq!(inv.code, 0, "{}\n{}", inv.stdout, inv.stderr);
    for needle in [
        "STEP",
        "check_blob",
        "upload_blob",
        "pull_manifest_by_digest",
        "delete_manifest",
        "result: OK",
    ] {
        assert!(
            inv.stdout.contains(needle),
            "{needle} missing from:\n{}",
            inv.stdout
        );
    }
}

/// The requests of the upload of layer 1, as "METHOD status".
fn layer_upload_requests(report: &Value) -> Vec<String> {
    let step = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| {
            s["step"] == "upload_blob"
                && s["subject"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("layer 1"))
        })
        .expect("layer upload step");
    step["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| format!("{} {}", r["method"].as_str().expect("method"), r["status"]))
        .collect()
}

#[test]
fn every_upload_mode_pushes_as_its_clients_do_and_leaves_nothing_behind() {
    let reg = Registry::start_default().expect("registry starts");
    let url = reg.url();
    // Distribution 2.8 answers a single POST ?digest= with 202 (it has no monolithic POST), so
    // the post mode completes the session it opened as docker would.
    for (mode, expected) in [
        (None, vec!["PATCH 202", "PUT 201"]),
        (Some("streamed"), vec!["PATCH 202", "PUT 201"]),
        (Some("monolithic"), vec!["PUT 201"]),
        (Some("post"), vec!["POST 202", "PATCH 202", "PUT 201"]),
    ] {
        let mut args = vec![
            "--registry",
            url.as_str(),
            "--repository",
            REPO,
            "--layers",
            "1",
            "--layer-size",
            "300KiB",
        ];
        if let Some(mode) = mode {
            args.extend(["--upload-mode", mode]);
        }
        let (code, report) = once_json(&args).expect("once runs");
        assert_eq!(code, 0, "{mode:?}: {report:#}");
        all_steps_passed(&report);
        assert_eq!(
            report["upload_mode"],
            mode.unwrap_or("streamed"),
            "the report names the mode"
        );
        assert_eq!(layer_upload_requests(&report), expected, "{mode:?}");
        if mode == Some("post") {
            assert_eq!(
                count(&report, "start_upload"),
                0,
                "post opens no session first"
            );
        }
        assert_nothing_left_behind(&reg, REPO);
    }
}

#[test]
fn chunked_upload_of_a_docker_manifest_image_sends_every_chunk() {
    let reg = Registry::start_default().expect("registry starts");
    let args = [
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--manifest-type",
        "docker",
        "--upload-mode",
        "chunked",
        "--chunk-size",
        "64KiB",
        "--layers",
        "2",
        "--layer-size",
        "300KiB",
        "--no-cleanup",
    ];
    let (code, report) = once_json(&args).expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    all_steps_passed(&report);
    let layer_upload = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| {
            s["step"] == "upload_blob"
                && s["subject"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("layer 1"))
        })
        .expect("layer upload step");
    let methods: Vec<&str> = layer_upload["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r["method"].as_str().expect("method"))
        .collect();
    // The gzipped 300 KiB tar in 64 KiB chunks (each regenerated from the seed, compressed
    // segments cut at chunk boundaries): a PATCH per chunk, then the closing PUT.
    let sent = layer_upload["bytes_sent"].as_u64().expect("bytes");
    let mut want = vec!["PATCH"; sent.div_ceil(64 * 1024) as usize];
    want.push("PUT");
    assert!(want.len() >= 3, "{sent} bytes");
    assert_eq!(methods, want);
    let tag = report["tag"].as_str().expect("tag");
    let resp = HttpClient::new()
        .request(
            "GET",
            &format!("{}/v2/{REPO}/manifests/{tag}", reg.url()),
            &[(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )],
            &[],
        )
        .expect("manifest GET");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    let manifest = resp.json().expect("manifest JSON");
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        report["manifest_digest"].as_str()
    );
    assert_eq!(
        reg.storage().uploads(REPO).expect("uploads"),
        Vec::<String>::new()
    );
}

#[test]
fn basic_auth_with_the_right_password_passes() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", "s3cret-pw"),
        ..Default::default()
    })
    .expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = write_password(dir.path(), "s3cret-pw");
    let inv = prober(&[
        "once",
        "--output",
        "json",
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--username",
        "prober",
        "--password-file",
        &pw,
    ])
    .expect("runs");
    assert_eq!(inv.code, 0, "{}", inv.stdout);
    all_steps_passed(&inv.report().expect("json"));
    assert!(
        !inv.stdout.contains("s3cret-pw") && !inv.stderr.contains("s3cret-pw"),
        "password leaked"
    );
    assert_nothing_left_behind(&reg, REPO);
}

#[test]
fn basic_auth_with_a_wrong_password_fails_with_reason_auth() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", "s3cret-pw"),
        ..Default::default()
    })
    .expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = write_password(dir.path(), "wrong-pw");
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--username",
        "prober",
        "--password-file",
        &pw,
    ])
    .expect("runs");
    assert_eq!(code, 1);
    let failed = first_failure(&report).expect("a failed step");
    assert_eq!(failed["step"], "check_blob");
    assert_eq!(failed["reason"], "auth");
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.starts_with(&format!("HEAD {}/v2/{REPO}/blobs/sha256:", reg.url())),
        "{error}"
    );
    assert!(
        error.contains(
            "401 Unauthorized, basic credentials of user \"prober\" were sent and rejected"
        ),
        "{error}"
    );
    assert!(!report.to_string().contains("wrong-pw"));
}

#[test]
fn tls_with_a_trusted_test_ca_passes_and_times_the_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new().expect("ca");
    let files = ca.issue_server_cert(dir.path()).expect("cert");
    let reg = Registry::start(RegistryOptions {
        tls: Some(files.clone()),
        ..Default::default()
    })
    .expect("registry starts");
    assert!(reg.url().starts_with("https://"));
    let ca_file = files.ca.display().to_string();
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--ca-file",
        &ca_file,
    ])
    .expect("runs");
    assert_eq!(code, 0, "{report:#}");
    all_steps_passed(&report);
    let first = &report["steps"][0]["requests"][0];
    assert!(
        first["tls_seconds"].as_f64().expect("tls timed") > 0.0,
        "{first:#}"
    );
    assert!(
        first["peer_cert_not_after_unix"].as_u64().is_some(),
        "{first:#}"
    );
    assert_nothing_left_behind(&reg, REPO);
}

#[test]
fn tls_with_an_untrusted_certificate_fails_with_reason_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new().expect("ca");
    let files = ca.issue_server_cert(dir.path()).expect("cert");
    let reg = Registry::start(RegistryOptions {
        tls: Some(files),
        ..Default::default()
    })
    .expect("registry starts");
    let (code, report) =
        once_json(&["--registry", &reg.url(), "--repository", REPO]).expect("runs");
    assert_eq!(code, 1);
    let failed = first_failure(&report).expect("a failed step");
    assert_eq!(failed["reason"], "tls", "{failed:#}");
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains("tls handshake with 127.0.0.1 failed") && error.contains("UnknownIssuer"),
        "{error}"
    );
}

/// A registry behind the test token server, user "alice" with password "tok-pw" (written to
/// a password file in the returned temp dir) granted `grant`.
fn token_registry(grant: Grant) -> (TokenServer, Registry, tempfile::TempDir, String) {
    let tokens = TokenServer::start(&[("alice", "tok-pw")], &[grant]).expect("token server");
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::token(&tokens),
        ..Default::default()
    })
    .expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = write_password(dir.path(), "tok-pw");
    (tokens, reg, dir, pw)
}

#[test]
fn token_auth_fetches_one_token_per_scope_and_reuses_it() {
    let (tokens, reg, _dir, pw) =
        token_registry(Grant::repository(REPO, &["pull", "push", "delete"]));
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--username",
        "alice",
        "--password-file",
        &pw,
    ])
    .expect("runs");
    assert_eq!(code, 0, "{report:#}");
    all_steps_passed(&report);
    // Three scopes (pull; pull,push; delete), each fetched once and cached for the other requests.
    let token_steps: Vec<String> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "token")
        .map(|s| s["subject"].as_str().expect("scope").to_string())
        .collect();
    assert_eq!(
        token_steps,
        vec![
            format!("repository:{REPO}:pull"),
            format!("repository:{REPO}:pull,push"),
            format!("repository:{REPO}:delete")
        ]
    );
    assert_eq!(tokens.token_requests(), 3);
    assert!(!report.to_string().contains("tok-pw"));
    assert_nothing_left_behind(&reg, REPO);
}

#[test]
fn token_auth_without_a_grant_for_the_repository_fails_with_reason_auth() {
    let (_tokens, reg, _dir, pw) =
        token_registry(Grant::repository("someone/else", &["pull", "push"]));
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--username",
        "alice",
        "--password-file",
        &pw,
    ])
    .expect("runs");
    assert_eq!(code, 1);
    let failed = first_failure(&report).expect("a failed step");
    assert_eq!(failed["reason"], "auth", "{failed:#}");
}

#[test]
fn skopeo_copies_what_the_prober_pushed_with_identical_digests() {
    let reg = Registry::start_default().expect("registry starts");
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--no-cleanup",
        "--layers",
        "2",
        "--layer-size",
        "256KiB",
    ])
    .expect("runs");
    assert_eq!(code, 0, "{report:#}");
    let tag = report["tag"].as_str().expect("tag");
    let digest = report["manifest_digest"].as_str().expect("digest");
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("oci:{}:copied", out.path().display());
    skopeo_copy(
        &format!("docker://{}/{REPO}:{tag}", reg.host_port()),
        &dest,
        &["--preserve-digests", "--src-tls-verify=false"],
    )
    .expect("skopeo copies");
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], digest);
    let manifest_hex = digest.trim_start_matches("sha256:");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(out.path().join("blobs/sha256").join(manifest_hex)).expect("manifest blob"),
    )
    .expect("json");
    for d in
        std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().expect("layers"))
    {
        let hex = d["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:");
        let bytes = std::fs::read(out.path().join("blobs/sha256").join(hex)).expect("blob copied");
        assert_eq!(bytes.len() as u64, d["size"].as_u64().expect("size"));
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            hex
        );
    }
}

#[test]
fn the_prober_verifies_an_image_that_skopeo_pushed() {
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = write_oci_layout(dir.path(), "v1", &[3000, 70_000]).expect("layout");
    skopeo_copy(
        &image.oci_ref(),
        &format!("docker://{}/golden/skopeo:v1", reg.host_port()),
        &["--preserve-digests", "--dest-tls-verify=false"],
    )
    .expect("skopeo pushes");
    let by_digest = format!("golden/skopeo@{}", image.manifest_digest);
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--golden",
        "golden/skopeo:v1",
        "--golden",
        &by_digest,
    ])
    .expect("runs");
    assert_eq!(code, 0, "{report:#}");
    all_steps_passed(&report);
    let golden_blobs = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| {
            s["step"] == "pull_golden_blob"
                && s["subject"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("golden/skopeo"))
        })
        .count();
    assert_eq!(
        golden_blobs,
        2 * 3,
        "config + 2 layers, by tag and by digest"
    );
    // Old content: every blob is also HEADed, and HEAD agrees with GET.
    let heads = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "head_blob")
        .count();
    assert_eq!(heads, 2 * 3);
    // Golden images are read-only: still there after the run.
    assert_eq!(
        reg.storage().tags("golden/skopeo").expect("tags"),
        vec!["v1".to_string()]
    );
}

#[test]
fn bad_arguments_exit_64_naming_the_field_and_value() {
    let inv = prober(&[
        "once",
        "--registry",
        "http://127.0.0.1:1",
        "--repository",
        REPO,
        "--layer-size",
        "-1MiB",
    ])
    .expect("runs");
    assert_eq!(inv.code, 64);
    assert_eq!(inv.stderr.trim(), "error: invalid arguments: image.layer_size: invalid size \"-1MiB\": a size cannot be negative");
    let inv = prober(&[
        "once",
        "--registry",
        "http://127.0.0.1:1",
        "--repository",
        REPO,
        "--manifest-type",
        "helm",
    ])
    .expect("runs");
    assert_eq!(inv.code, 64);
    assert!(
        inv.stderr
            .contains("manifest_type: unknown media type \"helm\""),
        "{}",
        inv.stderr
    );
    let inv = prober(&["once", "--registry", "http://127.0.0.1:1"]).expect("runs");
    assert_eq!(inv.code, 64, "{}", inv.stderr);
}

#[test]
fn check_config_exits_64_on_a_typo_and_0_on_a_valid_file() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prober/testdata/config");
    let bad = fixtures.join("bad/typo_key.yml");
    let inv = prober(&["check-config", &bad.display().to_string()]).expect("runs");
    assert_eq!(inv.code, 64);
    assert!(
        inv.stderr.contains("unknown field `registy`"),
        "{}",
        inv.stderr
    );
    let good = fixtures.join("good/full.yml");
    let inv = prober(&["check-config", &good.display().to_string()]).expect("runs");
    assert_eq!(inv.code, 0, "{}", inv.stderr);
}

#[test]
fn check_config_says_the_manifest_gets_a_run_makes_and_a_run_makes_them() {
    let reg = Registry::start_default().expect("registry starts");
    let (_, golden) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        "golden/img",
        "--no-cleanup",
        "--layers",
        "1",
        "--layer-size",
        "4KiB",
    ])
    .expect("golden pushed");
    let golden = format!(
        "golden/img@{}",
        golden["manifest_digest"].as_str().expect("digest")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prober.yml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - name: metered\n    registry: {url}\n    repository: {REPO}\n    interval: 30s\n    image: {{layer_sizes: [4KiB]}}\n    golden_images: [\"{golden}\"]\n    paths:\n      - {{name: replica, registry: \"{url}\"}}\n",
            url = reg.url()
        ),
    )
    .expect("config written");
    let config = config.display().to_string();
    let inv = prober(&["check-config", &config]).expect("runs");
    assert_eq!(inv.code, 0, "{}", inv.stderr);
    // (by tag + by digest + 1 golden) x 2 paths, 2,880 runs a day.
    assert!(
        inv.stdout.contains(
            "target \"metered\", size class default: 6 manifest GETs a run, every 30s: 17280 a day"
        ),
        "{}",
        inv.stdout
    );
    let (code, report) = once_json(&["--config", &config]).expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    let gets = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["requests"].as_array().expect("requests"))
        .filter(|r| {
            r["method"] == "GET" && r["url"].as_str().is_some_and(|u| u.contains("/manifests/"))
        })
        .count();
    assert_eq!(gets, 6, "{report:#}");
}

#[test]
fn credentials_from_a_docker_config_json_are_used() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", "cfg-pw"),
        ..Default::default()
    })
    .expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "prober:cfg-pw");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {reg.host_port(): {"auth": auth}}}).to_string(),
    )
    .expect("write config.json");
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--docker-config",
        &config.display().to_string(),
    ])
    .expect("runs");
    assert_eq!(code, 0, "{report:#}");
    all_steps_passed(&report);
}

#[test]
fn mutual_tls_with_a_client_certificate_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new().expect("ca");
    let server = ca.issue_server_cert(dir.path()).expect("server cert");
    let client = ca
        .issue_client_cert(dir.path(), "prober")
        .expect("client cert");
    let reg = Registry::start(RegistryOptions {
        tls: Some(server.clone()),
        client_ca: Some(client.ca.clone()),
        ..Default::default()
    })
    .expect("registry starts");
    let (ca_file, cert, key) = (
        server.ca.display().to_string(),
        client.cert.display().to_string(),
        client.key.display().to_string(),
    );
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--ca-file",
        &ca_file,
        "--client-cert-file",
        &cert,
        "--client-key-file",
        &key,
    ])
    .expect("runs");
    assert_eq!(code, 0, "{report:#}");
    all_steps_passed(&report);
    // Without the client certificate the registry refuses the connection.
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        REPO,
        "--ca-file",
        &ca_file,
    ])
    .expect("runs");
    assert_eq!(code, 1);
    let failed = first_failure(&report).expect("failed step");
    // TLS 1.3: the client's handshake completes before the server checks the certificate; the
    // server's alert (tls) or its closing the connection (io) reaches the first request.
    let reason = failed["reason"].as_str().expect("reason");
    assert!(reason == "tls" || reason == "io", "{failed:#}");
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains("sending the request or reading the response head failed"),
        "{error}"
    );
    if error.contains("fatal alert") {
        assert_eq!(reason, "tls", "{error}");
    }
}
