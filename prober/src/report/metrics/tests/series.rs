//! The series a target makes (as docs/metrics.md counts them), what a reload removes, and the
//! metric contract against the docs, a scrape and promtool.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;

#[test]
fn a_new_target_has_107_series_and_an_observed_one_at_most_683_plus_step_failures() {
    let (registry, _metrics) = metrics(PLAIN);
    assert_eq!(series_of(&encode(&registry), TARGET).len(), 107);

    // Every step, every phase, every transfer, no step failure: the most a target with one
    // size class and no pull path gets without them.
    let (registry, metrics) = metrics(PLAIN);
    let target = &targets(PLAIN)[0];
    metrics.observe_run(&every_step_run(target, "default", &[], false));
    assert_eq!(series_of(&encode(&registry), TARGET).len(), 683);
}

#[test]
fn series_grow_with_size_classes_and_paths_as_documented() {
    // docs/metrics.md: pre-created 64 + 43 C + 32 P (+2 mount, +1 canaries); at most
    // 175 + 508 C + 160 P + 242 C P (+2 mount, +2 canaries) without step failures.
    let (c, p) = (2, 1);
    let (registry, metrics) = metrics(FULL);
    assert_eq!(
        series_of(&encode(&registry), TARGET).len(),
        64 + 43 * c + 32 * p + 2 + 1
    );
    let target = &targets(FULL)[0];
    metrics.observe_run(&every_step_run(target, "small", &["cache"], true));
    metrics.observe_run(&every_step_run(target, "large", &["cache"], false));
    assert_eq!(
        series_of(&encode(&registry), TARGET).len(),
        175 + 508 * c + 160 * p + 242 * c * p + 2 + 2
    );
}

#[test]
fn failed_runs_in_a_row_are_one_series_named_by_the_latest_failure_until_a_success() {
    let (registry, metrics) = metrics(FULL);
    metrics.observe_run(&failed_run());
    let mut confirmation = failed_run();
    confirmation.confirmation = true;
    metrics.observe_run(&confirmation);
    metrics.confirmation_skipped(TARGET, "large", ConfirmationSkipCause::Budget);
    assert_lines(
        &encode(&registry),
        &[
            r#"registry_prober_consecutive_failed_runs{target="t",size_class="large",path="cache",step="wait_propagation"} 2"#,
            r#"registry_prober_confirmation_runs_total{target="t",size_class="large",result="failure"} 1"#,
            r#"registry_prober_confirmation_runs_total{target="t",size_class="large",result="success"} 0"#,
            r#"registry_prober_confirmation_runs_skipped_total{target="t",size_class="large",cause="budget"} 1"#,
            r#"registry_prober_confirmation_runs_skipped_total{target="t",size_class="large",cause="next_run_due"} 0"#,
            r#"registry_prober_runs_total{target="t",size_class="large",result="failure"} 2"#,
        ],
    );
    // The next failure is another step's: the count goes on under its labels, alone.
    let ping = run(
        "large",
        false,
        1_700_000_120,
        vec![failed(step(Step::Ping, "registry", 0, 0), Reason::Connect)],
    );
    metrics.observe_run(&ping);
    let streaks = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("registry_prober_consecutive_failed_runs{"))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        streaks(&encode(&registry)),
        [
            r#"registry_prober_consecutive_failed_runs{target="t",size_class="large",path="origin",step="ping"} 3"#
        ]
    );
    // A success of the other class changes nothing; a success of this one ends the streak.
    metrics.observe_run(&successful_run());
    assert_eq!(streaks(&encode(&registry)).len(), 1);
    let mut ok = successful_run();
    ok.size_class = "large".into();
    ok.confirmation = true;
    metrics.observe_run(&ok);
    let text = encode(&registry);
    assert_eq!(streaks(&text), Vec::<String>::new());
    assert_lines(
        &text,
        &[
            r#"registry_prober_confirmation_runs_total{target="t",size_class="large",result="success"} 1"#,
        ],
    );
    // A new failure starts from one.
    metrics.observe_run(&ping);
    assert_eq!(
        streaks(&encode(&registry)),
        [
            r#"registry_prober_consecutive_failed_runs{target="t",size_class="large",path="origin",step="ping"} 1"#
        ]
    );
}

#[test]
fn indexes_and_artifacts_add_the_series_documented() {
    // docs/metrics.md: with image.platforms +4 + 2 P pre-created, at most +4 + 2 P + 40 C +
    // 20 C P; with artifact.enabled or canaries.artifact +10 pre-created, at most +10 + 100 C
    // + 1 (the info gauge); with canaries.artifact besides, +6 P pre-created, at most +6 P +
    // 60 C P + P.
    let (c, p) = (2, 1);
    let (registry, metrics) = metrics(&with_referrers());
    assert_eq!(
        series_of(&encode(&registry), TARGET).len(),
        64 + 43 * c + 32 * p + 2 + 1 + (4 + 2 * p) + 10 + 6 * p
    );
    let target = &targets(&with_referrers())[0];
    metrics.observe_run(&every_step_run(target, "small", &["cache"], true));
    metrics.observe_run(&every_step_run(target, "large", &["cache"], false));
    let text = encode(&registry);
    assert_eq!(
        series_of(&text, TARGET).len(),
        175 + 508 * c
            + 160 * p
            + 242 * c * p
            + 2
            + 2
            + (4 + 2 * p + 40 * c + 20 * c * p)
            + (10 + 100 * c + 1)
            + (6 * p + 60 * c * p + p)
    );
    assert_lines(
        &text,
        &[
            r#"registry_prober_referrers_info{target="t",path="origin",mode="tag_schema"} 1"#,
            r#"registry_prober_referrers_info{target="t",path="cache",mode="tag_schema"} 1"#,
        ],
    );
    // A path that now serves the referrers API loses its tag_schema series.
    let mut run = every_step_run(target, "small", &[], false);
    run.referrers[0].mode = ReferrersMode::Api;
    metrics.observe_run(&run);
    let text = encode(&registry);
    assert_lines(
        &text,
        &[r#"registry_prober_referrers_info{target="t",path="origin",mode="api"} 1"#],
    );
    assert_absent(
        &text,
        &[r#"registry_prober_referrers_info{target="t",path="origin",mode="tag_schema"}"#],
    );
    // Without artifacts any more, a reload drops the info series.
    metrics.retain_targets(&targets(FULL));
    assert_absent(&encode(&registry), &["registry_prober_referrers_info{"]);
}

#[test]
fn a_reload_removes_the_series_of_what_is_no_longer_configured_and_keeps_the_rest() {
    let two_targets = format!(
        "{FULL}{}",
        r#"
  - name: u
    registry: https://other.example
    repository: probe/prober
"#
    );
    let (registry, metrics) = metrics(&two_targets);
    metrics.observe_run(&successful_run());
    metrics.observe_run(&failed_run());
    let mut other = successful_run();
    other.target = "u".into();
    other.size_class = "default".into();
    other.steps.retain(|s| s.path == ORIGIN);
    other.propagation.clear();
    other.mount = None;
    other.canaries = None;
    metrics.observe_run(&other);
    metrics.observe_sweep(&SweepReport {
        target: "u".into(),
        tags_deleted: 1,
        sessions_cancelled: 0,
        errors: Vec::new(),
        steps: Vec::new(),
    });
    assert!(!series_of(&encode(&registry), "u").is_empty());

    // `u` is gone; `t` keeps its class `small` but loses `large`, the cache, mounts and
    // canaries.
    let kept = targets(
        r#"
targets:
  - name: t
    registry: https://registry.example
    repository: probe/prober
    sizes:
      - class: small
        layer_sizes: [4KiB]
"#,
    );
    metrics.retain_targets(&kept);
    for target in &kept {
        metrics.init_target(target);
    }
    let text = encode(&registry);
    assert_eq!(series_of(&text, "u"), Vec::<&str>::new());
    for gone in [
        r#"size_class="large""#,
        r#"path="cache""#,
        "registry_prober_blob_mounts_total{",
        "registry_prober_canaries{",
        "registry_prober_canary_oldest_push_timestamp_seconds{",
    ] {
        let left: Vec<&str> = series_of(&text, TARGET)
            .into_iter()
            .filter(|l| l.contains(gone))
            .collect();
        assert!(left.is_empty(), "{gone} left {left:#?}");
    }
    assert_lines(
        &text,
        &[
            r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
            r#"registry_prober_steps_total{target="t",path="origin",step="start_upload",result="success"} 3"#,
            r#"registry_prober_bytes_total{target="t",path="origin",direction="push"} 1001600"#,
            r#"registry_prober_run_duration_seconds_count{target="t",size_class="small"} 1"#,
            r#"registry_prober_tls_certificate_expiry_timestamp_seconds{target="t",path="origin"} 1900000000.0"#,
        ],
    );

    // Configured again, a removed target starts from zero.
    for target in targets(&two_targets) {
        metrics.init_target(&target);
    }
    assert_lines(
        &encode(&registry),
        &[
            r#"registry_prober_runs_total{target="u",size_class="default",result="success"} 0"#,
            r#"registry_prober_sweeps_total{target="u",result="success"} 0"#,
            r#"registry_prober_runs_total{target="t",size_class="large",result="failure"} 0"#,
            r#"registry_prober_runs_total{target="t",size_class="small",result="success"} 1"#,
        ],
    );

    metrics.retain_targets(&[]);
    assert_eq!(series_of(&encode(&registry), TARGET), Vec::<&str>::new());
}

#[test]
fn no_label_value_is_a_digest_a_url_or_a_path() {
    let text = observed();
    let values = label_values(&text);
    assert!(values.contains(&"digest_mismatch"), "parsed {values:?}");
    assert!(values.contains(&"cache"), "parsed {values:?}");
    for value in values {
        assert!(
            !value.contains("sha256:") && !value.contains("://") && !value.contains('/'),
            "label value {value:?} in\n{text}"
        );
    }
}

#[test]
fn docs_quote_every_help_text_and_list_every_family_and_label_value() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let docs = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    let contract = Metrics::contract();
    assert_eq!(contract.families.len(), 43);
    for family in &contract.families {
        // Under the name one queries: a counter's samples end in `_total`.
        assert!(
            docs.contains(&format!("`{}`", family.name)),
            "docs/metrics.md does not list `{}`",
            family.name
        );
        assert!(
            docs.contains(family.help.trim_end_matches('.')),
            "docs/metrics.md lacks the help of {}: {:?}",
            family.name,
            family.help
        );
        for label in &family.labels {
            for value in label.values.iter().flatten() {
                assert!(
                    docs.contains(&format!("`{value}`")),
                    "docs/metrics.md does not list `{value}` of {}'s {}",
                    family.name,
                    label.name
                );
            }
        }
    }
    for value in [ORIGIN, crate::config::DEFAULT_SIZE_CLASS] {
        assert!(
            docs.contains(&format!("`{value}`")),
            "docs/metrics.md does not list `{value}`"
        );
    }
}

#[test]
fn the_contract_is_what_a_scrape_holds() {
    let text = to_prometheus_text(&observed());
    let contract = Metrics::contract();
    let scraped: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let listed: Vec<(&str, &str)> = contract
        .families
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(listed, scraped);
    let helps: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_once(' ').map(|(_, help)| help.to_string()))
        .collect();
    let listed: Vec<String> = contract.families.iter().map(|f| f.help.clone()).collect();
    assert_eq!(listed, helps);
    // Every sample is a sample name of its family, with exactly the family's labels (a
    // histogram's bucket adds `le`); every closed label's value is one the contract lists.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, _) = line.rsplit_once(' ').expect("a sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = contract
            .families
            .iter()
            .find(|f| f.samples.iter().any(|s| s == name))
            .unwrap_or_else(|| panic!("{name} is in no family of the contract"));
        let pairs: Vec<(&str, &str)> = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once("=\"").expect("label=\"value\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .filter(|(k, _)| *k != "le")
            .collect();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        let expected: Vec<&str> = family.labels.iter().map(|l| l.name).collect();
        assert_eq!(names, expected, "labels of {line}");
        for ((_, value), label) in pairs.iter().zip(&family.labels) {
            if let Some(values) = &label.values {
                assert!(
                    values.contains(value),
                    "{value} of {line} is not in the contract"
                );
            }
        }
    }
}

#[test]
fn the_contract_names_closed_label_values_and_where_open_ones_come_from() {
    let contract = Metrics::contract();
    let steps = contract
        .family("registry_prober_steps_total")
        .expect("the steps family");
    assert_eq!(steps.kind, "counter");
    assert_eq!(steps.samples, vec!["registry_prober_steps_total"]);
    let names: Vec<&str> = steps.labels.iter().map(|l| l.name).collect();
    assert_eq!(names, ["target", "path", "step", "result"]);
    assert!(steps.labels[0].values.is_none() && steps.labels[0].from.is_some());
    assert_eq!(
        steps.labels[2].values.as_deref(),
        Some(
            Step::iter()
                .map(Step::as_str)
                .collect::<Vec<_>>()
                .as_slice()
        )
    );
    assert_eq!(
        steps.labels[3].values.as_deref(),
        Some(["success", "failure"].as_slice())
    );
    let duration = contract
        .family("registry_prober_run_duration_seconds")
        .expect("the run duration family");
    assert_eq!(duration.kind, "histogram");
    assert_eq!(duration.unit.as_deref(), Some("seconds"));
    assert_eq!(
        duration.samples,
        [
            "registry_prober_run_duration_seconds_bucket",
            "registry_prober_run_duration_seconds_sum",
            "registry_prober_run_duration_seconds_count"
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&contract.to_json()).expect("the contract is JSON");
    assert_eq!(json["families"].as_array().map(Vec::len), Some(43));
    assert!(contract
        .to_text()
        .contains("registry_prober_steps_total (counter)"));
}

#[test]
fn promtool_finds_no_problems() {
    let text = to_prometheus_text(&observed());
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED promtool_finds_no_problems: promtool is not installed");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads stdin");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {}\n{report}",
        out.status
    );
}
