//! A real CNCF Distribution registry (`docker-registry serve CONFIG`, v2.8) on a free
//! 127.0.0.1 port, with its config, log and (by default) storage in a temp dir. Killed by PID
//! on [`Registry::stop`] or drop.

use crate::certs::TlsFiles;
use crate::http::HttpClient;
use crate::ports::try_free_port;
use crate::process::{run_with_timeout, tail};
use crate::storage::Storage;
use crate::token_server::{TokenServer, ISSUER, SERVICE};
use anyhow::{bail, Context as _};
use std::fmt::Write as _;
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the registry binary (Debian package `docker-registry`).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// How long [`Registry::start`] waits for `GET /v2/` to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Authentication mode of the registry.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    #[default]
    None,
    /// `auth.htpasswd` with one bcrypt user made by `htpasswd -Bbn`.
    Htpasswd { username: String, password: String },
    /// `auth.token` pointing at a test [`TokenServer`] (build with [`RegistryAuth::token`]).
    Token {
        realm: String,
        service: String,
        issuer: String,
        rootcertbundle: PathBuf,
    },
}

impl RegistryAuth {
    pub fn htpasswd(username: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Htpasswd {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Token auth: realm `http://127.0.0.1:PORT/token`, service `registry-prober-test`,
    /// issuer `registry-prober-test-issuer`, the server's signing certificate as root bundle.
    pub fn token(server: &TokenServer) -> RegistryAuth {
        RegistryAuth::Token {
            realm: server.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            rootcertbundle: server.root_cert_bundle().to_path_buf(),
        }
    }
}

/// How to configure the registry. `RegistryOptions::default()` is a plain-HTTP, no-auth
/// registry with deletes enabled and fresh storage.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
    /// Serve HTTPS with `tls.cert`/`tls.key`.
    pub tls: Option<TlsFiles>,
    /// mTLS: require client certificates signed by this CA (`http.tls.clientcas`).
    pub client_ca: Option<PathBuf>,
    /// `storage.delete.enabled` (default true; false makes DELETE answer 405 UNSUPPORTED).
    pub delete_enabled: bool,
    /// `storage.maintenance.readonly.enabled`: pushes are refused.
    pub read_only: bool,
    /// Pull-through cache of this upstream (`proxy.remoteurl`).
    pub proxy_remote: Option<String>,
    /// `proxy.username`/`proxy.password` (v2.8 sends them only to a token-auth upstream).
    pub proxy_credentials: Option<(String, String)>,
    /// CA bundle for a TLS upstream: given to the process as `SSL_CERT_FILE`.
    pub proxy_ca: Option<PathBuf>,
    /// Storage root to use instead of a fresh temp dir (e.g. to restart on the same data).
    /// The registry keeps its data under `<root>/docker/registry/v2`.
    pub storage: Option<PathBuf>,
    /// Serve the debug server (with Prometheus `/metrics`) on another free port.
    pub debug_metrics: bool,
    /// Extra environment variables for the registry process (e.g. `REGISTRY_*` overrides).
    pub env: Vec<(String, String)>,
    /// Run the registry as this (uid, gid), e.g. `(65534, 65534)` (nobody/nogroup), instead of
    /// as the test's user, so file permissions bite (root ignores them): a test can then make
    /// `_uploads` unwritable while reads still work. Needs the tests to run as root (setuid).
    /// The temp dir (config) and the storage root are chowned to the user on start; files
    /// given by path (TLS, CA bundles) must be readable by that user.
    pub run_as: Option<(u32, u32)>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            auth: RegistryAuth::None,
            tls: None,
            client_ca: None,
            delete_enabled: true,
            read_only: false,
            proxy_remote: None,
            proxy_credentials: None,
            proxy_ca: None,
            storage: None,
            debug_metrics: false,
            env: Vec::new(),
            run_as: None,
        }
    }
}

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    pid: u32,
    port: u16,
    debug_port: Option<u16>,
    /// Sent by this registry in an `X-Test-Registry-Instance` header, so the readiness check
    /// cannot be answered by another test's server that took the port.
    instance: String,
    opts: RegistryOptions,
    root: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Writes the config, starts the registry and waits (at most [`START_TIMEOUT`]) until
    /// `GET /v2/` answers 200 or 401. On failure the error carries the registry's log tail.
    pub fn start(opts: RegistryOptions) -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir()
            .context("creating the registry's temp dir")?;
        let root = match &opts.storage {
            Some(p) => p.clone(),
            None => dir.path().join("storage"),
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating storage root {}", root.display()))?;
        if let Some((uid, gid)) = opts.run_as {
            // The config (and htpasswd) live in the temp dir, which tempfile makes 0700.
            chown(dir.path(), uid, gid)?;
            chown_tree(&root, uid, gid)?;
        }
        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        let mut reg = Registry {
            child: None,
            pid: 0,
            port: 0,
            debug_port: None,
            instance: String::new(),
            opts,
            root,
            config_path,
            log_path,
            dir,
        };
        // free_port() lets go of the port before the registry binds it, so another listener of
        // a parallel test can take it first: then the registry dies with "address already in
        // use". Such a start is retried on fresh ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            reg.port = try_free_port()?;
            reg.debug_port = if reg.opts.debug_metrics {
                Some(try_free_port()?)
            } else {
                None
            };
            reg.instance = hex::encode(rand::random::<[u8; 8]>());
            let config = render_config(
                &reg.opts,
                reg.dir.path(),
                &reg.root,
                reg.port,
                reg.debug_port,
                &reg.instance,
            )?;
            std::fs::write(&reg.config_path, config)
                .with_context(|| format!("writing {}", reg.config_path.display()))?;
            match reg.spawn_and_wait() {
                Ok(()) => return Ok(reg),
                Err(e) if attempt < 5 && reg.log().contains("address already in use") => {
                    let _ = std::fs::remove_file(&reg.log_path);
                    eprintln!("registry start: port taken by another listener, retrying ({e:#})");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A plain-HTTP registry with default options.
    pub fn start_default() -> anyhow::Result<Registry> {
        Self::start(RegistryOptions::default())
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let log2 = log.try_clone().context("duplicating the log file handle")?;
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .env_remove("REGISTRY_HTTP_ADDR");
        if let Some(ca) = &self.opts.proxy_ca {
            cmd.env("SSL_CERT_FILE", ca);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        if let Some((uid, gid)) = self.opts.run_as {
            // std clears the supplementary groups (setgroups(0)) before setuid when running as
            // root, so the registry keeps none of root's groups.
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "starting {REGISTRY_BIN} serve {}",
                self.config_path.display()
            )
        })?;
        self.pid = child.id();
        self.child = Some(child);
        if let Err(e) = self.wait_ready() {
            self.stop();
            return Err(e.context(format!(
                "registry on port {} (config {}) did not become ready; log tail:\n{}",
                self.port,
                self.config_path.display(),
                tail(&self.log(), 4000)
            )));
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = HttpClient::new()
            .insecure()
            .with_timeout(Duration::from_millis(500));
        let url = format!("{}/v2/", self.url());
        let mut last_err: String;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling the registry process")? {
                    bail!("registry exited during startup with {status}");
                }
            }
            if self.opts.client_ca.is_some() {
                // mTLS: no client certificate here; a listening socket is the best signal.
                match TcpStream::connect_timeout(
                    &([127, 0, 0, 1], self.port).into(),
                    Duration::from_millis(200),
                ) {
                    Ok(_) => return Ok(()),
                    Err(e) => last_err = e.to_string(),
                }
            } else {
                match client.get(&url) {
                    Ok(r)
                        if (r.status == 200 || r.status == 401)
                            && r.header(INSTANCE_HEADER) == Some(self.instance.as_str()) =>
                    {
                        return Ok(())
                    }
                    Ok(r) if r.status == 200 || r.status == 401 => {
                        last_err = format!(
                        "GET /v2/ was answered by another server (instance header {:?}, ours {:?})",
                        r.header(INSTANCE_HEADER),
                        self.instance
                    )
                    }
                    Ok(r) => last_err = format!("GET /v2/ answered {}: {}", r.status, r.text()),
                    Err(e) => last_err = format!("{e:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!("GET {url} did not answer 200/401 within {START_TIMEOUT:?}: {last_err}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops (kill + wait) and starts the same process again on the same port, config and
    /// storage: a registry restart/outage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn_and_wait()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, for image references like `docker://127.0.0.1:PORT/repo:tag`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:DEBUG_PORT` when started with `debug_metrics` (metrics at `/metrics`).
    pub fn debug_url(&self) -> Option<String> {
        self.debug_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// The storage root: the directory that contains `docker/registry/v2`.
    pub fn storage_root(&self) -> &Path {
        &self.root
    }

    /// Inspector of this registry's on-disk storage.
    pub fn storage(&self) -> Storage {
        Storage::new(&self.root)
    }

    /// PID of the current (or last) registry process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The temp dir holding config, log and (by default) storage; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the registry wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process (SIGKILL by PID via `Child::kill`) and reaps it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", path.display()))
}

/// Chowns `root` and everything under it (symlinks themselves, not their targets).
fn chown_tree(root: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", root.display()))?;
    if root.is_symlink() || !root.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        chown_tree(&entry.path(), uid, gid)?;
    }
    Ok(())
}

/// A YAML/JSON double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

/// The response header carrying a registry's instance id.
const INSTANCE_HEADER: &str = "x-test-registry-instance";

fn render_config(
    opts: &RegistryOptions,
    dir: &Path,
    root: &Path,
    port: u16,
    debug_port: Option<u16>,
    instance: &str,
) -> anyhow::Result<String> {
    let mut y = String::new();
    let secret = hex::encode(rand::random::<[u8; 16]>());
    writeln!(y, "version: 0.1")?;
    writeln!(y, "log:\n  level: warn\n  accesslog:\n    disabled: true")?;
    writeln!(
        y,
        "storage:\n  filesystem:\n    rootdirectory: {}",
        qp(root)
    )?;
    writeln!(y, "  delete:\n    enabled: {}", opts.delete_enabled)?;
    writeln!(
        y,
        "  maintenance:\n    uploadpurging:\n      enabled: false"
    )?;
    writeln!(y, "    readonly:\n      enabled: {}", opts.read_only)?;
    writeln!(
        y,
        "http:\n  addr: 127.0.0.1:{port}\n  secret: {}",
        q(&secret)
    )?;
    writeln!(
        y,
        "  headers:\n    X-Content-Type-Options: [nosniff]\n    X-Test-Registry-Instance: [{}]",
        q(instance)
    )?;
    if let Some(tls) = &opts.tls {
        writeln!(
            y,
            "  tls:\n    certificate: {}\n    key: {}",
            qp(&tls.cert),
            qp(&tls.key)
        )?;
        if let Some(ca) = &opts.client_ca {
            writeln!(y, "    clientcas:\n      - {}", qp(ca))?;
        }
    } else if opts.client_ca.is_some() {
        bail!("client_ca (mTLS) needs tls");
    }
    if let Some(dp) = debug_port {
        writeln!(y, "  debug:\n    addr: 127.0.0.1:{dp}\n    prometheus:\n      enabled: true\n      path: /metrics")?;
    }
    match &opts.auth {
        RegistryAuth::None => {}
        RegistryAuth::Htpasswd { username, password } => {
            let path = dir.join("htpasswd");
            let out = run_with_timeout(
                Command::new("htpasswd").args(["-Bbn", username, password]),
                Duration::from_secs(30),
            )?;
            if !out.status.success() {
                bail!(
                    "htpasswd -Bbn {username} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::fs::write(&path, &out.stdout)
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(
                y,
                "auth:\n  htpasswd:\n    realm: {}\n    path: {}",
                q("registry-prober-test"),
                qp(&path)
            )?;
        }
        RegistryAuth::Token {
            realm,
            service,
            issuer,
            rootcertbundle,
        } => {
            writeln!(
                y,
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}",
                q(realm),
                q(service),
                q(issuer),
                qp(rootcertbundle)
            )?;
        }
    }
    if let Some(remote) = &opts.proxy_remote {
        writeln!(y, "proxy:\n  remoteurl: {}", q(remote))?;
        if let Some((u, p)) = &opts.proxy_credentials {
            writeln!(y, "  username: {}\n  password: {}", q(u), q(p))?;
        }
    }
    Ok(y)
}
