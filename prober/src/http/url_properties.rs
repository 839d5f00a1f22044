//! Properties of URLs as reports show them: any URL a registry sends (upload Locations carry
//! its state, object-store redirects their signatures) is shown without a panic, every secret
//! parameter redacted, upload state cut short, everything else as it was.

use proptest::prelude::*;
use url::Url;

use super::*;
use crate::proptests::cases;

/// Names of parameters in registries' and object stores' URLs, redacted or not.
fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "_state",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "sig",
            "token",
            "digest",
            "n",
            "last",
            "Expires",
            "access_token",
            "Policy",
            "Key-Pair-Id",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_query_is_shown_without_a_panic_with_secrets_redacted(
        path in "(/[a-zA-Z0-9._~%-]{0,12}){0,4}",
        pairs in proptest::collection::vec((param_name(), any::<String>()), 1..5),
    ) {
        let mut url = Url::parse("http://127.0.0.1:5000").expect("a base");
        url.set_path(&path);
        url.query_pairs_mut().extend_pairs(&pairs);
        let shown = redact_url(&url);
        let back = Url::parse(&shown).expect("what is shown is a URL");
        prop_assert_eq!(back.origin(), url.origin());
        prop_assert_eq!(back.path(), url.path());
        let got: Vec<(String, String)> = back.query_pairs().into_owned().collect();
        prop_assert_eq!(got.len(), pairs.len());
        for ((name, value), (got_name, got_value)) in pairs.iter().zip(&got) {
            prop_assert_eq!(name, got_name);
            if is_secret_param(name) {
                prop_assert_eq!(got_value, "REDACTED");
            } else if name.eq_ignore_ascii_case("_state") && value.chars().count() > 12 {
                let kept: String = value.chars().take(12).collect();
                prop_assert_eq!(got_value, &format!("{kept}…"));
            } else {
                prop_assert_eq!(got_value, value);
            }
        }
    }

    #[test]
    fn any_text_joined_as_a_location_is_shown_without_a_panic(location in any::<String>()) {
        let base = Url::parse("http://127.0.0.1:5000/v2/p/blobs/uploads/").expect("a base");
        if let Ok(url) = base.join(&location) {
            let _ = redact_url(&url);
        }
    }
}
