//! Properties of the checks on what a registry sends back: an upload session's Range, any text
//! of it, is judged without a panic, and one accepted as exact denotes exactly the bytes sent;
//! a manifest body, any bytes of it, is accepted only as JSON hashing to every digest named.

use proptest::prelude::*;

use super::*;
use crate::proptests::cases;

const URL: &str = "http://127.0.0.1:5000/v2/p/blobs/uploads/u";

/// The bytes a Range value names, `first-last` in plain decimal, with or without `bytes=`.
fn denoted(range: &str) -> Option<(u64, u64)> {
    let value = range.strip_prefix("bytes=").unwrap_or(range);
    let (first, last) = value.split_once('-')?;
    let plain = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    if !plain(first) || !plain(last) {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// A Range as registries write it, right or wrong: a prefix or not, numbers near the right
/// ones, leading zeros, spaces.
fn range_near(end: u64) -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![Just(0u64), 0u64..3, any::<u64>()],
        prop_oneof![
            Just(end.wrapping_sub(1)),
            Just(end),
            end.saturating_sub(3)..end.saturating_add(3),
            any::<u64>()
        ],
        prop::sample::select(vec!["", "0", " "]),
    )
        .prop_map(|(prefixed, first, last, pad)| {
            format!(
                "{}{pad}{first}-{pad}{last}",
                if prefixed { "bytes=" } else { "" }
            )
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_range_is_judged_without_a_panic(range in any::<String>(), end in any::<u64>()) {
        let _ = range_held(&Method::PATCH, URL, &range, end);
    }

    #[test]
    fn a_range_accepted_as_exact_denotes_the_bytes_sent(
        (end, range) in (1u64..u64::MAX).prop_flat_map(|end| (Just(end), range_near(end))),
    ) {
        let judged = range_held(&Method::PATCH, URL, &range, end);
        let kind = judged.as_ref().map(|(kind, _)| *kind);
        match kind {
            None | Some(DeviationKind::RangeFormat) => {
                prop_assert_eq!(denoted(&range), Some((0, end - 1)), "{}", range);
                prop_assert_eq!(kind.is_some(), range.starts_with("bytes="));
            }
            Some(DeviationKind::RangeOffByOne) => {
                prop_assert_eq!(denoted(&range), Some((0, end)), "{}", range);
            }
            Some(other) => {
                prop_assert_eq!(other, DeviationKind::RangeMismatch);
                prop_assert!(denoted(&range) != Some((0, end - 1)), "{}", range);
            }
        }
        if let Some((_, said)) = judged {
            let head = format!("PATCH {URL}: registry holds Range {range} after this chunk, expected 0-{}", end - 1);
            prop_assert!(said.starts_with(&head), "{}", said);
        }
    }

    #[test]
    fn a_manifest_is_accepted_only_as_json_hashing_to_every_digest_named(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{\"schemaVersion\":[0-9]{1,2}(,\"a\":\"[ -~]{0,10}\")?\\}".prop_map(String::into_bytes),
        ],
        expected in proptest::option::of((any::<bool>(), any::<u64>())),
        header in proptest::option::of(prop_oneof![Just(true), Just(false)]),
    ) {
        let actual = Digest::of(&body);
        let other = Digest::of(b"other");
        let expected_digest = expected.map(|(right, _)| if right { actual.clone() } else { other.clone() });
        let expected_arg = expected_digest.as_ref().zip(expected.map(|(_, len)| len));
        let header_text = header.map(|right| if right { actual.to_string() } else { "sha256:nope".to_owned() });
        let result = manifest_body(&Method::GET, URL, &body, expected_arg, header_text.as_deref());
        let is_json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        match result {
            Ok(d) => {
                prop_assert!(is_json);
                prop_assert_eq!(&d, &actual);
                prop_assert!(expected_digest.is_none_or(|e| e == actual));
                prop_assert!(header_text.is_none_or(|h| h == actual.as_str()));
            }
            Err(f) => {
                prop_assert!(f.message.starts_with(&format!("GET {URL}: ")), "{}", f.message);
                let want = if is_json { Reason::DigestMismatch } else { Reason::Protocol };
                prop_assert_eq!(f.reason, want);
            }
        }
    }
}

#[test]
fn no_bytes_sent_is_nothing_to_check() {
    assert_eq!(range_held(&Method::PATCH, URL, "0-0", 0), None);
}
