//! Layers as users build them, end to end against real servers: tar layers compressed with gzip
//! or zstd that a second client (skopeo) copies and `tar` unpacks to the config's DiffIDs; old
//! content checked as a runtime would (a wrong DiffID, a layer that is not gzip, a gzip stream
//! cut short, a malformed tar: each a failed step with its own reason); a layer re-compressed on
//! the way by a transcoding proxy, failing on its digest; a canary pushed by a version before
//! tar layers, still verified; and ferro-oci-server beside the Distribution registry.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::ferro::Ferro;
use registry_prober_e2e::oci::{sha256_digest, tar_of, write_oci_layout_of, LayoutLayer};
use registry_prober_e2e::prober::{first_failure, once_json, prober};
use registry_prober_e2e::{skopeo_copy, HttpClient, Registry};
use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// Runs `cmd` with `input` on stdin; its stdout, or a panic naming its stderr.
fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("finishes");
    writer.join().expect("writer").expect("input written");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The JSON of `path`.
fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("readable")).expect("JSON")
}

/// The step of `report` whose step name is `step` and whose subject ends with `subject_end`.
fn step<'a>(report: &'a Value, step: &str, subject_end: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| {
            s["step"] == step
                && s["subject"]
                    .as_str()
                    .is_some_and(|x| x.ends_with(subject_end))
        })
        .unwrap_or_else(|| panic!("no {step} step for {subject_end:?} in {report:#}"))
}

#[test]
fn an_image_the_prober_pushed_is_copied_by_skopeo_and_every_layer_unpacks_with_tar_to_its_diff_id()
{
    let reg = Registry::start_default().expect("registry starts");
    for (manifest_type, compression, unpack) in [
        ("oci", "gzip", &["-xzf"][..]),
        ("oci", "zstd", &["--zstd", "-xf"]),
        ("oci", "none", &["-xf"]),
        ("docker", "gzip", &["-xzf"]),
    ] {
        let repo = format!("layers/interop-{manifest_type}-{compression}");
        let (code, report) = once_json(&[
            "--registry",
            &reg.url(),
            "--repository",
            &repo,
            "--layers",
            "2",
            "--layer-size",
            "2MiB",
            "--manifest-type",
            manifest_type,
            "--compression",
            compression,
            "--verify-diff-ids",
            "--no-cleanup",
        ])
        .expect("once runs");
        assert_eq!(code, 0, "{report:#}");
        let tag = report["tag"].as_str().expect("tag");
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = dir.path().join("oci");
        skopeo_copy(
            &format!("docker://{}/{repo}:{tag}", reg.host_port()),
            &format!("oci:{}:copy", layout.display()),
            &["--src-tls-verify=false", "--preserve-digests"],
        )
        .expect("skopeo copies the image");
        let blob = |digest: &str| {
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let index = read_json(&layout.join("index.json"));
        let manifest = read_json(&blob(
            index["manifests"][0]["digest"].as_str().expect("digest"),
        ));
        let config = read_json(&blob(
            manifest["config"]["digest"].as_str().expect("config"),
        ));
        let layers = manifest["layers"].as_array().expect("layers");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
        assert_eq!(layers.len(), 2);
        assert_eq!(diff_ids.len(), 2);
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let media_type = layer["mediaType"].as_str().expect("media type");
            let want = match (manifest_type, compression) {
                ("oci", "gzip") => "application/vnd.oci.image.layer.v1.tar+gzip",
                ("oci", "zstd") => "application/vnd.oci.image.layer.v1.tar+zstd",
                ("oci", _) => "application/vnd.oci.image.layer.v1.tar",
                _ => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            };
            // skopeo writes an OCI layout: it names docker's gzip layers with the OCI type.
            assert!(
                media_type == want || manifest_type == "docker",
                "{media_type}"
            );
            let bytes =
                std::fs::read(blob(layer["digest"].as_str().expect("digest"))).expect("blob");
            assert_eq!(sha256_digest(&bytes), layer["digest"].as_str().unwrap());
            let tar = match compression {
                "gzip" => pipe(Command::new("gzip").arg("-dc"), &bytes),
                "zstd" => pipe(Command::new("zstd").arg("-dc"), &bytes),
                _ => bytes.clone(),
            };
            assert_eq!(
                &sha256_digest(&tar),
                diff_id,
                "{manifest_type}/{compression}: a layer unpacks to its DiffID"
            );
            let root = dir
                .path()
                .join(format!("root-{}", &diff_id.as_str().unwrap()[7..19]));
            std::fs::create_dir_all(&root).expect("mkdir");
            let listing = pipe(
                Command::new("tar")
                    .args(unpack)
                    .arg("-")
                    .arg("-v")
                    .arg("-C")
                    .arg(&root),
                &bytes,
            );
            let files = String::from_utf8_lossy(&listing).lines().count();
            assert!(
                files >= 2,
                "{manifest_type}/{compression}: {files} files unpacked"
            );
        }
    }
}

/// Pushes `layers` with a config listing `diff_ids` to `repo:tag` with skopeo, as they are.
fn push_hand_made(
    reg_host: &str,
    repo: &str,
    layers: Vec<LayoutLayer>,
    diff_ids: &[String],
) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let image =
        write_oci_layout_of(&dir.path().join("oci"), "t", &layers, diff_ids).expect("layout");
    skopeo_copy(
        &image.oci_ref(),
        &format!("docker://{reg_host}/{repo}:t"),
        &["--dest-tls-verify=false", "--preserve-digests"],
    )
    .expect("skopeo pushes the image");
    format!("{repo}@{}", image.manifest_digest)
}

/// A small `once` run against `reg` that also pulls these golden images.
fn once_with_goldens(reg: &Registry, goldens: &[&str]) -> (i32, Value) {
    let url = reg.url();
    let mut args = vec![
        "--registry",
        url.as_str(),
        "--repository",
        "layers/probe",
        "--layers",
        "1",
        "--layer-size",
        "4KiB",
    ];
    for golden in goldens {
        args.extend(["--golden", golden]);
    }
    once_json(&args).expect("once runs")
}

#[test]
fn golden_images_that_a_runtime_could_not_unpack_fail_with_a_precise_reason() {
    let reg = Registry::start_default().expect("registry starts");
    let host = reg.host_port();
    let tar = tar_of("etc/motd", &vec![b'a'; 40_000]);
    let diff_id = sha256_digest(&tar);
    let layer = |media_type: &str, blob: Vec<u8>| LayoutLayer {
        media_type: media_type.to_string(),
        blob,
    };
    // Well formed: the control.
    let good = push_hand_made(
        &host,
        "golden/good",
        vec![layer(GZIP_LAYER, gzip(&tar))],
        std::slice::from_ref(&diff_id),
    );
    // The config lists another DiffID than the layer unpacks to.
    let wrong = sha256_digest(b"not this layer");
    let wrong_diff_id = push_hand_made(
        &host,
        "golden/wrong-diff-id",
        vec![layer(GZIP_LAYER, gzip(&tar))],
        std::slice::from_ref(&wrong),
    );
    // Declared gzip, but its bytes are a gzip header followed by garbage.
    let mut not_gzip = gzip(&tar);
    for b in not_gzip.iter_mut().skip(10).take(64) {
        *b = 0xff;
    }
    let not_gzip = push_hand_made(
        &host,
        "golden/not-gzip",
        vec![layer(GZIP_LAYER, not_gzip)],
        std::slice::from_ref(&diff_id),
    );
    // A gzip stream cut in half (the blob, and so its digest, is the cut one).
    let full = gzip(&tar);
    let truncated = push_hand_made(
        &host,
        "golden/truncated",
        vec![layer(GZIP_LAYER, full[..full.len() / 2].to_vec())],
        std::slice::from_ref(&diff_id),
    );
    // A tar whose header checksum is wrong, uncompressed.
    let mut bad_tar = tar.clone();
    bad_tar[0] ^= 0x20;
    let bad_tar_id = sha256_digest(&bad_tar);
    let malformed = push_hand_made(
        &host,
        "golden/malformed-tar",
        vec![layer("application/vnd.oci.image.layer.v1.tar", bad_tar)],
        &[bad_tar_id],
    );

    let (code, report) = once_with_goldens(
        &reg,
        &[&good, &wrong_diff_id, &not_gzip, &truncated, &malformed],
    );
    assert_eq!(code, 1, "{report:#}");
    let golden = |reference: &str| {
        step(
            &report,
            "pull_golden_blob",
            &format!("{reference}: layer 1"),
        )
    };
    assert_eq!(golden(&good)["success"], true, "{report:#}");
    let failed = |reference: &str, reason: &str, says: &str| {
        let s = golden(reference);
        assert_eq!(s["success"], false, "{reference}: {s:#}");
        assert_eq!(s["reason"], reason, "{reference}: {s:#}");
        let error = s["error"].as_str().expect("error");
        assert!(error.contains(says), "{reference}: {error}");
        // Its digest matched: the blob is what the registry was given.
        assert!(!error.contains("digest mismatch"), "{error}");
    };
    failed(
        &wrong_diff_id,
        "diff_id_mismatch",
        &format!("DiffID mismatch: the config lists {wrong}, the layer unpacks to {diff_id} ({} bytes, gunzipped)", tar.len()),
    );
    failed(
        &not_gzip,
        "layer_unreadable",
        "gzip stream unreadable after",
    );
    failed(
        &truncated,
        "layer_unreadable",
        "gzip stream unreadable after",
    );
    // The flipped bit made the name "Etc/motd" and its checksum wrong.
    failed(
        &malformed,
        "layer_unreadable",
        "malformed tar at byte 0: header of \"Etc/motd\": checksum field says",
    );
    // The rest of the run went on: the run's own image and its cleanup.
    assert_eq!(step(&report, "pull_blob", "layer 1")["success"], true);
}

#[test]
fn an_uncompressed_golden_layer_is_checked_by_its_digest_and_read_as_a_tar() {
    // Such a layer's DiffID is its blob's digest: the prober hashes it once, for the digest,
    // and reads it as a tar. Bytes that rot in storage (still a tar) fail on the digest; a
    // config naming another DiffID still fails on that.
    let reg = Registry::start_default().expect("registry starts");
    let host = reg.host_port();
    // Past 1 MiB: hashed and unpacked on threads of their own, as big layers are.
    let tar = tar_of("etc/motd", &vec![b'a'; 2 * 1024 * 1024]);
    let digest = sha256_digest(&tar);
    let plain = |blob: &[u8]| LayoutLayer {
        media_type: "application/vnd.oci.image.layer.v1.tar".to_string(),
        blob: blob.to_vec(),
    };
    let good = push_hand_made(
        &host,
        "golden/plain",
        vec![plain(&tar)],
        std::slice::from_ref(&digest),
    );
    let wrong = sha256_digest(b"not this layer");
    let wrong_diff_id = push_hand_made(
        &host,
        "golden/plain-wrong-diff-id",
        vec![plain(&tar)],
        std::slice::from_ref(&wrong),
    );
    let once = || once_with_goldens(&reg, &[&good, &wrong_diff_id]);
    let golden = |report: &Value, reference: &str| {
        step(report, "pull_golden_blob", &format!("{reference}: layer 1")).clone()
    };
    let (code, report) = once();
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(golden(&report, &good)["success"], true, "{report:#}");
    let s = golden(&report, &wrong_diff_id);
    assert_eq!(s["reason"], "diff_id_mismatch", "{s:#}");
    let error = s["error"].as_str().expect("error");
    assert!(
        error.contains(&format!(
            "DiffID mismatch: the config lists {wrong}, the layer unpacks to {digest} ({} bytes)",
            tar.len()
        )),
        "{error}"
    );

    // One byte of the file's content flipped on disk: the tar still reads, the digest fails.
    reg.storage()
        .corrupt_blob(&digest)
        .expect("corrupts the layer");
    let (code, report) = once();
    assert_eq!(code, 1, "{report:#}");
    let s = golden(&report, &good);
    assert_eq!(s["success"], false, "{s:#}");
    assert_eq!(s["reason"], "digest_mismatch", "{s:#}");
    let error = s["error"].as_str().expect("error");
    assert!(error.contains(&digest), "{error}");
}

#[test]
fn a_layer_re_compressed_on_the_way_fails_on_its_digest_though_it_unpacks_to_its_diff_id() {
    let reg = Registry::start_default().expect("registry starts");
    // The image of this seed, pushed straight to the registry and left there: its layer digest.
    let args = |registry: &str| -> Vec<String> {
        [
            "--registry",
            registry,
            "--repository",
            "layers/recompress",
            "--layers",
            "1",
            "--layer-size",
            "4MiB",
            "--seed",
            "4242",
            "--verify-diff-ids",
            "--no-cleanup",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let direct = args(&reg.url());
    let (code, report) =
        once_json(&direct.iter().map(String::as_str).collect::<Vec<_>>()).expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    let digest = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "pull_blob" && s["subject"] == "layer 1")
        .and_then(|s| s["requests"][0]["url"].as_str())
        .and_then(|u| u.rsplit('/').next())
        .expect("the layer's URL")
        .to_string();

    let proxy = FaultProxy::start(&reg.url()).expect("proxy starts");
    proxy.add_rule(
        Rule::new(
            "recompress",
            &format!("/blobs/{digest}"),
            Fault::Recompress { level: 9 },
        )
        .method(http::Method::GET),
    );
    let via = args(&proxy.url());
    let (code, report) =
        once_json(&via.iter().map(String::as_str).collect::<Vec<_>>()).expect("once runs");
    assert_eq!(code, 1, "{report:#}");
    let failure = first_failure(&report).expect("a failed step");
    assert_eq!(failure["step"], "pull_blob", "{failure:#}");
    assert_eq!(failure["subject"], "layer 1");
    assert_eq!(failure["reason"], "digest_mismatch", "{failure:#}");
    let error = failure["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("digest mismatch: expected {digest}, got sha256:")),
        "{error}"
    );
    assert_eq!(proxy.hits("recompress"), 1);
}

#[test]
fn a_canary_pushed_before_layers_were_tars_still_verifies_beside_a_new_one() {
    use registry_prober::{Image, LayerFormat, ManifestType};
    let reg = Registry::start_default().expect("registry starts");
    let repo = "layers/canaries";
    // The canary of this period and seed as versions before tar layers pushed it: raw random
    // layers declared as tar, a config without the layers label.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Two hours ago, in periods of `every: 1h`: this hour's canary is pushed next to it.
    let period = (now / 3600 - 2) * 3600;
    let seed = 0x0bad_cafe_0000_0001u64;
    let old = Image::generate_at(
        seed,
        &[4096, 65536],
        ManifestType::Oci,
        LayerFormat::Raw,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(period),
    );
    let http = HttpClient::new();
    // POST a session, then PUT the blob into it (monolithic).
    let put_blob = |bytes: &[u8], digest: &str| {
        let url = format!("{}/v2/{repo}/blobs/uploads/", reg.url());
        let resp = http.request("POST", &url, &[], &[]).expect("POST");
        assert_eq!(resp.status, 202, "{}", resp.text());
        let location = resp.header("location").expect("Location").to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let resp = http
            .request(
                "PUT",
                &url,
                &[("Content-Type", "application/octet-stream")],
                bytes,
            )
            .expect("PUT");
        assert_eq!(resp.status, 201, "{}", resp.text());
    };
    put_blob(&old.config, old.config_digest.as_str());
    for layer in &old.layers {
        let mut bytes = Vec::new();
        layer.write_blob(&mut bytes).expect("in memory");
        put_blob(&bytes, layer.digest.as_str());
    }
    let tag = format!("registry-prober-default-canary-{period}-{seed:016x}");
    let resp = http
        .request(
            "PUT",
            &format!("{}/v2/{repo}/manifests/{tag}", reg.url()),
            &[("Content-Type", OCI_MANIFEST)],
            &old.manifest,
        )
        .expect("PUT manifest");
    assert_eq!(resp.status, 201, "{}", resp.text());

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prober.yml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - name: t\n    registry: {}\n    repository: {repo}\n    canaries: {{enabled: true, every: 1h, keep: 30}}\n",
            reg.url()
        ),
    )
    .expect("config written");
    let inv = prober(&[
        "once",
        "--output",
        "json",
        "--config",
        config.to_str().unwrap(),
    ])
    .expect("once runs");
    let report = inv.report().expect("report");
    assert_eq!(inv.code, 0, "{report:#}");
    let canary_steps: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["step"]
                .as_str()
                .is_some_and(|n| n.starts_with("pull_canary"))
        })
        .collect();
    let of = |t: &str| {
        canary_steps
            .iter()
            .filter(|s| s["subject"].as_str().is_some_and(|x| x.contains(t)))
            .count()
    };
    // The old one: manifest, config, two layers; the new one (this hour's) the same.
    assert_eq!(of(&tag), 4, "{report:#}");
    assert_eq!(canary_steps.len(), 8, "{report:#}");
    assert!(canary_steps.iter().all(|s| s["success"] == true));
}

#[test]
fn ferro_oci_server_takes_and_serves_gzip_and_zstd_layers_checked_to_their_diff_ids() {
    let ferro = Ferro::start().expect("ferro-oci-server starts");
    for compression in ["gzip", "zstd"] {
        let (code, report) = once_json(&[
            "--registry",
            &ferro.url(),
            "--repository",
            &format!("layers/ferro-{compression}"),
            "--layers",
            "2",
            "--layer-size",
            "3MiB",
            "--compression",
            compression,
            "--verify-diff-ids",
        ])
        .expect("once runs");
        assert_eq!(code, 0, "{compression}: {report:#}");
        let pulls = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == "pull_blob")
            .count();
        assert_eq!(pulls, 3, "{report:#}");
    }
    // A golden image the prober pushed, pulled back as old content.
    let (code, report) = once_json(&[
        "--registry",
        &ferro.url(),
        "--repository",
        "layers/ferro-golden",
        "--layers",
        "1",
        "--layer-size",
        "1MiB",
        "--no-cleanup",
    ])
    .expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    let golden = format!(
        "layers/ferro-golden@{}",
        report["manifest_digest"].as_str().unwrap()
    );
    let (code, report) = once_json(&[
        "--registry",
        &ferro.url(),
        "--repository",
        "layers/ferro-probe",
        "--layers",
        "1",
        "--layer-size",
        "4KiB",
        "--golden",
        &golden,
    ])
    .expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        step(&report, "pull_golden_blob", ": layer 1")["success"],
        true
    );
}

#[test]
fn zstd_with_docker_manifests_is_refused_before_anything_is_sent() {
    let inv = prober(&[
        "once",
        "--registry",
        "http://127.0.0.1:9",
        "--repository",
        "x/y",
        "--manifest-type",
        "docker",
        "--compression",
        "zstd",
    ])
    .expect("runs");
    assert_eq!(inv.code, 64, "{}", inv.stderr);
    assert!(
        inv.stderr
            .contains("image.compression: \"zstd\" needs manifest_type \"oci\""),
        "{}",
        inv.stderr
    );
}
