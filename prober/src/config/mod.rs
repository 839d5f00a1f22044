//! Configuration: `RawConfig` is the YAML as written (unknown keys rejected, every field
//! documented), `Config` is what the prober runs on, validated, with secrets read from files.

mod otlp;

pub use otlp::{OtlpConfig, OtlpHeaders, OtlpSource, RawOtlp};

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::http::auth::{docker_config_credentials, Credentials};
use crate::http::tls::{ClientCert, TlsOptions};
use crate::oci::image::ManifestType;

/// A configuration problem: where (file, target, field) and what was wrong with which value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address of the HTTP server for /metrics, /healthz, /readyz and the status page
    /// (`run` only). Default 127.0.0.1:9115; in a pod use 0.0.0.0:9115.
    #[serde(default)]
    pub listen: Option<String>,
    /// Values every target inherits unless it sets its own.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Runs in flight at once across all targets (default 16); more wait for a slot.
    pub max_concurrent_runs: Option<i64>,
    /// Bytes of layers in flight at once across all runs (default 1GiB): a run waits until its
    /// image fits, so big size classes take turns instead of saturating the link or the disk.
    pub max_in_flight_bytes: Option<RawSize>,
    /// On SIGTERM, how long running cycles may take to finish and clean up (default 30s).
    pub shutdown_grace: Option<String>,
    /// Names this prober in every tag it pushes ([a-z0-9]{1,16}, default "default"), so two
    /// probers sharing a repository never sweep each other's images.
    pub instance: Option<String>,
    /// The registries to probe; each target pushes to and pulls from one repository.
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    /// Where to send a trace of every run (OTLP over HTTP, protobuf). Without this section the
    /// standard OTEL_EXPORTER_OTLP_* environment variables decide; with neither, no traces.
    /// Read at start only: a reload does not change it.
    pub otlp: Option<RawOtlp>,
}

/// Target settings that may be given once for all targets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Time between the starts of two runs of a target, e.g. "30s" (default 30s).
    pub interval: Option<String>,
    /// Hard deadline of a whole run, e.g. "25s" (default 25s); at most the interval.
    pub timeout: Option<String>,
    /// Deadline of each single step, e.g. "10s" (default: the run timeout).
    pub step_timeout: Option<String>,
    /// Deadline of each cleanup step, which runs even after the run deadline (default 10s).
    pub cleanup_timeout: Option<String>,
}

/// One registry path to probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Unique name, used as the `target` label: letters, digits, '-', '_' and '.'.
    pub name: String,
    /// Base URL of the registry, e.g. "https://registry.example.com" or "http://127.0.0.1:5000".
    pub registry: String,
    /// Repository the prober pushes to and deletes from, e.g. "registry-prober/probe".
    pub repository: String,
    /// "oci" (default) or "docker": the manifest media type pushed.
    pub manifest_type: Option<String>,
    /// Overrides defaults.interval.
    pub interval: Option<String>,
    /// Overrides defaults.timeout.
    pub timeout: Option<String>,
    /// Overrides defaults.step_timeout.
    pub step_timeout: Option<String>,
    /// Overrides defaults.cleanup_timeout.
    pub cleanup_timeout: Option<String>,
    /// Allow "http://" for a registry that is not on loopback (in-cluster registries).
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub image: RawImage,
    #[serde(default)]
    pub upload: RawUpload,
    #[serde(default)]
    pub cleanup: RawCleanup,
    /// Images the prober never pushed, pulled and verified every run, read-only: references
    /// in this registry, "repo@sha256:..." (pinned, preferred) or "repo:tag".
    #[serde(default)]
    pub golden_images: Vec<String>,
    /// Size tiers, each on its own interval (instead of `image`): big uploads probed rarely.
    pub sizes: Option<Vec<RawSizeClass>>,
    /// Pull paths besides the target's own endpoint (replicas, mirrors, caches, CDNs).
    #[serde(default)]
    pub paths: Vec<RawPath>,
    /// Aged canaries: pushed once, kept and verified every run, rotated.
    #[serde(default)]
    pub canaries: RawCanaries,
    /// Cross-repository blob mount, probed as its own step.
    #[serde(default)]
    pub mount: RawMount,
    /// Sweeps of the prober's own leftovers.
    #[serde(default)]
    pub hygiene: RawHygiene,
}

/// One size tier of a target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSizeClass {
    /// Name, the `size_class` label: [a-z0-9_]{1,32}.
    pub class: String,
    /// Size of each layer, e.g. [4KiB, 4KiB] or [512MiB].
    pub layer_sizes: Vec<RawSize>,
    /// Time between runs of this class (default: the target's interval).
    pub interval: Option<String>,
    /// Hard deadline of a run of this class (default: the target's timeout).
    pub timeout: Option<String>,
    /// Chunk size of chunked uploads of this class (default: upload.chunk_size).
    pub chunk_size: Option<RawSize>,
}

/// A pull path: another endpoint serving the target's content.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPath {
    /// Name, the `path` label: [a-z0-9_]{1,32}, not "origin".
    pub name: String,
    /// Base URL of the endpoint.
    pub registry: String,
    /// The repository as this path names it (default: the target's repository).
    pub repository: Option<String>,
    /// For replicated paths: poll until the pushed image appears, at most this long.
    pub propagation_timeout: Option<String>,
    /// Time between polls while waiting for propagation (default 500ms).
    pub poll_interval: Option<String>,
    #[serde(default)]
    pub allow_plain_http: bool,
    /// TLS settings (default: the target's).
    pub tls: Option<RawTls>,
    /// Credentials (default: the target's when the host is the same, else none).
    pub auth: Option<RawAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanaries {
    #[serde(default)]
    pub enabled: bool,
    /// A new canary per period (default 24h).
    pub every: Option<String>,
    /// Canaries kept; older ones are deleted (default 7).
    pub keep: Option<i64>,
    /// Layer sizes of a canary (default [4KiB, 64KiB]).
    pub layer_sizes: Option<Vec<RawSize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMount {
    #[serde(default)]
    pub enabled: bool,
    /// The repository mounted into (default: "<repository>-mount").
    pub repository: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHygiene {
    /// Sweep at start and then every interval (default 1h).
    pub interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file of CA certificates trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with client_key_file).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate. Only for test registries.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// User name for basic auth or the token service.
    pub username: Option<String>,
    /// File holding the password (a trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// A Docker config.json whose `auths` entry for this registry supplies the credentials.
    pub docker_config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    /// Number of layers, each `layer_size` (default: 3 layers of 4KiB, 64KiB and 1MiB).
    pub layers: Option<i64>,
    /// Size of each layer, e.g. "1MiB", "4KiB", "512" (bytes).
    pub layer_size: Option<RawSize>,
    /// Explicit size of each layer, instead of layers + layer_size.
    pub layer_sizes: Option<Vec<RawSize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpload {
    /// "monolithic" (POST then one PUT, default) or "chunked" (POST, PATCH per chunk, PUT).
    pub mode: Option<String>,
    /// Chunk size for chunked uploads (default 5MiB); raised to the registry's OCI-Chunk-Min-Length.
    pub chunk_size: Option<RawSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCleanup {
    /// Delete what a run pushed (default true). Off leaves the image for inspection.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Also DELETE the blobs (default true); turn off for registries that refuse blob deletes.
    #[serde(default = "yes")]
    pub delete_blobs: bool,
}

impl Default for RawCleanup {
    fn default() -> Self {
        RawCleanup {
            enabled: true,
            delete_blobs: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// A size as written: a number of bytes or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

impl fmt::Display for RawSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSize::Bytes(n) => write!(f, "{n}"),
            RawSize::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_concurrent_runs: usize,
    pub max_in_flight_bytes: u64,
    pub shutdown_grace: Duration,
    pub instance: String,
    pub targets: Vec<Target>,
    /// The config file's `otlp` section; see [`OtlpSource::from_env`] for the environment.
    pub otlp: Option<OtlpConfig>,
}

/// How a target uploads blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadMode {
    Monolithic,
    Chunked { chunk_size: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cleanup {
    pub enabled: bool,
    pub delete_blobs: bool,
}

/// A validated target.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub registry: Url,
    pub repository: String,
    pub manifest_type: ManifestType,
    pub interval: Duration,
    pub timeout: Duration,
    pub step_timeout: Duration,
    pub cleanup_timeout: Duration,
    pub tls: TlsOptions,
    pub credentials: Option<Credentials>,
    pub upload: UploadMode,
    pub cleanup: Cleanup,
    pub golden_images: Vec<Reference>,
    /// At least one; the first one also pulls golden images and canaries.
    pub sizes: Vec<SizeClass>,
    pub paths: Vec<PullPath>,
    pub canaries: Option<Canaries>,
    /// The repository blobs are mounted into, when mount probing is on.
    pub mount: Option<String>,
    pub hygiene_interval: Duration,
    /// The prober instance named in every tag (from the top-level `instance`).
    pub instance: String,
}

/// A size tier: its layers, interval, deadline and upload mode.
#[derive(Clone, Debug)]
pub struct SizeClass {
    pub name: String,
    pub layer_sizes: Vec<u64>,
    pub interval: Duration,
    pub timeout: Duration,
    pub upload: UploadMode,
}

/// A pull path besides the origin.
#[derive(Clone, Debug)]
pub struct PullPath {
    pub name: String,
    pub registry: Url,
    pub repository: String,
    pub tls: TlsOptions,
    pub credentials: Option<Credentials>,
    pub propagation: Option<Propagation>,
}

#[derive(Clone, Copy, Debug)]
pub struct Propagation {
    pub timeout: Duration,
    pub poll_interval: Duration,
}

#[derive(Clone, Debug)]
pub struct Canaries {
    pub every: Duration,
    pub keep: u32,
    pub layer_sizes: Vec<u64>,
}

impl SizeClass {
    /// The bytes a run of this class moves at once: its layers.
    pub fn image_bytes(&self) -> u64 {
        self.layer_sizes.iter().sum()
    }
}

impl Target {
    /// The longest a run of any class may take, cleanup included.
    pub fn max_run_time(&self) -> Duration {
        let timeout = self
            .sizes
            .iter()
            .map(|c| c.timeout)
            .max()
            .unwrap_or(self.timeout);
        timeout + self.cleanup_timeout
    }
}

/// A reference to an image in a target's registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub repository: String,
    /// A tag or a "sha256:..." digest.
    pub reference: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(f, "{}{sep}{}", self.repository, self.reference)
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9115";
pub const DEFAULT_LAYER_SIZES: [u64; 3] = [4 * 1024, 64 * 1024, 1024 * 1024];
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);
const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONCURRENT_RUNS: usize = 16;
const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 1024 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_CHUNK_SIZE: u64 = 5 * 1024 * 1024;
pub const DEFAULT_SIZE_CLASS: &str = "default";
/// The `path` label of the target's own endpoint, where pushes go.
pub const ORIGIN: &str = "origin";
const DEFAULT_INSTANCE: &str = "default";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_CANARY_EVERY: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_CANARY_KEEP: i64 = 7;
const DEFAULT_CANARY_LAYERS: [u64; 2] = [4 * 1024, 64 * 1024];
const DEFAULT_HYGIENE_INTERVAL: Duration = Duration::from_secs(3600);
/// Layers beyond this are a typo, not a probe (and would take hours to push).
const MAX_LAYER_SIZE: u64 = 64 * 1024 * 1024 * 1024;
const MAX_LAYERS: i64 = 128;

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        raw.validate().map_err(|e| match e {
            ConfigError::Invalid(msg) => {
                ConfigError::Invalid(format!("config file {}: {msg}", path.display()))
            }
            other => other,
        })
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|e| invalid(format!("listen: invalid address {listen_text:?}: {e} (expected host:port, e.g. 127.0.0.1:9115)")))?;
        if self.targets.is_empty() {
            return Err(invalid("targets: at least one target is required"));
        }
        let instance = self
            .instance
            .clone()
            .unwrap_or_else(|| DEFAULT_INSTANCE.into());
        if instance.is_empty()
            || instance.len() > 16
            || !instance
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(invalid(format!(
                "instance: {instance:?} must be 1 to 16 lowercase letters or digits (it is part of every tag the prober pushes)"
            )));
        }
        let mut names = HashSet::new();
        let mut targets = Vec::with_capacity(self.targets.len());
        for (i, raw) in self.targets.into_iter().enumerate() {
            let label = if raw.name.is_empty() {
                format!("targets[{i}]")
            } else {
                format!("target {:?}", raw.name)
            };
            let target = raw
                .validate(&self.defaults, &instance)
                .map_err(|e| match e {
                    ConfigError::Invalid(msg) => invalid(format!("{label}: {msg}")),
                    other => other,
                })?;
            if !names.insert(target.name.clone()) {
                return Err(invalid(format!(
                    "{label}: name is used by another target too"
                )));
            }
            targets.push(target);
        }
        let max_concurrent_runs = match self.max_concurrent_runs {
            None => DEFAULT_MAX_CONCURRENT_RUNS,
            Some(n) if (1..=10_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(invalid(format!(
                    "max_concurrent_runs: {n} is out of range (1 to 10000)"
                )))
            }
        };
        let max_in_flight_bytes = match &self.max_in_flight_bytes {
            None => DEFAULT_MAX_IN_FLIGHT_BYTES,
            Some(raw) => match parse_size("max_in_flight_bytes", raw)? {
                0 => return Err(invalid("max_in_flight_bytes: must be at least 1 byte")),
                n => n,
            },
        };
        let shutdown_grace = duration(
            "shutdown_grace",
            self.shutdown_grace.as_ref(),
            DEFAULT_SHUTDOWN_GRACE,
        )?;
        let otlp = self.otlp.map(RawOtlp::validate).transpose()?;
        Ok(Config {
            listen,
            max_concurrent_runs,
            max_in_flight_bytes,
            shutdown_grace,
            instance,
            targets,
            otlp,
        })
    }
}

impl RawTarget {
    pub fn validate(self, defaults: &RawDefaults, instance: &str) -> Result<Target, ConfigError> {
        validate_name(&self.name)?;
        let registry = parse_registry_url(&self.registry, self.allow_plain_http)?;
        validate_repository("repository", &self.repository)?;
        let manifest_type = match self.manifest_type.as_deref() {
            None | Some("oci") => ManifestType::Oci,
            Some("docker") => ManifestType::Docker,
            Some(other) => {
                return Err(invalid(format!(
                    "manifest_type: unknown media type {other:?} (expected \"oci\" or \"docker\")"
                )))
            }
        };
        let interval = duration(
            "interval",
            self.interval.as_ref().or(defaults.interval.as_ref()),
            DEFAULT_INTERVAL,
        )?;
        let timeout_default = DEFAULT_TIMEOUT.min(interval);
        let timeout = duration(
            "timeout",
            self.timeout.as_ref().or(defaults.timeout.as_ref()),
            timeout_default,
        )?;
        let step_timeout = duration(
            "step_timeout",
            self.step_timeout
                .as_ref()
                .or(defaults.step_timeout.as_ref()),
            timeout,
        )?;
        let cleanup_timeout = duration(
            "cleanup_timeout",
            self.cleanup_timeout
                .as_ref()
                .or(defaults.cleanup_timeout.as_ref()),
            DEFAULT_CLEANUP_TIMEOUT,
        )?;
        if timeout > interval {
            return Err(invalid(format!(
                "timeout ({}) must not be longer than interval ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            )));
        }
        if step_timeout > timeout {
            return Err(invalid(format!(
                "step_timeout ({}) must not be longer than timeout ({})",
                humantime::format_duration(step_timeout),
                humantime::format_duration(timeout)
            )));
        }
        let tls = self.tls.validate()?;
        let credentials = self.auth.validate(&registry)?;
        let image_given = self.image.layers.is_some()
            || self.image.layer_size.is_some()
            || self.image.layer_sizes.is_some();
        let layer_sizes = self.image.validate()?;
        let upload = self.upload.validate()?;
        let sizes = match self.sizes {
            None => vec![SizeClass {
                name: DEFAULT_SIZE_CLASS.into(),
                layer_sizes,
                interval,
                timeout,
                upload,
            }],
            Some(_) if image_given => return Err(invalid("sizes: set sizes or image, not both")),
            Some(list) if list.is_empty() => {
                return Err(invalid("sizes: at least one size class is required"))
            }
            Some(list) => {
                let mut seen = HashSet::new();
                let mut out = Vec::with_capacity(list.len());
                for (i, raw) in list.into_iter().enumerate() {
                    let class = raw.validate(i, interval, timeout, upload)?;
                    if !seen.insert(class.name.clone()) {
                        return Err(invalid(format!(
                            "sizes[{i}].class: {:?} is used by another size class too",
                            class.name
                        )));
                    }
                    out.push(class);
                }
                out
            }
        };
        let mut paths = Vec::with_capacity(self.paths.len());
        let mut path_names = HashSet::new();
        for (i, raw) in self.paths.into_iter().enumerate() {
            let path = raw
                .validate(&self.repository, &registry, &tls, credentials.as_ref())
                .map_err(|e| match e {
                    ConfigError::Invalid(msg) => invalid(format!("paths[{i}]: {msg}")),
                    other => other,
                })?;
            if !path_names.insert(path.name.clone()) {
                return Err(invalid(format!(
                    "paths[{i}].name: {:?} is used by another path too",
                    path.name
                )));
            }
            paths.push(path);
        }
        let canaries = self.canaries.validate()?;
        let mount = match (self.mount.enabled, self.mount.repository) {
            (false, Some(_)) => {
                return Err(invalid(
                    "mount.repository is set but mount.enabled is not true",
                ))
            }
            (false, None) => None,
            (true, Some(repo)) => {
                validate_repository("mount.repository", &repo)?;
                if repo == self.repository {
                    return Err(invalid(
                        "mount.repository must differ from repository (a mount crosses repositories)",
                    ));
                }
                Some(repo)
            }
            (true, None) => Some(format!("{}-mount", self.repository)),
        };
        let hygiene_interval = duration(
            "hygiene.interval",
            self.hygiene.interval.as_ref(),
            DEFAULT_HYGIENE_INTERVAL,
        )?;
        let golden_images = self
            .golden_images
            .iter()
            .enumerate()
            .map(|(i, r)| {
                parse_reference(r).map_err(|e| invalid(format!("golden_images[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target {
            name: self.name,
            registry,
            repository: self.repository,
            manifest_type,
            interval,
            timeout,
            step_timeout,
            cleanup_timeout,
            tls,
            credentials,
            upload,
            cleanup: Cleanup {
                enabled: self.cleanup.enabled,
                delete_blobs: self.cleanup.delete_blobs,
            },
            golden_images,
            sizes,
            paths,
            canaries,
            mount,
            hygiene_interval,
            instance: instance.to_string(),
        })
    }
}

/// A label value taken from config (`size_class`, `path`): short, lowercase, closed.
fn validate_label(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty()
        || value.len() > 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid(format!(
            "{field}: {value:?} must be 1 to 32 lowercase letters, digits or '_' (it becomes a metric label)"
        )));
    }
    Ok(())
}

fn size_list(field: &str, sizes: &[RawSize]) -> Result<Vec<u64>, ConfigError> {
    if sizes.is_empty() {
        return Err(invalid(format!("{field}: at least one layer is required")));
    }
    if sizes.len() > MAX_LAYERS as usize {
        return Err(invalid(format!(
            "{field}: {} layers is too many (at most {MAX_LAYERS})",
            sizes.len()
        )));
    }
    sizes
        .iter()
        .enumerate()
        .map(|(i, s)| parse_size(&format!("{field}[{i}]"), s))
        .collect()
}

impl RawSizeClass {
    fn validate(
        self,
        i: usize,
        interval: Duration,
        timeout: Duration,
        upload: UploadMode,
    ) -> Result<SizeClass, ConfigError> {
        // A class timeout shorter than step_timeout is fine: a step never outlives its run.
        let at = |f: &str| format!("sizes[{i}].{f}");
        validate_label(&at("class"), &self.class)?;
        let layer_sizes = size_list(&at("layer_sizes"), &self.layer_sizes)?;
        let interval = duration(&at("interval"), self.interval.as_ref(), interval)?;
        let timeout = duration(&at("timeout"), self.timeout.as_ref(), timeout.min(interval))?;
        if timeout > interval {
            return Err(invalid(format!(
                "{}: timeout ({}) must not be longer than the interval ({})",
                at("timeout"),
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            )));
        }
        let upload = match (upload, &self.chunk_size) {
            (_, None) => upload,
            (UploadMode::Chunked { .. }, Some(raw)) => {
                let chunk_size = parse_size(&at("chunk_size"), raw)?;
                if chunk_size == 0 {
                    return Err(invalid(format!(
                        "{}: must be at least 1 byte",
                        at("chunk_size")
                    )));
                }
                UploadMode::Chunked { chunk_size }
            }
            (UploadMode::Monolithic, Some(_)) => {
                return Err(invalid(format!(
                    "{} is set but upload.mode is not \"chunked\"",
                    at("chunk_size")
                )))
            }
        };
        Ok(SizeClass {
            name: self.class,
            layer_sizes,
            interval,
            timeout,
            upload,
        })
    }
}

impl RawPath {
    fn validate(
        self,
        repository: &str,
        origin: &Url,
        tls: &TlsOptions,
        credentials: Option<&Credentials>,
    ) -> Result<PullPath, ConfigError> {
        validate_label("name", &self.name)?;
        if self.name == ORIGIN {
            return Err(invalid(
                "name: \"origin\" is the target's own endpoint; give the path another name",
            ));
        }
        let registry = parse_registry_url(&self.registry, self.allow_plain_http)?;
        let repository = match self.repository {
            Some(r) => {
                validate_repository("repository", &r)?;
                r
            }
            None => repository.to_string(),
        };
        let propagation = match (&self.propagation_timeout, &self.poll_interval) {
            (None, Some(_)) => {
                return Err(invalid(
                    "poll_interval is set but propagation_timeout is not",
                ))
            }
            (None, None) => None,
            (Some(_), _) => Some(Propagation {
                timeout: duration(
                    "propagation_timeout",
                    self.propagation_timeout.as_ref(),
                    Duration::ZERO,
                )?,
                poll_interval: duration(
                    "poll_interval",
                    self.poll_interval.as_ref(),
                    DEFAULT_POLL_INTERVAL,
                )?,
            }),
        };
        let tls = match self.tls {
            Some(raw) => raw.validate()?,
            None => tls.clone(),
        };
        let credentials = match self.auth {
            Some(raw) => raw.validate(&registry)?,
            // A credential goes only where it was configured for: the same host.
            None if registry.host_str() == origin.host_str() => credentials.cloned(),
            None => None,
        };
        Ok(PullPath {
            name: self.name,
            registry,
            repository,
            tls,
            credentials,
            propagation,
        })
    }
}

impl RawCanaries {
    fn validate(self) -> Result<Option<Canaries>, ConfigError> {
        if !self.enabled {
            if self.every.is_some() || self.keep.is_some() || self.layer_sizes.is_some() {
                return Err(invalid(
                    "canaries: settings are given but canaries.enabled is not true",
                ));
            }
            return Ok(None);
        }
        let every = duration("canaries.every", self.every.as_ref(), DEFAULT_CANARY_EVERY)?;
        if every < Duration::from_secs(1) {
            return Err(invalid("canaries.every: must be at least 1s"));
        }
        let keep = self.keep.unwrap_or(DEFAULT_CANARY_KEEP);
        if !(1..=1000).contains(&keep) {
            return Err(invalid(format!(
                "canaries.keep: {keep} is out of range (1 to 1000)"
            )));
        }
        let layer_sizes = match &self.layer_sizes {
            Some(sizes) => size_list("canaries.layer_sizes", sizes)?,
            None => DEFAULT_CANARY_LAYERS.to_vec(),
        };
        Ok(Some(Canaries {
            every,
            keep: keep as u32,
            layer_sizes,
        }))
    }
}

impl RawTls {
    fn validate(self) -> Result<TlsOptions, ConfigError> {
        let client_cert = match (self.client_cert_file, self.client_key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCert {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "tls.client_cert_file is set but tls.client_key_file is not",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls.client_key_file is set but tls.client_cert_file is not",
                ))
            }
        };
        let opts = TlsOptions {
            ca_file: self.ca_file,
            client_cert,
            insecure: self.insecure,
        };
        // Build it once now so a missing or broken CA/cert file is a config error, not a
        // failure of every run.
        crate::http::tls::client_config(&opts)
            .map_err(|e| invalid(format!("tls: {}", crate::http::error_chain(&e))))?;
        Ok(opts)
    }
}

impl RawAuth {
    fn validate(self, registry: &Url) -> Result<Option<Credentials>, ConfigError> {
        let password = match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err(invalid("auth: set password_file or password_env, not both"))
            }
            (Some(path), None) => Some(read_password_file(path)?),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                invalid(format!(
                    "auth.password_env: environment variable {var:?} is not set"
                ))
            })?),
            (None, None) => None,
        };
        match (self.username, password, self.docker_config) {
            (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
                Err(invalid("auth: docker_config cannot be combined with username/password"))
            }
            (Some(u), Some(p), None) => Ok(Some(Credentials::new(u, p))),
            (Some(u), None, None) => Err(invalid(format!(
                "auth.username {u:?} is set but no password: set auth.password_file or auth.password_env"
            ))),
            (None, Some(_), None) => Err(invalid("auth: a password is set but auth.username is not")),
            (None, None, Some(path)) => {
                let host = host_port(registry);
                docker_config_credentials(&path, &host)
                    .map_err(|e| invalid(format!("auth.docker_config: {e}")))?
                    .map(Some)
                    .ok_or_else(|| invalid(format!("auth.docker_config: {} has no credentials for {host}", path.display())))
            }
            (None, None, None) => Ok(None),
        }
    }
}

/// Reads a password file; one trailing newline (as `echo` writes) is not part of the password.
pub fn read_password_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "auth.password_file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let password = text
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(invalid(format!(
            "auth.password_file: {} is empty",
            path.display()
        )));
    }
    Ok(password.to_string())
}

impl RawImage {
    fn validate(self) -> Result<Vec<u64>, ConfigError> {
        match (self.layers, self.layer_size, self.layer_sizes) {
            (_, _, Some(sizes)) if sizes.is_empty() => {
                Err(invalid("image.layer_sizes: at least one layer is required"))
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(invalid(
                "image: set layer_sizes, or layers and layer_size, not both",
            )),
            (None, None, Some(sizes)) => sizes
                .iter()
                .enumerate()
                .map(|(i, s)| parse_size(&format!("image.layer_sizes[{i}]"), s))
                .collect(),
            (layers, size, None) => {
                if layers.is_none() && size.is_none() {
                    return Ok(DEFAULT_LAYER_SIZES.to_vec());
                }
                let n = layers.unwrap_or(3);
                if !(1..=MAX_LAYERS).contains(&n) {
                    return Err(invalid(format!(
                        "image.layers: {n} is out of range (1 to {MAX_LAYERS})"
                    )));
                }
                let size = match size {
                    Some(s) => parse_size("image.layer_size", &s)?,
                    None => DEFAULT_LAYER_SIZES[2],
                };
                Ok(vec![size; n as usize])
            }
        }
    }
}

impl RawUpload {
    fn validate(self) -> Result<UploadMode, ConfigError> {
        let chunk_size = match &self.chunk_size {
            Some(s) => parse_size("upload.chunk_size", s)?,
            None => DEFAULT_CHUNK_SIZE,
        };
        if chunk_size == 0 {
            return Err(invalid("upload.chunk_size: must be at least 1 byte"));
        }
        match self.mode.as_deref() {
            None | Some("monolithic") => {
                if self.chunk_size.is_some() {
                    return Err(invalid(
                        "upload.chunk_size is set but upload.mode is not \"chunked\"",
                    ));
                }
                Ok(UploadMode::Monolithic)
            }
            Some("chunked") => Ok(UploadMode::Chunked { chunk_size }),
            Some(other) => Err(invalid(format!(
                "upload.mode: unknown mode {other:?} (expected \"monolithic\" or \"chunked\")"
            ))),
        }
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid("name: must not be empty"));
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(format!(
            "name: {name:?} must be at most 64 letters, digits, '-', '_' or '.' (it becomes a metric label)"
        )));
    }
    Ok(())
}

/// Checks a registry base URL: http(s), a host, no path, query or credentials.
pub fn parse_registry_url(text: &str, allow_plain_http: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| {
        invalid(format!(
            "registry: invalid URL {text:?}: {e} (expected e.g. https://registry.example.com)"
        ))
    })?;
    let Some(host) = url.host_str() else {
        return Err(invalid(format!("registry: URL {text:?} has no host")));
    };
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false);
            if !loopback && !allow_plain_http {
                return Err(invalid(format!(
                    "registry: {text:?} uses plain HTTP to a host that is not loopback; use https, or set allow_plain_http: true"
                )));
            }
        }
        other => {
            return Err(invalid(format!(
                "registry: URL {text:?} has scheme {other:?}; expected http or https"
            )))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!(
            "registry: URL {:?} must not carry credentials; use auth",
            url.origin().ascii_serialization()
        )));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "registry: URL {text:?} must have no path or query (the API is under /v2/)"
        )));
    }
    Ok(url)
}

/// "host" or "host:port" as Docker's config.json keys it.
pub fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// OCI distribution spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_repository(field: &str, name: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        invalid(format!(
            "{field}: {name:?} is not a valid repository name: {why}"
        ))
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 255 {
        return Err(bad("longer than 255 characters"));
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Err(bad("empty path component"));
        }
        let bytes = component.as_bytes();
        if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return Err(bad(
                "components must start and end with a lowercase letter or digit",
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "."
                || sep == "_"
                || sep == "__"
                || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'));
            if !ok {
                return Err(bad(&format!(
                    "invalid character or separator {:?}",
                    if sep.is_empty() {
                        &component[start..start + 1]
                    } else {
                        sep
                    }
                )));
            }
        }
    }
    Ok(())
}

/// "repo@sha256:<hex>" or "repo:tag".
pub fn parse_reference(text: &str) -> Result<Reference, String> {
    let (repository, reference) = if let Some((repo, digest)) = text.split_once('@') {
        crate::oci::digest::Digest::parse(digest).map_err(|e| format!("{text:?}: {e}"))?;
        (repo, digest)
    } else if let Some((repo, tag)) = text.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && !tag.starts_with(['.', '-']);
        if !valid_tag {
            return Err(format!("{text:?}: invalid tag {tag:?}"));
        }
        (repo, tag)
    } else {
        return Err(format!(
            "{text:?}: expected repository@sha256:<digest> or repository:tag"
        ));
    };
    validate_repository("repository", repository).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(Reference {
        repository: repository.to_string(),
        reference: reference.to_string(),
    })
}

fn duration(
    field: &str,
    value: Option<&String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(format!(
            "{field}: invalid duration {text:?}: {e} (expected e.g. \"30s\", \"2m\")"
        ))
    })?;
    if d.is_zero() {
        return Err(invalid(format!(
            "{field}: duration {text:?} must be greater than zero"
        )));
    }
    Ok(d)
}

/// Parses "4KiB", "1 MiB", "16MB", "512" (bytes). Binary and decimal units, case-insensitive.
pub fn parse_size(field: &str, raw: &RawSize) -> Result<u64, ConfigError> {
    let bad = |why: &str| invalid(format!("{field}: invalid size {raw}: {why}"));
    let bytes = match raw {
        RawSize::Bytes(n) if *n < 0 => return Err(bad("a size cannot be negative")),
        RawSize::Bytes(n) => *n as u64,
        RawSize::Text(text) => {
            let t = text.trim();
            if t.starts_with('-') {
                return Err(bad("a size cannot be negative"));
            }
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            if num.is_empty() {
                return Err(bad(
                    "expected a number followed by an optional unit, e.g. \"4KiB\" or \"16MiB\"",
                ));
            }
            let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" | "ki" => 1 << 10,
                "m" | "mb" => 1_000_000,
                "mib" | "mi" => 1 << 20,
                "g" | "gb" => 1_000_000_000,
                "gib" | "gi" => 1 << 30,
                other => {
                    return Err(bad(&format!(
                        "unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
                    )))
                }
            };
            n.checked_mul(mult).ok_or_else(|| bad("too large"))?
        }
    };
    if bytes > MAX_LAYER_SIZE {
        return Err(bad(&format!(
            "larger than the maximum of {} bytes (64 GiB)",
            MAX_LAYER_SIZE
        )));
    }
    Ok(bytes)
}

/// Formats a byte count the way sizes are written in the config ("1MiB", "4KiB", "100B").
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (mult, unit) in UNITS {
        if bytes >= mult && bytes % mult == 0 {
            return format!("{}{unit}", bytes / mult);
        }
    }
    for (mult, unit) in UNITS {
        if bytes >= mult {
            return format!("{:.1}{unit}", bytes as f64 / mult as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(yaml: &str) -> Result<Config, String> {
        let raw: RawConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    const MINIMAL: &str =
        "targets:\n  - name: local\n    registry: http://127.0.0.1:5000\n    repository: probe/x\n";

    #[test]
    fn a_minimal_target_gets_the_documented_defaults() {
        let c = load_str(MINIMAL).expect("valid");
        let t = &c.targets[0];
        assert_eq!(c.listen.to_string(), "127.0.0.1:9115");
        assert_eq!(t.interval, Duration::from_secs(30));
        assert_eq!(t.timeout, Duration::from_secs(25));
        assert_eq!(t.step_timeout, Duration::from_secs(25));
        assert_eq!(t.sizes[0].layer_sizes, vec![4096, 65536, 1048576]);
        assert_eq!(t.upload, UploadMode::Monolithic);
        assert_eq!(t.manifest_type, ManifestType::Oci);
        assert!(t.cleanup.enabled && t.cleanup.delete_blobs);
    }

    #[test]
    fn parses_sizes_with_units() {
        let s = |t: &str| parse_size("f", &RawSize::Text(t.into()));
        assert_eq!(s("4KiB").expect("valid"), 4096);
        assert_eq!(s("1 MiB").expect("valid"), 1 << 20);
        assert_eq!(s("16MB").expect("valid"), 16_000_000);
        assert_eq!(s("512").expect("valid"), 512);
        assert_eq!(parse_size("f", &RawSize::Bytes(7)).expect("valid"), 7);
        assert_eq!(
            s("-1MiB").expect_err("negative").to_string(),
            "f: invalid size \"-1MiB\": a size cannot be negative"
        );
        assert_eq!(
            s("3 parsecs").expect_err("unit").to_string(),
            "f: invalid size \"3 parsecs\": unknown unit \"parsecs\" (use B, KiB, MiB, GiB, KB, MB or GB)"
        );
    }

    #[test]
    fn formats_sizes_as_they_are_written() {
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(1536), "1.5KiB");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn validates_repository_names_like_the_spec() {
        for ok in ["a", "probe/x", "a.b_c__d---e/f0", "registry-prober/probe"] {
            validate_repository("r", ok).expect(ok);
        }
        for bad in ["", "A", "a//b", "-a", "a-", "a/", "a..b", "a___b", "a:b"] {
            assert!(validate_repository("r", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn parses_golden_references() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parse_reference(&format!("golden/img@{digest}")).expect("valid"),
            Reference {
                repository: "golden/img".into(),
                reference: digest
            }
        );
        assert_eq!(
            parse_reference("golden/img:v1").expect("valid"),
            Reference {
                repository: "golden/img".into(),
                reference: "v1".into()
            }
        );
        assert!(parse_reference("golden/img").is_err());
        assert!(parse_reference("golden/img@sha256:xyz").is_err());
    }

    #[test]
    fn rejects_plain_http_to_a_remote_registry_unless_allowed() {
        let e = parse_registry_url("http://registry.example.com", false).expect_err("refused");
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        parse_registry_url("http://registry.example.com", true).expect("allowed");
        parse_registry_url("http://localhost:5000", false).expect("loopback");
        parse_registry_url("http://[::1]:5000", false).expect("loopback v6");
    }

    #[test]
    fn rejects_a_timeout_longer_than_the_interval_quoting_both() {
        let yaml = format!("{MINIMAL}    interval: 15s\n    timeout: 30s\n");
        assert_eq!(
            load_str(&yaml).expect_err("invalid"),
            "target \"local\": timeout (30s) must not be longer than interval (15s)"
        );
    }

    /// One fixture per rejection rule under testdata/config/bad/, each with its exact message
    /// in a sibling .err file (set UPDATE_FIXTURES=1 to write them, then read every one).
    #[test]
    fn every_bad_fixture_is_rejected_with_its_exact_message() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/bad");
        let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("fixture dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        fixtures.sort();
        assert!(
            fixtures.len() >= 15,
            "fixtures missing in {}",
            dir.display()
        );
        for path in fixtures {
            let err =
                Config::load(&path).expect_err(&format!("{} must be rejected", path.display()));
            // Messages name the file by its full path; compare from the fixture's name on.
            let shown = err
                .to_string()
                .replace(&format!("{}", dir.display()), "testdata/config/bad");
            let expected_path = path.with_extension("err");
            if std::env::var_os("UPDATE_FIXTURES").is_some() {
                std::fs::write(&expected_path, format!("{shown}\n")).expect("write fixture");
            }
            let expected = std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
            assert_eq!(shown, expected.trim_end(), "{}", path.display());
        }
    }

    #[test]
    fn every_good_fixture_is_accepted() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/good");
        for entry in std::fs::read_dir(&dir).expect("fixture dir") {
            let path = entry.expect("entry").path();
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn the_otlp_section_appends_v1_traces_to_a_base_endpoint_only() {
        let c = load_str(&format!(
            "{MINIMAL}otlp:\n  endpoint: http://otel-collector:4318\n  timeout: 3s\n"
        ))
        .expect("valid");
        let otlp = c.otlp.expect("otlp");
        assert_eq!(
            otlp.traces_url.as_str(),
            "http://otel-collector:4318/v1/traces"
        );
        assert_eq!(otlp.timeout, Duration::from_secs(3));
        let c = load_str(&format!(
            "{MINIMAL}otlp: {{endpoint: \"https://otlp.example/prefix/\"}}\n"
        ))
        .expect("valid");
        assert_eq!(
            c.otlp.expect("otlp").traces_url.as_str(),
            "https://otlp.example/prefix/v1/traces"
        );
        let c = load_str(&format!(
            "{MINIMAL}otlp: {{traces_endpoint: \"http://127.0.0.1:4318/custom\"}}\n"
        ))
        .expect("valid");
        let otlp = c.otlp.expect("otlp");
        assert_eq!(otlp.traces_url.as_str(), "http://127.0.0.1:4318/custom");
        assert_eq!(otlp.timeout, Duration::from_secs(10));
        assert_eq!(load_str(MINIMAL).expect("valid").otlp, None);
    }

    #[test]
    fn the_otlp_section_rejects_ambiguous_or_unusable_endpoints() {
        let err =
            |section: &str| load_str(&format!("{MINIMAL}otlp: {section}\n")).expect_err("invalid");
        assert_eq!(
            err("{endpoint: \"http://a:4318\", traces_endpoint: \"http://a:4318/v1/traces\"}"),
            "otlp: set endpoint or traces_endpoint, not both"
        );
        assert_eq!(err("{}"), "otlp: endpoint or traces_endpoint is required");
        assert_eq!(
            err("{endpoint: \"grpc://a:4317\"}"),
            "otlp.endpoint: URL \"grpc://a:4317\" has scheme \"grpc\"; expected http or https (e.g. http://otel-collector:4318)"
        );
        assert_eq!(
            err("{endpoint: \"http://user:pw@a:4318\"}"),
            "otlp.endpoint: URL \"http://a:4318\" must not carry credentials; use headers"
        );
    }

    #[test]
    fn otlp_headers_come_from_a_file_and_never_show_their_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("headers");
        std::fs::write(
            &path,
            "# the vendor's key\nx-api-key: s3cret-value\n\nX-Tenant : blue\n",
        )
        .expect("write");
        let c = load_str(&format!(
            "{MINIMAL}otlp: {{endpoint: \"http://a:4318\", headers_file: {}}}\n",
            path.display()
        ))
        .expect("valid");
        let headers = c.otlp.expect("otlp").headers;
        assert_eq!(headers.0.len(), 2);
        assert_eq!(headers.0[0].0, "x-api-key");
        assert_eq!(headers.0[0].1, "s3cret-value");
        assert_eq!(headers.0[1].0, "x-tenant");
        let shown = format!("{headers:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("x-api-key"),
            "{shown}"
        );

        std::fs::write(&path, "x-api-key s3cret-value\n").expect("write");
        let e = load_str(&format!(
            "{MINIMAL}otlp: {{endpoint: \"http://a:4318\", headers_file: {}}}\n",
            path.display()
        ))
        .expect_err("invalid");
        assert_eq!(
            e,
            format!(
                "otlp.headers_file: {} line 1: expected \"name: value\"",
                path.display()
            )
        );
        assert!(!e.contains("s3cret"));
    }

    #[test]
    fn a_password_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").expect("write");
        assert_eq!(read_password_file(&p).expect("read"), "s3cret");
    }
}
