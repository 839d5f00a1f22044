//! The container image end to end, without a Docker engine: scripts/build-image assembles the
//! OCI image and pushes it to a real registry; the prober pulls and verifies it as a golden
//! image; the registry API serves its config (user 65532, entrypoint, port 9115); and its layer,
//! unpacked, runs: `--version`, and as root, the service itself chrooted into the layer as
//! user 65532.
//!
//! The image's binary is `$REGISTRY_PROBER_IMAGE_BINARY` when set (e.g. the static musl release
//! build, `target/image/x86_64-unknown-linux-musl/release/registry-prober`), else the workspace's
//! own build, which is dynamically linked: build-image then adds its shared libraries.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use registry_prober_e2e::prober::{once_json, steps};
use registry_prober_e2e::{
    free_port, prober_bin, run_with_timeout, HttpClient, Registry, Response,
};
use serde_json::Value;

const IMAGE_REPO: &str = "tools/registry-prober";
const PROBE_REPO: &str = "registry-prober/image-e2e";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn image_binary() -> PathBuf {
    match std::env::var_os("REGISTRY_PROBER_IMAGE_BINARY") {
        Some(p) => PathBuf::from(p),
        None => prober_bin().expect("the workspace's registry-prober binary"),
    }
}

/// Runs scripts/build-image with `args` and returns the image by digest it printed last
/// (`HOST/REPO@sha256:...`).
fn build_image(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-image");
    let binary = image_binary();
    let out = run_with_timeout(
        Command::new(&script)
            .arg("--binary")
            .arg(&binary)
            .args(args),
        BUILD_TIMEOUT,
    )
    .expect("scripts/build-image runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/build-image {args:?} failed ({}):\n{stderr}",
        out.status
    );
    eprintln!("{}", stderr.trim_end());
    stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("scripts/build-image printed nothing; stderr:\n{stderr}"))
        .to_string()
}

/// GET with the OCI manifest media type accepted; asserts 200.
fn get(reg: &Registry, path: &str) -> Response {
    let url = format!("{}{path}", reg.url());
    let resp = HttpClient::new()
        .request("GET", &url, &[("Accept", OCI_MANIFEST)], &[])
        .expect("GET answers");
    assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
    resp
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// Unpacks a gzipped tar layer into `dir` with the system tar, keeping modes and owners.
fn unpack(layer: &[u8], dir: &Path) {
    let mut child = Command::new("tar")
        .args(["-xzf", "-", "--numeric-owner", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tar starts");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(layer).expect("layer written to tar");
    }
    let out = child.wait_with_output().expect("tar finishes");
    assert!(
        out.status.success(),
        "tar -xzf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The command that runs the image's entrypoint from the unpacked `root`: chrooted as user
/// 65532 when we are root (like a container, minus namespaces), else straight from the layer.
fn entrypoint(root: &Path) -> Command {
    if is_root() {
        // Found before the environment is cleared (coreutils puts it in /usr/sbin).
        let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("chroot");
        let mut cmd = Command::new(chroot);
        cmd.arg("--userspec=65532:65532")
            .arg(root)
            .arg("/usr/local/bin/registry-prober")
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        cmd
    } else {
        Command::new(root.join("usr/local/bin/registry-prober"))
    }
}

/// The image's single layer, pulled through the registry API, and its config.
struct PulledImage {
    config: Value,
    layer: Vec<u8>,
}

fn pull_image(reg: &Registry, digest: &str) -> PulledImage {
    let manifest_resp = get(reg, &format!("/v2/{IMAGE_REPO}/manifests/{digest}"));
    assert_eq!(
        manifest_resp.header("docker-content-digest"),
        Some(digest),
        "the registry names the manifest by the digest build-image printed"
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&manifest_resp.body)),
        digest
    );
    let manifest = manifest_resp.json().expect("manifest JSON");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest:#}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config = get(reg, &format!("/v2/{IMAGE_REPO}/blobs/{config_digest}"))
        .json()
        .expect("config JSON");
    let layer_digest = layers[0]["digest"].as_str().expect("layer digest");
    let layer = get(reg, &format!("/v2/{IMAGE_REPO}/blobs/{layer_digest}")).body;
    assert_eq!(format!("sha256:{}", sha256_hex(&layer)), layer_digest);
    PulledImage { config, layer }
}

#[test]
fn an_image_built_without_docker_is_pulled_and_verified_by_the_prober_as_a_golden_image() {
    let reg = Registry::start_default().expect("registry starts");
    let layout = tempfile::tempdir().expect("tempdir");
    let pushed = build_image(&[
        "--insecure",
        "--oci-dir",
        &layout.path().join("oci").display().to_string(),
        &format!("{}/{IMAGE_REPO}:e2e", reg.host_port()),
    ]);
    let digest = pushed
        .strip_prefix(&format!("{}/{IMAGE_REPO}@", reg.host_port()))
        .unwrap_or_else(|| panic!("build-image printed {pushed:?}, not the image by digest"))
        .to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The prober itself pulls the image as a golden image: the manifest by digest, and every
    // blob (config and layer) by HEAD and GET, streamed through sha256.
    let golden = format!("{IMAGE_REPO}@{digest}");
    let (code, report) = once_json(&[
        "--registry",
        &reg.url(),
        "--repository",
        PROBE_REPO,
        "--golden",
        &golden,
    ])
    .expect("once runs");
    assert_eq!(code, 0, "{report:#}");
    let ok = |step: &str| {
        steps(&report)
            .iter()
            .filter(|(s, ok, _)| s == step && *ok)
            .count()
    };
    assert_eq!(ok("pull_golden_manifest"), 1, "{report:#}");
    assert_eq!(ok("pull_golden_blob"), 2, "config and layer: {report:#}");
    assert!(steps(&report).iter().all(|(_, ok, _)| *ok), "{report:#}");

    // The tag and the config, as any client sees them through the registry API.
    let tags = get(&reg, &format!("/v2/{IMAGE_REPO}/tags/list"))
        .json()
        .expect("tags");
    assert_eq!(tags["tags"], serde_json::json!(["e2e"]));
    let image = pull_image(&reg, &digest);
    let c = &image.config;
    assert_eq!(c["os"], "linux");
    assert_eq!(c["architecture"], "amd64");
    assert_eq!(c["config"]["User"], "65532:65532");
    assert_eq!(
        c["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/registry-prober"])
    );
    assert_eq!(
        c["config"]["Cmd"],
        serde_json::json!(["run", "--config", "/etc/registry-prober/config/config.yml"])
    );
    assert_eq!(
        c["config"]["ExposedPorts"],
        serde_json::json!({"9115/tcp": {}})
    );
    assert_eq!(
        c["config"]["Labels"]["org.opencontainers.image.version"],
        VERSION
    );
    // diff_ids name the uncompressed layer.
    let mut tar = Vec::new();
    gunzip(&image.layer, &mut tar);
    assert_eq!(
        c["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&tar))])
    );

    // What the layer holds, and that its binary runs.
    let root = tempfile::tempdir().expect("tempdir");
    unpack(&image.layer, root.path());
    let bin = root.path().join("usr/local/bin/registry-prober");
    let meta = std::fs::metadata(&bin).expect("the binary is in the layer");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("etc/passwd");
    assert!(
        passwd.contains("nonroot:x:65532:65532:"),
        "etc/passwd: {passwd}"
    );
    let certs = std::fs::read_to_string(root.path().join("etc/ssl/certs/ca-certificates.crt"))
        .expect("CA certificates");
    assert!(certs.matches("BEGIN CERTIFICATE").count() > 50);
    let out = run_with_timeout(
        entrypoint(root.path()).arg("--version"),
        Duration::from_secs(30),
    )
    .expect("the image's binary starts");
    assert!(
        out.status.success(),
        "--version failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("registry-prober {VERSION}")
    );
}

#[test]
fn the_same_binary_gives_the_same_image_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let build = |name: &str| {
        build_image(&[
            "--no-push",
            "--oci-dir",
            &dir.path().join(name).display().to_string(),
            "127.0.0.1:1/tools/registry-prober:repro",
        ])
    };
    let first = build("a");
    let second = build("b");
    assert_eq!(first, second, "two builds of one binary differ");
}

/// Kills a child on drop (by its PID), so a failed assertion never leaves the service running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_service_runs_from_the_image_layer_as_user_65532() {
    if !is_root() {
        eprintln!("SKIPPED: running the service chrooted into the layer needs root (chroot)");
        return;
    }
    let reg = Registry::start_default().expect("registry starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let pushed = build_image(&[
        "--insecure",
        "--oci-dir",
        &dir.path().join("oci").display().to_string(),
        &format!("{}/{IMAGE_REPO}:service", reg.host_port()),
    ]);
    let digest = pushed.rsplit('@').next().expect("digest").to_string();
    let image = pull_image(&reg, &digest);
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root dir");
    unpack(&image.layer, &root);

    // The config where the chart mounts it, as the pod would see it.
    let port = free_port();
    let config_dir = root.join("etc/registry-prober/config");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::write(
        config_dir.join("config.yml"),
        format!(
            "listen: 127.0.0.1:{port}\ninstance: image\ndefaults: {{interval: 3s, timeout: 3s}}\n\
             targets:\n  - name: local\n    registry: {}\n    repository: {PROBE_REPO}\n",
            reg.url()
        ),
    )
    .expect("config written");
    let log = dir.path().join("service.log");
    let child = entrypoint(&root)
        .args(["run", "--config", "/etc/registry-prober/config/config.yml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("the service starts");
    let mut service = Running(child);
    let pid = service.0.id();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let client = HttpClient::new().with_timeout(Duration::from_secs(2));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let success =
        "registry_prober_runs_total{target=\"local\",size_class=\"default\",result=\"success\"}";
    loop {
        if let Ok(Some(exit)) = service.0.try_wait() {
            panic!("the service exited with {exit}:\n{}", read_log());
        }
        let ready = client.get(&format!("{base}/readyz")).map(|r| r.status);
        let metrics = client
            .get(&format!("{base}/metrics"))
            .map(|r| r.text())
            .unwrap_or_default();
        let ran = metrics
            .lines()
            .any(|l| l.starts_with(success) && !l.ends_with(" 0"));
        if matches!(ready, Ok(200)) && ran {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no successful run within 30s (readyz: {ready:?}); metrics:\n{metrics}\nlog:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // chroot execs the prober: the process is the prober itself, running as 65532.
    let uid_line = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the service's /proc status")
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(str::to_string)
        .unwrap_or_default();
    assert_eq!(
        uid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65532"; 4],
        "{uid_line}"
    );

    // SIGTERM: a graceful stop, exit 0.
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = service.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "no exit 20s after SIGTERM:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit {exit} after SIGTERM:\n{}", read_log());
}

/// Gunzips with the system gzip (the tests crate has no gzip library).
fn gunzip(gz: &[u8], out: &mut Vec<u8>) {
    let mut child = Command::new("gzip")
        .args(["-dc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = gz.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        stdin.write_all(&data).expect("gzip input");
    });
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(out)
        .expect("gzip output");
    writer.join().expect("writer");
    assert!(child.wait().expect("gzip exits").success());
}
