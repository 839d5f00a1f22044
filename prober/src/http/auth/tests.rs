use std::time::{Duration, Instant};

use super::challenge::ChallengeError;
use super::credentials::DockerConfigError;
use super::token::Token;
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

#[test]
fn reads_a_docker_token_with_its_expiry_less_ten_percent() {
    let now = Instant::now();
    let token = parse_token_response(
        br#"{"token":"abc","expires_in":300,"issued_at":"2020-01-01T00:00:00Z"}"#,
        now,
    )
    .unwrap();
    assert_eq!(token.value, "abc");
    assert_eq!(token.expires_at, now + Duration::from_secs(270));
}

#[test]
fn reads_an_oauth2_access_token() {
    let now = Instant::now();
    let token = parse_token_response(br#"{"access_token":"xyz","expires_in":3600}"#, now).unwrap();
    assert_eq!(token.value, "xyz");
    assert_eq!(token.expires_at, now + Duration::from_secs(3240));
}

#[test]
fn prefers_token_when_both_forms_are_present() {
    let token =
        parse_token_response(br#"{"access_token":"b","token":"a"}"#, Instant::now()).unwrap();
    assert_eq!(token.value, "a");
    let token =
        parse_token_response(br#"{"token":"","access_token":"b"}"#, Instant::now()).unwrap();
    assert_eq!(token.value, "b");
}

#[test]
fn defaults_and_raises_expiry_to_sixty_seconds() {
    let now = Instant::now();
    for body in [
        &br#"{"token":"a"}"#[..],
        br#"{"token":"a","expires_in":5}"#,
        br#"{"token":"a","expires_in":null}"#,
        br#"{"token":"a","expires_in":0.5}"#,
    ] {
        assert_eq!(
            parse_token_response(body, now).unwrap().expires_at,
            now + Duration::from_secs(54)
        );
    }
}

#[test]
fn caps_expiry_at_a_day() {
    let now = Instant::now();
    let token =
        parse_token_response(br#"{"token":"a","expires_in":18446744073709551615}"#, now).unwrap();
    assert_eq!(token.expires_at, now + Duration::from_secs(77_760));
}

#[test]
fn rejects_token_responses_naming_the_problem_without_echoing_the_token() {
    let now = Instant::now();
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
        let err = parse_token_response(body, now).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert!(!format!("{err:?}").contains("secret"));
    }
}

#[test]
fn debug_of_a_token_hides_its_value() {
    let token = parse_token_response(br#"{"token":"secret"}"#, Instant::now()).unwrap();
    let debug = format!("{token:?}");
    assert!(
        debug.starts_with("Token { value: <redacted>, expires_at: "),
        "{debug}"
    );
    assert!(!debug.contains("secret"));
}

fn key(scope: &str) -> TokenKey {
    TokenKey {
        realm: "https://auth/token".to_owned(),
        service: Some("reg".to_owned()),
        scope: scope.to_owned(),
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
fn debug_and_display_of_credentials_hide_the_password() {
    let credentials = Credentials::new("u", "hunter2");
    assert_eq!(
        format!("{credentials:?}"),
        "Credentials { username: \"u\", password: <redacted> }"
    );
    assert_eq!(credentials.to_string(), "user \"u\" (password redacted)");
    assert_eq!(credentials.password(), "hunter2");
}

#[test]
fn builds_a_basic_authorization_header() {
    assert_eq!(
        Credentials::new("aladdin", "open sesame").basic_header(),
        "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
}

fn config(json: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), json).unwrap();
    file
}

fn creds(json: &str, host: &str) -> Result<Option<Credentials>, DockerConfigError> {
    docker_config_credentials(config(json).path(), host)
}

/// The error message with the temp file's path replaced by "PATH".
fn message(json: &str, host: &str) -> String {
    let file = config(json);
    let err = docker_config_credentials(file.path(), host).unwrap_err();
    err.to_string()
        .replace(&format!("{:?}", file.path()), "PATH")
}

#[test]
fn reads_inline_base64_auth() {
    // "user:pa:ss" — the password keeps its colon.
    let json = r#"{"auths":{"registry.example:5000":{"auth":"dXNlcjpwYTpzcw=="}}}"#;
    assert_eq!(
        creds(json, "registry.example:5000").unwrap(),
        Some(Credentials::new("user", "pa:ss"))
    );
}

#[test]
fn reads_base64_auth_without_padding() {
    let json = r#"{"auths":{"r":{"auth":"dXNlcjpwYTpzcw"}}}"#;
    assert_eq!(
        creds(json, "r").unwrap(),
        Some(Credentials::new("user", "pa:ss"))
    );
}

#[test]
fn reads_username_and_password_fields() {
    let json = r#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#;
    assert_eq!(
        creds(json, "r.example").unwrap(),
        Some(Credentials::new("u", "p"))
    );
}

#[test]
fn matches_url_keys_with_scheme_and_path_and_prefers_the_exact_key() {
    for key in [
        "https://r.example",
        "http://r.example",
        "https://r.example/v1/",
        "r.example/v2/",
        "R.EXAMPLE",
    ] {
        let json = format!(r#"{{"auths":{{"{key}":{{"username":"u","password":"p"}}}}}}"#);
        assert_eq!(
            creds(&json, "r.example").unwrap(),
            Some(Credentials::new("u", "p")),
            "key {key}"
        );
    }
    let json = r#"{"auths":{
            "https://r.example/v1/":{"username":"a","password":"1"},
            "https://r.example":{"username":"b","password":"2"},
            "r.example":{"username":"c","password":"3"}}}"#;
    assert_eq!(
        creds(json, "r.example").unwrap(),
        Some(Credentials::new("c", "3"))
    );
}

#[test]
fn does_not_match_another_host_or_port() {
    let json = r#"{"auths":{"r.example:5000":{"username":"u","password":"p"},
                                 "r.example.evil":{"username":"u","password":"p"}}}"#;
    assert_eq!(creds(json, "r.example").unwrap(), None);
}

#[test]
fn finds_docker_hub_credentials_under_the_legacy_index_key() {
    let json = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#;
    assert_eq!(
        creds(json, "registry-1.docker.io").unwrap(),
        Some(Credentials::new("u", "p"))
    );
}

#[test]
fn returns_none_when_no_entry_matches() {
    assert_eq!(
        creds(r#"{"auths":{"other":{"auth":"dTpw"}}}"#, "r").unwrap(),
        None
    );
    assert_eq!(creds("{}", "r").unwrap(), None);
}

#[test]
fn refuses_a_creds_store_when_no_inline_auth_matches() {
    let expected = "docker config PATH: credentials for \"r.example\" are kept by credential \
                        helper \"desktop\", and credential helpers are not supported; put the \
                        credentials inline in \"auths\" or use username/password_file";
    assert_eq!(
        message(r#"{"credsStore":"desktop"}"#, "r.example"),
        expected
    );
    // `docker login` with a store leaves an empty entry behind.
    assert_eq!(
        message(
            r#"{"auths":{"r.example":{}},"credsStore":"desktop"}"#,
            "r.example"
        ),
        expected
    );
}

#[test]
fn prefers_inline_auth_over_a_creds_store() {
    let json = r#"{"auths":{"r":{"auth":"dTpw"}},"credsStore":"desktop"}"#;
    assert_eq!(creds(json, "r").unwrap(), Some(Credentials::new("u", "p")));
}

#[test]
fn refuses_a_cred_helper_for_this_host_only() {
    let json = r#"{"credHelpers":{"https://r.example":"ecr-login"}}"#;
    assert_eq!(
        message(json, "r.example"),
        "docker config PATH: credentials for \"r.example\" are kept by credential helper \
             \"ecr-login\", and credential helpers are not supported; put the credentials \
             inline in \"auths\" or use username/password_file"
    );
    assert_eq!(creds(json, "other.example").unwrap(), None);
}

#[test]
fn rejects_bad_base64_without_echoing_it() {
    let json = r#"{"auths":{"r":{"auth":"c2VjcmV0!!"}}}"#;
    let msg = message(json, "r");
    assert_eq!(
        msg,
        "docker config PATH: auths[\"r\"].auth is not valid base64"
    );
    let file = config(json);
    let err = docker_config_credentials(file.path(), "r").unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
    assert!(!format!("{err:?}").contains("c2VjcmV0"));
}

#[test]
fn rejects_auth_without_a_colon() {
    // base64 of "nocolon"
    assert_eq!(
        message(r#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#, "r"),
        "docker config PATH: auths[\"r\"].auth does not decode to \"user:password\""
    );
}

#[test]
fn refuses_an_identity_token() {
    let json = r#"{"auths":{"r":{"auth":"PHRva2VuPjo=","identitytoken":"secret"}}}"#;
    let msg = message(json, "r");
    assert_eq!(
        msg,
        "docker config PATH: auths[\"r\"] holds an identity token, which is not supported; \
             put a username and password there instead"
    );
}

#[test]
fn rejects_an_entry_with_a_username_but_no_password() {
    assert_eq!(
        message(r#"{"auths":{"r":{"username":"u"}}}"#, "r"),
        "docker config PATH: auths[\"r\"] has \"username\" but no \"password\""
    );
}

#[test]
fn rejects_an_empty_entry_without_a_helper() {
    assert_eq!(
        message(r#"{"auths":{"r":{}}}"#, "r"),
        "docker config PATH: auths[\"r\"] has neither \"auth\" nor \"username\" and \"password\""
    );
}

#[test]
fn reports_invalid_json_with_its_position_in_the_source() {
    let file = config("{\n  \"auths\": {,}\n}");
    let err = docker_config_credentials(file.path(), "r").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("docker config {:?} is not valid JSON", file.path())
    );
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("key must be a string at line 2 column 13".to_owned())
    );
}

#[test]
fn rejects_auths_that_is_not_an_object() {
    assert_eq!(
        message(r#"{"auths":[]}"#, "r"),
        "docker config PATH: \"auths\" is not an object"
    );
}

#[test]
fn reports_an_unreadable_file_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.json");
    let err = docker_config_credentials(&path, "r").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read docker config {path:?}")
    );
    assert!(matches!(err, DockerConfigError::Unreadable { .. }));
}
