//! The config as a whole: defaults, the fixture table of rejections (one file per rule, each
//! with its exact message) and the `otlp` section read through a config file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::oci::manifest::ManifestType;

fn load_str(yaml: &str) -> Result<Config, String> {
    let raw = RawConfig::from_yaml(yaml).map_err(|e| e.to_string())?;
    raw.validate().map_err(|e| e.to_string())
}

const MINIMAL: &str =
    "targets:\n  - name: local\n    registry: http://127.0.0.1:5000\n    repository: probe/x\n";

#[test]
fn a_minimal_target_gets_the_documented_defaults() {
    let c = load_str(MINIMAL).expect("valid");
    let t = &c.targets[0];
    assert_eq!(c.listen.to_string(), "127.0.0.1:9115");
    assert_eq!(t.sizes[0].interval, Duration::from_secs(30));
    assert_eq!(t.timeout, Duration::from_secs(25));
    assert_eq!(t.step_timeout, Duration::from_secs(25));
    assert_eq!(t.sizes[0].layer_sizes, vec![4096, 65536, 1048576]);
    assert_eq!(t.sizes[0].upload, UploadMode::Streamed);
    assert_eq!(t.manifest_type, ManifestType::Oci);
    assert!(t.cleanup.enabled && t.cleanup.deletes_blobs());
    assert_eq!(
        t.confirmation,
        Confirmation {
            runs: 2,
            delay: Duration::from_secs(5)
        }
    );
}

#[test]
fn confirmation_runs_come_from_the_defaults_unless_the_target_sets_its_own() {
    let c = load_str(&format!(
        "defaults: {{confirmation_runs: 3, confirmation_delay: 2s}}\n{MINIMAL}  - {{name: off, registry: http://127.0.0.1:5000, repository: p/y, confirmation_runs: 0, interval: 1s, timeout: 1s}}\n"
    ))
    .expect("valid");
    assert_eq!(
        c.targets[0].confirmation,
        Confirmation {
            runs: 3,
            delay: Duration::from_secs(2)
        }
    );
    // Off: the delay need not fit in the 1 s interval.
    assert_eq!(c.targets[1].confirmation.runs, 0);
    // By default a fifth of a short interval.
    let c = load_str(&format!("{MINIMAL}    interval: 2s\n    timeout: 1s\n")).expect("valid");
    assert_eq!(c.targets[0].confirmation.delay, Duration::from_millis(400));
}

#[test]
fn endpoints_share_tls_client_configs_instead_of_building_one_each() {
    let c = load_str(
        "targets:
  - {name: a, registry: http://127.0.0.1:5000, repository: p/a}
  - name: b
    registry: http://127.0.0.1:5000
    repository: p/b
    tls: {insecure: true}
    paths: [{name: mirror, registry: http://127.0.0.1:5001}]
  - {name: c, registry: http://127.0.0.1:5000, repository: p/c}
",
    )
    .expect("valid");
    let config = |t: usize| c.targets[t].tls.client_config();
    // Default options: one config for every such target (~14 KiB each at 1,000 targets).
    assert!(Arc::ptr_eq(&config(0), &config(2)));
    assert!(!Arc::ptr_eq(&config(0), &config(1)));
    // A path without its own tls section uses its target's, not a copy.
    assert!(Arc::ptr_eq(
        &config(1),
        &c.targets[1].paths[0].tls.client_config()
    ));
}

#[test]
fn rejects_a_timeout_longer_than_the_interval_quoting_both() {
    let yaml = format!("{MINIMAL}    interval: 15s\n    timeout: 30s\n");
    assert_eq!(
        load_str(&yaml).expect_err("invalid"),
        "target \"local\": timeout (30s) must not be longer than interval (15s)"
    );
}

/// One fixture per rejection rule under testdata/config/bad/, each with its exact message
/// in a sibling .err file (set UPDATE_FIXTURES=1 to write them, then read every one).
#[test]
fn every_bad_fixture_is_rejected_with_its_exact_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/bad");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 15,
        "fixtures missing in {}",
        dir.display()
    );
    for path in fixtures {
        let err = Config::load(&path).expect_err(&format!("{} must be rejected", path.display()));
        // Messages name the file by its full path; compare from the fixture's name on.
        let shown = err
            .to_string()
            .replace(&format!("{}", dir.display()), "testdata/config/bad");
        let expected_path = path.with_extension("err");
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::write(&expected_path, format!("{shown}\n")).expect("write fixture");
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        assert_eq!(shown, expected.trim_end(), "{}", path.display());
    }
}

#[test]
fn every_good_fixture_is_accepted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/good");
    for entry in std::fs::read_dir(&dir).expect("fixture dir") {
        let path = entry.expect("entry").path();
        Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_otlp_section_appends_v1_traces_to_a_base_endpoint_only() {
    let c = load_str(&format!(
        "{MINIMAL}otlp:\n  endpoint: http://otel-collector:4318\n  timeout: 3s\n"
    ))
    .expect("valid");
    let otlp = c.otlp.expect("otlp");
    assert_eq!(
        otlp.traces_url.as_str(),
        "http://otel-collector:4318/v1/traces"
    );
    assert_eq!(otlp.timeout, Duration::from_secs(3));
    let c = load_str(&format!(
        "{MINIMAL}otlp: {{endpoint: \"https://otlp.example/prefix/\"}}\n"
    ))
    .expect("valid");
    assert_eq!(
        c.otlp.expect("otlp").traces_url.as_str(),
        "https://otlp.example/prefix/v1/traces"
    );
    let c = load_str(&format!(
        "{MINIMAL}otlp: {{traces_endpoint: \"http://127.0.0.1:4318/custom\"}}\n"
    ))
    .expect("valid");
    let otlp = c.otlp.expect("otlp");
    assert_eq!(otlp.traces_url.as_str(), "http://127.0.0.1:4318/custom");
    assert_eq!(otlp.timeout, Duration::from_secs(10));
    assert_eq!(load_str(MINIMAL).expect("valid").otlp, None);
}

#[test]
fn the_otlp_section_rejects_ambiguous_or_unusable_endpoints() {
    let err =
        |section: &str| load_str(&format!("{MINIMAL}otlp: {section}\n")).expect_err("invalid");
    assert_eq!(
        err("{endpoint: \"http://a:4318\", traces_endpoint: \"http://a:4318/v1/traces\"}"),
        "otlp: set endpoint or traces_endpoint, not both"
    );
    assert_eq!(err("{}"), "otlp: endpoint or traces_endpoint is required");
    assert_eq!(
        err("{endpoint: \"grpc://a:4317\"}"),
        "otlp.endpoint: URL \"grpc://a:4317\" has scheme \"grpc\"; expected http or https (e.g. http://otel-collector:4318)"
    );
    assert_eq!(
        err("{endpoint: \"http://user:pw@a:4318\"}"),
        "otlp.endpoint: URL \"http://a:4318\" must not carry credentials; use headers"
    );
}

#[test]
fn otlp_headers_come_from_a_file_and_never_show_their_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("headers");
    std::fs::write(
        &path,
        "# the vendor's key\nx-api-key: s3cret-value\n\nX-Tenant : blue\n",
    )
    .expect("write");
    let c = load_str(&format!(
        "{MINIMAL}otlp: {{endpoint: \"http://a:4318\", headers_file: {}}}\n",
        path.display()
    ))
    .expect("valid");
    let headers = c.otlp.expect("otlp").headers;
    assert_eq!(headers.0.len(), 2);
    assert_eq!(headers.0[0].0, "x-api-key");
    assert_eq!(headers.0[0].1, "s3cret-value");
    assert_eq!(headers.0[1].0, "x-tenant");
    let shown = format!("{headers:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("x-api-key"),
        "{shown}"
    );

    std::fs::write(&path, "x-api-key s3cret-value\n").expect("write");
    let e = load_str(&format!(
        "{MINIMAL}otlp: {{endpoint: \"http://a:4318\", headers_file: {}}}\n",
        path.display()
    ))
    .expect_err("invalid");
    assert_eq!(
        e,
        format!(
            "otlp.headers_file: {} line 1: expected \"name: value\"",
            path.display()
        )
    );
    assert!(!e.contains("s3cret"));
}

/// The README's configuration example is read as a config file would be: no unknown key, no
/// malformed value (its secret files are placeholders, so it is parsed, not validated).
#[test]
fn the_readme_configuration_example_parses() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split_once("## Configuration")
        .expect("README has a Configuration section")
        .1;
    let yaml = section
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a yaml block in the Configuration section")
        .0;
    let raw = RawConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.targets.len(), 2);
}
