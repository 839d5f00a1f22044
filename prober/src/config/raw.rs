//! The config file as written: serde structs with every field documented (the user reference),
//! unknown keys rejected, durations read by humantime-serde ("30s", "2m"). Nothing is checked
//! here beyond types; `validate` turns these into the types the prober runs on.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::RawOtlp;

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address of the HTTP server for /metrics, /healthz, /readyz and the status page
    /// (`run` only). Default 127.0.0.1:9115; in a pod use 0.0.0.0:9115.
    #[serde(default)]
    pub(crate) listen: Option<String>,
    /// Values every target inherits unless it sets its own.
    #[serde(default)]
    pub(crate) defaults: RawDefaults,
    /// Runs in flight at once across all targets (default 16); more wait for a slot.
    pub(crate) max_concurrent_runs: Option<i64>,
    /// Bytes of layers in flight at once across all runs (default 1GiB): a run waits until its
    /// image fits, so big size classes take turns instead of saturating the link or the disk.
    pub(crate) max_in_flight_bytes: Option<RawSize>,
    /// On SIGTERM, how long running cycles may take to finish and clean up (default 30s).
    #[serde(default, with = "humantime_serde")]
    pub(crate) shutdown_grace: Option<Duration>,
    /// Names this prober in every tag it pushes ([a-z0-9]{1,16}, default "default"), so two
    /// probers sharing a repository never sweep each other's images.
    pub(crate) instance: Option<String>,
    /// The registries to probe; each target pushes to and pulls from one repository.
    #[serde(default)]
    pub(crate) targets: Vec<RawTarget>,
    /// Where to send a trace of every run (OTLP over HTTP, protobuf). Without this section the
    /// standard OTEL_EXPORTER_OTLP_* environment variables decide; with neither, no traces.
    /// Read at start only: a reload does not change it.
    pub(crate) otlp: Option<RawOtlp>,
}

/// Target settings that may be given once for all targets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    /// Time between the starts of two runs of a target, e.g. "30s" (default 30s).
    #[serde(default, with = "humantime_serde")]
    pub(crate) interval: Option<Duration>,
    /// Hard deadline of a whole run, e.g. "25s" (default 25s); at most the interval.
    #[serde(default, with = "humantime_serde")]
    pub(crate) timeout: Option<Duration>,
    /// Deadline of each single step, e.g. "10s" (default: the run timeout).
    #[serde(default, with = "humantime_serde")]
    pub(crate) step_timeout: Option<Duration>,
    /// Deadline of each cleanup step, which runs even after the run deadline (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub(crate) cleanup_timeout: Option<Duration>,
    /// After a failed run, confirmation runs: up to this many more runs of the size class, each
    /// `confirmation_delay` after the last failure, until one succeeds or all have failed
    /// (default 2; 0 turns them off). A hard outage is confirmed within one interval, one
    /// transient failure is cleared by the next run. Bounded: a size class earns one
    /// confirmation per 4 scheduled runs, at most twice this many saved up.
    pub(crate) confirmation_runs: Option<i64>,
    /// How long after a failed run its confirmation run starts, e.g. "5s" (default 5s, or a
    /// fifth of the interval when that is shorter); shorter than the interval.
    #[serde(default, with = "humantime_serde")]
    pub(crate) confirmation_delay: Option<Duration>,
}

/// One registry path to probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    /// Unique name, used as the `target` label: letters, digits, '-', '_' and '.'.
    pub(crate) name: String,
    /// Base URL of the registry, e.g. "https://registry.example.com" or "http://127.0.0.1:5000".
    pub(crate) registry: String,
    /// Repository the prober pushes to and deletes from, e.g. "registry-prober/probe".
    pub(crate) repository: String,
    /// "oci" (default) or "docker": the manifest media type pushed.
    pub(crate) manifest_type: Option<String>,
    /// Fail a step on any deviation from the distribution spec that real clients tolerate (a
    /// Range off by one, 200 where 201 is specified, no Docker-Content-Digest on a HEAD, ...),
    /// for conformance testing (default false: they are counted and shown).
    #[serde(default)]
    pub(crate) strict: bool,
    /// Overrides defaults.interval.
    #[serde(default, with = "humantime_serde")]
    pub(crate) interval: Option<Duration>,
    /// Overrides defaults.timeout.
    #[serde(default, with = "humantime_serde")]
    pub(crate) timeout: Option<Duration>,
    /// Overrides defaults.step_timeout.
    #[serde(default, with = "humantime_serde")]
    pub(crate) step_timeout: Option<Duration>,
    /// Overrides defaults.cleanup_timeout.
    #[serde(default, with = "humantime_serde")]
    pub(crate) cleanup_timeout: Option<Duration>,
    /// Overrides defaults.confirmation_runs.
    pub(crate) confirmation_runs: Option<i64>,
    /// Overrides defaults.confirmation_delay.
    #[serde(default, with = "humantime_serde")]
    pub(crate) confirmation_delay: Option<Duration>,
    /// Allow "http://" for a registry that is not on loopback (in-cluster registries).
    #[serde(default)]
    pub(crate) allow_plain_http: bool,
    /// How to trust the registry's certificate and present ours (default: system roots).
    #[serde(default)]
    pub(crate) tls: RawTls,
    /// Credentials for the registry (default: anonymous).
    #[serde(default)]
    pub(crate) auth: RawAuth,
    /// The image pushed every run (instead of `sizes`).
    #[serde(default)]
    pub(crate) image: RawImage,
    /// How blobs are uploaded.
    #[serde(default)]
    pub(crate) upload: RawUpload,
    /// What a run deletes after itself.
    #[serde(default)]
    pub(crate) cleanup: RawCleanup,
    /// Images the prober never pushed, pulled and verified every run, read-only: references
    /// in this registry, "repo@sha256:..." (pinned, preferred) or "repo:tag".
    #[serde(default)]
    pub(crate) golden_images: Vec<String>,
    /// Which platforms of a golden image that is an index are verified: "all" (default: every
    /// platform it lists, at most 8) or a list such as [linux/amd64]; an index lacking one
    /// fails with platform_missing.
    pub(crate) golden_platforms: Option<RawPlatforms>,
    /// An OCI 1.1 artifact pushed with every run's image as its subject, then found again
    /// through the referrers API or the referrers tag schema.
    #[serde(default)]
    pub(crate) artifact: RawArtifact,
    /// Size tiers, each on its own interval (instead of `image`): big uploads probed rarely.
    pub(crate) sizes: Option<Vec<RawSizeClass>>,
    /// Pull paths besides the target's own endpoint (replicas, mirrors, caches, CDNs).
    #[serde(default)]
    pub(crate) paths: Vec<RawPath>,
    /// Aged canaries: pushed once, kept and verified every run, rotated.
    #[serde(default)]
    pub(crate) canaries: RawCanaries,
    /// Cross-repository blob mount, probed as its own step.
    #[serde(default)]
    pub(crate) mount: RawMount,
    /// Sweeps of the prober's own leftovers.
    #[serde(default)]
    pub(crate) hygiene: RawHygiene,
}

/// One size tier of a target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSizeClass {
    /// Name, the `size_class` label: [a-z0-9_]{1,32}.
    pub(crate) class: String,
    /// Size of each layer, e.g. [4KiB, 4KiB] or [512MiB].
    pub(crate) layer_sizes: Vec<RawSize>,
    /// Time between runs of this class (default: the target's interval).
    #[serde(default, with = "humantime_serde")]
    pub(crate) interval: Option<Duration>,
    /// Hard deadline of a run of this class (default: the target's timeout).
    #[serde(default, with = "humantime_serde")]
    pub(crate) timeout: Option<Duration>,
    /// Chunk size of chunked uploads of this class (default: upload.chunk_size).
    pub(crate) chunk_size: Option<RawSize>,
}

/// A pull path: another endpoint serving the target's content.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPath {
    /// Name, the `path` label: [a-z0-9_]{1,32}, not "origin".
    pub(crate) name: String,
    /// Base URL of the endpoint.
    pub(crate) registry: String,
    /// The repository as this path names it (default: the target's repository).
    pub(crate) repository: Option<String>,
    /// For replicated paths: poll until the pushed image appears, at most this long.
    #[serde(default, with = "humantime_serde")]
    pub(crate) propagation_timeout: Option<Duration>,
    /// Time between polls while waiting for propagation (default 500ms).
    #[serde(default, with = "humantime_serde")]
    pub(crate) poll_interval: Option<Duration>,
    /// Allow "http://" for an endpoint that is not on loopback.
    #[serde(default)]
    pub(crate) allow_plain_http: bool,
    /// TLS settings (default: the target's).
    pub(crate) tls: Option<RawTls>,
    /// Credentials (default: the target's when the host is the same, else none).
    pub(crate) auth: Option<RawAuth>,
}

/// Aged canaries: images pushed once and verified every run until rotated out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCanaries {
    /// Push, keep and verify canaries (default false).
    #[serde(default)]
    pub(crate) enabled: bool,
    /// A new canary per period (default 24h).
    #[serde(default, with = "humantime_serde")]
    pub(crate) every: Option<Duration>,
    /// Canaries kept; older ones are deleted (default 7).
    pub(crate) keep: Option<i64>,
    /// Layer sizes of a canary (default [4KiB, 64KiB]).
    pub(crate) layer_sizes: Option<Vec<RawSize>>,
    /// Every canary pushed from now on carries an artifact (its own type,
    /// application/vnd.registry-prober.canary.v1+json, and a 1KiB payload; artifact.filter
    /// applies), found again through the canary's referrers every run, like its blobs (default
    /// false).
    #[serde(default)]
    pub(crate) artifact: bool,
}

/// The artifact pushed about a run's image (and a canary's, with canaries.artifact). With
/// cleanup.mode rotate on a registry without a referrers API, each run's referrers tag
/// (`sha256-<hex>`) stays with its image: the lifecycle policy must expire those tags too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArtifact {
    /// Push an artifact whose subject is every run's image and find it again (default false).
    #[serde(default)]
    pub(crate) enabled: bool,
    /// Its artifactType, a media type such as "application/spdx+json" (default
    /// "application/vnd.registry-prober.artifact.v1+json").
    pub(crate) artifact_type: Option<String>,
    /// Size of its payload blob (default 1KiB, at most 4MiB).
    pub(crate) size: Option<RawSize>,
    /// Ask the referrers API for this artifactType only (`?artifactType=`), and check the
    /// registry either applied the filter (OCI-Filters-Applied) or listed what the prober then
    /// filters itself (default false).
    pub(crate) filter: Option<bool>,
}

/// A choice of platforms: "all", or a list of "os/architecture[/variant]".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPlatforms {
    List(Vec<String>),
    Word(String),
}

/// The cross-repository blob mount step.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMount {
    /// Probe mounting a pushed blob into another repository (default false).
    #[serde(default)]
    pub(crate) enabled: bool,
    /// The repository mounted into (default: "<repository>-mount").
    pub(crate) repository: Option<String>,
}

/// Sweeps of what earlier, crashed runs left behind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHygiene {
    /// Sweep at start and then every interval (default 1h).
    #[serde(default, with = "humantime_serde")]
    pub(crate) interval: Option<Duration>,
}

/// How to trust an endpoint's certificate and how to present ourselves to it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// PEM file of CA certificates trusted in addition to the system roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with client_key_file).
    pub(crate) client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub(crate) client_key_file: Option<PathBuf>,
    /// Accept any server certificate. Only for test registries.
    #[serde(default)]
    pub(crate) insecure: bool,
}

/// Where an endpoint's credentials come from; secrets never sit in the config file itself.
/// Credentials from a file or a credential helper are fetched again every `refresh_interval`
/// and after the registry rejected them, so a rotated password or a helper's new token is
/// picked up without a reload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    /// User name for basic auth or the token service.
    pub(crate) username: Option<String>,
    /// File holding the password (a trailing newline is ignored); read again every
    /// refresh_interval.
    pub(crate) password_file: Option<PathBuf>,
    /// Environment variable holding the password; read when the config is loaded.
    pub(crate) password_env: Option<String>,
    /// A Docker config.json holding the credentials for this registry, read as docker reads
    /// it: the `credHelpers` entry for the host, else the `auths` entry (a password, or an
    /// `identitytoken` traded at the token service for tokens), else `credsStore`. A helper is
    /// `docker-credential-<name>` on PATH, run as `get` with the registry host on stdin; its
    /// output is never logged. The file is read again, and the helper run again, every
    /// refresh_interval.
    pub(crate) docker_config: Option<PathBuf>,
    /// How long credentials from password_file or docker_config (and the helper it names) are
    /// used before they are fetched again, e.g. "5m" (default 5m, at most 1h: Artifact
    /// Registry's tokens live about an hour, ECR's 12h). Credentials that state their expiry
    /// (a JWT's exp) are never used past it.
    #[serde(default, with = "humantime_serde")]
    pub(crate) refresh_interval: Option<Duration>,
    /// How long a credential helper may take to answer before it is killed, e.g. "5s"
    /// (default 5s, at most 1m). Only with docker_config.
    #[serde(default, with = "humantime_serde")]
    pub(crate) helper_timeout: Option<Duration>,
}

/// The layers of the image a target pushes every run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawImage {
    /// Number of layers, each `layer_size` (default: 3 layers of 4KiB, 64KiB and 1MiB).
    pub(crate) layers: Option<i64>,
    /// Size of each layer, e.g. "1MiB", "4KiB", "512" (bytes).
    pub(crate) layer_size: Option<RawSize>,
    /// Explicit size of each layer, instead of layers + layer_size.
    pub(crate) layer_sizes: Option<Vec<RawSize>>,
    /// How layers (tar streams of seeded files, each about its layer size) are compressed:
    /// "gzip" (default), "zstd" (OCI manifests only: Docker's schema 2 has no zstd media type)
    /// or "none". Applies to every size class and to canaries.
    pub(crate) compression: Option<String>,
    /// Also decompress the run's own image as it is pulled and check each layer against its
    /// DiffID (default false: the compressed digest already proves the bytes are the ones
    /// generated; golden images and canaries are always checked so).
    pub(crate) verify_diff_ids: Option<bool>,
    /// Push an image index over one image per platform, e.g. [linux/amd64, linux/arm64]
    /// ("os/architecture[/variant]"; each image's config names its platform), instead of one
    /// image. Applies to every size class.
    pub(crate) platforms: Option<Vec<String>>,
    /// With platforms: which platforms a pull resolves through the index, as containerd does
    /// (the index, the platform's manifest, its blobs): a list such as [linux/arm64], or "all"
    /// (default: the first of platforms).
    pub(crate) pull_platforms: Option<RawPlatforms>,
}

/// How blobs are uploaded.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpload {
    /// "streamed" (default: POST, one PATCH with the whole blob, PUT; what docker, containerd
    /// and skopeo do), "monolithic" (POST, then one PUT with the blob), "chunked" (POST, a PATCH
    /// per chunk with Content-Range, PUT) or "post" (the OCI spec's single POST ?digest= with
    /// the blob).
    pub(crate) mode: Option<String>,
    /// Chunk size for chunked uploads (default 5MiB); raised to the registry's OCI-Chunk-Min-Length.
    pub(crate) chunk_size: Option<RawSize>,
}

/// What a run does about what it pushed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCleanup {
    /// Clean up after each run (default true). Off leaves the image for inspection.
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    /// "delete" (default): DELETE the manifest and blobs a run pushed. "rotate", for registries
    /// that refuse DELETE through their API (GHCR, Docker Hub, ECR, ...): runs push under a
    /// small fixed set of tags in turn, so each run untags the image of the run before it, and
    /// the registry's own untagged-image lifecycle policy reclaims them (docs/registries.md).
    pub(crate) mode: Option<String>,
    /// With mode "rotate": how many tags runs of a size class push under in turn (default 3).
    pub(crate) rotate_tags: Option<i64>,
    /// With mode "delete": also DELETE the blobs (default true); off for registries that refuse
    /// blob deletes but delete manifests.
    pub(crate) delete_blobs: Option<bool>,
}

impl Default for RawCleanup {
    fn default() -> Self {
        RawCleanup {
            enabled: true,
            mode: None,
            rotate_tags: None,
            delete_blobs: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// A size as written: a number of bytes or a string with a unit ("4KiB", "16MB").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSize {
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
