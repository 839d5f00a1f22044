//! What the prober runs on: the validated configuration, every value checked and defaulted,
//! secrets read and each endpoint's TLS client config built, once, by `validate`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::OtlpConfig;
use crate::http::keychain::CredentialSource;
use crate::http::tls::TlsOptions;
use crate::oci::compression::LayerFormat;
use crate::oci::manifest::ManifestType;
use crate::oci::platform::Platform;

/// The `size_class` label of a target without `sizes`.
pub(crate) const DEFAULT_SIZE_CLASS: &str = "default";
/// The `path` label of the target's own endpoint, where pushes go.
pub(crate) const ORIGIN: &str = "origin";

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) max_concurrent_runs: usize,
    pub(crate) max_in_flight_bytes: u64,
    pub(crate) shutdown_grace: Duration,
    pub targets: Vec<Target>,
    /// The config file's `otlp` section; see [`OtlpSource::from_env`] for the environment.
    pub(crate) otlp: Option<OtlpConfig>,
}

/// A validated target.
#[derive(Clone, Debug)]
pub struct Target {
    pub(crate) name: String,
    pub(crate) registry: Url,
    pub(crate) repository: String,
    pub(crate) manifest_type: ManifestType,
    /// What the layers the target pushes are (`image.compression`).
    pub(crate) layer_format: LayerFormat,
    /// Whether pulls of the run's own image check each layer against its DiffID.
    pub(crate) verify_diff_ids: bool,
    /// The target's run deadline (a sweep's; each size class has its own).
    pub(crate) timeout: Duration,
    pub(crate) step_timeout: Duration,
    pub(crate) cleanup_timeout: Duration,
    pub(crate) tls: Tls,
    /// Where the endpoint's credentials come from (shared with the pull paths on its host).
    pub(crate) credentials: Option<Arc<CredentialSource>>,
    pub(crate) cleanup: Cleanup,
    /// Tolerated deviations from the spec fail the step.
    pub(crate) strict: bool,
    pub(crate) golden_images: Vec<Reference>,
    /// Which platforms of a golden index are verified.
    pub(crate) golden_platforms: PlatformChoice,
    /// With `image.platforms`: an index over one image per platform is pushed.
    pub(crate) platforms: Option<Platforms>,
    /// An artifact pushed about every run's image, when enabled.
    pub(crate) artifact: Option<ArtifactConfig>,
    /// At least one; the first one also pulls golden images and canaries.
    pub(crate) sizes: Vec<SizeClass>,
    pub(crate) paths: Vec<PullPath>,
    pub(crate) canaries: Option<Canaries>,
    /// The repository blobs are mounted into, when mount probing is on.
    pub(crate) mount: Option<String>,
    pub(crate) hygiene_interval: Duration,
    /// Confirmation runs after a failed run.
    pub(crate) confirmation: Confirmation,
    /// The prober instance named in every tag (from the top-level `instance`).
    pub(crate) instance: String,
}

/// After a failed run, up to `runs` more runs of the size class, each `delay` after the last
/// failure, until one succeeds or all have failed (`runs` 0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Confirmation {
    pub(crate) runs: u32,
    pub(crate) delay: Duration,
}

/// An endpoint's TLS settings and the client config built from them at validation, shared by
/// all of the endpoint's connections. Targets with the default settings share one config
/// (`http::tls::client_config` caches it): ~14 KiB each would be 14 MiB at 1,000 targets.
#[derive(Clone)]
pub(crate) struct Tls {
    options: TlsOptions,
    client_config: Arc<rustls::ClientConfig>,
}

impl Tls {
    pub(super) fn new(options: TlsOptions, client_config: Arc<rustls::ClientConfig>) -> Tls {
        Tls {
            options,
            client_config,
        }
    }

    /// The rustls config every connection to the endpoint uses.
    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config.clone()
    }
}

impl fmt::Debug for Tls {
    /// The settings only: the rustls config's own Debug runs to pages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// How a target uploads blobs (the `upload_mode` label of `size_class_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub(crate) enum UploadMode {
    /// POST, one PATCH carrying the whole blob (no Content-Range), PUT `?digest=` with an empty
    /// body: what docker, containerd and skopeo do, and all some registries support.
    Streamed,
    /// POST, then one PUT `?digest=` carrying the whole blob.
    Monolithic,
    /// POST, a PATCH per chunk with Content-Range (at least the registry's
    /// OCI-Chunk-Min-Length), PUT `?digest=` with an empty body.
    Chunked { chunk_size: u64 },
    /// The OCI spec's single `POST ?digest=` carrying the whole blob (201); a registry that
    /// answers 202 opened a session instead, which the upload then completes as streamed.
    Post,
}

impl UploadMode {
    pub(crate) fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a run does about what it pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cleanup {
    pub(crate) enabled: bool,
    pub(crate) mode: CleanupMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CleanupMode {
    /// DELETE the manifest, and the blobs when `blobs`.
    Delete { blobs: bool },
    /// Push under `tags` rotating tags and delete nothing: the registry's lifecycle policy
    /// reclaims the images each run untags.
    Rotate { tags: u32 },
}

impl Cleanup {
    /// Whether cleanup DELETEs blobs (and so also the manifest).
    pub(crate) fn deletes_blobs(&self) -> bool {
        matches!(self.mode, CleanupMode::Delete { blobs: true })
    }

    /// Whether cleanup DELETEs anything.
    pub(crate) fn deletes(&self) -> bool {
        self.enabled && matches!(self.mode, CleanupMode::Delete { .. })
    }
}

/// A size tier: its layers, interval, deadline and upload mode.
#[derive(Clone, Debug)]
pub(crate) struct SizeClass {
    pub(crate) name: String,
    pub(crate) layer_sizes: Vec<u64>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) upload: UploadMode,
}

/// A pull path besides the origin.
#[derive(Clone, Debug)]
pub(crate) struct PullPath {
    pub(crate) name: String,
    pub(crate) registry: Url,
    pub(crate) repository: String,
    pub(crate) tls: Tls,
    pub(crate) credentials: Option<Arc<CredentialSource>>,
    pub(crate) propagation: Option<Propagation>,
}

/// How long a replicated path may take to show a pushed image, and how often to look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Propagation {
    pub(crate) timeout: Duration,
    pub(crate) poll_interval: Duration,
}

/// Aged canaries: a new one per period, the newest `keep` verified every run.
#[derive(Clone, Debug)]
pub(crate) struct Canaries {
    pub(crate) every: Duration,
    pub(crate) keep: u32,
    pub(crate) layer_sizes: Vec<u64>,
    /// The artifact every canary carries, with `canaries.artifact`.
    pub(crate) artifact: Option<ArtifactConfig>,
}

/// The platforms of the index a run pushes, and those its pulls resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Platforms {
    /// At least one, each once, in the index's order.
    pub(crate) push: Vec<Platform>,
    pub(crate) pull: PlatformChoice,
}

/// Which platforms of an index to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlatformChoice {
    All,
    These(Vec<Platform>),
}

/// The artifact pushed about an image: its type, payload size, and how its referrers are asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArtifactConfig {
    pub(crate) artifact_type: String,
    pub(crate) size: u64,
    /// Ask the referrers API with `?artifactType=`.
    pub(crate) filter: bool,
}

impl SizeClass {
    /// The bytes a run of this class moves at once: its layers.
    pub(crate) fn image_bytes(&self) -> u64 {
        self.layer_sizes.iter().sum()
    }
}

impl Target {
    /// The longest a run of any class may take, cleanup included.
    pub(crate) fn max_run_time(&self) -> Duration {
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
pub(crate) struct Reference {
    pub(crate) repository: String,
    /// A tag or a "sha256:..." digest.
    pub(crate) reference: String,
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
