//! Properties of the rate-limit reader: any headers are read without a panic, and headroom
//! written in each dialect, with any spacing, letter case and extra parameters, reads back.

use proptest::prelude::*;

use super::*;
use crate::proptests::cases;

/// `n` as a quota value: `n`, with a window `;w=<secs>` and other parameters, spaced.
fn quota(n: u64, window: Option<u64>, extra: bool, spaced: bool) -> String {
    let sp = if spaced { " " } else { "" };
    let mut v = format!("{sp}{n}");
    if extra {
        v.push_str(&format!("{sp};{sp}comment=\"x\""));
    }
    if let Some(w) = window {
        v.push_str(&format!("{sp};{sp}w={w}"));
    }
    v
}

fn recase(name: &str, upper: bool) -> String {
    if upper {
        name.to_ascii_uppercase()
    } else {
        name.to_owned()
    }
}

/// Every header name the reader looks at.
const NAMES: [&str; 7] = [
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "retry-after",
];

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_headers_are_read_without_a_panic(
        headers in proptest::collection::vec(
            (
                prop::sample::select(NAMES.to_vec()).prop_map(str::to_owned),
                "[ -~]{0,30}",
            ),
            0..6,
        ),
    ) {
        if let Some(h) = headroom(&headers) {
            // Whatever it read came from numbers in the headers.
            prop_assert!(headers.iter().any(|(_, v)| v.contains(&h.limit.to_string())));
        }
    }

    #[test]
    fn the_draft_pair_reads_back(
        limit in any::<u64>(),
        remaining in any::<u64>(),
        window in proptest::option::of(any::<u64>()),
        extra in any::<bool>(),
        spaced in any::<bool>(),
        upper in any::<bool>(),
        x in any::<bool>(),
    ) {
        let prefix = if x { "x-ratelimit-" } else { "ratelimit-" };
        let headers = vec![
            (recase(&format!("{prefix}limit"), upper), quota(limit, window, extra, spaced)),
            (recase(&format!("{prefix}remaining"), upper), quota(remaining, None, extra, spaced)),
        ];
        prop_assert_eq!(
            headroom(&headers),
            Some(Headroom { limit, remaining, window: window.map(Duration::from_secs) })
        );
    }

    #[test]
    fn the_single_field_reads_back_in_any_order(
        limit in any::<u64>(),
        remaining in any::<u64>(),
        reset in any::<u64>(),
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
        quoted in any::<bool>(),
        semicolons in any::<bool>(),
        policy in proptest::option::of(any::<u64>()),
    ) {
        let q = if quoted { "\"" } else { "" };
        let params = [
            format!("limit={q}{limit}{q}"),
            format!("remaining = {remaining}"),
            format!("reset={reset}"),
        ];
        let field: Vec<&str> = order.iter().map(|&i| params[i].as_str()).collect();
        let mut headers = vec![(
            "RateLimit".to_owned(),
            field.join(if semicolons { "; " } else { ", " }),
        )];
        if let Some(w) = policy {
            headers.push(("RateLimit-Policy".to_owned(), format!("{limit};w={w}")));
        }
        prop_assert_eq!(
            headroom(&headers),
            Some(Headroom { limit, remaining, window: policy.map(Duration::from_secs) })
        );
    }
}
