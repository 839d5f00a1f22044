//! Docker credential helpers: `docker-credential-<name> get`, the server on stdin, JSON
//! `{"ServerURL","Username","Secret"}` on stdout. Run with tokio::process (no runtime worker
//! waits on it), in a process group of its own that is killed by its PID when the helper
//! outlives its timeout or its caller, and with its output never logged or quoted: it is a
//! secret, even when it is an error message. The `docker_credential` crate (1.4) runs helpers
//! with a blocking `wait_with_output` and no timeout, and its error's Display prints the
//! helper's stdout and stderr, so the runner is our own.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::http::auth::{token_shape, Credentials, MalformedToken, IDENTITY_TOKEN_USER};

/// More than this on stdout is not a credential: the helper is stopped reading there.
const MAX_OUTPUT: usize = 64 * 1024;

/// What older docker-credential-helpers print (exit status 1) for a server they hold nothing
/// for; newer ones print `{"ServerURL":..,"Username":"","Secret":""}` and exit 0. Recognising
/// the fixed text is not quoting the helper.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// Why a helper gave no credentials. Messages name the program, never its output.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("credential helper {program} is not on PATH")]
    NotOnPath { program: String },
    #[error("cannot run credential helper {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper {program} did not answer within {timeout:?} and was killed")]
    TimedOut { program: String, timeout: Duration },
    #[error(
        "credential helper {program} failed with {status} (its output is not shown: it may hold \
         secrets)"
    )]
    Failed { program: String, status: ExitStatus },
    #[error("credential helper {program} has no credentials for {server}")]
    NotFound { program: String, server: String },
    #[error("credential helper {program} printed {bytes} bytes that are not the credential JSON")]
    NotCredentialJson { program: String, bytes: usize },
    #[error("credential helper {program} printed more than {MAX_OUTPUT} bytes")]
    TooLong { program: String },
    #[error("credential helper {program} answered for {server} without a Username")]
    NoUsername { program: String, server: String },
    #[error(
        "credential helper {program} answered for {server} with an identity token that {problem}"
    )]
    MalformedToken {
        program: String,
        server: String,
        problem: MalformedToken,
    },
}

/// `docker-credential-<name>`.
pub fn program(helper: &str) -> String {
    format!("docker-credential-{helper}")
}

/// Where `program` is on PATH, as the shell would find it: the first executable file of that
/// name in a PATH directory.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `docker-credential-<helper> get` for `server`, for at most `timeout`.
pub async fn get(
    helper: &str,
    server: &str,
    timeout: Duration,
) -> Result<Credentials, HelperError> {
    let program = program(helper);
    run(std::ffi::OsStr::new(&program), &program, server, timeout).await
}

/// Runs `executable get` (named `program` in errors) for `server`, for at most `timeout`.
async fn run(
    executable: &std::ffi::OsStr,
    program: &str,
    server: &str,
    timeout: Duration,
) -> Result<Credentials, HelperError> {
    let program = program.to_owned();
    let mut command = tokio::process::Command::new(executable);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Never read: it may hold secrets, and a helper's diagnostics there are for a terminal.
        .stderr(Stdio::null())
        // Its own group, so a timeout kills what it started too (pass runs gpg).
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => HelperError::NotOnPath {
            program: program.clone(),
        },
        _ => HelperError::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    // Kills the group when this future ends before the helper does: on the timeout below, and
    // when the caller's deadline drops the future.
    let mut group = GroupGuard(child.id());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let talk = async {
        // As docker: the server name, no newline. A helper that exits without reading it
        // closes the pipe; its exit status then says what happened.
        let _ = stdin.write_all(server.as_bytes()).await;
        drop(stdin);
        let mut out = Vec::new();
        (&mut stdout)
            .take(MAX_OUTPUT as u64 + 1)
            .read_to_end(&mut out)
            .await?;
        // One that keeps printing is stopped here (the guard kills it), not at the timeout.
        if out.len() > MAX_OUTPUT {
            return Ok((out, None));
        }
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((out, Some(status)))
    };
    let done = match tokio::time::timeout(timeout, talk).await {
        Ok(done) => done,
        Err(_) => return Err(HelperError::TimedOut { program, timeout }),
    };
    let (out, status) = done.map_err(|source| HelperError::Spawn {
        program: program.clone(),
        source,
    })?;
    let Some(status) = status else {
        return Err(HelperError::TooLong { program });
    };
    // Reaped: the PID may be reused from here on, so the guard must not signal it.
    group.0 = None;
    if !status.success() {
        if out.trim_ascii() == NOT_FOUND.as_bytes() {
            let server = server.to_owned();
            return Err(HelperError::NotFound { program, server });
        }
        return Err(HelperError::Failed { program, status });
    }
    parse_output(&out, &program, server)
}

#[cfg(test)]
pub(super) async fn run_for_test(
    executable: &std::path::Path,
    server: &str,
    timeout: Duration,
) -> Result<Credentials, HelperError> {
    run(
        executable.as_os_str(),
        "docker-credential-test",
        server,
        timeout,
    )
    .await
}

/// Kills the helper's process group (its PID is the group's ID) unless it was reaped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        // Never 1 or 0: those would signal init's group or our own.
        if let Some(pid) =
            rustix::process::Pid::from_raw(pid).filter(|p| p.as_raw_nonzero().get() > 1)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The credentials in a helper's answer for `server`. A `Username` of `<token>` makes the
/// `Secret` an identity token; an empty `Secret` is "none for this server".
pub fn parse_output(out: &[u8], program: &str, server: &str) -> Result<Credentials, HelperError> {
    let not_json = || HelperError::NotCredentialJson {
        program: program.to_owned(),
        bytes: out.len(),
    };
    // A Value, not a typed struct: serde's type errors quote the value, which is a secret.
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(out) else {
        return Err(not_json());
    };
    let field = |name: &str| match answer.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(not_json()),
    };
    let (username, secret) = (field("Username")?, field("Secret")?);
    if secret.is_empty() {
        return Err(HelperError::NotFound {
            program: program.to_owned(),
            server: server.to_owned(),
        });
    }
    if username == IDENTITY_TOKEN_USER {
        token_shape(secret).map_err(|problem| HelperError::MalformedToken {
            program: program.to_owned(),
            server: server.to_owned(),
            problem,
        })?;
        return Ok(Credentials::identity_token(username, secret));
    }
    if username.is_empty() {
        return Err(HelperError::NoUsername {
            program: program.to_owned(),
            server: server.to_owned(),
        });
    }
    Ok(Credentials::new(username, secret))
}
