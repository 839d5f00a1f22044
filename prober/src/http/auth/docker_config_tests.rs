//! The docker config.json reader: key forms, the order docker asks helpers and inline entries
//! in, identity tokens, and errors that name the problem without showing a secret.

use std::path::Path;

use super::*;
use crate::http::auth::Credentials;

fn entry(json: &str, host: &str) -> Result<Option<DockerConfigEntry>, DockerConfigError> {
    parse_docker_config(json.as_bytes(), Path::new("config.json"), host)
}

/// The inline credentials the file holds for `host`.
fn creds(json: &str, host: &str) -> Option<Credentials> {
    match entry(json, host).unwrap() {
        Some(DockerConfigEntry::Inline { credentials, .. }) => Some(credentials),
        None => None,
        Some(other) => panic!("not inline: {other:?}"),
    }
}

fn helper(json: &str, host: &str) -> (String, String) {
    match entry(json, host).unwrap() {
        Some(DockerConfigEntry::Helper { helper, named_by }) => (helper, named_by),
        other => panic!("not a helper: {other:?}"),
    }
}

fn message(json: &str, host: &str) -> String {
    entry(json, host).unwrap_err().to_string()
}

#[test]
fn reads_inline_base64_auth() {
    // "user:pa:ss": the password keeps its colon.
    let json = r#"{"auths":{"registry.example:5000":{"auth":"dXNlcjpwYTpzcw=="}}}"#;
    assert_eq!(
        creds(json, "registry.example:5000"),
        Some(Credentials::new("user", "pa:ss"))
    );
    assert_eq!(
        entry(json, "registry.example:5000").unwrap(),
        Some(DockerConfigEntry::Inline {
            key: "registry.example:5000".to_owned(),
            credentials: Credentials::new("user", "pa:ss")
        })
    );
}

#[test]
fn reads_base64_auth_without_padding() {
    let json = r#"{"auths":{"r":{"auth":"dXNlcjpwYTpzcw"}}}"#;
    assert_eq!(creds(json, "r"), Some(Credentials::new("user", "pa:ss")));
}

#[test]
fn reads_username_and_password_fields() {
    let json = r#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#;
    assert_eq!(creds(json, "r.example"), Some(Credentials::new("u", "p")));
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
            creds(&json, "r.example"),
            Some(Credentials::new("u", "p")),
            "key {key}"
        );
    }
    let json = r#"{"auths":{
            "https://r.example/v1/":{"username":"a","password":"1"},
            "https://r.example":{"username":"b","password":"2"},
            "r.example":{"username":"c","password":"3"}}}"#;
    assert_eq!(creds(json, "r.example"), Some(Credentials::new("c", "3")));
}

#[test]
fn does_not_match_another_host_or_port() {
    let json = r#"{"auths":{"r.example:5000":{"username":"u","password":"p"},
                                 "r.example.evil":{"username":"u","password":"p"}}}"#;
    assert_eq!(creds(json, "r.example"), None);
}

#[test]
fn finds_docker_hub_credentials_under_the_legacy_index_key() {
    let json = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#;
    assert_eq!(
        creds(json, "registry-1.docker.io"),
        Some(Credentials::new("u", "p"))
    );
}

#[test]
fn asks_helpers_about_the_server_docker_login_stored() {
    assert_eq!(helper_server("127.0.0.1:5000"), "127.0.0.1:5000");
    assert_eq!(
        helper_server("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        helper_server("registry-1.docker.io"),
        "https://index.docker.io/v1/"
    );
}

#[test]
fn returns_none_when_no_entry_matches() {
    assert_eq!(creds(r#"{"auths":{"other":{"auth":"dTpw"}}}"#, "r"), None);
    assert_eq!(creds("{}", "r"), None);
}

#[test]
fn a_creds_store_keeps_what_is_not_inline() {
    let store = ("desktop".to_owned(), "credsStore".to_owned());
    assert_eq!(helper(r#"{"credsStore":"desktop"}"#, "r.example"), store);
    // `docker login` with a store leaves an empty entry behind.
    assert_eq!(
        helper(
            r#"{"auths":{"r.example":{}},"credsStore":"desktop"}"#,
            "r.example"
        ),
        store
    );
    // An empty store is no store.
    assert_eq!(creds(r#"{"credsStore":""}"#, "r.example"), None);
}

#[test]
fn prefers_inline_auth_over_a_creds_store() {
    let json = r#"{"auths":{"r":{"auth":"dTpw"}},"credsStore":"desktop"}"#;
    assert_eq!(creds(json, "r"), Some(Credentials::new("u", "p")));
}

#[test]
fn a_cred_helper_for_the_host_comes_first_as_in_docker() {
    let json = r#"{"credHelpers":{"https://r.example":"ecr-login"},
                   "auths":{"r.example":{"auth":"dTpw"}},
                   "credsStore":"desktop"}"#;
    assert_eq!(
        helper(json, "r.example"),
        (
            "ecr-login".to_owned(),
            "credHelpers[\"https://r.example\"]".to_owned()
        )
    );
    // For another host, that helper is not asked: the store is.
    assert_eq!(helper(json, "other.example").1, "credsStore");
}

#[test]
fn refuses_a_helper_name_that_would_run_something_else() {
    for name in ["../../bin/sh", "", "-rf", "pass word"] {
        let json = format!(r#"{{"credHelpers":{{"r":"{name}"}}}}"#);
        assert_eq!(
            message(&json, "r"),
            format!(
                "docker config \"config.json\": credHelpers[\"r\"] names helper {name:?}, which \
                 is not a helper name (letters, digits, '.', '_' and '-', the suffix of \
                 docker-credential-<name>)"
            )
        );
    }
    assert_eq!(
        message(r#"{"credsStore":7}"#, "r"),
        "docker config \"config.json\": \"credsStore\" is not a string"
    );
}

#[test]
fn rejects_bad_base64_without_echoing_it() {
    let json = r#"{"auths":{"r":{"auth":"c2VjcmV0!!"}}}"#;
    let err = entry(json, "r").unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker config \"config.json\": auths[\"r\"].auth is not valid base64"
    );
    assert!(std::error::Error::source(&err).is_none());
    assert!(!format!("{err:?}").contains("c2VjcmV0"));
}

#[test]
fn rejects_auth_without_a_colon() {
    // base64 of "nocolon"
    assert_eq!(
        message(r#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#, "r"),
        "docker config \"config.json\": auths[\"r\"].auth does not decode to \"user:password\""
    );
}

#[test]
fn reads_an_identity_token_with_the_user_docker_login_stored() {
    // ACR: "auth" is base64 of "00000000-0000-0000-0000-000000000000:".
    let json = r#"{"auths":{"r":{"auth":"MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==",
                                "identitytoken":"refresh-me"}}}"#;
    let credentials = creds(json, "r").unwrap();
    assert_eq!(credentials.refresh_token(), Some("refresh-me"));
    assert_eq!(credentials.username, "00000000-0000-0000-0000-000000000000");
    // Without "auth", the user is the placeholder helpers use.
    let json = r#"{"auths":{"r":{"identitytoken":"refresh-me"}}}"#;
    assert_eq!(
        creds(json, "r"),
        Some(Credentials::identity_token("<token>", "refresh-me"))
    );
}

#[test]
fn rejects_a_malformed_identity_token_without_showing_it() {
    let json = r#"{"auths":{"r":{"identitytoken":"secret\nline"}}}"#;
    let err = entry(json, "r").unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker config \"config.json\": auths[\"r\"].identitytoken contains whitespace, control \
         or non-ASCII characters"
    );
    assert!(!format!("{err:?}").contains("secret"));
}

#[test]
fn rejects_an_entry_with_a_username_but_no_password() {
    assert_eq!(
        message(r#"{"auths":{"r":{"username":"u"}}}"#, "r"),
        "docker config \"config.json\": auths[\"r\"] has \"username\" but no \"password\""
    );
}

#[test]
fn rejects_an_empty_entry_without_a_helper() {
    assert_eq!(
        message(r#"{"auths":{"r":{}}}"#, "r"),
        "docker config \"config.json\": auths[\"r\"] has neither \"auth\" nor \"username\" and \
         \"password\" nor \"identitytoken\", and no credential helper is named for it"
    );
}

#[test]
fn reports_invalid_json_with_its_position_in_the_source() {
    let err = entry("{\n  \"auths\": {,}\n}", "r").unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker config \"config.json\" is not valid JSON"
    );
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("key must be a string at line 2 column 13".to_owned())
    );
}

#[test]
fn rejects_sections_that_are_not_objects() {
    assert_eq!(
        message(r#"{"auths":[]}"#, "r"),
        "docker config \"config.json\": \"auths\" is not an object"
    );
    assert_eq!(
        message(r#"{"credHelpers":"pass"}"#, "r"),
        "docker config \"config.json\": \"credHelpers\" is not an object"
    );
}

#[test]
fn reports_an_unreadable_file_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.json");
    let err = read_docker_config(&path, "r").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read docker config {path:?}")
    );
    assert!(matches!(err, DockerConfigError::Unreadable { .. }));
}

mod properties {
    //! Any bytes are read or refused without a panic and without showing a secret; entries
    //! written in every key form docker has used give back the credentials put in, the best
    //! key form wins, and another host's entry is never taken.

    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::proptests::cases;

    /// The key forms of `host`, best first, as `key_rank` orders them.
    fn key_forms(host: &str) -> [String; 6] {
        [
            host.to_owned(),
            format!("https://{host}"),
            format!("http://{host}"),
            format!("{host}/v1/"),
            format!("https://{host}/v2/"),
            format!("http://{host}/v1/"),
        ]
    }

    fn host() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}(\\.[a-z]{2,3})?(:[0-9]{1,5})?"
    }

    /// A base64 "auth" as tools write it: padded or not, with surrounding whitespace or not.
    fn auth(user: &str, password: &str, unpadded: bool, spaced: bool) -> String {
        let mut b64 = STANDARD.encode(format!("{user}:{password}"));
        if unpadded {
            b64 = b64.trim_end_matches('=').to_owned();
        }
        if spaced {
            b64 = format!(" {b64}\n");
        }
        b64
    }

    fn secret_values() -> impl Strategy<Value = Value> {
        prop_oneof![
            "s3cr3t[ -~]{0,20}".prop_map(Value::String),
            "s3cr3t[^\"]{0,10}".prop_map(|s| json!([s])),
            "s3cr3t!!".prop_map(|s| json!({ "nested": s })),
            any::<i64>().prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn any_bytes_are_read_or_refused_without_a_panic(
            text in proptest::collection::vec(any::<u8>(), 0..300),
            host in host(),
        ) {
            let _ = parse_docker_config(&text, Path::new("c.json"), &host);
        }

        #[test]
        fn an_entry_in_any_key_form_gives_back_the_credentials_put_in(
            host in host(),
            form in 0usize..6,
            user in "[^:]{0,12}",
            password in any::<String>(),
            fields in any::<bool>(),
            unpadded in any::<bool>(),
            spaced in any::<bool>(),
        ) {
            let key = key_forms(&host)[form].clone();
            let entry = if fields && !user.is_empty() && !password.is_empty() {
                json!({ "username": user, "password": password })
            } else {
                json!({ "auth": auth(&user, &password, unpadded, spaced) })
            };
            let config = json!({ "auths": { key.clone(): entry } }).to_string();
            let found = parse_docker_config(config.as_bytes(), Path::new("c.json"), &host);
            prop_assert_eq!(
                found.expect("a well-formed entry"),
                Some(DockerConfigEntry::Inline { key, credentials: Credentials::new(user, password) })
            );
        }

        #[test]
        fn the_best_key_form_wins_and_another_hosts_entry_is_never_taken(
            host in host(),
            other in host(),
            forms in proptest::sample::subsequence((0usize..6).collect::<Vec<_>>(), 0..=6),
            other_forms in proptest::sample::subsequence((0usize..6).collect::<Vec<_>>(), 0..=6),
        ) {
            prop_assume!(!host.eq_ignore_ascii_case(&other));
            let mut auths = Map::new();
            for &form in &forms {
                let user = format!("user{form}");
                auths.insert(key_forms(&host)[form].clone(), json!({ "auth": auth(&user, "p", false, false) }));
            }
            for &form in &other_forms {
                auths.insert(key_forms(&other)[form].clone(), json!({ "auth": auth("other", "p", false, false) }));
            }
            let config = json!({ "auths": auths }).to_string();
            let found = parse_docker_config(config.as_bytes(), Path::new("c.json"), &host)
                .expect("well-formed entries");
            let want = forms.iter().min().map(|&best| DockerConfigEntry::Inline {
                key: key_forms(&host)[best].clone(),
                credentials: Credentials::new(format!("user{best}"), "p"),
            });
            prop_assert_eq!(found, want);
        }

        #[test]
        fn a_refused_entry_never_shows_a_secret(
            host in host(),
            fields in proptest::collection::btree_map(
                prop::sample::select(vec!["auth", "username", "password", "identitytoken", "email"]),
                secret_values(),
                0..4,
            ),
            // A helper's name is no secret: messages quote it.
            helper in proptest::option::of(prop_oneof![
                "[a-z.-]{0,8}".prop_map(Value::String),
                "[ -~]{0,8}".prop_map(Value::String),
                Just(json!(1)),
            ]),
        ) {
            let mut config = json!({ "auths": { host.clone(): fields } });
            if let Some(helper) = helper {
                config["credHelpers"] = json!({ host.clone(): helper });
            }
            let text = config.to_string();
            if let Err(e) = parse_docker_config(text.as_bytes(), Path::new("c.json"), &host) {
                let mut shown = format!("{e} {e:?}");
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    shown.push_str(&s.to_string());
                    source = s.source();
                }
                prop_assert!(!shown.contains("s3cr3t"), "{}", shown);
            }
        }
    }
}
