//! Tests of the harness itself, against the real servers: docker-registry, skopeo, the token
//! server. They also pin down the registry behaviour the harness documents.

#![allow(clippy::unwrap_used)] // tests may unwrap

use registry_prober_e2e::*;
use sha2::{Digest as _, Sha256};
use std::path::Path;

const PLAIN: &[&str] = &["--preserve-digests", "--dest-tls-verify=false"];

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn push(img: &OciImage, reg: &Registry, repo_tag: &str, extra: &[&str]) -> anyhow::Result<()> {
    skopeo_copy(
        &img.oci_ref(),
        &format!("docker://{}/{repo_tag}", reg.host_port()),
        extra,
    )
    .map(|_| ())
}

#[test]
fn plain_registry_answers_and_stops_by_pid() {
    let mut reg = Registry::start_default().unwrap();
    assert!(reg.url().starts_with("http://127.0.0.1:"));
    assert_eq!(reg.host_port(), format!("127.0.0.1:{}", reg.port()));
    let r = HttpClient::new()
        .get(&format!("{}/v2/", reg.url()))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let pid = reg.pid();
    assert!(pid_alive(pid) && reg.is_running());
    reg.stop();
    assert!(
        !pid_alive(pid),
        "registry PID {pid} still exists after stop()"
    );
    assert!(!reg.is_running());
    reg.stop(); // idempotent
    assert!(HttpClient::new()
        .get(&format!("{}/v2/", reg.url()))
        .is_err());
}

#[test]
fn start_failure_reports_log_tail() {
    let bad = TlsFiles {
        cert: "/nonexistent/server.pem".into(),
        key: "/nonexistent/server-key.pem".into(),
        ca: "/nonexistent/ca.crt".into(),
    };
    let err = Registry::start(RegistryOptions {
        tls: Some(bad),
        ..Default::default()
    })
    .err()
    .expect("a registry with missing TLS files must not start");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("log tail") && msg.contains("/nonexistent/server.pem"),
        "{msg}"
    );
}

#[test]
fn htpasswd_registry_challenges_with_basic() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("alice", "s3cret"),
        ..Default::default()
    })
    .unwrap();
    let url = format!("{}/v2/", reg.url());
    let c = HttpClient::new();
    let r = c.get(&url).unwrap();
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert!(
        challenge.contains("realm=\"registry-prober-test\""),
        "{challenge}"
    );
    assert_eq!(c.get_basic(&url, "alice", "s3cret").unwrap().status, 200);
    assert_eq!(c.get_basic(&url, "alice", "wrong").unwrap().status, 401);
}

#[test]
fn tls_registry_takes_a_skopeo_push_and_storage_shows_it() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new().unwrap();
    let files = ca.issue_server_cert(certs.path()).unwrap();
    let reg = Registry::start(RegistryOptions {
        tls: Some(files.clone()),
        ..Default::default()
    })
    .unwrap();
    assert!(reg.url().starts_with("https://127.0.0.1:"));

    let trusted = HttpClient::new().with_ca(&files.ca).unwrap();
    assert_eq!(
        trusted.get(&format!("{}/v2/", reg.url())).unwrap().status,
        200
    );
    let err = HttpClient::new()
        .get(&format!("{}/v2/", reg.url()))
        .unwrap_err();
    assert!(format!("{err:#}").contains("UnknownIssuer"), "{err:#}");

    let work = tempfile::tempdir().unwrap();
    let img = write_oci_layout(&work.path().join("img"), "v1", &[4096, 100_000]).unwrap();
    let dest = format!("docker://{}/probe/tls:v1", reg.host_port());
    // Without the CA, skopeo refuses the certificate.
    let err = skopeo_copy(&img.oci_ref(), &dest, &["--preserve-digests"]).unwrap_err();
    assert!(format!("{err:#}").contains("certificate"), "{err:#}");
    let cert_dir = files.dir().to_str().unwrap();
    skopeo_copy(
        &img.oci_ref(),
        &dest,
        &["--preserve-digests", "--dest-cert-dir", cert_dir],
    )
    .unwrap();

    let st = reg.storage();
    assert_eq!(st.repositories().unwrap(), vec!["probe/tls".to_string()]);
    assert_eq!(st.tags("probe/tls").unwrap(), vec!["v1".to_string()]);
    assert_eq!(
        st.tag_target("probe/tls", "v1").unwrap(),
        Some(img.manifest_digest.clone())
    );
    assert_eq!(
        st.manifest_revisions("probe/tls").unwrap(),
        vec![img.manifest_digest.clone()]
    );
    for d in img.blob_digests() {
        assert!(st.blob_exists(&d).unwrap(), "blob {d} missing");
    }
    // --preserve-digests: the stored manifest is byte-identical.
    let stored = std::fs::read(st.blob_data_path(&img.manifest_digest).unwrap()).unwrap();
    assert_eq!(stored, img.manifest);
    assert!(st.uploads("probe/tls").unwrap().is_empty());
}

#[test]
fn broken_server_certs_are_rejected_and_mtls_needs_a_client_cert() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new().unwrap();
    for (files, want) in [
        (
            ca.issue_expired_server_cert(certs.path()).unwrap(),
            "expired",
        ),
        (
            ca.issue_untrusted_server_cert(certs.path()).unwrap(),
            "UnknownIssuer",
        ),
    ] {
        let reg = Registry::start(RegistryOptions {
            tls: Some(files.clone()),
            ..Default::default()
        })
        .unwrap();
        let err = HttpClient::new()
            .with_ca(&files.ca)
            .unwrap()
            .get(&format!("{}/v2/", reg.url()))
            .unwrap_err();
        assert!(format!("{err:#}").contains(want), "want {want}: {err:#}");
    }

    let server = ca.issue_server_cert(certs.path()).unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let client = ca.issue_client_cert(client_dir.path(), "prober").unwrap();
    let reg = Registry::start(RegistryOptions {
        tls: Some(server.clone()),
        client_ca: Some(server.ca.clone()),
        ..Default::default()
    })
    .unwrap();
    let url = format!("{}/v2/", reg.url());
    assert!(HttpClient::new()
        .with_ca(&server.ca)
        .unwrap()
        .get(&url)
        .is_err());
    let with_cert = HttpClient::new()
        .with_ca(&server.ca)
        .unwrap()
        .with_client_cert(&client.cert, &client.key)
        .unwrap();
    assert_eq!(with_cert.get(&url).unwrap().status, 200);
}

#[test]
fn token_registry_works_with_skopeo_and_enforces_scopes() {
    let ts = TokenServer::start(
        &[("alice", "s3cret"), ("bob", "hunter2")],
        &[
            Grant::repository("probe/x", &["pull", "push"]),
            Grant::repository("probe/bob-only", &["pull", "push"]).for_users(&["bob"]),
        ],
    )
    .unwrap();
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::token(&ts),
        ..Default::default()
    })
    .unwrap();
    let c = HttpClient::new();

    let r = c.get(&format!("{}/v2/", reg.url())).unwrap();
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("realm=\"{}\"", ts.realm())),
        "{challenge}"
    );
    assert!(
        challenge.contains("service=\"registry-prober-test\""),
        "{challenge}"
    );

    let work = tempfile::tempdir().unwrap();
    let img = write_oci_layout(&work.path().join("img"), "v1", &[2048]).unwrap();
    let alice = [
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
    ];
    push(&img, &reg, "probe/x:v1", &alice).unwrap();
    assert!(ts.token_requests() > 0);
    assert_eq!(
        reg.storage().tags("probe/x").unwrap(),
        vec!["v1".to_string()]
    );
    assert!(ts
        .requests()
        .iter()
        .any(|q| q.user.as_deref() == Some("alice")
            && q.scopes
                .iter()
                .any(|s| s.starts_with("repository:probe/x:") && s.contains("push"))));

    // Repository not granted, or granted to another user only: denied.
    for repo in ["probe/other:v1", "probe/bob-only:v1"] {
        let err = push(&img, &reg, repo, &alice).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("denied") || msg.contains("unauthorized"),
            "{repo}: {msg}"
        );
    }
    push(
        &img,
        &reg,
        "probe/bob-only:v1",
        &[
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:hunter2",
        ],
    )
    .unwrap();
    // Wrong password: the token server refuses, skopeo fails.
    let before = ts.requests().iter().filter(|q| q.status == 401).count();
    assert!(push(
        &img,
        &reg,
        "probe/x:v2",
        &[
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:nope"
        ]
    )
    .is_err());
    assert!(ts.requests().iter().filter(|q| q.status == 401).count() > before);

    // By hand: a pull token for probe/x reads its tags; a token for another repo does not.
    let token_url = format!(
        "{}?service=registry-prober-test&scope=repository:probe/x:pull",
        ts.realm()
    );
    let t = c.get_basic(&token_url, "alice", "s3cret").unwrap();
    assert_eq!(t.status, 200, "{}", t.text());
    let body = t.json().unwrap();
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["token"], body["access_token"]);
    let token = body["token"].as_str().unwrap().to_string();
    let tags_url = format!("{}/v2/probe/x/tags/list", reg.url());
    let bearer = format!("Bearer {token}");
    let r = c
        .request("GET", &tags_url, &[("Authorization", &bearer)], &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().unwrap()["tags"], serde_json::json!(["v1"]));
    let other = format!(
        "Bearer {}",
        ts.issue(Some("alice"), &["repository:probe/other:pull"])
            .unwrap()
    );
    let r = c
        .request("GET", &tags_url, &[("Authorization", &other)], &[])
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    assert_eq!(
        c.get_basic(&token_url, "alice", "wrong").unwrap().status,
        401
    );
}

#[test]
fn libtrust_key_id_has_twelve_groups_of_four() {
    let ts = TokenServer::start(&[], &[]).unwrap();
    let kid = ts.key_id();
    let groups: Vec<&str> = kid.split(':').collect();
    assert_eq!(groups.len(), 12, "{kid}");
    assert!(
        groups.iter().all(|g| g.len() == 4
            && g.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))),
        "{kid}"
    );
}

#[test]
fn pull_through_cache_serves_the_upstream_image() {
    let upstream = Registry::start_default().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = write_oci_layout(&work.path().join("img"), "v1", &[10_000, 20_000]).unwrap();
    push(&img, &upstream, "library/cached:v1", PLAIN).unwrap();

    let cache = Registry::start(RegistryOptions {
        proxy_remote: Some(upstream.url()),
        ..Default::default()
    })
    .unwrap();
    let out_dir = work.path().join("pulled");
    skopeo_copy(
        &format!("docker://{}/library/cached:v1", cache.host_port()),
        &format!("oci:{}:v1", out_dir.display()),
        &["--src-tls-verify=false", "--preserve-digests"],
    )
    .unwrap();
    let accept = [("Accept", oci::MANIFEST_MEDIA_TYPE)];
    let url = format!("{}/v2/library/cached/manifests/v1", cache.url());
    let r = HttpClient::new()
        .request("GET", &url, &accept, &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("docker-content-digest"),
        Some(img.manifest_digest.as_str())
    );
    assert_eq!(r.body, img.manifest);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        img.manifest_digest.as_str()
    );
    for d in &img.layer_digests {
        assert!(
            oci::blob_path(&out_dir, d).is_file(),
            "layer {d} not pulled"
        );
    }
    // Pushing to the cache is refused.
    assert!(push(&img, &cache, "library/cached:v2", PLAIN).is_err());
}

#[test]
fn storage_after_manifest_blob_and_upload_deletes() {
    let reg = Registry::start_default().unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    let a = write_oci_layout(&layout, "a", &[1000, 2000]).unwrap();
    let b = write_oci_layout(&layout, "b", &[3000]).unwrap();
    push(&a, &reg, "ns/repo:a", PLAIN).unwrap();
    push(&a, &reg, "ns/repo:alias", PLAIN).unwrap();
    push(&b, &reg, "ns/repo:b", PLAIN).unwrap();
    let st = reg.storage();
    let repo_dir = st.repo_dir("ns/repo");
    let c = HttpClient::new();
    assert_eq!(st.tags("ns/repo").unwrap(), ["a", "alias", "b"]);

    // DELETE by tag is refused.
    let r = c
        .request(
            "DELETE",
            &format!("{}/v2/ns/repo/manifests/a", reg.url()),
            &[],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    // DELETE by digest: link gone (empty revision dir stays), every tag on it gone, blob stays.
    let r = c
        .request(
            "DELETE",
            &format!("{}/v2/ns/repo/manifests/{}", reg.url(), a.manifest_digest),
            &[],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(st.tags("ns/repo").unwrap(), ["b"]);
    assert_eq!(
        st.manifest_revisions("ns/repo").unwrap(),
        vec![b.manifest_digest.clone()]
    );
    let rev_dir = repo_dir
        .join("_manifests/revisions/sha256")
        .join(a.manifest_digest.trim_start_matches("sha256:"));
    assert!(rev_dir.is_dir() && std::fs::read_dir(&rev_dir).unwrap().next().is_none());
    assert!(st.blob_exists(&a.manifest_digest).unwrap());
    assert!(st
        .layer_links("ns/repo")
        .unwrap()
        .contains(&a.layer_digests[0]));

    // Blob DELETE: only the repo's link goes; the data stays.
    let layer = &a.layer_digests[0];
    let r = c
        .request(
            "DELETE",
            &format!("{}/v2/ns/repo/blobs/{layer}", reg.url()),
            &[],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(!st.layer_links("ns/repo").unwrap().contains(layer));
    assert!(st.blob_exists(layer).unwrap());
    let r = c
        .request(
            "HEAD",
            &format!("{}/v2/ns/repo/blobs/{layer}", reg.url()),
            &[],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 404);

    // Upload sessions: started -> listed; cancelled -> not live, but a leftover dir remains.
    let r = c
        .request(
            "POST",
            &format!("{}/v2/ns/repo/blobs/uploads/", reg.url()),
            &[],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 202);
    let uuid = r.header("docker-upload-uuid").unwrap().to_string();
    let location = r.header("location").unwrap().to_string();
    assert!(
        location.starts_with(&reg.url()),
        "upload Location is absolute: {location}"
    );
    assert_eq!(st.uploads("ns/repo").unwrap(), vec![uuid.clone()]);
    assert_eq!(
        c.request("DELETE", &location, &[], &[]).unwrap().status,
        204
    );
    assert!(st.uploads("ns/repo").unwrap().is_empty());
    assert_eq!(st.upload_dirs("ns/repo").unwrap(), vec![uuid.clone()]);
    assert!(repo_dir
        .join("_uploads")
        .join(&uuid)
        .join("hashstates/sha256/0")
        .is_file());

    // Last tag gone: tags/list says null.
    c.request(
        "DELETE",
        &format!("{}/v2/ns/repo/manifests/{}", reg.url(), b.manifest_digest),
        &[],
        &[],
    )
    .unwrap();
    let r = c
        .get(&format!("{}/v2/ns/repo/tags/list", reg.url()))
        .unwrap();
    assert_eq!(r.json().unwrap()["tags"], serde_json::Value::Null);
    assert_eq!(st.repositories().unwrap(), ["ns/repo"]);
}

#[test]
fn storage_faults_show_through_the_api() {
    let reg = Registry::start_default().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = write_oci_layout(&work.path().join("img"), "v1", &[5000, 6000]).unwrap();
    push(&img, &reg, "faults/x:v1", PLAIN).unwrap();
    let st = reg.storage();
    let c = HttpClient::new();
    let blob_url = |d: &str| format!("{}/v2/faults/x/blobs/{d}", reg.url());

    // Bit rot: same size, the registry serves the bad bytes under the old digest.
    let (rot, lost) = (&img.layer_digests[0], &img.layer_digests[1]);
    st.corrupt_blob(rot).unwrap();
    let r = c.get(&blob_url(rot)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, img.layer_sizes[0]);
    assert_ne!(
        format!("sha256:{}", hex::encode(Sha256::digest(&r.body))),
        *rot
    );

    // Lost blob: the repo link remains, the registry says 404.
    st.delete_blob(lost).unwrap();
    assert!(!st.blob_exists(lost).unwrap());
    assert!(st.layer_links("faults/x").unwrap().contains(lost));
    let r = c.get(&blob_url(lost)).unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn restart_keeps_port_and_data_and_debug_metrics_answer() {
    let mut reg = Registry::start(RegistryOptions {
        debug_metrics: true,
        ..Default::default()
    })
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = write_oci_layout(&work.path().join("img"), "v1", &[100]).unwrap();
    push(&img, &reg, "r/x:v1", PLAIN).unwrap();
    let (port, pid) = (reg.port(), reg.pid());
    let c = HttpClient::new();
    let metrics = c
        .get(&format!("{}/metrics", reg.debug_url().unwrap()))
        .unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("registry_http_requests_total"),
        "{}",
        metrics.text()
    );

    reg.restart().unwrap();
    assert_eq!(reg.port(), port);
    assert_ne!(reg.pid(), pid);
    assert!(!pid_alive(pid));
    let r = c.get(&format!("{}/v2/r/x/tags/list", reg.url())).unwrap();
    assert_eq!(r.json().unwrap()["tags"], serde_json::json!(["v1"]));

    // A second registry on the same storage sees the same data.
    let root = reg.storage_root().to_path_buf();
    reg.stop();
    let again = Registry::start(RegistryOptions {
        storage: Some(root),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(again.storage().tags("r/x").unwrap(), ["v1"]);
}

#[test]
fn oci_layers_are_valid_tars() {
    let work = tempfile::tempdir().unwrap();
    let img = write_oci_layout(work.path(), "t", &[0, 1, 513]).unwrap();
    for (i, d) in img.layer_digests.iter().enumerate() {
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(oci::blob_path(work.path(), d))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("layer-{i}.bin")));
    }
    let sizes: Vec<u64> = img.layer_sizes.clone();
    assert_eq!(sizes, [1536, 2048, 2560]);
}

#[test]
fn prober_bin_is_found_or_explains_how_to_build_it() {
    match prober_bin() {
        Ok(p) => assert!(p.is_file()),
        Err(e) => assert!(format!("{e:#}").contains("cargo test --workspace"), "{e:#}"),
    }
}
