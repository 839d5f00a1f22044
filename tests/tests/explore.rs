use registry_prober_e2e::*;
use std::process::Command;

#[test]
fn explore() {
    let reg = Registry::start_default().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_oci_layout(&tmp.path().join("img"), "v1", &[1000, 2000]).unwrap();
    let img2 = write_oci_layout(&tmp.path().join("img"), "v2", &[3000]).unwrap();
    for (i, t) in [(&img, "v1"), (&img2, "v2")] {
        skopeo_copy(&i.oci_ref(), &format!("docker://{}/a/b:{t}", reg.host_port()), &["--preserve-digests", "--dest-tls-verify=false"]).unwrap();
    }
    skopeo_copy(&img.oci_ref(), &format!("docker://{}/a/b:alias", reg.host_port()), &["--preserve-digests", "--dest-tls-verify=false"]).unwrap();
    let tree = |label: &str| {
        let o = Command::new("find").arg(reg.storage().v2()).output().unwrap();
        println!("==== {label}\n{}", String::from_utf8_lossy(&o.stdout).replace(&reg.storage().v2().display().to_string(), ""));
    };
    tree("after push");
    let c = HttpClient::new();
    let r = c.request("DELETE", &format!("{}/v2/a/b/manifests/{}", reg.url(), img.manifest_digest), &[], &[]).unwrap();
    println!("delete manifest: {} {}", r.status, r.text());
    tree("after manifest delete");
    let r = c.get(&format!("{}/v2/a/b/tags/list", reg.url())).unwrap();
    println!("tags: {} {}", r.status, r.text());
    let r = c.request("DELETE", &format!("{}/v2/a/b/blobs/{}", reg.url(), img.layer_digests[0]), &[], &[]).unwrap();
    println!("delete blob: {} {}", r.status, r.text());
    tree("after blob delete");
    let r = c.request("POST", &format!("{}/v2/a/b/blobs/uploads/", reg.url()), &[], &[]).unwrap();
    println!("start upload: {} {:?}", r.status, r.headers);
    tree("after upload start");
    let loc = r.header("location").unwrap().to_string();
    let r = c.request("DELETE", &loc, &[], &[]).unwrap();
    println!("cancel upload: {} {}", r.status, r.text());
    tree("after upload cancel");
    let r = c.request("DELETE", &format!("{}/v2/a/b/manifests/{}", reg.url(), img2.manifest_digest), &[], &[]).unwrap();
    println!("delete manifest2: {} {}", r.status, r.text());
    let r = c.get(&format!("{}/v2/a/b/tags/list", reg.url())).unwrap();
    println!("tags: {} {}", r.status, r.text());
    tree("after all");
    println!("repos {:?} tags {:?} revs {:?} layers {:?} uploads {:?}", reg.storage().repositories(), reg.storage().tags("a/b"), reg.storage().manifest_revisions("a/b"), reg.storage().layer_links("a/b"), reg.storage().uploads("a/b"));
    println!("LOG:\n{}", reg.log());
}
