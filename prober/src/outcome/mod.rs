//! What one probe run produced: a closed set of steps and failure reasons (the one source of
//! label values, span names and log fields), and the per-step reports with their HTTP
//! transcripts.

mod labels;
mod report;

pub use labels::{DeviationKind, Phase, Reason, ReferrersMode, Step};
pub use report::{
    CanarySummary, Deviation, Failure, HttpRecord, LeftBehind, MountOutcome, PropagationReport,
    ReferrersReport, RunReport, StepReport, SweepReport,
};

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator as _;

    use super::*;

    #[test]
    fn every_reason_has_a_distinct_snake_case_label() {
        let mut labels: Vec<&str> = Reason::iter().map(Reason::as_str).collect();
        assert!(labels.iter().all(|l| l
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::iter().count());
    }

    #[test]
    fn serde_names_match_the_label_values() {
        for r in Reason::iter() {
            assert_eq!(
                serde_json::to_value(r).expect("serializes"),
                serde_json::json!(r.as_str())
            );
        }
        for s in Step::iter() {
            assert_eq!(
                serde_json::to_value(s).expect("serializes"),
                serde_json::json!(s.as_str())
            );
        }
    }

    #[test]
    fn trace_ids_are_32_lowercase_hex_digits_and_differ() {
        let a = RunReport::new_trace_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{a}");
        assert_ne!(a, RunReport::new_trace_id());
    }

    #[test]
    fn maps_registry_error_codes_to_reasons() {
        assert_eq!(
            Reason::from_registry_code("BLOB_UNKNOWN"),
            Some(Reason::BlobUnknown)
        );
        assert_eq!(Reason::from_registry_code("DENIED"), Some(Reason::Auth));
        assert_eq!(
            Reason::from_registry_code("TOOMANYREQUESTS"),
            Some(Reason::RateLimited)
        );
        assert_eq!(Reason::from_registry_code("SOMETHING_NEW"), None);
    }
}
