//! Credentials the way users keep them, end to end with the real binary: Debian's
//! docker-credential-pass behind a docker config.json (credsStore and credHelpers, a password
//! and an identity token), inline identity tokens, the token service's dialects (POST form,
//! GET fallback, access_token answers, no expiry, no token), helpers that hang, fail or print
//! garbage, and the config-time checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use registry_prober_e2e::prober::{first_failure, prober_with_env, Invocation};
use registry_prober_e2e::service::Service;
use registry_prober_e2e::{
    Answer, Grant, PassStore, Post, Registry, RegistryAuth, RegistryOptions, TokenServer,
};
use serde_json::{json, Value};

const REPO: &str = "registry-prober/creds";
const PASSWORD: &str = "pass-kept-pw";

/// `once --output json --registry <reg> --repository REPO <args>` with `env`.
fn once(reg: &Registry, args: &[&str], env: &[(&str, String)]) -> (Invocation, Value) {
    let url = reg.url();
    let mut all = vec!["once", "--output", "json", "--registry", &url];
    all.extend_from_slice(&["--repository", REPO]);
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let inv = prober_with_env(&all, &env).expect("the prober runs");
    let report = inv.report().expect("a JSON report");
    (inv, report)
}

fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write json");
    path.display().to_string()
}

fn htpasswd_registry() -> Registry {
    Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", PASSWORD),
        ..Default::default()
    })
    .expect("registry starts")
}

/// A registry behind the test token server, granting every user pull, push and delete.
fn token_registry() -> (TokenServer, Registry) {
    let tokens = TokenServer::start(
        &[("alice", PASSWORD)],
        &[Grant::repository(REPO, &["pull", "push", "delete"])],
    )
    .expect("token server");
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::token(&tokens),
        ..Default::default()
    })
    .expect("registry starts");
    (tokens, reg)
}

fn assert_passed(inv: &Invocation, report: &Value) {
    assert_eq!(inv.code, 0, "{report:#}\nstderr: {}", inv.stderr);
    assert_eq!(report["success"], Value::Bool(true), "{report:#}");
}

/// Nothing the prober printed holds `secret`.
fn assert_never_shown(inv: &Invocation, secret: &str) {
    assert!(!inv.stdout.contains(secret), "the secret is in the report");
    assert!(!inv.stderr.contains(secret), "the secret is in the logs");
}

/// A run against `reg` with `username` and `secret` kept by docker-credential-pass in a fresh
/// store, and a docker config.json of `docker_config`; it must pass, `secret` never shown.
fn run_with_pass(reg: &Registry, username: &str, secret: &str, docker_config: Value) {
    let pass = PassStore::new().expect("a password store");
    pass.store(&reg.host_port(), username, secret)
        .expect("stored");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_json(dir.path(), "config.json", &docker_config);
    let (inv, report) = once(reg, &["--docker-config", &config], &pass.env());
    assert_passed(&inv, &report);
    assert_never_shown(&inv, secret);
}

#[test]
fn docker_credential_pass_as_the_creds_store_supplies_basic_credentials() {
    let reg = htpasswd_registry();
    run_with_pass(&reg, "prober", PASSWORD, json!({"credsStore": "pass"}));
}

#[test]
fn docker_credential_pass_in_cred_helpers_comes_before_the_creds_store() {
    let reg = htpasswd_registry();
    // A store that is not installed here: never asked, for the host has a helper of its own.
    let config = json!({"credHelpers": {reg.host_port(): "pass"}, "credsStore": "osxkeychain"});
    run_with_pass(&reg, "prober", PASSWORD, config);
}

#[test]
fn an_identity_token_from_docker_credential_pass_is_traded_at_the_refresh_token_grant() {
    let (tokens, reg) = token_registry();
    let identity = tokens
        .issue_refresh_token("alice", Duration::from_secs(3600))
        .expect("a refresh token");
    run_with_pass(&reg, "<token>", &identity, json!({"credsStore": "pass"}));
    assert_eq!(
        token_requests(&tokens),
        ["POST refresh_token registry-prober alice"; 3],
        "one token per scope"
    );
}

#[test]
fn an_inline_identity_token_is_traded_at_the_refresh_token_grant() {
    let (tokens, reg) = token_registry();
    let identity = tokens
        .issue_refresh_token("alice", Duration::from_secs(3600))
        .expect("a refresh token");
    let dir = tempfile::tempdir().expect("tempdir");
    // As `docker login` to ACR writes it: the user in "auth", the token beside it.
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "00000000-0000-0000-0000-000000000000:",
    );
    let config = write_json(
        dir.path(),
        "config.json",
        &json!({"auths": {reg.host_port(): {"auth": auth, "identitytoken": identity}}}),
    );
    let (inv, report) = once(&reg, &["--docker-config", &config], &[]);
    assert_passed(&inv, &report);
    assert_never_shown(&inv, &identity);
    assert_eq!(
        token_requests(&tokens),
        ["POST refresh_token registry-prober alice"; 3]
    );
}

/// Every request the token server got: "METHOD grant_type client_id user".
fn token_requests(tokens: &TokenServer) -> Vec<String> {
    let or_none = |s: Option<&str>| s.unwrap_or("-").to_owned();
    tokens
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.method,
                or_none(r.grant_type.as_deref()),
                or_none(r.client_id.as_deref()),
                or_none(r.user.as_deref())
            )
        })
        .collect()
}

/// A run against `reg` as "alice" with the password in a file.
fn once_with_password(reg: &Registry) -> (Invocation, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("password");
    std::fs::write(&path, format!("{PASSWORD}\n")).expect("write password");
    let pw = path.display().to_string();
    once(reg, &["--username", "alice", "--password-file", &pw], &[])
}

#[test]
fn a_password_goes_in_a_post_form_as_containerd_sends_it() {
    let (tokens, reg) = token_registry();
    let (inv, report) = once_with_password(&reg);
    assert_passed(&inv, &report);
    assert_eq!(
        token_requests(&tokens),
        ["POST password registry-prober alice"; 3]
    );
    assert!(tokens
        .requests()
        .iter()
        .all(|r| r.service.as_deref() == Some("registry-prober-test")));
}

#[test]
fn a_token_service_that_refuses_post_is_asked_with_get_from_then_on() {
    let (tokens, reg) = token_registry();
    tokens.set_post(Post::Refuse);
    let (inv, report) = once_with_password(&reg);
    assert_passed(&inv, &report);
    let asked: Vec<(String, u16)> = tokens
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    let pair = |m: &str, s: u16| (m.to_string(), s);
    assert_eq!(
        asked,
        [
            pair("POST", 405),
            pair("GET", 200),
            pair("GET", 200),
            pair("GET", 200)
        ]
    );
    // Both are in the first token step's transcript.
    let token_step = &report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "token")
        .expect("a token step")["requests"];
    let methods: Vec<&str> = token_step
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r["method"].as_str().expect("method"))
        .collect();
    assert_eq!(methods, ["POST", "GET"]);
}

#[test]
fn access_token_answers_and_answers_without_expiry_are_taken() {
    for answer in [Answer::AccessTokenOnly, Answer::NoExpiry] {
        let (tokens, reg) = token_registry();
        tokens.set_answer(answer);
        let (inv, report) = once_with_password(&reg);
        assert_passed(&inv, &report);
        assert_eq!(tokens.token_requests(), 3, "{answer:?}: cached per scope");
    }
}

#[test]
fn a_token_answer_without_a_token_fails_the_token_step_with_reason_auth() {
    let (tokens, reg) = token_registry();
    tokens.set_answer(Answer::NoToken);
    let (inv, report) = once_with_password(&reg);
    assert_eq!(inv.code, 1);
    let failed = first_failure(&report).expect("a failed step");
    assert_eq!(
        (&failed["step"], &failed["reason"]),
        (&json!("token"), &json!("auth"))
    );
    assert_eq!(
        failed["error"],
        format!(
            "POST {}: token response has neither \"token\" nor \"access_token\"",
            tokens.realm()
        )
    );
}

/// A fake helper `docker-credential-<name>` in `dir` running `body`, and the PATH that finds it.
fn fake_helper(dir: &Path, name: &str, body: &str) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write helper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let search = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, search)
}

/// A run against `reg` whose docker config names the fake helper `name` running `body` as its
/// store: the failed step, and how long the run took.
fn run_with_helper(reg: &Registry, name: &str, body: &str) -> (Value, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, path) = fake_helper(dir.path(), name, body);
    let config = write_json(dir.path(), "config.json", &json!({"credsStore": name}));
    let started = Instant::now();
    let (inv, report) = once(
        reg,
        &["--docker-config", &config, "--helper-timeout", "1s"],
        &[("PATH", path)],
    );
    let took = started.elapsed();
    assert_eq!(inv.code, 1, "{report:#}");
    assert_never_shown(&inv, "hunter2");
    let failed = first_failure(&report).expect("a failed step").clone();
    (failed, took)
}

fn step_reason_error(failed: &Value) -> (&str, &str, String) {
    (
        failed["step"].as_str().expect("step"),
        failed["reason"].as_str().expect("reason"),
        failed["error"].as_str().expect("error").to_owned(),
    )
}

#[test]
fn a_helper_that_hangs_fails_the_ping_with_reason_auth_within_its_timeout() {
    let reg = htpasswd_registry();
    let (failed, took) = run_with_helper(&reg, "hang", "sleep 60");
    let (step, reason, error) = step_reason_error(&failed);
    let config = error
        .split('"')
        .nth(1)
        .expect("the config's path is quoted")
        .to_owned();
    assert_eq!((step, reason), ("ping", "auth"));
    assert_eq!(
        error,
        format!(
            "cannot get credentials: docker config \"{config}\": credsStore: credential helper \
             docker-credential-hang did not answer within 1s and was killed"
        )
    );
    let ping = Duration::from_secs_f64(failed["duration_seconds"].as_f64().expect("duration"));
    assert!(
        ping >= Duration::from_secs(1) && ping < Duration::from_millis(1500),
        "the ping took {ping:?}"
    );
    assert!(took < Duration::from_secs(10), "the run took {took:?}");
}

#[test]
fn a_helper_that_fails_or_prints_garbage_is_named_and_its_output_never_shown() {
    let reg = htpasswd_registry();
    let cases = [
        (
            "fail",
            "echo 'hunter2 is wrong'; echo 'hunter2' >&2; exit 3",
            "credential helper docker-credential-fail failed with exit status: 3 (its output is \
             not shown: it may hold secrets)",
        ),
        (
            "garbage",
            "cat >/dev/null; printf 'password=hunter2\\n'",
            "credential helper docker-credential-garbage printed 17 bytes that are not the \
             credential JSON",
        ),
        (
            "empty",
            "cat >/dev/null; printf '{\"ServerURL\":\"x\",\"Username\":\"\",\"Secret\":\"\"}'",
            &format!(
                "credential helper docker-credential-empty has no credentials for {}",
                reg.host_port()
            ),
        ),
    ];
    for (name, body, expected) in cases {
        let (failed, took) = run_with_helper(&reg, name, body);
        let (step, reason, error) = step_reason_error(&failed);
        assert_eq!((step, reason), ("ping", "auth"), "{name}");
        assert!(error.ends_with(expected), "{name}: {error}");
        assert!(took < Duration::from_secs(10), "{name} took {took:?}");
    }
}

#[test]
fn a_helper_failure_with_a_token_service_fails_the_token_step() {
    let (tokens, reg) = token_registry();
    let (failed, _) = run_with_helper(&reg, "fail", "exit 1");
    let (step, reason, error) = step_reason_error(&failed);
    assert_eq!((step, reason), ("token", "auth"));
    assert!(
        error.ends_with("credential helper docker-credential-fail failed with exit status: 1 (its output is not shown: it may hold secrets)"),
        "{error}"
    );
    assert_eq!(
        tokens.token_requests(),
        0,
        "no token asked for without credentials"
    );
}

/// `check-config` of a one-target config whose auth uses `docker_config`.
fn check_config(dir: &Path, docker_config: &str, path: &str) -> Invocation {
    let config = dir.join("prober.yml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - name: t\n    registry: http://127.0.0.1:5000\n    repository: {REPO}\n    auth: {{docker_config: {docker_config}}}\n"
        ),
    )
    .expect("write config");
    prober_with_env(
        &["check-config", &config.display().to_string()],
        &[("PATH", path)],
    )
    .expect("runs")
}

#[test]
fn check_config_names_an_unknown_helper_and_a_malformed_identity_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = std::env::var("PATH").unwrap_or_default();
    let docker = write_json(
        dir.path(),
        "config.json",
        &json!({"credHelpers": {"127.0.0.1:5000": "ecr-login-missing"}}),
    );
    let inv = check_config(dir.path(), &docker, &path);
    assert_eq!(inv.code, 64, "{}", inv.stderr);
    assert_eq!(
        inv.stderr.trim(),
        format!(
            "error: config file {}: target \"t\": auth.docker_config: docker config \"{docker}\": \
             credHelpers[\"127.0.0.1:5000\"]: credential helper \
             docker-credential-ecr-login-missing is not on PATH",
            dir.path().join("prober.yml").display()
        )
    );

    let docker = write_json(
        dir.path(),
        "config.json",
        &json!({"auths": {"127.0.0.1:5000": {"identitytoken": "hunter2 pasted\nwith a break"}}}),
    );
    let inv = check_config(dir.path(), &docker, &path);
    assert_eq!(inv.code, 64);
    assert!(
        inv.stderr.trim().ends_with(&format!(
            "auth.docker_config: docker config \"{docker}\": auths[\"127.0.0.1:5000\"].identitytoken \
             contains whitespace, control or non-ASCII characters"
        )),
        "{}",
        inv.stderr
    );
    assert!(!inv.stderr.contains("hunter2"));

    // The pass helper from Debian is found; its store is only asked at run time.
    let docker = write_json(dir.path(), "config.json", &json!({"credsStore": "pass"}));
    let inv = check_config(dir.path(), &docker, &path);
    assert_eq!(inv.code, 0, "{}", inv.stderr);
}

#[test]
fn the_service_asks_a_helper_again_after_a_rejection_and_then_every_refresh_interval() {
    let reg = htpasswd_registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    let calls = dir.path().join("calls");
    std::fs::write(&secret, "not-yet-the-password").expect("write secret");
    // Hands out whatever the secret file holds, and counts its calls.
    let (_, path) = fake_helper(
        dir.path(),
        "rotating",
        &format!(
            "cat >/dev/null\necho call >> {calls}\nprintf '{{\"Username\":\"prober\",\"Secret\":\"%s\"}}' \"$(cat {secret})\"",
            calls = calls.display(),
            secret = secret.display()
        ),
    );
    let config = write_json(
        dir.path(),
        "config.json",
        &json!({"credsStore": "rotating"}),
    );
    let mut svc = Service::start_with_env(
        &format!(
            "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n  - name: rotating\n    registry: {}\n    repository: {REPO}\n    image: {{layers: 1, layer_size: 4KiB}}\n    auth: {{docker_config: {config}, refresh_interval: 3s}}\n",
            reg.url()
        ),
        &[("PATH", &path)],
    )
    .expect("service starts");
    let runs = |svc: &Service, result: &str| {
        svc.metric(&format!(
            "registry_prober_runs_total{{target=\"rotating\",size_class=\"default\",result=\"{result}\"}}"
        ))
        .ok()
        .flatten()
        .unwrap_or(0.0)
    };
    let count_calls = || {
        std::fs::read_to_string(&calls)
            .map(|c| c.lines().count())
            .unwrap_or(0)
    };
    svc.wait_for("a failed run", Duration::from_secs(20), |s| {
        Ok(runs(s, "failure") >= 1.0)
    })
    .expect("the wrong password fails");
    // Rotated: the rejection made the source ask the helper again, so the new one is used
    // within a run or two, not after the refresh interval.
    std::fs::write(&secret, PASSWORD).expect("rotate");
    let rotated = Instant::now();
    svc.wait_for("a successful run", Duration::from_secs(20), |s| {
        Ok(runs(s, "success") >= 1.0)
    })
    .expect("the new password is used");
    assert!(
        rotated.elapsed() < Duration::from_secs(3),
        "took {:?}",
        rotated.elapsed()
    );
    // From then on the helper is asked once per refresh interval, not once per run: by the
    // first run after the credentials are 3 s old, so every 3 to 4 s; 2 to 4 times in 10.5 s
    // (whatever the phase: the success above may be a confirmation run's, seconds before a
    // scheduled one), against about 10 runs.
    let (calls_before, successes_before) = (count_calls(), runs(&svc, "success"));
    std::thread::sleep(Duration::from_millis(10_500));
    let (asked, succeeded) = (
        count_calls() - calls_before,
        runs(&svc, "success") - successes_before,
    );
    assert!(succeeded >= 8.0, "{succeeded} successful runs in 10.5s");
    assert!(
        (2..=4).contains(&asked),
        "the helper was asked {asked} times in 10.5s; the prober's log:\n{}",
        svc.log()
    );
    assert!(!svc.log().contains(PASSWORD), "the password is in the logs");
}
