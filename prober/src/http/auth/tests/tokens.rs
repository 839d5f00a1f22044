//! Token answers, the token cache, and credentials.

use super::*;

/// A wall clock reading from RFC 3339.
fn at(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap()
}

/// Parses a token answer as if the request went out now, at wall time `sent`.
fn parse_at(body: &[u8], sent: &str) -> (Instant, Result<Token, TokenError>) {
    let now = Instant::now();
    (now, parse_token_response(body, now, at(sent)))
}

fn parse(body: &[u8]) -> Result<Token, TokenError> {
    parse_token_response(body, Instant::now(), SystemTime::now())
}

#[test]
fn reads_a_docker_token_with_its_expiry_less_ten_percent() {
    let (now, token) = parse_at(
        br#"{"token":"abc","expires_in":300,"issued_at":"2020-01-01T00:00:00Z"}"#,
        "2020-01-01T00:00:00Z",
    );
    let token = token.unwrap();
    assert_eq!(token.value, "abc");
    assert_eq!(token.expires_at, now + Duration::from_secs(270));
}

#[test]
fn reads_an_oauth2_access_token() {
    let (now, token) = parse_at(
        br#"{"access_token":"xyz","expires_in":3600}"#,
        "2020-01-01T00:00:00Z",
    );
    let token = token.unwrap();
    assert_eq!(token.value, "xyz");
    assert_eq!(token.expires_at, now + Duration::from_secs(3240));
}

#[test]
fn issued_at_shortens_a_token_only_by_its_age_beyond_five_minutes_of_clock_skew() {
    let body = br#"{"token":"a","expires_in":3600,"issued_at":"2020-01-01T00:00:00Z"}"#;
    let lifetime = |sent: &str| {
        let (now, token) = parse_at(body, sent);
        token.unwrap().expires_at - now
    };
    // Our clock 4 minutes ahead of the service's, or behind it: skew, the full hour.
    assert_eq!(lifetime("2020-01-01T00:04:00Z"), Duration::from_secs(3240));
    assert_eq!(lifetime("2019-12-31T23:00:00Z"), Duration::from_secs(3240));
    // Issued 50 minutes before we asked (a service handing out a cached token): 15 minutes
    // (50 less 5 of skew) off the hour, then 10%.
    assert_eq!(
        lifetime("2020-01-01T00:50:00Z"),
        Duration::from_secs((3600 - 45 * 60) * 9 / 10)
    );
    // Older than its whole life: not cached at all.
    assert_eq!(lifetime("2020-01-02T00:00:00Z"), Duration::ZERO);
    // An issued_at that does not parse is "just issued".
    let (now, token) = parse_at(
        br#"{"token":"a","expires_in":100,"issued_at":"yesterday"}"#,
        "2020-01-01T00:00:00Z",
    );
    assert_eq!(token.unwrap().expires_at - now, Duration::from_secs(90));
}

#[test]
fn prefers_token_when_both_forms_are_present() {
    let token = parse(br#"{"access_token":"b","token":"a"}"#).unwrap();
    assert_eq!(token.value, "a");
    let token = parse(br#"{"token":"","access_token":"b"}"#).unwrap();
    assert_eq!(token.value, "b");
}

#[test]
fn defaults_and_raises_expiry_to_sixty_seconds() {
    for body in [
        &br#"{"token":"a"}"#[..],
        br#"{"token":"a","expires_in":5}"#,
        br#"{"token":"a","expires_in":null}"#,
        br#"{"token":"a","expires_in":0.5}"#,
        br#"{"access_token":"a"}"#,
    ] {
        let (now, token) = parse_at(body, "2020-01-01T00:00:00Z");
        assert_eq!(token.unwrap().expires_at, now + Duration::from_secs(54));
    }
}

#[test]
fn caps_expiry_at_a_day() {
    let (now, token) = parse_at(
        br#"{"token":"a","expires_in":18446744073709551615}"#,
        "2020-01-01T00:00:00Z",
    );
    assert_eq!(token.unwrap().expires_at, now + Duration::from_secs(77_760));
}

#[test]
fn rejects_token_responses_naming_the_problem_without_echoing_the_token() {
    let cases: [(&[u8], &str); 6] = [
        (b"not json", "token response is not valid JSON"),
        (b"[\"secret\"]", "token response is not a JSON object"),
        (
            b"{\"expires_in\":60}",
            "token response has neither \"token\" nor \"access_token\"",
        ),
        (
            b"{\"token\":123}",
            "\"token\" in token response is not a string",
        ),
        (
            b"{\"token\":\"secret\",\"expires_in\":\"secret\"}",
            "\"expires_in\" in token response is not a number of seconds (got a string)",
        ),
        (
            b"{\"token\":\"secret\",\"expires_in\":-5}",
            "\"expires_in\" in token response is not a number of seconds (got a negative number)",
        ),
    ];
    for (body, message) in cases {
        let err = parse(body).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert!(!format!("{err:?}").contains("secret"));
    }
}

#[test]
fn debug_of_a_token_hides_its_value() {
    let token = parse(br#"{"token":"secret"}"#).unwrap();
    let debug = format!("{token:?}");
    assert!(
        debug.starts_with("Token { value: <redacted>, expires_at: "),
        "{debug}"
    );
    assert!(!debug.contains("secret"));
}

#[test]
fn a_post_form_carries_the_grant_service_scopes_and_client_id() {
    let scopes = [
        "repository:a/b:pull,push".to_owned(),
        "registry:catalog:*".to_owned(),
    ];
    let password = Grant::Password {
        username: "u@x",
        password: "p&=+ w",
    };
    assert_eq!(
        token_form(password, Some("reg.example"), &scopes),
        "grant_type=password&username=u%40x&password=p%26%3D%2B+w&service=reg.example\
         &scope=repository%3Aa%2Fb%3Apull%2Cpush+registry%3Acatalog%3A*&client_id=registry-prober"
    );
    assert_eq!(
        token_form(Grant::RefreshToken("rt"), None, &scopes[..1]),
        "grant_type=refresh_token&refresh_token=rt&scope=repository%3Aa%2Fb%3Apull%2Cpush\
         &client_id=registry-prober"
    );
}

fn key(scope: &str) -> TokenKey {
    TokenKey {
        realm: "https://auth/token".to_owned(),
        service: Some("reg".to_owned()),
        scope: scope.to_owned(),
        credentials: 1,
    }
}

#[test]
fn caches_a_token_until_it_expires() {
    let cache = TokenCache::default();
    let now = Instant::now();
    cache.insert(
        key("a"),
        Token {
            value: "t".to_owned(),
            expires_at: now + Duration::from_secs(10),
        },
    );
    assert_eq!(cache.get(&key("a"), now), Some("t".to_owned()));
    assert_eq!(
        cache.get(&key("a"), now + Duration::from_secs(9)),
        Some("t".to_owned())
    );
    assert_eq!(cache.get(&key("b"), now), None);
    assert_eq!(cache.get(&key("a"), now + Duration::from_secs(10)), None);
    // Expired tokens are dropped, not just hidden.
    assert_eq!(cache.get(&key("a"), now), None);
    assert_eq!(format!("{cache:?}"), "TokenCache { tokens: 0 }");
}

#[test]
fn keys_tokens_by_realm_service_and_scope_and_clears() {
    let cache = TokenCache::default();
    let now = Instant::now();
    let later = now + Duration::from_secs(60);
    let other_service = TokenKey {
        service: None,
        ..key("a")
    };
    cache.insert(
        key("a"),
        Token {
            value: "1".to_owned(),
            expires_at: later,
        },
    );
    cache.insert(
        other_service.clone(),
        Token {
            value: "2".to_owned(),
            expires_at: later,
        },
    );
    assert_eq!(cache.get(&key("a"), now), Some("1".to_owned()));
    assert_eq!(cache.get(&other_service, now), Some("2".to_owned()));
    cache.clear();
    assert_eq!(cache.get(&key("a"), now), None);
    assert_eq!(cache.get(&other_service, now), None);
}

#[test]
fn a_token_bought_with_other_credentials_is_never_used_and_is_dropped() {
    let cache = TokenCache::default();
    let now = Instant::now();
    let later = now + Duration::from_secs(60);
    let token = |value: &str| Token {
        value: value.to_owned(),
        expires_at: later,
    };
    cache.insert(key("a"), token("old"));
    let renewed = |scope: &str| TokenKey {
        credentials: 2,
        ..key(scope)
    };
    assert_eq!(cache.get(&renewed("a"), now), None);
    cache.insert(renewed("b"), token("new"));
    assert_eq!(cache.get(&renewed("b"), now), Some("new".to_owned()));
    assert_eq!(
        cache.get(&key("a"), now),
        None,
        "dropped when new ones came"
    );
}

#[test]
fn debug_and_display_of_credentials_hide_the_secret() {
    let credentials = Credentials::new("u", "hunter2");
    assert_eq!(
        format!("{credentials:?}"),
        "Credentials { username: \"u\", password: <redacted> }"
    );
    assert_eq!(credentials.to_string(), "user \"u\" (password redacted)");
    assert_eq!(credentials.password(), Some("hunter2"));
    assert_eq!(credentials.refresh_token(), None);
    let token = Credentials::identity_token("<token>", "refresh-me");
    assert_eq!(
        format!("{token:?}"),
        "Credentials { username: \"<token>\", identity_token: <redacted> }"
    );
    assert_eq!(token.to_string(), "an identity token (redacted)");
    assert_eq!(token.refresh_token(), Some("refresh-me"));
    assert_eq!(token.password(), None);
}

#[test]
fn builds_a_basic_authorization_header_but_not_from_an_identity_token() {
    assert_eq!(
        Credentials::new("aladdin", "open sesame").basic_header(),
        Some("Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_owned())
    );
    assert_eq!(Credentials::identity_token("u", "t").basic_header(), None);
}

#[test]
fn reads_the_expiry_of_a_jwt_and_nothing_from_an_opaque_token() {
    assert_eq!(
        token_shape(&jwt(r#"{"sub":"x","exp":1700000000}"#)),
        Ok(TokenShape::Jwt {
            expires: Some(at("2023-11-14T22:13:20Z"))
        })
    );
    assert_eq!(
        token_shape(&jwt(r#"{"sub":"x"}"#)),
        Ok(TokenShape::Jwt { expires: None })
    );
    // ECR's and Artifact Registry's tokens, and one that merely has two dots.
    for opaque in [
        "ya29.a0AfH6SMBx-long_opaque",
        "eyJwYXlsb2FkIjoi.abc",
        "a.b.c",
    ] {
        assert_eq!(token_shape(opaque), Ok(TokenShape::Opaque), "{opaque}");
    }
    let expiring = Credentials::identity_token("<token>", jwt(r#"{"exp":1700000000}"#));
    assert_eq!(expiring.expiry(), Some(at("2023-11-14T22:13:20Z")));
    assert_eq!(Credentials::new("AWS", "opaque").expiry(), None);
}

#[test]
fn a_malformed_token_is_named_without_being_shown() {
    let header = jwt("{}");
    let header = header.split('.').next().unwrap();
    let cases = [
        ("", MalformedToken::Empty, "is empty"),
        (
            "secret part\n",
            MalformedToken::BadCharacters,
            "contains whitespace, control or non-ASCII characters",
        ),
        (
            &format!("{header}.c2VjcmV0!.sig") as &str,
            MalformedToken::JwtPayload,
            "looks like a JWT but its payload is not base64url-encoded JSON",
        ),
        (
            &jwt(r#"{"exp":"secret"}"#),
            MalformedToken::JwtExp,
            "is a JWT whose \"exp\" is not a number of seconds",
        ),
    ];
    for (token, expected, message) in cases {
        let err = token_shape(token).unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(err.to_string(), message);
        assert!(!format!("{err:?}{err}").contains("secret"));
    }
}
