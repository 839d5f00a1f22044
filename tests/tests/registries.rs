//! The registries people run: the prober's full cycle in every upload mode against each
//! registry server implementation that installs here (Debian's Distribution 2.8, and what
//! scripts/install-registries installs: ferro-oci-server, container-registry, zuul-registry),
//! with auth where the server has it, plus skopeo interoperability both ways. The expectation
//! per (server, mode, step) is exact: a step passes, or fails the way that registry refuses it.
//! Each test writes what it observed under the target dir; `scripts/registries-table` renders
//! that into docs/registries.md and fails when the committed table differs.

use std::path::Path;

use registry_prober_e2e::compat::{
    cells, deviations, durations, expect, layer_upload, Cell, ModeRun, Observed, Server,
    CYCLE_STEPS, GOLDEN_STEPS,
};
use registry_prober_e2e::container_registry::ContainerRegistryServer;
use registry_prober_e2e::ferro::Ferro;
use registry_prober_e2e::prober::once_json;
use registry_prober_e2e::zuul::Zuul;
use registry_prober_e2e::{skopeo_copy, write_oci_layout, Registry, RegistryAuth, RegistryOptions};
use serde_json::Value;

/// Two components: container-registry accepts no other shape.
const REPO: &str = "registry-prober/compat";
const GOLDEN_REPO: &str = "golden/skopeo";
const MODES: [&str; 4] = ["streamed", "monolithic", "chunked", "post"];
const CLEANUP_STEPS: [&str; 3] = ["delete_manifest", "delete_blob", "cancel_upload"];

/// Everything one implementation did: the observations, and the reports behind them.
struct Run {
    observed: Observed,
    reports: Vec<(String, Value)>,
}

impl Run {
    fn report(&self, mode: &str) -> &Value {
        &self
            .reports
            .iter()
            .find(|(m, _)| m == mode)
            .expect("a report per mode")
            .1
    }

    /// The first failed run of `step` in `mode`'s report.
    fn failure(&self, mode: &str, step: &str) -> &Value {
        self.report(mode)["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["step"] == step && s["success"] == Value::Bool(false))
            .unwrap_or_else(|| panic!("no failed {step} in {mode}: {:#}", self.report(mode)))
    }

    fn error(&self, mode: &str, step: &str) -> String {
        self.failure(mode, step)["error"]
            .as_str()
            .expect("error")
            .to_string()
    }

    fn mode(&self, mode: &str) -> &ModeRun {
        self.observed
            .modes
            .iter()
            .find(|m| m.mode == mode)
            .expect("a run per mode")
    }

    /// Every mode's cells and layer upload requests are exactly `expected`, and its exit
    /// status follows from the cells.
    fn assert_modes(&self, expected: &[(&str, Vec<Cell>, &str)]) {
        for (mode, cells, wire) in expected {
            let run = self.mode(mode);
            assert_eq!(
                &run.cells,
                cells,
                "{} {mode}: {:#}",
                self.observed.implementation,
                self.report(mode)
            );
            assert_eq!(&run.layer_upload, wire, "{mode}");
            // A registry that refuses DELETE fails neither the run nor its cleanup.
            let passes = cells.iter().all(|(step, c)| {
                c == "ok"
                    || (CLEANUP_STEPS.contains(&step.as_str()) && c.starts_with("unsupported"))
            });
            assert_eq!(run.exit_code, if passes { 0 } else { 1 }, "{mode}");
        }
        assert_eq!(self.observed.modes.len(), expected.len());
    }
}

/// The prober's flags for `server`: registry, repository, credentials (password in a file in
/// `dir`), two 300 KiB layers (three 128 KiB chunks each in chunked mode).
fn base_args(server: &dyn Server, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--registry",
        &server.url(),
        "--repository",
        REPO,
        "--layers",
        "2",
        "--layer-size",
        "300KiB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some((user, password)) = server.credentials() {
        let file = dir.join("password");
        std::fs::write(&file, format!("{password}\n")).expect("write password file");
        args.extend([
            "--username".to_string(),
            user,
            "--password-file".to_string(),
            file.display().to_string(),
        ]);
    }
    args
}

fn once(args: &[String]) -> (i32, Value) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    once_json(&refs).expect("once runs")
}

/// skopeo's credentials flag for `server` (`--src-creds`/`--dest-creds`), when it has auth.
fn creds_flag(server: &dyn Server, flag: &str) -> Vec<String> {
    server
        .credentials()
        .map(|(u, p)| vec![format!("{flag}={u}:{p}")])
        .unwrap_or_default()
}

/// Runs one `once` per upload mode, then the skopeo interop both ways; writes the observations.
fn observe(server: &dyn Server) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = base_args(server, dir.path());
    let mut modes = Vec::new();
    let mut reports = Vec::new();
    for mode in MODES {
        let mut args = base.clone();
        args.extend(["--upload-mode".to_string(), mode.to_string()]);
        if mode == "chunked" {
            args.extend(["--chunk-size".to_string(), "128KiB".to_string()]);
        }
        let (code, report) = once(&args);
        assert_eq!(report["upload_mode"], mode, "{report:#}");
        modes.push(ModeRun {
            mode: mode.to_string(),
            exit_code: code,
            cells: cells(&report, &CYCLE_STEPS),
            layer_upload: layer_upload(&report),
            deviations: deviations(&report),
            durations: durations(&report),
        });
        reports.push((mode.to_string(), report));
    }
    let skopeo_pulls_prober_push = skopeo_pulls_what_the_prober_pushed(server, &base, dir.path());
    let (golden, report) = prober_pulls_what_skopeo_pushed(server, &base, dir.path());
    reports.push(("golden".to_string(), report));
    let observed = Observed {
        implementation: server.implementation().to_string(),
        version: server.version(),
        auth: server.auth().to_string(),
        modes,
        skopeo_pulls_prober_push,
        prober_pulls_skopeo_push: golden,
    };
    observed
        .write(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("observations written");
    Run { observed, reports }
}

/// The prober pushes in the default (streamed) mode and leaves the image; skopeo copies it to a
/// `dir:` and every file there must hash to the digest the prober pushed it under. `ok`, or
/// why not.
fn skopeo_pulls_what_the_prober_pushed(server: &dyn Server, base: &[String], dir: &Path) -> String {
    let mut args = base.to_vec();
    args.push("--no-cleanup".to_string());
    let (code, report) = once(&args);
    let (Some(tag), Some(digest)) = (report["tag"].as_str(), report["manifest_digest"].as_str())
    else {
        return "not run: the prober's streamed push fails".to_string();
    };
    // Without cleanup nothing is DELETEd, so a push that went through makes a passing run.
    assert_eq!(code, 0, "{report:#}");
    let out = dir.join("skopeo-dir");
    let mut flags = vec![
        "--preserve-digests".to_string(),
        "--src-tls-verify=false".to_string(),
    ];
    flags.extend(creds_flag(server, "--src-creds"));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    if let Err(e) = skopeo_copy(
        &format!("docker://{}/{REPO}:{tag}", server.host_port()),
        &format!("dir:{}", out.display()),
        &flags,
    ) {
        return format!("skopeo copy failed: {e:#}");
    }
    let manifest = std::fs::read(out.join("manifest.json")).expect("manifest.json");
    if sha256(&manifest) != digest.trim_start_matches("sha256:") {
        return format!("manifest digest differs from the pushed {digest}");
    }
    let parsed: Value = serde_json::from_slice(&manifest).expect("manifest is JSON");
    for d in std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().expect("layers"))
    {
        let hex = d["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:");
        let bytes = std::fs::read(out.join(hex)).expect("blob copied");
        if sha256(&bytes) != hex || bytes.len() as u64 != d["size"].as_u64().expect("size") {
            return format!("blob {hex} differs from what the prober pushed");
        }
    }
    "ok".to_string()
}

/// skopeo pushes an OCI image (2 layers) under `golden/skopeo:v1`; the prober verifies it as a
/// golden image by tag and by digest. Returns the golden steps' cells and the report.
fn prober_pulls_what_skopeo_pushed(
    server: &dyn Server,
    base: &[String],
    dir: &Path,
) -> (Vec<Cell>, Value) {
    let image = write_oci_layout(&dir.join("layout"), "v1", &[3000, 70_000]).expect("layout");
    let mut flags = vec![
        "--preserve-digests".to_string(),
        "--dest-tls-verify=false".to_string(),
    ];
    flags.extend(creds_flag(server, "--dest-creds"));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    skopeo_copy(
        &image.oci_ref(),
        &format!("docker://{}/{GOLDEN_REPO}:v1", server.host_port()),
        &flags,
    )
    .unwrap_or_else(|e| panic!("skopeo pushes to {}: {e:#}", server.implementation()));
    let mut args = base.to_vec();
    args.extend([
        "--golden".to_string(),
        format!("{GOLDEN_REPO}:v1"),
        "--golden".to_string(),
        format!("{GOLDEN_REPO}@{}", image.manifest_digest),
    ]);
    let (_, report) = once(&args);
    (cells(&report, &GOLDEN_STEPS), report)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// How layer 1 (300 KiB) goes on the wire in each mode where the registry takes it: one PATCH
/// and the closing PUT; one PUT; three 128 KiB chunks and the PUT; and for `post` what the
/// registry made of the single POST (`post`: "POST 201" where it stores the blob at once,
/// "POST 202, PATCH 202, PUT 201" where it opened a session that is completed as docker does).
fn wire(mode: &str, post: &'static str) -> &'static str {
    match mode {
        "streamed" => "PATCH 202, PUT 201",
        "monolithic" => "PUT 201",
        "chunked" => "PATCH 202, PATCH 202, PATCH 202, PUT 201",
        _ => post,
    }
}

const POST_STORES: &str = "POST 201";
const POST_OPENS_A_SESSION: &str = "POST 202, PATCH 202, PUT 201";

/// Every cycle step passing, without a token (no bearer auth) and, for `post`, without
/// `start_upload` (the single POST opens no session first).
fn all_ok(mode: &str, token: bool) -> Vec<Cell> {
    CYCLE_STEPS
        .iter()
        .filter(|s| **s != "cancel_upload")
        .filter(|s| token || **s != "token")
        .filter(|s| mode != "post" || **s != "start_upload")
        .map(|s| (s.to_string(), "ok".to_string()))
        .collect()
}

/// skopeo copied what the prober pushed, and the prober verified what skopeo pushed.
fn assert_interop_both_ways(run: &Run) {
    assert_eq!(run.observed.skopeo_pulls_prober_push, "ok");
    assert_prober_pulls_what_skopeo_pushed(run);
}

fn assert_prober_pulls_what_skopeo_pushed(run: &Run) {
    assert_eq!(
        run.observed.prober_pulls_skopeo_push,
        expect(&[
            ("pull_golden_manifest", "ok"),
            ("head_blob", "ok"),
            ("pull_golden_blob", "ok")
        ])
    );
}

/// Every step of every mode passes (no bearer auth), `post` going on the wire as `post`.
fn assert_all_modes_pass(run: &Run, post: &'static str) {
    let expected: Vec<_> = MODES
        .iter()
        .map(|m| (*m, all_ok(m, false), wire(m, post)))
        .collect();
    run.assert_modes(&expected);
    assert_no_deviations(run);
}

/// No step of any mode tolerated a deviation from the spec.
fn assert_no_deviations(run: &Run) {
    for m in &run.observed.modes {
        assert_eq!(m.deviations, Vec::<String>::new(), "{}", m.mode);
    }
}

#[test]
fn distribution_2_8_with_basic_auth_passes_every_mode_and_skopeo_interop() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", "compat-pw"),
        ..Default::default()
    })
    .expect("registry starts");
    let run = observe(&reg);
    // It has no monolithic POST: the single POST ?digest= opens a session (202).
    assert_all_modes_pass(&run, POST_OPENS_A_SESSION);
    assert_interop_both_ways(&run);
}

#[test]
fn ferro_oci_server_passes_every_mode_and_skopeo_interop() {
    let ferro = Ferro::start().expect("ferro-oci-server starts");
    let run = observe(&ferro);
    // The single POST ?digest= stores the blob at once (201), as the OCI spec allows.
    assert_all_modes_pass(&run, POST_STORES);
    assert_interop_both_ways(&run);
}

#[test]
fn zuul_registry_takes_every_mode_with_its_own_bearer_tokens_and_has_no_delete_route() {
    let zuul = Zuul::start().expect("zuul-registry starts");
    let run = observe(&zuul);
    // zuul-registry routes no DELETE at all: its dispatcher answers 404 with an HTML page for
    // the manifest the run just pushed, which is no DELETE route, not lost content: cleanup
    // says `unsupported`, stops asking (no blob DELETE follows), counts the image as left
    // behind, and the run passes. `cleanup.mode: rotate` fits such a registry.
    // Its single POST ?digest= answers 202 and ignores the body: a session, completed as docker.
    let expected: Vec<_> = MODES
        .iter()
        .map(|m| {
            let mut cells = all_ok(m, true);
            cells.retain(|(s, _)| s != "delete_blob");
            let at = cells
                .iter()
                .position(|(s, _)| s == "delete_manifest")
                .expect("step");
            cells[at].1 = "unsupported 404".to_string();
            (*m, cells, wire(m, POST_OPENS_A_SESSION))
        })
        .collect();
    run.assert_modes(&expected);
    assert_no_deviations(&run);
    let url = zuul.url();
    for mode in MODES {
        let error = run.error(mode, "delete_manifest");
        assert!(
            error.starts_with(&format!("DELETE {url}/v2/{REPO}/manifests/sha256:"))
                && error.contains(
                    "got 404 Not Found, expected 202 or 200 or 204, body: <!DOCTYPE html"
                )
                && error.contains("set cleanup.mode: rotate"),
            "{mode}: {error}"
        );
        assert_eq!(run.report(mode)["left_behind"]["manifests"], 1, "{mode}");
        // Its own token realm, from the challenge on /v2/: one token per scope. The prober asks
        // first with the POST form containerd sends (credentials in the form, not the URL).
        // zuul reads credentials from a Basic header only: it grants the pull token without
        // any (anonymous read), refuses the push token (401), and the prober falls back to
        // docker's GET with Basic credentials, which it then keeps using for this realm.
        let realm = format!("{url}/auth/token");
        let fetches: Vec<Vec<String>> = run.report(mode)["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| s["step"] == "token")
            .map(|s| {
                s["requests"]
                    .as_array()
                    .expect("requests")
                    .iter()
                    .map(|r| {
                        let url = r["url"].as_str().expect("url");
                        let query = url.strip_prefix(realm.as_str()).expect("the realm");
                        format!(
                            "{} {query} {}",
                            r["method"].as_str().expect("method"),
                            r["status"]
                        )
                    })
                    .collect()
            })
            .collect();
        let scope = |actions: &str| {
            format!("GET ?scope=repository%3Aregistry-prober%2Fcompat%3A{actions} 200")
        };
        assert_eq!(
            fetches,
            vec![
                vec!["POST  200".to_string()],
                vec!["POST  401".to_string(), scope("pull%2Cpush")],
                vec![scope("delete")],
            ],
            "{mode}"
        );
    }
    assert_interop_both_ways(&run);
}

#[test]
fn container_registry_takes_the_patch_flows_with_its_own_ranges_and_refuses_delete() {
    let cr = ContainerRegistryServer::start(true).expect("container-registry starts");
    let run = observe(&cr);
    // Its PATCH answer says `Range: 0-<bytes received>`, one past the last byte index the spec
    // asks for, and counts only the latest chunk. docker and skopeo ignore it; the prober
    // tolerates it as deviations (`range_off_by_one`, `range_mismatch`, counted; a `strict`
    // target fails on them). It has no DELETE route
    // (405), which cleanup reports as `unsupported` without failing the run.
    let passes = |mode: &str| {
        let mut cells = all_ok(mode, false);
        cells.retain(|(s, _)| s != "delete_blob");
        let at = cells
            .iter()
            .position(|(s, _)| s == "delete_manifest")
            .expect("step");
        cells[at].1 = "unsupported 405".to_string();
        cells
    };
    let expected = vec![
        ("streamed", passes("streamed"), wire("streamed", "")),
        // The registry refuses a closing PUT that carries the blob (500, "feature not
        // supported"): it takes the whole-blob PATCH flow only. The session the failed upload
        // opened cannot be cancelled either (405).
        (
            "monolithic",
            expect(&[
                ("ping", "ok"),
                ("check_blob", "ok"),
                ("start_upload", "ok"),
                ("upload_blob", "http_5xx 500"),
                ("cancel_upload", "unsupported 405"),
            ]),
            "",
        ),
        // Chunks land in order (it appends); the Range after each names that chunk only.
        ("chunked", passes("chunked"), wire("chunked", "")),
        // The single POST ?digest= is answered 202 (the body is ignored): a session,
        // completed as docker. It then closes the connection without saying so: the POST
        // asks `Connection: close`, so nothing else goes out on it.
        ("post", passes("post"), POST_OPENS_A_SESSION),
    ];
    run.assert_modes(&expected);
    let url = cr.url();
    // Its upload sessions live at /v2/<repo>/uploads/<uuid>, not under blobs/.
    let session = format!("{url}/v2/{REPO}/uploads/");
    for mode in ["streamed", "chunked", "post"] {
        for step in run.report(mode)["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| s["step"] == "upload_blob")
        {
            let patches = step["requests"]
                .as_array()
                .expect("requests")
                .iter()
                .filter(|r| r["method"] == "PATCH")
                .count();
            let kinds: Vec<&str> = step["deviations"]
                .as_array()
                .expect("deviations")
                .iter()
                .map(|d| d["kind"].as_str().expect("kind"))
                .collect();
            // One deviation per PATCH: the first answer's Range is off by one; after a later
            // chunk it names that chunk's bytes only (0-131072 after the second 128 KiB chunk,
            // expected 0-262143), though the chunks append and the blob verifies.
            let mut expected = vec!["range_mismatch"; patches];
            expected[0] = "range_off_by_one";
            assert_eq!(kinds, expected, "{mode}: {step:#}");
        }
        assert!(
            run.error(mode, "delete_manifest")
                .contains("got 405 Method Not Allowed"),
            "{mode}"
        );
    }
    let error = run.error("monolithic", "upload_blob");
    assert!(
        error.starts_with(&format!("PUT {session}"))
            && error.ends_with(
                "got 500 Internal Server Error, expected 201, body: feature not supported: missing content length not implemented"
            ),
        "{error}"
    );
    let error = run.error("monolithic", "cancel_upload");
    assert!(
        error.starts_with(&format!("DELETE {session}"))
            && error.ends_with("got 405 Method Not Allowed, expected 204"),
        "{error}"
    );
    assert_eq!(run.observed.skopeo_pulls_prober_push, "ok");
    // What skopeo pushed, the prober pulls and verifies, though its manifest GETs carry no
    // Docker-Content-Digest.
    assert_prober_pulls_what_skopeo_pushed(&run);
}
