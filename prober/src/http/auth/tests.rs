//! Challenges, tokens and their cache, and credentials (the docker config reader's tests are
//! in `docker_config_tests.rs`).

use std::time::{Duration, Instant, SystemTime};

use super::challenge::ChallengeError;
use super::credentials::{unsigned_jwt as jwt, TokenShape};
use super::token::{Token, TokenError};
use super::*;

fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
    Challenge::Bearer {
        realm: realm.to_owned(),
        service: service.map(str::to_owned),
        scope: scope.map(str::to_owned),
    }
}

#[test]
fn parses_docker_hubs_bearer_challenge() {
    let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
    assert_eq!(
        parse_challenges(header).unwrap(),
        vec![bearer(
            "https://auth.docker.io/token",
            Some("registry.docker.io"),
            Some("repository:library/alpine:pull")
        )]
    );
}

#[test]
fn parses_distributions_basic_challenge() {
    assert_eq!(
        parse_challenges(r#"Basic realm="Registry Realm""#).unwrap(),
        vec![Challenge::Basic {
            realm: Some("Registry Realm".to_owned())
        }]
    );
}

#[test]
fn parses_a_basic_challenge_without_parameters() {
    assert_eq!(
        parse_challenges("Basic").unwrap(),
        vec![Challenge::Basic { realm: None }]
    );
}

#[test]
fn parses_ghcrs_challenge_with_a_comma_inside_the_scope() {
    let header = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull,push""#;
    assert_eq!(
        parse_challenges(header).unwrap(),
        vec![bearer(
            "https://ghcr.io/token",
            Some("ghcr.io"),
            Some("repository:user/image:pull,push")
        )]
    );
}

#[test]
fn parses_several_challenges_in_one_header() {
    let header = r#"Negotiate, Bearer realm="https://r.example/token", service=reg , Basic realm="x", Negotiate YIIabc+/==, Digest realm="d", nonce="n""#;
    assert_eq!(
        parse_challenges(header).unwrap(),
        vec![
            Challenge::Other {
                scheme: "Negotiate".to_owned()
            },
            bearer("https://r.example/token", Some("reg"), None),
            Challenge::Basic {
                realm: Some("x".to_owned())
            },
            Challenge::Other {
                scheme: "Negotiate".to_owned()
            },
            Challenge::Other {
                scheme: "Digest".to_owned()
            },
        ]
    );
}

#[test]
fn matches_scheme_and_parameter_names_case_insensitively() {
    assert_eq!(
        parse_challenges(r#"bEARER REALM="https://a/t",Service="s",SCOPE="x""#).unwrap(),
        vec![bearer("https://a/t", Some("s"), Some("x"))]
    );
    assert_eq!(
        parse_challenges(r#"BASIC realm="r""#).unwrap(),
        vec![Challenge::Basic {
            realm: Some("r".to_owned())
        }]
    );
}

#[test]
fn unescapes_backslashes_in_quoted_strings() {
    assert_eq!(
        parse_challenges(r#"Basic realm="say \"hi\" \\ \o""#).unwrap(),
        vec![Challenge::Basic {
            realm: Some(r#"say "hi" \ o"#.to_owned())
        }]
    );
}

#[test]
fn tolerates_spaces_around_equals_and_empty_list_elements() {
    assert_eq!(
        parse_challenges(r#" , Bearer realm = "https://a/t" ,, scope=x,"#).unwrap(),
        vec![bearer("https://a/t", None, Some("x"))]
    );
}

#[test]
fn keeps_non_ascii_in_quoted_strings() {
    assert_eq!(
        parse_challenges("Basic realm=\"régistre\"").unwrap(),
        vec![Challenge::Basic {
            realm: Some("régistre".to_owned())
        }]
    );
}

#[test]
fn rejects_an_unterminated_quoted_string() {
    let err = parse_challenges(r#"Bearer realm="https://a/t"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"malformed WWW-Authenticate header "Bearer realm="https://a/t": unterminated quoted string at byte 13"#
    );
}

#[test]
fn rejects_a_bearer_challenge_without_realm() {
    let err = parse_challenges(r#"Bearer service="s""#).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"WWW-Authenticate header "Bearer service="s"": bearer challenge has no realm"#
    );
}

#[test]
fn rejects_an_empty_header() {
    let err = parse_challenges(" , ").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"WWW-Authenticate header " , " holds no challenge"#
    );
}

#[test]
fn rejects_malformed_headers_without_panicking() {
    let cases = [
        ("=realm", "expected an auth scheme at byte 0"),
        (
            "Bearer a b",
            "expected '=' after a parameter name at byte 9",
        ),
        (
            "Bearer realm=",
            "expected a token or quoted string as parameter value at byte 13",
        ),
        (
            r#"Bearer realm="a" scope="b""#,
            "expected ',' after a parameter value at byte 17",
        ),
        (
            "Bearer\"x\"",
            "expected a space after the auth scheme at byte 6",
        ),
        (
            "Basic realm=\"a\u{1}\"",
            "control character in quoted string at byte 14",
        ),
        (
            "Basic realm=\"a\\",
            "invalid escape in quoted string at byte 15",
        ),
        (
            "Basic realm=é",
            "expected a token or quoted string as parameter value at byte 12",
        ),
    ];
    for (header, problem) in cases {
        let err = parse_challenges(header).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("malformed WWW-Authenticate header \"{header}\": {problem}"),
            "header {header:?}"
        );
    }
    // Every prefix of a real header is either parsed or rejected, never a panic.
    let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull,push", Basic realm="é\"""#;
    for (cut, _) in header.char_indices() {
        let _ = parse_challenges(&header[..cut]);
    }
}

#[test]
fn cuts_a_long_header_in_an_error_to_200_characters() {
    let header = format!("Bearer realm=\"{}", "a".repeat(300));
    let ChallengeError::Malformed { header: quoted, .. } = parse_challenges(&header).unwrap_err()
    else {
        panic!("expected Malformed");
    };
    assert_eq!(quoted, format!("{}...", &header[..200]));
}

#[test]
fn formats_a_repository_scope_with_sorted_unique_actions() {
    assert_eq!(
        repository_scope(
            "library/alpine",
            &[Action::Push, Action::Pull, Action::Push]
        ),
        "repository:library/alpine:pull,push"
    );
    assert_eq!(
        repository_scope("p/x", &[Action::Delete, Action::Pull]),
        "repository:p/x:pull,delete"
    );
    assert_eq!(repository_scope("x", &[Action::Pull]), "repository:x:pull");
}

#[test]
fn encodes_service_and_each_scope_into_the_token_url() {
    let url = token_url(
        "https://auth.docker.io/token",
        Some("registry.docker.io"),
        &[
            "repository:a/b:pull,push".to_owned(),
            "repository:c d:pull".to_owned(),
        ],
    )
    .unwrap();
    assert_eq!(
        url.as_str(),
        "https://auth.docker.io/token?service=registry.docker.io\
             &scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository%3Ac+d%3Apull"
    );
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        vec![
            ("service".to_owned(), "registry.docker.io".to_owned()),
            ("scope".to_owned(), "repository:a/b:pull,push".to_owned()),
            ("scope".to_owned(), "repository:c d:pull".to_owned()),
        ]
    );
}

#[test]
fn keeps_a_query_already_in_the_realm_and_adds_nothing_when_empty() {
    assert_eq!(
        token_url("http://r:5001/auth?x=1", None, &["s".to_owned()])
            .unwrap()
            .as_str(),
        "http://r:5001/auth?x=1&scope=s"
    );
    assert_eq!(
        token_url("https://r/auth", None, &[]).unwrap().as_str(),
        "https://r/auth"
    );
}

#[test]
fn rejects_a_realm_that_is_not_an_absolute_http_url() {
    let err = token_url("/token", None, &[]).unwrap_err();
    assert_eq!(err.to_string(), "token realm \"/token\" is not a valid URL");
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("relative URL without a base".to_owned())
    );
    let err = token_url("ftp://r/token", None, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "token realm \"ftp://r/token\" is not an absolute http(s) URL"
    );
}

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
