//! Properties of the identity-token shape check: any text is judged without a panic and
//! without being shown, and a JWT written from a model yields the expiry its `exp` says.

use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::proptests::cases;

/// An `exp` claim as issuers write it, or as a broken one might.
fn exp() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9]{1,12}".prop_map(Value::String),
        Just(Value::Null),
        Just(json!({"exp": 1})),
    ])
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_text_is_judged_without_a_panic(token in any::<String>()) {
        let shape = token_shape(&token);
        if token.is_empty() {
            prop_assert_eq!(shape, Err(MalformedToken::Empty));
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            prop_assert_eq!(shape, Err(MalformedToken::BadCharacters));
        }
    }

    #[test]
    fn three_segments_of_any_base64url_are_judged_without_a_panic(
        segments in proptest::collection::vec("[A-Za-z0-9_=-]{0,40}", 3),
    ) {
        let _ = token_shape(&segments.join("."));
    }

    #[test]
    fn a_jwt_gives_the_expiry_its_exp_claim_says(exp in exp(), signature in "[A-Za-z0-9_-]{0,20}") {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".to_owned(), Value::from("prober"));
        if let Some(exp) = &exp {
            claims.insert("exp".to_owned(), exp.clone());
        }
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.{signature}",
            b64(&json!({"alg": "ES256", "typ": "JWT"})),
            b64(&Value::Object(claims))
        );
        let want = match &exp {
            None | Some(Value::Null) => Ok(TokenShape::Jwt { expires: None }),
            Some(Value::Number(n)) => match n.as_f64().filter(|s| s.is_finite() && *s >= 0.0) {
                Some(secs) => Ok(TokenShape::Jwt {
                    expires: Some(UNIX_EPOCH + Duration::from_secs(secs.min(253_402_300_799.0) as u64)),
                }),
                None => Err(MalformedToken::JwtExp),
            },
            Some(_) => Err(MalformedToken::JwtExp),
        };
        prop_assert_eq!(token_shape(&token), want);
    }
}
