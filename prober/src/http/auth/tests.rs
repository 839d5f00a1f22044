//! Challenges and token request URLs here; token answers, their cache and credentials in
//! `tests/tokens.rs` (the docker config reader's tests are in `docker_config_tests.rs`).

use std::time::{Duration, Instant, SystemTime};

use super::challenge::ChallengeError;
use super::credentials::{unsigned_jwt as jwt, TokenShape};
use super::token::{Token, TokenError};
use super::*;

mod tokens;

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
