//! The command line's exit statuses and messages. (Being an integration test of this package,
//! it also makes `cargo test --workspace` build the `registry-prober` binary that the
//! end-to-end tests in tests/ run.)

use std::process::Command;

fn prober(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_registry-prober"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_exits_zero_and_lists_the_commands() {
    let (code, stdout, _) = prober(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["once", "check-config", "run"] {
        assert!(stdout.contains(cmd), "{cmd} missing from:\n{stdout}");
    }
}

#[test]
fn an_unknown_command_is_bad_usage() {
    let (code, _, stderr) = prober(&["probe-everything"]);
    assert_eq!(code, 64);
    assert!(
        stderr.contains("unrecognized subcommand 'probe-everything'"),
        "{stderr}"
    );
}

#[test]
fn check_config_on_a_missing_file_names_the_path() {
    let (code, _, stderr) = prober(&["check-config", "/nonexistent/prober.yml"]);
    assert_eq!(code, 64);
    assert_eq!(stderr.trim(), "error: reading config file /nonexistent/prober.yml: No such file or directory (os error 2)");
}

#[test]
fn run_with_a_bad_config_exits_64_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, "targets: []\n").expect("write");
    let (code, _, stderr) = prober(&["run", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(code, 64);
    assert!(
        stderr.contains("targets: at least one target is required"),
        "{stderr}"
    );
}

#[test]
fn a_password_is_never_taken_from_the_command_line() {
    let (code, _, stderr) = prober(&[
        "once",
        "--registry",
        "http://127.0.0.1:1",
        "--repository",
        "p",
        "--password",
        "x",
    ]);
    assert_eq!(code, 64);
    assert!(
        stderr.contains("unexpected argument '--password'"),
        "{stderr}"
    );
}
