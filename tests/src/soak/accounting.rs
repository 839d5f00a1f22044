//! Every scheduled run accounted for, from the prober's own /metrics: per target and size class,
//! `registry_prober_scheduled_runs_total` against the runs that ended
//! (`registry_prober_runs_total`, any result, less the confirmation runs among them:
//! `registry_prober_confirmation_runs_total`), the runs skipped
//! (`registry_prober_skipped_runs_total`, any cause) and the one in flight (a confirmation run
//! in flight is one more for a moment). A run still waiting
//! for room is in none of them, and a scrape is not one atomic read: so a single look may be off
//! by the runs in progress, and a lost run is a difference that never goes away.

use std::collections::BTreeMap;

/// One sample of an exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of a Prometheus text exposition (comments skipped; `\"` and `\\` in label values
/// unescaped). Lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Series> {
    let mut labels = BTreeMap::new();
    let (name, rest) = match line.split_once('{') {
        None => line.split_once(' ')?,
        Some((name, mut s)) => loop {
            s = s.trim_start_matches([',', ' ']);
            if let Some(rest) = s.strip_prefix('}') {
                break (name, rest);
            }
            let (key, quoted) = s.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => value.push(chars.next()?.1),
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_string(), value);
            s = &quoted[end + 1..];
        },
    };
    Some(Series {
        name: name.to_string(),
        labels,
        value: rest.split_whitespace().next()?.parse().ok()?,
    })
}

/// The run accounting of one size class of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassAccount {
    pub scheduled: f64,
    /// Confirmation runs that ended (any result): counted in `succeeded` and `failed` too,
    /// though no tick scheduled them.
    pub confirmations: f64,
    pub succeeded: f64,
    pub failed: f64,
    /// By cause.
    pub skipped: BTreeMap<String, f64>,
    pub in_flight: f64,
}

impl ClassAccount {
    pub fn skipped_total(&self) -> f64 {
        self.skipped.values().sum()
    }

    /// Scheduled runs neither ended, skipped nor in flight: 0 when everything is accounted for,
    /// 1 while a run waits for room (or a scrape read one counter before a run ended).
    pub fn unaccounted(&self) -> f64 {
        self.scheduled + self.confirmations
            - self.succeeded
            - self.failed
            - self.skipped_total()
            - self.in_flight
    }
}

/// Per (target, size class), from an exposition.
pub fn accounts(text: &str) -> BTreeMap<(String, String), ClassAccount> {
    let mut out: BTreeMap<(String, String), ClassAccount> = BTreeMap::new();
    for s in parse(text) {
        let key = || {
            (
                s.label("target").to_string(),
                s.label("size_class").to_string(),
            )
        };
        match s.name.as_str() {
            "registry_prober_scheduled_runs_total" => {
                out.entry(key()).or_default().scheduled += s.value
            }
            "registry_prober_runs_total" => {
                let a = out.entry(key()).or_default();
                match s.label("result") {
                    "success" => a.succeeded += s.value,
                    _ => a.failed += s.value,
                }
            }
            "registry_prober_skipped_runs_total" => {
                *out.entry(key())
                    .or_default()
                    .skipped
                    .entry(s.label("cause").to_string())
                    .or_default() += s.value;
            }
            "registry_prober_confirmation_runs_total" => {
                out.entry(key()).or_default().confirmations += s.value
            }
            "registry_prober_runs_in_flight" => out.entry(key()).or_default().in_flight += s.value,
            _ => {}
        }
    }
    out
}

/// The sum of the values of the series named `name` whose labels include every `(key, value)`.
pub fn sum(series: &[Series], name: &str, labels: &[(&str, &str)]) -> f64 {
    series
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP registry_prober_runs_total Probe runs.
# TYPE registry_prober_runs_total counter
registry_prober_scheduled_runs_total{target="a",size_class="default"} 10
registry_prober_runs_total{target="a",size_class="default",result="success"} 7
registry_prober_runs_total{target="a",size_class="default",result="failure"} 3
registry_prober_confirmation_runs_total{target="a",size_class="default",result="success"} 1
registry_prober_confirmation_runs_total{target="a",size_class="default",result="failure"} 1
registry_prober_skipped_runs_total{target="a",size_class="default",cause="overrun"} 1
registry_prober_skipped_runs_total{target="a",size_class="default",cause="missed"} 0
registry_prober_runs_in_flight{target="a",size_class="default"} 1
registry_prober_step_failures_total{target="a",path="origin",step="pull_blob",reason="io"} 3
registry_prober_targets 1
weird{a="x\"y,z}",b="2"} 7 1700000000
"#;

    #[test]
    fn parses_names_labels_values_and_escapes() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 11);
        assert_eq!(s[9].name, "registry_prober_targets");
        assert_eq!(s[9].value, 1.0);
        assert_eq!(s[10].label("a"), "x\"y,z}");
        assert_eq!(s[10].label("b"), "2");
        assert_eq!(s[10].value, 7.0);
        assert_eq!(
            sum(
                &s,
                "registry_prober_step_failures_total",
                &[("reason", "io")]
            ),
            3.0
        );
    }

    #[test]
    fn every_scheduled_run_is_ended_skipped_or_in_flight() {
        let a = &accounts(TEXT)[&("a".to_string(), "default".to_string())];
        assert_eq!((a.scheduled, a.confirmations), (10.0, 2.0));
        assert_eq!(
            (a.succeeded, a.failed, a.skipped_total(), a.in_flight),
            (7.0, 3.0, 1.0, 1.0)
        );
        assert_eq!(a.unaccounted(), 0.0);
    }
}
