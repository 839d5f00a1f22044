//! Properties of the error envelope reader and the failure it becomes: any body is read
//! without a panic into codes and a message that stay short however big the body; an envelope
//! written from a model gives back its codes and messages; the reason is the first code the
//! prober knows, else the status class.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::proptests::cases;

/// How many characters a failure message may have past its method and URL, whatever the
/// body held.
const MAX_FAILURE_TAIL: usize = 1024;

fn code() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        4 => prop::sample::select(vec![
            "BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "DENIED", "TOOMANYREQUESTS", "NAME_UNKNOWN",
            "DIGEST_INVALID", "SOMETHING_NEW", "",
        ]).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        // Long ones, cheaply: a generated string of thousands of characters is slow to draw.
        1 => ("[A-Z_]", 200usize..2000).prop_map(|(c, n)| Value::from(c.repeat(n))),
    ])
}

fn message() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        any::<String>().prop_map(Value::from),
        "[ \t\na-z]{0,40}".prop_map(Value::from),
        ("[a-z] ", 140usize..300).prop_map(|(c, n)| Value::from(c.repeat(n))),
    ])
}

fn entry() -> impl Strategy<Value = Value> {
    (code(), message(), proptest::option::of(any::<i32>())).prop_map(|(code, message, detail)| {
        let mut e = serde_json::Map::new();
        if let Some(c) = code {
            e.insert("code".into(), c);
        }
        if let Some(m) = message {
            e.insert("message".into(), m);
        }
        if let Some(d) = detail {
            e.insert("detail".into(), json!({ "n": d }));
        }
        Value::Object(e)
    })
}

fn assert_short(errors: &RegistryErrors) {
    if let Some(m) = &errors.message {
        assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 1, "{m}");
    }
    assert!(errors.codes.len() <= MAX_CODES, "{:?}", errors.codes);
    for c in &errors.codes {
        assert!(c.chars().count() <= MAX_CODE_CHARS + 1, "{c}");
    }
}

/// Rate-limit headers, kept, and others, dropped.
const KEPT: [&str; 5] = [
    "ratelimit",
    "ratelimit-limit",
    "x-ratelimit-remaining",
    "retry-after",
    "docker-ratelimit-source",
];
const OTHERS: [&str; 2] = ["content-type", "x-other"];

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_body_is_read_into_short_codes_and_message(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        assert_short(&parse_error_body(&body));
    }

    #[test]
    fn an_envelope_gives_back_its_codes_and_messages(
        entries in proptest::collection::vec(entry(), 0..6),
        padding in "[ \n\t]{0,3}",
    ) {
        let body = format!("{padding}{}", json!({ "errors": entries }));
        let got = parse_error_body(body.as_bytes());
        assert_short(&got);
        let text = |v: Option<&Value>| match v {
            None => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        let fields: Option<Vec<(String, String)>> = entries
            .iter()
            .map(|e| Some((text(e.get("code"))?, text(e.get("message"))?)))
            .collect();
        match fields {
            // Every code and message a string: an envelope.
            Some(fields) if !fields.is_empty() => {
                let codes: Vec<String> = fields.iter().map(|(c, _)| c.clone()).filter(|c| !c.is_empty()).collect();
                let want: Vec<String> = codes.iter().take(MAX_CODES).map(|c| truncate(c, MAX_CODE_CHARS)).collect();
                prop_assert_eq!(&got.codes, &want);
                let messages: Vec<&str> = fields.iter().map(|(_, m)| m.as_str()).filter(|m| !m.is_empty()).collect();
                let want = (!messages.is_empty()).then(|| truncate(&messages.join("; "), MAX_MESSAGE_CHARS));
                prop_assert_eq!(got.message, want);
            }
            // Not an envelope (or an empty one): the body as short text, no codes.
            _ => {
                prop_assert!(got.codes.is_empty());
                let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
                prop_assert_eq!(got.message, Some(truncate(&collapsed, MAX_MESSAGE_CHARS)));
            }
        }
    }

    #[test]
    fn a_failure_names_the_request_and_stays_short(
        status in 100u16..1000,
        entries in proptest::collection::vec(entry(), 0..20),
        not_found in prop::sample::select(vec![Reason::BlobUnknown, Reason::ManifestUnknown, Reason::Protocol]),
    ) {
        let status = StatusCode::from_u16(status).expect("100..1000 is a status");
        let body = json!({ "errors": entries }).to_string();
        let errors = parse_error_body(body.as_bytes());
        let url = "http://127.0.0.1:5000/v2/p/manifests/t";
        let f = failure_for_status(&Method::GET, url, status, &[StatusCode::OK], &errors, not_found);
        let head = format!("GET {url}: got {status}, expected 200");
        prop_assert!(f.message.starts_with(&head), "{}", f.message);
        let tail = f.message.chars().count() - head.chars().count();
        prop_assert!(tail <= MAX_FAILURE_TAIL, "{} characters past the head", tail);
        prop_assert_eq!(f.status, Some(status.as_u16()));
        let known = errors.codes.iter().find_map(|c| Reason::from_registry_code(c));
        if let Some(reason) = known {
            prop_assert_eq!(f.reason, reason);
        } else {
            prop_assert_eq!(f.reason, reason_for_status(status, not_found));
        }
    }

    #[test]
    fn only_rate_limit_headers_are_kept_whatever_their_bytes(
        headers in proptest::collection::vec(
            (
                prop::sample::select(KEPT.iter().chain(&OTHERS).copied().collect::<Vec<_>>()),
                // Visible ASCII, obs-text and tab: every byte a header value may hold.
                proptest::collection::vec(any::<u8>(), 0..30)
                    .prop_map(|v| v.into_iter().map(|b| if b < 32 || b == 127 { b'\t' } else { b }).collect::<Vec<u8>>()),
            ),
            0..8,
        ),
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in &headers {
            let value = HeaderValue::from_bytes(value).expect("visible bytes, tab and obs-text");
            map.append(HeaderName::from_static(name), value);
        }
        let kept = rate_limit_headers(&map);
        let want = headers.iter().filter(|(n, _)| KEPT.contains(n)).count();
        prop_assert_eq!(kept.len(), want);
    }
}
