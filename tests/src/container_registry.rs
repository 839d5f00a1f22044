//! container-registry (crates.io, the version pinned in `tests/registries/pins`, built with its
//! `bin` feature): the minimal registry of the rockslide PaaS, written from what docker and
//! podman send. On a free 127.0.0.1 port (`--bind`), storage and its log in a temp dir, stopped
//! by PID on drop. Auth is HTTP basic with one master password (any user name); without a
//! password it lets anyone in. Repository names must have exactly two components.

use std::process::Command;
use std::time::Duration;

use crate::installed::Running;

/// How long [`ContainerRegistryServer::start`] waits for `GET /v2/` (it starts in milliseconds).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// The user name the tests log in as (the server checks the password only).
pub const USER: &str = "prober";

/// A running container-registry: [`Running`]'s url, version, dir and log.
pub struct ContainerRegistryServer {
    server: Running,
    password: Option<String>,
}

impl ContainerRegistryServer {
    /// Starts the installed, pinned container-registry with storage in a fresh temp dir
    /// (`storage/`), requiring a random master password when `with_password`, and waits until
    /// `GET /v2/` answers (200, or 401 with its Basic challenge). The password is on its
    /// command line, the only way it takes one: fine for a test on loopback.
    pub fn start(with_password: bool) -> anyhow::Result<ContainerRegistryServer> {
        let password = with_password.then(|| hex::encode(rand::random::<[u8; 12]>()));
        let server = Running::start(
            "container-registry",
            "bin/container-registry",
            "/v2/",
            START_TIMEOUT,
            |program, dir, port| {
                let mut cmd = Command::new(program);
                cmd.arg("--bind")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--storage")
                    .arg(dir.join("storage"))
                    .env("NO_COLOR", "1");
                if let Some(pw) = &password {
                    cmd.arg("--password").arg(pw);
                }
                Ok(cmd)
            },
        )?;
        Ok(ContainerRegistryServer { server, password })
    }

    /// The master password, when started with one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl std::ops::Deref for ContainerRegistryServer {
    type Target = Running;

    fn deref(&self) -> &Running {
        &self.server
    }
}
