//! The Grafana dashboards in dashboards/ (rendered from mixin/) against real data: a real registry over TLS (plus a
//! pull-through cache of it as a second path), the prober service probing it every second, and
//! a real Prometheus scraping the prober. Every template variable and every panel query of every
//! dashboard must parse and return data, with the variables rendered as Grafana renders them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use registry_prober_e2e::prometheus::{samples, Answer, Prometheus, ScrapeJob};
use registry_prober_e2e::service::Service;
use registry_prober_e2e::{
    free_port, skopeo_copy, write_oci_layout, Registry, RegistryOptions, TestCa,
};
use serde_json::Value;

/// The prober configuration of this test, exercising the families the dashboards query
/// (docs/metrics.md): an instance name, two size classes, a pull path through a
/// pull-through cache (with propagation polling), canaries, blob mounts, hygiene sweeps and a
/// golden image on a TLS target reached by host name (so dns, connect and tls are all timed), a
/// target pushing a multi-platform index and an artifact found through the referrers (tag
/// schema here), plus a target nobody listens on (so failure panels have data). A prober that predates these
/// keys rejects it (unknown field `instance`/`sizes`/...): this test then fails at the start.
/// Placeholders: @ORIGIN_PORT@, @CACHE_PORT@, @CA@, @GOLDEN@, @DOWN_PORT@.
const V2_CONFIG: &str = r#"instance: e2e
defaults: {interval: 1s, timeout: 1s}
targets:
  - name: local
    registry: https://localhost:@ORIGIN_PORT@
    repository: registry-prober/probe
    tls: {ca_file: "@CA@"}
    golden_images: ["@GOLDEN@"]
    sizes:
      - class: small
        layer_sizes: [4KiB, 4KiB]
      - class: medium
        layer_sizes: [256KiB, 1MiB]
        interval: 2s
        timeout: 2s
    paths:
      - name: cache
        registry: https://localhost:@CACHE_PORT@
        propagation_timeout: 1s
        poll_interval: 100ms
    canaries:
      enabled: true
      every: 24h
      keep: 3
      layer_sizes: [4KiB, 64KiB]
    mount:
      enabled: true
    hygiene:
      interval: 1h
  - name: referrers
    registry: https://localhost:@ORIGIN_PORT@
    repository: registry-prober/referrers
    tls: {ca_file: "@CA@"}
    interval: 3s
    timeout: 3s
    image: {layers: 1, layer_size: 4KiB, platforms: [linux/amd64, linux/arm64]}
    artifact: {enabled: true}
  - name: down
    registry: http://127.0.0.1:@DOWN_PORT@
    repository: registry-prober/probe
    image: {layers: 1, layer_size: 4KiB}
"#;

/// The `location` label the scrape adds, as the chart's ServiceMonitor does.
const LOCATION: &str = "test-dc";

/// Template variable values each dashboard must offer, from V2_CONFIG (at least these).
const EXPECTED_VALUES: &[(&str, &[&str])] = &[
    ("location", &[LOCATION]),
    ("target", &["local", "down"]),
    ("path", &["origin", "cache"]),
    ("size_class", &["small", "medium"]),
];

/// Grafana's built-in interval variables as it would set them for this 1 s scrape interval:
/// `$__rate_interval` covers several scrapes and the connections the reload below renews.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "30s"),
    ("__interval", "5s"),
    ("__range", "5m"),
];

const JOB: &str = "registry-prober";

#[test]
fn every_dashboard_query_returns_data_from_a_real_prober() {
    let dashboards = load_dashboards(&dashboards_dir());
    assert!(
        dashboards.len() >= 2,
        "expected the dashboards in {}",
        dashboards_dir().display()
    );

    let certs = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new().expect("ca");
    let tls = ca.issue_server_cert(certs.path()).expect("server cert");
    let origin = Registry::start(RegistryOptions {
        tls: Some(tls.clone()),
        ..Default::default()
    })
    .expect("origin registry starts");
    let cache = Registry::start(RegistryOptions {
        tls: Some(tls.clone()),
        proxy_remote: Some(origin.url()),
        proxy_ca: Some(tls.ca.clone()),
        ..Default::default()
    })
    .expect("pull-through cache starts");
    let golden_dir = tempfile::tempdir().expect("tempdir");
    let golden = write_oci_layout(golden_dir.path(), "v1", &[3000, 70_000]).expect("layout");
    let cert_dir = tls.dir().display().to_string();
    skopeo_copy(
        &golden.oci_ref(),
        &format!("docker://{}/golden/app:v1", origin.host_port()),
        &["--preserve-digests", "--dest-cert-dir", &cert_dir],
    )
    .expect("skopeo pushes the golden image");

    let config = V2_CONFIG
        .replace("@ORIGIN_PORT@", &origin.port().to_string())
        .replace("@CACHE_PORT@", &cache.port().to_string())
        .replace("@CA@", &tls.ca.display().to_string())
        .replace(
            "@GOLDEN@",
            &format!("golden/app@{}", golden.manifest_digest),
        )
        .replace("@DOWN_PORT@", &free_port().to_string());
    let mut svc = Service::start(&config).unwrap_or_else(|e| {
        panic!(
            "the prober did not start with this test's config; a binary that predates its \
             keys rejects them (instance, sizes, paths, canaries, mount, hygiene): {e:#}"
        )
    });
    let address = svc.url().trim_start_matches("http://").to_string();
    // As the chart's ServiceMonitor does: the prober's location on every series.
    let prom = Prometheus::start(&[ScrapeJob::new(JOB, &address).with_label("location", LOCATION)])
        .expect("prometheus starts");

    prom.wait_for_scrapes(JOB, 15, Duration::from_secs(90))
        .expect("prometheus scrapes the prober");
    let ok_runs = |s: &Service| {
        sum_series(
            &s.metrics().unwrap_or_default(),
            "registry_prober_runs_total",
            &["target=\"local\"", "result=\"success\""],
        )
    };
    assert!(
        ok_runs(&svc) > 0.0,
        "target local never succeeded; prober log:\n{}",
        svc.log()
    );
    // A reload counts in config_reloads_total and drops idle connections, so the runs after it
    // time dns, connect and tls again inside the rate window of the queries below.
    svc.signal("HUP").expect("SIGHUP");
    svc.wait_for("a successful reload", Duration::from_secs(10), |s| {
        Ok(sum_series(
            &s.metrics()?,
            "registry_prober_config_reloads_total",
            &["result=\"success\""],
        ) >= 1.0)
    })
    .expect("reload");
    let before = ok_runs(&svc);
    svc.wait_for(
        "3 more successful runs after the reload",
        Duration::from_secs(20),
        |s| Ok(ok_runs(s) >= before + 3.0),
    )
    .expect("runs after the reload");
    std::thread::sleep(Duration::from_millis(2500)); // two more scrapes
    let exposition = svc.metrics().expect("metrics");

    let mut report = Report::default();
    for d in &dashboards {
        check_dashboard(&prom, d, &exposition, &mut report);
    }
    report.print();
    assert!(
        report.failures.is_empty(),
        "{} of {} dashboard checks failed:\n{}",
        report.failures.len(),
        report.failures.len() + report.passed.len(),
        report.failures.join("\n")
    );

    // One panel's value, not only its presence: "down" is the only size class that never
    // succeeded, and the panel's join must keep seeing that with `location` on every series.
    let never = dashboards
        .iter()
        .filter(|d| d.uid == "registry-prober-overview")
        .flat_map(|d| &d.queries)
        .find(|q| q.title.starts_with("Never succeeded"))
        .expect("the overview has a 'Never succeeded' panel");
    let mut vars: BTreeMap<String, String> = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for name in ["location", "target", "path", "size_class"] {
        vars.insert(name.to_string(), ".*".to_string());
    }
    let expr = substitute(&never.expr, &vars).expect("variables render");
    let values: Vec<f64> = match prom.query(&expr).expect("prometheus answers") {
        Answer::Data(data) => samples(&data).into_iter().map(|(_, v)| v).collect(),
        Answer::Error { kind, message } => panic!("{kind}: {message} in {expr}"),
    };
    assert_eq!(values, [1.0], "never-succeeded size classes: {expr}");
}

#[test]
fn variables_are_rendered_as_grafana_renders_them() {
    let mut vars = BTreeMap::new();
    vars.insert("target".to_string(), ".*".to_string());
    vars.insert("__rate_interval".to_string(), "30s".to_string());
    assert_eq!(
        substitute(
            r#"rate(x{target=~"$target"}[$__rate_interval]) + y{t="${target}"}"#,
            &vars
        ),
        Ok(r#"rate(x{target=~".*"}[30s]) + y{t=".*"}"#.to_string())
    );
    assert_eq!(
        substitute("x{a=~\"$nope\"}", &vars),
        Err("unknown variable $nope".to_string())
    );
    assert_eq!(
        every_value(&["local".to_string(), "eu.mirror".to_string()]),
        r"(local|eu\.mirror)"
    );
    assert_eq!(
        parse_label_values(r#"label_values(registry_prober_steps_total{target=~"$target"}, path)"#),
        Some((
            Some(r#"registry_prober_steps_total{target=~"$target"}"#.to_string()),
            "path".to_string()
        ))
    );
    assert_eq!(
        parse_label_values("label_values(target)"),
        Some((None, "target".to_string()))
    );
    assert_eq!(parse_label_values("query_result(up)"), None);
}

// --- the checks ------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    passed: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn pass(&mut self, line: String) {
        self.passed.push(line);
    }
    fn fail(&mut self, line: String) {
        self.failures.push(line);
    }
    fn print(&self) {
        for p in &self.passed {
            println!("PASS {p}");
        }
        for f in &self.failures {
            println!("FAIL {f}");
        }
        println!(
            "dashboards: {} checks passed, {} failed",
            self.passed.len(),
            self.failures.len()
        );
    }
}

/// Resolves the dashboard's variables, then runs every panel query twice: with every variable
/// on "All" (Grafana renders the allValue, `.*`) and with every variable on all its values
/// (Grafana renders `(a|b)`, which a misspelt label in a selector cannot match).
fn check_dashboard(prom: &Prometheus, d: &Dashboard, exposition: &str, report: &mut Report) {
    let mut all: BTreeMap<String, String> = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in &d.variables {
        match v.kind.as_str() {
            "datasource" => {
                all.insert(v.name.clone(), "prometheus".into());
            }
            "query" => {
                let what = format!("{} variable ${} = {}", d.uid, v.name, v.query);
                let found = match resolve_variable(prom, v, &all) {
                    Ok(found) => found,
                    Err(e) => {
                        report.fail(format!("{what}: {e}"));
                        Vec::new()
                    }
                };
                let expected = EXPECTED_VALUES
                    .iter()
                    .find(|(name, _)| *name == v.name)
                    .map(|(_, vals)| *vals)
                    .unwrap_or(&[]);
                let missing: Vec<&str> = expected
                    .iter()
                    .copied()
                    .filter(|e| !found.iter().any(|f| f == e))
                    .collect();
                if found.is_empty() || !missing.is_empty() {
                    report.fail(format!(
                        "{what}: values {found:?}, missing {missing:?}{}",
                        family_hint(&v.query, exposition)
                    ));
                } else {
                    report.pass(format!("{what}: {found:?}"));
                }
                all.insert(
                    v.name.clone(),
                    v.all_value.clone().unwrap_or_else(|| every_value(&found)),
                );
                values.insert(v.name.clone(), found);
            }
            other => report.fail(format!(
                "{}: variable ${} has type {other}, which this test does not know",
                d.uid, v.name
            )),
        }
    }
    let mut each: BTreeMap<String, String> = all.clone();
    for (name, vals) in &values {
        each.insert(name.clone(), every_value(vals));
    }

    for q in &d.queries {
        let what = format!(
            "{} panel {} \"{}\" {}",
            d.uid, q.panel_id, q.title, q.ref_id
        );
        for (pass, vars) in [("all", &all), ("every value", &each)] {
            let empty_vars: Vec<&String> = values
                .iter()
                .filter(|(name, vals)| vals.is_empty() && uses_variable(&q.expr, name))
                .map(|(name, _)| name)
                .collect();
            if pass == "every value" && !empty_vars.is_empty() {
                report.fail(format!(
                    "{what} [{pass}]: not run, variable(s) {empty_vars:?} have no values"
                ));
                continue;
            }
            let expr = match substitute(&q.expr, vars) {
                Ok(e) => e,
                Err(e) => {
                    report.fail(format!("{what} [{pass}]: {e} in {}", q.expr));
                    continue;
                }
            };
            match evaluate(prom, &expr) {
                Ok(n) => report.pass(format!("{what} [{pass}]: {n} series")),
                Err(e) => report.fail(format!(
                    "{what} [{pass}]: {e}{}\n    query: {}",
                    family_hint(&expr, exposition),
                    expr.replace('\n', " ")
                )),
            }
        }
    }
}

/// Runs an instant query: Ok(number of series) when at least one has a finite value.
fn evaluate(prom: &Prometheus, expr: &str) -> Result<usize, String> {
    match prom.query(expr) {
        Err(e) => Err(format!("prometheus could not be asked: {e:#}")),
        Ok(Answer::Error { kind, message }) => Err(format!("prometheus error ({kind}): {message}")),
        Ok(Answer::Data(data)) => {
            let s = samples(&data);
            let finite = s.iter().filter(|(_, v)| v.is_finite()).count();
            if s.is_empty() {
                Err("no data (empty result)".into())
            } else if finite == 0 {
                Err(format!(
                    "no data ({} series, none with a finite value)",
                    s.len()
                ))
            } else {
                Ok(finite)
            }
        }
    }
}

fn resolve_variable(
    prom: &Prometheus,
    v: &Variable,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let query = substitute(&v.query, vars)?;
    let (selector, label) = parse_label_values(&query)
        .ok_or_else(|| format!("not a label_values(...) query: {query}"))?;
    match prom.label_values(&label, selector.as_deref()) {
        Err(e) => Err(format!("prometheus could not be asked: {e:#}")),
        Ok(Answer::Error { kind, message }) => Err(format!("prometheus error ({kind}): {message}")),
        Ok(Answer::Data(data)) => Ok(data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()),
    }
}

/// " (absent from the prober's /metrics: a, b)" for the families `expr` names that this
/// prober does not expose, or "" when it exposes them all.
fn family_hint(expr: &str, exposition: &str) -> String {
    let absent: BTreeSet<&str> = metric_names(expr)
        .into_iter()
        .filter(|name| !exposition.contains(name))
        .collect();
    if absent.is_empty() {
        String::new()
    } else {
        format!(
            " (absent from the prober's /metrics: {})",
            absent.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

fn metric_names(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("registry_prober_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

/// Sum of the exposition lines of `family` whose labels include every one of `matchers`.
fn sum_series(exposition: &str, family: &str, matchers: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| matchers.iter().all(|m| l.contains(m)))
        .filter_map(|l| {
            l.rsplit_once("} ")
                .and_then(|(_, v)| v.split(' ').next()?.parse::<f64>().ok())
        })
        .sum()
}

// --- Grafana's side: dashboards, variables, rendering ----------------------------------------

struct Dashboard {
    uid: String,
    variables: Vec<Variable>,
    queries: Vec<PanelQuery>,
}

struct Variable {
    name: String,
    kind: String,
    query: String,
    all_value: Option<String>,
}

struct PanelQuery {
    panel_id: u64,
    title: String,
    ref_id: String,
    expr: String,
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every `registry-prober-*.json` in `dir`, with its variables and the queries of every panel
/// (panels inside collapsed rows included).
fn load_dashboards(dir: &Path) -> Vec<Dashboard> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("registry-prober-") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            parse_dashboard(&json)
        })
        .collect()
}

fn parse_dashboard(json: &Value) -> Dashboard {
    let uid = json["uid"].as_str().expect("dashboard uid").to_string();
    let variables = json["templating"]["list"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|v| Variable {
                    name: v["name"].as_str().unwrap_or("").into(),
                    kind: v["type"].as_str().unwrap_or("").into(),
                    query: match &v["query"] {
                        Value::String(s) => s.clone(),
                        other => other["query"].as_str().unwrap_or("").into(),
                    },
                    all_value: v["allValue"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut panels: Vec<&Value> = Vec::new();
    for p in json["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let mut queries = Vec::new();
    for p in panels.into_iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(
            !targets.is_empty(),
            "{uid} panel {} has no queries",
            p["id"]
        );
        for t in targets {
            queries.push(PanelQuery {
                panel_id: p["id"].as_u64().unwrap_or(0),
                title: p["title"].as_str().unwrap_or("").into(),
                ref_id: t["refId"].as_str().unwrap_or("").into(),
                expr: t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{uid} panel {} has a query without expr", p["id"]))
                    .into(),
            });
        }
    }
    Dashboard {
        uid,
        variables,
        queries,
    }
}

/// Replaces `$name` and `${name}` with the variable's rendered value.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed ${")?;
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable ${name}"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn uses_variable(expr: &str, name: &str) -> bool {
    let plain = format!("${name}");
    expr.contains(&format!("${{{name}}}"))
        || expr.match_indices(&plain).any(|(at, _)| {
            !expr[at + plain.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A multi-value selection as the Prometheus data source renders it: `(a|b)`, regex-escaped.
fn every_value(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .flat_map(|c| {
                    let special = r"\.^$*+?()[]{}|".contains(c);
                    special
                        .then_some('\\')
                        .into_iter()
                        .chain(std::iter::once(c))
                })
                .collect()
        })
        .collect();
    format!("({})", escaped.join("|"))
}

/// `label_values(selector, label)` or `label_values(label)` -> (selector, label).
fn parse_label_values(q: &str) -> Option<(Option<String>, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((selector, label)) => {
            Some((Some(selector.trim().to_string()), label.trim().to_string()))
        }
        None => Some((None, inner.trim().to_string())),
    }
}
