//! The metric contract as the binary emits it (`registry-prober metrics-contract`): every family
//! with its type, unit, HELP, sample names and labels, closed labels with every value. It is
//! written while the families register, so it cannot drift from `/metrics`; docs/metrics.md, the
//! alert rules and the dashboards are checked against it.

use std::fmt::Write as _;

use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use serde::Serialize;

/// Every metric name starts with this.
pub(super) const PREFIX: &str = "registry_prober";

/// Every family the prober exports.
#[derive(Clone, Debug, Serialize)]
pub struct Contract {
    pub families: Vec<FamilySpec>,
}

/// One family, named as one queries it.
#[derive(Clone, Debug, Serialize)]
pub struct FamilySpec {
    /// The name to query: a counter's with `_total`, a histogram's without its sample suffixes.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The base unit the name ends in (`seconds`, `bytes_per_second`), if any.
    pub unit: Option<String>,
    /// The HELP text, as `/metrics` shows it.
    pub help: String,
    /// The sample names a scrape holds (`_bucket`, `_sum`, `_count` of a histogram).
    pub samples: Vec<String>,
    pub labels: Vec<LabelSpec>,
}

/// One label of a family: a closed set of values, or where the open values come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelSpec {
    pub name: &'static str,
    /// Every value the label can take, when it is closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<&'static str>>,
    /// Where the values come from, when they are not a closed list (configured names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'static str>,
}

impl LabelSpec {
    pub(super) fn closed(name: &'static str, values: Vec<&'static str>) -> LabelSpec {
        LabelSpec {
            name,
            values: Some(values),
            from: None,
        }
    }

    pub(super) fn open(name: &'static str, from: &'static str) -> LabelSpec {
        LabelSpec {
            name,
            values: None,
            from: Some(from),
        }
    }
}

impl FamilySpec {
    pub(super) fn new(
        name: &str,
        help: &str,
        kind: MetricType,
        unit: Option<&Unit>,
        labels: Vec<LabelSpec>,
    ) -> FamilySpec {
        let unit = unit.map(|u| u.as_str().to_string());
        let base = match &unit {
            Some(unit) => format!("{PREFIX}_{name}_{unit}"),
            None => format!("{PREFIX}_{name}"),
        };
        let kind = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Info => "info",
            MetricType::Unknown => "unknown",
        };
        let (name, samples) = match kind {
            "counter" => {
                let total = format!("{base}_total");
                (total.clone(), vec![total])
            }
            "histogram" => {
                let samples = ["bucket", "sum", "count"]
                    .map(|s| format!("{base}_{s}"))
                    .to_vec();
                (base, samples)
            }
            _ => (base.clone(), vec![base]),
        };
        FamilySpec {
            name,
            kind,
            unit,
            // As the exposition shows it: prometheus-client ends every HELP with a period.
            help: format!("{help}."),
            samples,
            labels,
        }
    }
}

impl Contract {
    /// The contract as one JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the contract is plain data with string keys")
    }

    /// The contract as a table a person reads: a family a line, then its labels.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            let _ = writeln!(out, "{} ({})", family.name, family.kind);
            let _ = writeln!(out, "    {}", family.help);
            for label in &family.labels {
                match (&label.values, label.from) {
                    (Some(values), _) => {
                        let _ = writeln!(out, "    {}: {}", label.name, values.join(", "));
                    }
                    (None, from) => {
                        let _ = writeln!(out, "    {}: {}", label.name, from.unwrap_or("open"));
                    }
                }
            }
        }
        out
    }

    /// The family queried as `name`.
    #[cfg(test)]
    pub(super) fn family(&self, name: &str) -> Option<&FamilySpec> {
        self.families.iter().find(|f| f.name == name)
    }
}
