//! Properties of the token service's answer and of the token request: any bytes are read or
//! refused without a panic and without quoting a secret; answers written from a model give
//! the token and a lifetime within the bounds the docker token spec and our margin set; the
//! request URL and form carry service and scopes back out exactly as put in.

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::proptests::cases;

/// A field of a token answer: absent, or one of the JSON values a service might put there.
fn field(secret: impl Strategy<Value = String>) -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        4 => secret.prop_map(Value::String),
        1 => Just(Value::String(String::new())),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(json!(["x"])),
    ])
}

fn expires_in() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        any::<u64>().prop_map(Value::from),
        (0u64..100_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::Null),
        "[0-9a-z]{0,5}".prop_map(Value::String),
    ])
}

/// An RFC 3339 time near `sent_wall`, one with random digits, or garbage.
fn issued_at() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        (-200_000i64..200_000).prop_map(|offset| offset.to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        "[ -~]{0,30}",
    ])
}

/// The wall clock at which the request went out: 2020-01-01T00:00:00Z.
fn sent_wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800)
}

/// An `issued_at` drawn as an offset in seconds is written as the time `sent_wall + offset`.
fn written_issued_at(drawn: &str) -> String {
    match drawn.parse::<i64>() {
        Ok(offset) => {
            let at = if offset >= 0 {
                sent_wall() + Duration::from_secs(offset.unsigned_abs())
            } else {
                sent_wall() - Duration::from_secs(offset.unsigned_abs())
            };
            humantime::format_rfc3339(at).to_string()
        }
        Err(_) => drawn.to_owned(),
    }
}

/// The token a model answer holds, as the docker token spec and OAuth2 have it.
fn model_token(object: &Map<String, Value>) -> Option<&str> {
    ["token", "access_token"]
        .iter()
        .map(|f| object.get(*f))
        .find_map(|v| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_bytes_are_read_or_refused_without_a_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let sent = Instant::now();
        if let Ok(token) = parse_token_response(&body, sent, sent_wall()) {
            prop_assert!(!token.value.is_empty());
        }
    }

    #[test]
    fn an_answer_gives_its_token_for_a_bounded_lifetime_and_never_quotes_a_secret(
        token in field("s3cr3t[A-Za-z0-9._-]{4,40}"),
        access_token in field("s3cr3t[A-Za-z0-9._-]{4,40}"),
        expires in expires_in(),
        issued in issued_at(),
        extra in proptest::collection::btree_map("[a-z_]{1,8}", any::<i32>(), 0..3),
    ) {
        let mut object = Map::new();
        for (k, v) in extra {
            object.insert(k, Value::from(v));
        }
        let fields = [("token", &token), ("access_token", &access_token), ("expires_in", &expires)];
        for (name, value) in fields {
            if let Some(v) = value {
                object.insert(name.to_owned(), v.clone());
            }
        }
        if let Some(drawn) = &issued {
            object.insert("issued_at".to_owned(), Value::String(written_issued_at(drawn)));
        }
        let body = serde_json::to_vec(&Value::Object(object.clone())).expect("serializes");
        let sent = Instant::now();
        match parse_token_response(&body, sent, sent_wall()) {
            Ok(t) => {
                prop_assert_eq!(Some(t.value.as_str()), model_token(&object));
                prop_assert!(t.expires_at >= sent);
                prop_assert!(t.expires_at <= sent + Duration::from_secs(24 * 3600) * 9 / 10);
                let secs = object.get("expires_in").and_then(Value::as_u64);
                if issued.is_none() {
                    if let Some(secs) = secs {
                        let lifetime = Duration::from_secs(secs.clamp(60, 24 * 3600));
                        prop_assert_eq!(t.expires_at, sent + lifetime * 9 / 10);
                    }
                }
            }
            Err(e) => {
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains("s3cr3t"), "{}", shown);
                // A refused answer is one without a usable token, or with a lifetime that is
                // not a number of seconds.
                let bad_lifetime = matches!(e, TokenError::BadExpiresIn { .. });
                prop_assert!(model_token(&object).is_none() || bad_lifetime || matches!(e, TokenError::TokenNotString { .. }), "{}", shown);
            }
        }
    }

    #[test]
    fn json_nested_without_end_is_refused_not_a_stack_overflow(depth in 1usize..20_000) {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert!(parse_token_response(body.as_bytes(), Instant::now(), sent_wall()).is_err());
    }

    #[test]
    fn any_realm_is_taken_or_refused_without_a_panic(realm in any::<String>(), service in any::<String>()) {
        let _ = token_url(&realm, Some(&service), &[]);
    }

    #[test]
    fn the_token_url_carries_the_realms_query_service_and_scopes_back_out(
        realm in "https?://[a-z][a-z0-9-]{0,11}(\\.[a-z]{2,4})?(:[1-9][0-9]{0,3})?(/[a-zA-Z0-9._~-]{0,10}){0,3}",
        query in proptest::collection::vec(("[a-z]{1,5}", "[a-zA-Z0-9 &=%+]{0,8}"), 0..3),
        service in proptest::option::of(any::<String>()),
        scopes in proptest::collection::vec(any::<String>(), 0..3),
    ) {
        let mut realm = url::Url::parse(&realm).expect("a generated URL parses");
        if !query.is_empty() {
            realm.query_pairs_mut().extend_pairs(&query);
        }
        let url = token_url(realm.as_str(), service.as_deref(), &scopes).expect("an http realm");
        prop_assert_eq!(url.origin(), realm.origin());
        prop_assert_eq!(url.path(), realm.path());
        let mut want: Vec<(String, String)> = query.clone();
        want.extend(service.iter().map(|s| ("service".to_owned(), s.clone())));
        want.extend(scopes.iter().map(|s| ("scope".to_owned(), s.clone())));
        let got: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn the_token_form_carries_every_field_back_out(
        username in any::<String>(),
        password in any::<String>(),
        refresh in proptest::option::of(any::<String>()),
        service in proptest::option::of(any::<String>()),
        scopes in proptest::collection::vec("[ -~]{1,20}", 0..3),
    ) {
        let grant = match &refresh {
            Some(token) => Grant::RefreshToken(token),
            None => Grant::Password { username: &username, password: &password },
        };
        let form = token_form(grant, service.as_deref(), &scopes);
        let got: Vec<(String, String)> =
            url::form_urlencoded::parse(form.as_bytes()).into_owned().collect();
        let mut want = match &refresh {
            Some(token) => vec![
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), token.clone()),
            ],
            None => vec![
                ("grant_type".to_owned(), "password".to_owned()),
                ("username".to_owned(), username.clone()),
                ("password".to_owned(), password.clone()),
            ],
        };
        want.extend(service.iter().map(|s| ("service".to_owned(), s.clone())));
        if !scopes.is_empty() {
            want.push(("scope".to_owned(), scopes.join(" ")));
        }
        want.push(("client_id".to_owned(), CLIENT_ID.to_owned()));
        prop_assert_eq!(got, want);
    }
}
