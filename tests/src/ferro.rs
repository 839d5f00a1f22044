//! ferro-oci-server (crates.io, the version pinned in `tests/registries/pins`) on a free
//! 127.0.0.1 port, blobs and its metadata file in a temp dir, its log captured there. No auth.
//! Stopped by PID on drop. Configured by environment only; its default listen address is
//! every interface (0.0.0.0:8080), so `FERRO_OCI_LISTEN` is always set.

use std::process::Command;
use std::time::Duration;

use crate::installed::Running;

/// How long [`Ferro::start`] waits for `GET /v2/` to answer 200 (it starts in milliseconds).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running ferro-oci-server: [`Running`]'s url, version, dir and log.
pub struct Ferro {
    server: Running,
}

impl Ferro {
    /// Starts the installed, pinned ferro-oci-server with filesystem storage in a fresh temp
    /// dir (`storage/`) and waits until `GET /v2/` answers 200.
    pub fn start() -> anyhow::Result<Ferro> {
        let server = Running::start(
            "ferro-oci-server",
            "bin/ferro-oci-server",
            "/v2/",
            START_TIMEOUT,
            |program, dir, port| {
                let mut cmd = Command::new(program);
                cmd.env("FERRO_OCI_LISTEN", format!("127.0.0.1:{port}"))
                    .env("FERRO_OCI_STORAGE_DIR", dir.join("storage"))
                    .env("RUST_LOG", "info")
                    .env("NO_COLOR", "1");
                Ok(cmd)
            },
        )?;
        Ok(Ferro { server })
    }
}

impl std::ops::Deref for Ferro {
    type Target = Running;

    fn deref(&self) -> &Running {
        &self.server
    }
}
