//! Blob GETs redirected to an object store with a signed URL, as registries on S3, GCS or Azure
//! Blob storage answer them: the real docker-registry with basic auth behind the fault proxy,
//! which answers every blob GET with a 307 to a stand-in object store on another origin. The
//! registry's credentials must not follow the redirect (S3 refuses a request carrying both a
//! signature and an Authorization header), and reports must not show the signature.

use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::object_store::ObjectStore;
use registry_prober_e2e::prober::{first_failure, once_json};
use registry_prober_e2e::{Registry, RegistryAuth, RegistryOptions};
use serde_json::Value;

const REPO: &str = "registry-prober/redirects";
const SIGNATURE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

struct Setup {
    _registry: Registry,
    store: ObjectStore,
    proxy: FaultProxy,
    _dir: tempfile::TempDir,
    password_file: String,
}

/// The registry (basic auth), its object store, and the proxy redirecting blob GETs there with
/// `signature` in the URL.
fn setup(signature: &str) -> Setup {
    let registry = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", "redirect-pw"),
        ..Default::default()
    })
    .expect("registry starts");
    let store = ObjectStore::start(registry.storage_root(), SIGNATURE).expect("store starts");
    let proxy = FaultProxy::start(&registry.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "to-store",
            "/blobs/sha256:",
            Fault::Redirect {
                status: 307,
                to: store.url(),
                query: format!(
                    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=1200&X-Amz-Signature={signature}"
                ),
            },
        )
        .method(http::Method::GET),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "redirect-pw").expect("password file");
    Setup {
        _registry: registry,
        store,
        proxy,
        password_file: password_file.to_string_lossy().into_owned(),
        _dir: dir,
    }
}

fn once(s: &Setup) -> (i32, Value) {
    once_json(&[
        "--registry",
        &s.proxy.url(),
        "--repository",
        REPO,
        "--username",
        "prober",
        "--password-file",
        &s.password_file,
        "--layers",
        "2",
        "--layer-size",
        "64KiB",
    ])
    .expect("runs")
}

fn pull_blob_steps(report: &Value) -> Vec<&Value> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "pull_blob")
        .collect()
}

#[test]
fn blob_pulls_follow_the_redirect_to_the_object_store_without_the_registry_credentials() {
    let s = setup(SIGNATURE);
    let (code, report) = once(&s);
    assert_eq!(code, 0, "{report:#}");

    // Config and two layers, each pulled by a GET the registry redirected: the 307 and the
    // store's 200 are two hops of one step, each timed, the signature redacted in the report.
    let pulls = pull_blob_steps(&report);
    assert_eq!(pulls.len(), 3, "{report:#}");
    for step in &pulls {
        let hops: Vec<(String, u64, String)> = step["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().expect("method").to_string(),
                    r["status"].as_u64().expect("status"),
                    r["url"].as_str().expect("url").to_string(),
                )
            })
            .collect();
        assert_eq!(hops.len(), 2, "{step:#}");
        assert_eq!((hops[0].0.as_str(), hops[0].1), ("GET", 307));
        assert!(hops[0].2.starts_with(&s.proxy.url()), "{}", hops[0].2);
        assert_eq!((hops[1].0.as_str(), hops[1].1), ("GET", 200));
        assert!(hops[1].2.starts_with(&s.store.url()), "{}", hops[1].2);
        assert!(
            hops[1].2.contains("X-Amz-Signature=REDACTED")
                && hops[1].2.contains("X-Amz-Credential=REDACTED")
                && hops[1].2.contains("X-Amz-Expires=1200"),
            "{}",
            hops[1].2
        );
        assert!(!hops[1].2.contains(SIGNATURE));
    }
    assert!(!report.to_string().contains(SIGNATURE), "signature leaked");

    // The store saw exactly those GETs, signed, and none with the registry's Authorization.
    let seen = s.store.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for request in &seen {
        assert_eq!(request.method, "GET", "{request:?}");
        assert!(!request.had_authorization, "{request:?}");
        assert_eq!(request.status, 200, "{request:?}");
    }
    assert_eq!(s.proxy.hits("to-store"), 3);
}

#[test]
fn an_object_store_refusing_the_signature_fails_the_pull_saying_which_host_answered_what() {
    let s = setup("expired-or-wrong");
    let (code, report) = once(&s);
    assert_eq!(code, 1, "{report:#}");
    let failed = first_failure(&report).expect("a failed step");
    assert_eq!(failed["step"], "pull_blob", "{failed:#}");
    assert_eq!(failed["status"], 403, "{failed:#}");
    let error = failed["error"].as_str().expect("error");
    // The message names the store's URL (signature redacted), its status and its own error...
    assert!(
        error.starts_with(&format!("GET {}/v2/{REPO}/blobs/sha256:", s.store.url())),
        "{error}"
    );
    assert!(error.contains("X-Amz-Signature=REDACTED"), "{error}");
    // ... and the registry URL that sent the prober there.
    assert!(
        error.contains(&format!(
            "(after a 307 redirect from {}/v2/{REPO}/blobs/sha256:",
            s.proxy.url()
        )),
        "{error}"
    );
    assert!(error.contains("403 Forbidden"), "{error}");
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert!(!error.contains("expired-or-wrong"), "{error}");
}
