//! The credential source (refresh, rejection, expiry, generations) and the helper protocol
//! (its answers parsed, and real processes that hang, fail or print garbage).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::helper::{self, HelperError};
use super::*;
use crate::http::auth::unsigned_jwt;
use crate::http::error_chain;

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn refresh(interval: Duration) -> Refresh {
    Refresh {
        interval,
        helper_timeout: Duration::from_secs(2),
    }
}

fn parse(out: &str) -> Result<Credentials, HelperError> {
    helper::parse_output(out.as_bytes(), "docker-credential-test", "r.example")
}

#[test]
fn a_helper_answer_is_a_password_or_an_identity_token() {
    assert_eq!(
        parse(r#"{"ServerURL":"r.example","Username":"AWS","Secret":"opaque"}"#).unwrap(),
        Credentials::new("AWS", "opaque")
    );
    // docker-credential-pass escapes the brackets.
    let token =
        parse(r#"{"ServerURL":"r.example","Username":"\u003ctoken\u003e","Secret":"rt"}"#).unwrap();
    assert_eq!(token.refresh_token(), Some("rt"));
}

#[test]
fn a_helper_answer_without_a_credential_is_named_without_being_quoted() {
    let message = |out: &str| parse(out).unwrap_err().to_string();
    // What Debian's docker-credential-pass prints, exit status 0, for a server it lacks.
    assert_eq!(
        message(r#"{"ServerURL":"r.example","Username":"","Secret":""}"#),
        "credential helper docker-credential-test has no credentials for r.example"
    );
    assert_eq!(
        message("secret: hunter2\n"),
        "credential helper docker-credential-test printed 16 bytes that are not the credential JSON"
    );
    assert_eq!(
        message(r#"["hunter2"]"#),
        "credential helper docker-credential-test printed 11 bytes that are not the credential JSON"
    );
    assert_eq!(
        message(r#"{"Username":7,"Secret":"hunter2"}"#),
        "credential helper docker-credential-test printed 33 bytes that are not the credential JSON"
    );
    assert_eq!(
        message(r#"{"Username":"","Secret":"hunter2"}"#),
        "credential helper docker-credential-test answered for r.example without a Username"
    );
    assert_eq!(
        message(r#"{"Username":"<token>","Secret":"hunter2 x"}"#),
        "credential helper docker-credential-test answered for r.example with an identity token \
         that contains whitespace, control or non-ASCII characters"
    );
}

/// An executable shell script `name` in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test]
async fn a_helper_gets_the_server_on_stdin_and_answers_on_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Echoes the server it was asked about into the user name.
    let helper = script(
        dir.path(),
        "echo-server",
        r#"[ "$1" = get ] || exit 9
server=$(cat)
printf '{"ServerURL":"%s","Username":"u-%s","Secret":"p"}' "$server" "$server""#,
    );
    let credentials = helper::run_for_test(&helper, "r.example:5000", Duration::from_secs(5))
        .await
        .expect("credentials");
    assert_eq!(credentials, Credentials::new("u-r.example:5000", "p"));
}

#[tokio::test]
async fn a_hanging_helper_and_what_it_started_are_killed_at_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("child.pid");
    // The helper starts a child of its own, as pass starts gpg, and both hang.
    let helper = script(
        dir.path(),
        "hang",
        &format!("sleep 60 &\necho $! > {}\nwait", pid_file.display()),
    );
    let started = std::time::Instant::now();
    let err = helper::run_for_test(&helper, "r", Duration::from_millis(300))
        .await
        .expect_err("timed out");
    let took = started.elapsed();
    assert_eq!(
        err.to_string(),
        "credential helper docker-credential-test did not answer within 300ms and was killed"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let child: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    // Killed with its group; reaped by init, so it is gone within moments.
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !Path::new(&format!("/proc/{child}")).exists()
            || std::fs::read_to_string(format!("/proc/{child}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "the helper's child {child} still runs");
}

/// What a helper that runs `body` fails with, asked about server "r".
async fn failure(body: &str) -> HelperError {
    let dir = tempfile::tempdir().expect("tempdir");
    let helper = script(dir.path(), "helper", body);
    helper::run_for_test(&helper, "r", Duration::from_secs(5))
        .await
        .expect_err("the helper fails")
}

#[tokio::test]
async fn a_failing_helper_is_named_by_its_exit_status_not_its_output() {
    let err = failure("echo 'token hunter2 rejected'\necho 'stderr hunter2' >&2\nexit 3").await;
    let shown = format!("{err} {err:?}");
    assert_eq!(
        err.to_string(),
        "credential helper docker-credential-test failed with exit status: 3 (its output is not \
         shown: it may hold secrets)"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    // The fixed text older helpers print for "none here" is recognised, not quoted.
    let err = failure("echo 'credentials not found in native keychain'\nexit 1").await;
    assert_eq!(
        err.to_string(),
        "credential helper docker-credential-test has no credentials for r"
    );
}

#[tokio::test]
async fn a_helper_that_prints_without_end_is_cut_off_at_once() {
    let started = std::time::Instant::now();
    let err = failure("exec yes secret").await;
    assert_eq!(
        err.to_string(),
        "credential helper docker-credential-test printed more than 65536 bytes"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not at the timeout"
    );
}

#[tokio::test]
async fn a_helper_not_on_path_says_so() {
    let err = helper::get("registry-prober-test-no-such", "r", Duration::from_secs(1))
        .await
        .expect_err("missing");
    assert_eq!(
        err.to_string(),
        "credential helper docker-credential-registry-prober-test-no-such is not on PATH"
    );
}

#[tokio::test]
async fn a_password_file_is_read_again_once_stale_and_a_new_value_is_a_new_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    std::fs::write(&path, "one\n").expect("write");
    let source = CredentialSource::password_file(
        "u".into(),
        path.clone(),
        refresh(Duration::from_millis(200)),
    )
    .expect("readable");
    let first = source.get(soon()).await.expect("creds");
    assert_eq!(*first.credentials, Credentials::new("u", "one"));
    assert_eq!(source.fresh_generation(), Some(first.generation));

    // Changed on disk, but still fresh: the cached value.
    std::fs::write(&path, "two\n").expect("write");
    assert_eq!(
        source.get(soon()).await.expect("creds").generation,
        first.generation
    );

    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(source.fresh_generation(), None, "stale");
    let second = source.get(soon()).await.expect("creds");
    assert_eq!(*second.credentials, Credentials::new("u", "two"));
    assert_eq!(second.generation, first.generation + 1);

    // Read again with the same value: the same generation, so tokens it bought still count.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        source.get(soon()).await.expect("creds").generation,
        second.generation
    );
}

#[tokio::test]
async fn rejected_credentials_are_fetched_again_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    std::fs::write(&path, "old").expect("write");
    let source = CredentialSource::password_file("u".into(), path.clone(), Refresh::default())
        .expect("readable");
    let old = source.get(soon()).await.expect("creds");
    std::fs::write(&path, "new").expect("write");
    // A rejection of an older generation changes nothing.
    source.rejected(old.generation + 7);
    assert_eq!(
        source.get(soon()).await.expect("creds").generation,
        old.generation
    );
    source.rejected(old.generation);
    assert_eq!(source.fresh_generation(), None);
    let new = source.get(soon()).await.expect("creds");
    assert_eq!(new.credentials.password(), Some("new"));
}

#[tokio::test]
async fn fixed_credentials_stay_whatever_happens() {
    let source = CredentialSource::fixed(Credentials::new("u", "p"));
    let first = source.get(soon()).await.expect("creds");
    source.rejected(first.generation);
    let again = source.get(soon()).await.expect("creds");
    assert_eq!(again.generation, first.generation);
    assert!(!format!("{source:?}").contains("\"p\""));
}

fn docker_config(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, json).expect("write");
    path
}

#[test]
fn a_docker_config_is_checked_when_the_config_is_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |json: &str| {
        let path = docker_config(dir.path(), json);
        CredentialSource::docker_config(path, "r.example".into(), Refresh::default())
            .map(|_| ())
            .map_err(|e| {
                error_chain(&e).replace(&format!("{:?}", dir.path().join("config.json")), "CONFIG")
            })
    };
    assert_eq!(check(r#"{"auths":{"r.example":{"auth":"dTpw"}}}"#), Ok(()));
    assert_eq!(
        check(r#"{"credHelpers":{"r.example":"registry-prober-test-no-such"}}"#),
        Err(
            "docker config CONFIG: credHelpers[\"r.example\"]: credential helper \
             docker-credential-registry-prober-test-no-such is not on PATH"
                .to_owned()
        )
    );
    assert_eq!(
        check(r#"{"auths":{"other":{"auth":"dTpw"}}}"#),
        Err("docker config CONFIG has no credentials for r.example".to_owned())
    );
    // An identity token that expired an hour ago is never sent.
    let expired = unsigned_jwt(&format!(
        r#"{{"exp":{}}}"#,
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            - 3600
    ));
    let message = check(&format!(
        r#"{{"auths":{{"r.example":{{"identitytoken":"{expired}"}}}}}}"#
    ))
    .expect_err("expired");
    assert!(
        message.starts_with(
            "docker config CONFIG: auths[\"r.example\"] expired 1h ago (its exp is 20"
        ),
        "{message}"
    );
    assert!(!message.contains(&expired));
}

#[tokio::test]
async fn credentials_that_state_an_expiry_are_used_no_longer_than_until_a_minute_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    // Expires in 62 s: usable for one to two seconds.
    let token = unsigned_jwt(&format!(r#"{{"exp":{}}}"#, now + 62));
    let path = docker_config(
        dir.path(),
        &format!(r#"{{"auths":{{"r.example":{{"identitytoken":"{token}"}}}}}}"#),
    );
    let source = CredentialSource::docker_config(path, "r.example".into(), Refresh::default())
        .expect("valid");
    assert!(source.fresh_generation().is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(source.fresh_generation(), None, "used past its expiry");
    let err = source
        .get(soon())
        .await
        .expect_err("too close to its expiry");
    assert!(
        err.to_string()
            .contains("auths[\"r.example\"] expires in 5"),
        "{err}"
    );
}

mod properties {
    //! A helper's output, any bytes of it, is read or refused without a panic and without
    //! being shown; an answer written from a model gives back the credentials put in.

    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::http::auth::IDENTITY_TOKEN_USER;
    use crate::proptests::cases;

    fn field() -> impl Strategy<Value = Option<Value>> {
        proptest::option::of(prop_oneof![
            4 => "s3cr3t[!-~]{0,20}".prop_map(Value::String),
            1 => Just(Value::String(String::new())),
            1 => Just(Value::String("<token>".to_owned())),
            1 => Just(Value::Null),
            1 => any::<i32>().prop_map(Value::from),
        ])
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn any_output_is_read_or_refused_without_being_shown(
            out in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            if let Err(e) = helper::parse_output(&out, "docker-credential-test", "r.example") {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("credential helper docker-credential-test "), "{}", shown);
                prop_assert!(shown.len() < 200, "{}", shown);
            }
        }

        #[test]
        fn an_answer_gives_back_the_credentials_put_in(username in field(), secret in field()) {
            let mut answer = Map::new();
            answer.insert("ServerURL".to_owned(), json!("r.example"));
            for (name, value) in [("Username", &username), ("Secret", &secret)] {
                if let Some(v) = value {
                    answer.insert(name.to_owned(), v.clone());
                }
            }
            let out = Value::Object(answer).to_string();
            let text = |v: &Option<Value>| match v {
                None | Some(Value::Null) => Some(String::new()),
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => None,
            };
            let got = helper::parse_output(out.as_bytes(), "docker-credential-test", "r.example");
            match (text(&username), text(&secret)) {
                (Some(user), Some(secret)) if !secret.is_empty() && user == IDENTITY_TOKEN_USER => {
                    // A refresh token of printable ASCII has the shape of one.
                    let got = got.expect("an identity token");
                    prop_assert_eq!(got.refresh_token(), Some(secret.as_str()));
                }
                (Some(user), Some(secret)) if !secret.is_empty() && !user.is_empty() => {
                    prop_assert_eq!(got.expect("credentials"), Credentials::new(user, secret));
                }
                _ => {
                    let e = got.expect_err("no usable credentials");
                    prop_assert!(!e.to_string().contains("s3cr3t"), "{}", e);
                }
            }
        }
    }
}

/// A file a user names is read up to its bound, at start and when read again: a bigger one (a
/// path to the wrong file) is an error naming the file and the limit.
#[tokio::test]
async fn a_password_file_or_docker_config_over_its_bound_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, vec![b'p'; 64 * 1024 + 1]).expect("write");
    let err = CredentialSource::password_file("u".into(), pw.clone(), Refresh::default())
        .expect_err("over the bound");
    assert_eq!(
        error_chain(&err),
        format!(
            "cannot read password file {}: larger than 65536 bytes, not read further",
            pw.display()
        )
    );
    // Within the bound at start, over it when read again.
    std::fs::write(&pw, "one").expect("write");
    let source = CredentialSource::password_file("u".into(), pw.clone(), refresh(Duration::ZERO))
        .expect("readable");
    std::fs::write(&pw, vec![b'p'; 64 * 1024 + 1]).expect("write");
    let err = source.get(soon()).await.expect_err("over the bound");
    assert!(
        error_chain(&err).ends_with("larger than 65536 bytes, not read further"),
        "{}",
        error_chain(&err)
    );

    let config = dir.path().join("config.json");
    let padding = " ".repeat(4 * 1024 * 1024);
    std::fs::write(&config, format!(r#"{{"auths":{{}}}}{padding}"#)).expect("write");
    let err = CredentialSource::docker_config(config.clone(), "r".into(), Refresh::default())
        .expect_err("over the bound");
    assert_eq!(
        error_chain(&err),
        format!(
            "cannot read docker config {config:?}: larger than 4194304 bytes, not read further"
        )
    );
}
