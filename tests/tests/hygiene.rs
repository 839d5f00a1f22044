//! The hygiene sweep against the real docker-registry: it deletes this instance's old run
//! tags and nothing else, and gets rid of a dangling tag (one whose manifest is gone, as a
//! registry stopped in the middle of a manifest DELETE leaves it).

use std::time::Duration;

use http::Method;
use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::http::HttpClient;
use registry_prober_e2e::prober;
use registry_prober_e2e::service::Service;
use registry_prober_e2e::Registry;
use serde_json::Value;

const REPO: &str = "registry-prober/hygiene";

/// Pushes a small image that stays and returns its manifest's bytes.
fn leave_image(reg: &Registry) -> Vec<u8> {
    prober::leave_image(&reg.url(), REPO).expect("an image left")
}

/// PUT `manifest` under `tag`: 201.
fn put_manifest(reg: &Registry, tag: &str, manifest: &[u8]) {
    prober::put_manifest(&reg.url(), REPO, tag, manifest).expect("PUT manifest");
}

/// A service probing `REPO` once an hour: only its start-up sweep runs in a test.
fn hourly_service(reg: &Registry) -> Service {
    Service::start(&format!(
        "targets:\n  - name: own\n    registry: {}\n    repository: {REPO}\n    interval: 1h\n    timeout: 20s\n",
        reg.url()
    ))
    .expect("service starts")
}

/// Leaves `tag` dangling: an old run tag of this instance whose manifest revision is gone but
/// whose tag is not, as a registry killed between the two writes of a manifest DELETE leaves it.
/// Checks the registry's own view (listed, but 404 MANIFEST_UNKNOWN) and returns the digest the
/// tag still names. The manifest gets an annotation of its own, so that the image
/// `leave_image` tagged is not touched.
fn leave_dangling_tag(reg: &Registry, tag: &str) -> String {
    let mut manifest: Value = serde_json::from_slice(&leave_image(reg)).expect("manifest JSON");
    manifest["annotations"] = serde_json::json!({"test": "dangling"});
    let manifest = serde_json::to_vec(&manifest).expect("manifest bytes");
    put_manifest(reg, tag, &manifest);
    let dangling = reg.storage().dangle_tag(REPO, tag).expect("tag dangled");
    let client = HttpClient::new();
    let list = client
        .request(
            "GET",
            &format!("{}/v2/{REPO}/tags/list", reg.url()),
            &[],
            &[],
        )
        .expect("GET tags/list");
    assert!(list.text().contains(tag), "{}", list.text());
    let get = client
        .request(
            "GET",
            &format!("{}/v2/{REPO}/manifests/{tag}", reg.url()),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            &[],
        )
        .expect("GET the dangling tag");
    assert_eq!(get.status, 404, "{}", get.text());
    assert!(get.text().contains("MANIFEST_UNKNOWN"), "{}", get.text());
    dangling
}

#[test]
fn the_hygiene_sweep_deletes_only_this_instances_old_run_tags() {
    let reg = Registry::start_default().expect("registry starts");
    // An image left behind by a crashed run, under this instance's old tag, another
    // instance's old tag, and a tag that is not the prober's at all.
    let manifest = leave_image(&reg);
    let other_manifest = leave_image(&reg);
    put_manifest(
        &reg,
        "registry-prober-default-1000000000-0000beef",
        &manifest,
    );
    put_manifest(
        &reg,
        "registry-prober-elsewhere-1000000000-0000beef",
        &other_manifest,
    );
    put_manifest(&reg, "keep-me", &other_manifest);

    let mut svc = Service::start(&format!(
        "targets:\n  - name: swept\n    registry: {}\n    repository: registry-prober/other\n    interval: 1h\n    timeout: 20s\n  - name: own\n    registry: {}\n    repository: {REPO}\n    interval: 1h\n    timeout: 20s\n",
        reg.url(),
        reg.url()
    ))
    .expect("service starts");
    svc.wait_for("the sweep", Duration::from_secs(15), |s| {
        Ok(
            s.metric("registry_prober_swept_objects_total{target=\"own\",kind=\"tag\"}")?
                .unwrap_or(0.0)
                >= 1.0,
        )
    })
    .expect("swept");
    let tags = reg.storage().tags(REPO).expect("tags");
    assert!(
        !tags.contains(&"registry-prober-default-1000000000-0000beef".to_string()),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"registry-prober-elsewhere-1000000000-0000beef".to_string()),
        "{tags:?}"
    );
    assert!(tags.contains(&"keep-me".to_string()), "{tags:?}");
    assert_eq!(
        svc.metric("registry_prober_sweeps_total{target=\"own\",result=\"success\"}")
            .expect("metrics"),
        Some(1.0)
    );
}

#[test]
fn a_dangling_run_tag_is_pointed_at_a_fresh_image_which_is_then_deleted() {
    let reg = Registry::start_default().expect("registry starts");
    let storage = reg.storage();
    let tag = "registry-prober-default-1000000000-0000dead";
    let dangling = leave_dangling_tag(&reg, tag);
    let revisions = storage.manifest_revisions(REPO).expect("revisions");
    let links = storage.layer_links(REPO).expect("layer links");
    assert!(!revisions.contains(&dangling), "{revisions:?}");

    let mut svc = hourly_service(&reg);
    svc.wait_for("the sweep", Duration::from_secs(15), |s| {
        Ok(
            s.metric("registry_prober_sweeps_total{target=\"own\",result=\"success\"}")?
                .is_some()
                || s.metric("registry_prober_sweeps_total{target=\"own\",result=\"failure\"}")?
                    .is_some(),
        )
    })
    .expect("swept");
    let log = svc.log();
    assert_eq!(
        svc.metric("registry_prober_sweeps_total{target=\"own\",result=\"success\"}")
            .expect("metrics"),
        Some(1.0),
        "{log}"
    );
    assert_eq!(
        svc.metric("registry_prober_swept_objects_total{target=\"own\",kind=\"tag\"}")
            .expect("metrics"),
        Some(1.0),
        "{log}"
    );
    let tags = storage.tags(REPO).expect("tags");
    assert!(!tags.contains(&tag.to_string()), "{tags:?}\n{log}");
    // The image that re-pointed the tag is gone again, manifest and blobs.
    assert_eq!(
        storage.manifest_revisions(REPO).expect("revisions"),
        revisions
    );
    assert_eq!(storage.layer_links(REPO).expect("layer links"), links);
    // The log says what was sent and what came back.
    let line = log
        .lines()
        .find(|l| l.contains("404 MANIFEST_UNKNOWN") && l.contains(tag))
        .unwrap_or_else(|| panic!("no log line names the dangling tag:\n{log}"));
    assert!(
        line.contains(&format!("/v2/{REPO}/manifests/{tag}")),
        "{line}"
    );
}

#[test]
fn a_failed_repair_of_a_dangling_tag_leaves_nothing_and_the_next_sweep_finishes_it() {
    let reg = Registry::start_default().expect("registry starts");
    let storage = reg.storage();
    let tag = "registry-prober-default-1000000000-0000dead";
    leave_dangling_tag(&reg, tag);
    let revisions = storage.manifest_revisions(REPO).expect("revisions");
    let links = storage.layer_links(REPO).expect("layer links");
    // The repair's manifest PUT fails once: its blobs are uploaded, its manifest is not.
    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "repair refused",
            &format!("/manifests/{tag}"),
            Fault::Status {
                status: 503,
                headers: vec![],
                body: r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#.into(),
            },
        )
        .method(Method::PUT)
        .times(1),
    );
    let mut svc = Service::start(&format!(
        "targets:\n  - name: own\n    registry: {}\n    repository: {REPO}\n    interval: 1h\n    timeout: 20s\n    hygiene: {{interval: 3s}}\n",
        proxy.url()
    ))
    .expect("service starts");
    let sweeps = |s: &Service, result: &str| {
        s.metric(&format!(
            "registry_prober_sweeps_total{{target=\"own\",result=\"{result}\"}}"
        ))
        .map(|v| v.unwrap_or(0.0))
    };
    svc.wait_for(
        "a failed sweep, then one that succeeds",
        Duration::from_secs(30),
        |s| Ok(sweeps(s, "failure")? >= 1.0 && sweeps(s, "success")? >= 1.0),
    )
    .expect("swept twice");
    let log = svc.log();
    assert_eq!(sweeps(&svc, "failure").expect("metrics"), 1.0, "{log}");
    assert!(
        log.contains("503"),
        "the failed sweep's log names the 503 it met:\n{log}"
    );
    assert!(
        !storage.tags(REPO).expect("tags").contains(&tag.to_string()),
        "{log}"
    );
    // Neither the failed repair nor the one that worked left a manifest, a blob link or an
    // upload session.
    assert_eq!(
        storage.manifest_revisions(REPO).expect("revisions"),
        revisions
    );
    assert_eq!(storage.layer_links(REPO).expect("layer links"), links);
    assert_eq!(
        storage.uploads(REPO).expect("uploads"),
        Vec::<String>::new()
    );
}
