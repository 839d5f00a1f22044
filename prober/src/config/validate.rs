//! Validation: the raw config, checked field by field into the types the prober runs on, with
//! the documented defaults filled in. Messages name the target and field and quote the value:
//! `target "eu": timeout (30s) must not be longer than interval (15s)`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::durations::{not_longer, positive};
use super::model::{
    Canaries, Cleanup, CleanupMode, Config, Confirmation, Propagation, PullPath, SizeClass, Target,
    Tls, UploadMode, DEFAULT_SIZE_CLASS, ORIGIN,
};
use super::names::{
    parse_reference, validate_instance, validate_label, validate_name, validate_repository,
};
use super::raw::{
    RawCanaries, RawCleanup, RawConfig, RawDefaults, RawImage, RawPath, RawSizeClass, RawTarget,
    RawUpload,
};
use super::registry_url::parse_registry_url;
use super::size::{parse_size, size_list, MAX_LAYERS};
use super::{content, invalid, ConfigError, RawOtlp};
use crate::http::keychain::CredentialSource;
use crate::oci::compression::{Compression, LayerFormat};
use crate::oci::manifest::ManifestType;

const DEFAULT_LISTEN: &str = "127.0.0.1:9115";
const DEFAULT_LAYER_SIZES: [u64; 3] = [4 * 1024, 64 * 1024, 1024 * 1024];
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);
const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONCURRENT_RUNS: usize = 16;
const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 1024 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_CHUNK_SIZE: u64 = 5 * 1024 * 1024;
const DEFAULT_INSTANCE: &str = "default";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_CANARY_EVERY: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_CANARY_KEEP: i64 = 7;
const DEFAULT_CANARY_LAYERS: [u64; 2] = [4 * 1024, 64 * 1024];
const DEFAULT_HYGIENE_INTERVAL: Duration = Duration::from_secs(3600);
const DEFAULT_CONFIRMATION_RUNS: i64 = 2;
const MAX_CONFIRMATION_RUNS: i64 = 5;
const DEFAULT_CONFIRMATION_DELAY: Duration = Duration::from_secs(5);

impl RawConfig {
    /// Checks every value and fills in the defaults; reads secret files and builds each
    /// endpoint's TLS client config, so a broken one is a config error here.
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
        validate_instance(&instance)?;
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
                .map_err(|e| e.within(&label))?;
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
        let shutdown_grace = positive(
            "shutdown_grace",
            self.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        )?;
        let otlp = self.otlp.map(RawOtlp::validate).transpose()?;
        Ok(Config {
            listen,
            max_concurrent_runs,
            max_in_flight_bytes,
            shutdown_grace,
            targets,
            otlp,
        })
    }
}

impl RawTarget {
    /// One target, with `defaults` for what it leaves out (`once` builds one from its flags).
    pub(crate) fn validate(
        mut self,
        defaults: &RawDefaults,
        instance: &str,
    ) -> Result<Target, ConfigError> {
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
        let interval = positive(
            "interval",
            self.interval.or(defaults.interval),
            DEFAULT_INTERVAL,
        )?;
        let timeout_default = DEFAULT_TIMEOUT.min(interval);
        let timeout = positive(
            "timeout",
            self.timeout.or(defaults.timeout),
            timeout_default,
        )?;
        let step_timeout = positive(
            "step_timeout",
            self.step_timeout.or(defaults.step_timeout),
            timeout,
        )?;
        let cleanup_timeout = positive(
            "cleanup_timeout",
            self.cleanup_timeout.or(defaults.cleanup_timeout),
            DEFAULT_CLEANUP_TIMEOUT,
        )?;
        not_longer("timeout", timeout, "interval", interval)?;
        not_longer("step_timeout", step_timeout, "timeout", timeout)?;
        let tls = self.tls.validate()?;
        let credentials = self.auth.validate(&registry)?;
        let platforms = content::platforms(
            self.image.platforms.take(),
            self.image.pull_platforms.take(),
        )?;
        let image_given = self.image.layers.is_some()
            || self.image.layer_size.is_some()
            || self.image.layer_sizes.is_some();
        let layer_format = image_compression(self.image.compression.as_deref(), manifest_type)?;
        let verify_diff_ids = self.image.verify_diff_ids.unwrap_or(false);
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
                .map_err(|e| e.within(&format!("paths[{i}]")))?;
            if !path_names.insert(path.name.clone()) {
                return Err(invalid(format!(
                    "paths[{i}].name: {:?} is used by another path too",
                    path.name
                )));
            }
            paths.push(path);
        }
        let canary_artifact = std::mem::take(&mut self.canaries.artifact);
        if canary_artifact && !self.canaries.enabled {
            return Err(invalid(
                "canaries.artifact is true but canaries.enabled is not",
            ));
        }
        let (artifact, canary_artifact) = self.artifact.validate(canary_artifact)?;
        let canaries = self.canaries.validate()?.map(|c| Canaries {
            artifact: canary_artifact,
            ..c
        });
        let golden_platforms =
            content::golden_platforms(self.golden_platforms, self.golden_images.len())?;
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
        let hygiene_interval = positive(
            "hygiene.interval",
            self.hygiene.interval,
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
        let confirmation = confirmation(
            self.confirmation_runs.or(defaults.confirmation_runs),
            self.confirmation_delay.or(defaults.confirmation_delay),
            &sizes,
        )?;
        Ok(Target {
            name: self.name,
            registry,
            repository: self.repository,
            manifest_type,
            layer_format,
            verify_diff_ids,
            timeout,
            step_timeout,
            cleanup_timeout,
            tls,
            credentials,
            cleanup: self.cleanup.validate()?,
            strict: self.strict,
            golden_images,
            golden_platforms,
            platforms,
            artifact,
            sizes,
            paths,
            canaries,
            mount,
            hygiene_interval,
            confirmation,
            instance: instance.to_string(),
        })
    }
}

/// `image.compression`: gzip unless said otherwise; zstd needs OCI manifests.
fn image_compression(
    value: Option<&str>,
    manifest_type: ManifestType,
) -> Result<LayerFormat, ConfigError> {
    let compression = match value {
        None => Compression::Gzip,
        Some(v) => Compression::parse(v).ok_or_else(|| {
            invalid(format!(
                "image.compression: unknown compression {v:?} (expected \"gzip\", \"zstd\" or \"none\")"
            ))
        })?,
    };
    if compression == Compression::Zstd && manifest_type == ManifestType::Docker {
        return Err(invalid(
            "image.compression: \"zstd\" needs manifest_type \"oci\": Docker's image manifest (schema 2) defines no zstd layer media type, and docker's own clients do not read the one containerd and BuildKit made up",
        ));
    }
    Ok(LayerFormat::Tar(compression))
}

/// `confirmation_runs` in range, and a `confirmation_delay` shorter than every size class's
/// interval (a confirmation due after the next scheduled run would never run). The default
/// delay is 5 s, or a fifth of the shortest interval when that is shorter.
fn confirmation(
    runs: Option<i64>,
    delay: Option<Duration>,
    sizes: &[SizeClass],
) -> Result<Confirmation, ConfigError> {
    let runs = match runs.unwrap_or(DEFAULT_CONFIRMATION_RUNS) {
        n @ 0..=MAX_CONFIRMATION_RUNS => n as u32,
        n => {
            return Err(invalid(format!(
                "confirmation_runs: {n} is out of range (0 to {MAX_CONFIRMATION_RUNS})"
            )))
        }
    };
    let shortest = sizes
        .iter()
        .map(|c| c.interval)
        .min()
        .unwrap_or(DEFAULT_INTERVAL);
    let delay = positive(
        "confirmation_delay",
        delay,
        DEFAULT_CONFIRMATION_DELAY.min(shortest / 5),
    )?;
    if runs > 0 {
        for class in sizes {
            if delay >= class.interval {
                return Err(invalid(format!(
                    "confirmation_delay ({}) must be shorter than the interval of size class {:?} ({})",
                    humantime::format_duration(delay),
                    class.name,
                    humantime::format_duration(class.interval)
                )));
            }
        }
    }
    Ok(Confirmation { runs, delay })
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
        let interval = positive(&at("interval"), self.interval, interval)?;
        let timeout = positive(&at("timeout"), self.timeout, timeout.min(interval))?;
        let what = format!("{}: timeout", at("timeout"));
        not_longer(&what, timeout, "the interval", interval)?;
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
            (UploadMode::Streamed | UploadMode::Monolithic | UploadMode::Post, Some(_)) => {
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
        tls: &Tls,
        credentials: Option<&Arc<CredentialSource>>,
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
        let propagation = match (self.propagation_timeout, self.poll_interval) {
            (None, Some(_)) => {
                return Err(invalid(
                    "poll_interval is set but propagation_timeout is not",
                ))
            }
            (None, None) => None,
            (Some(timeout), poll_interval) => Some(Propagation {
                timeout: positive("propagation_timeout", Some(timeout), Duration::ZERO)?,
                poll_interval: positive("poll_interval", poll_interval, DEFAULT_POLL_INTERVAL)?,
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
        let every = positive("canaries.every", self.every, DEFAULT_CANARY_EVERY)?;
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
            artifact: None,
        }))
    }
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

/// Rotating tags a size class may push under at most (each holds an image until it is reused).
const MAX_ROTATE_TAGS: i64 = 100;
const DEFAULT_ROTATE_TAGS: u32 = 3;

impl RawCleanup {
    fn validate(self) -> Result<Cleanup, ConfigError> {
        let mode = match self.mode.as_deref() {
            None | Some("delete") => {
                if self.rotate_tags.is_some() {
                    return Err(invalid(
                        "cleanup.rotate_tags is set but cleanup.mode is not \"rotate\"",
                    ));
                }
                CleanupMode::Delete {
                    blobs: self.delete_blobs.unwrap_or(true),
                }
            }
            Some("rotate") => {
                if self.delete_blobs.is_some() {
                    return Err(invalid(
                        "cleanup.delete_blobs is set but cleanup.mode is \"rotate\", which deletes nothing",
                    ));
                }
                let tags = match self.rotate_tags {
                    None => DEFAULT_ROTATE_TAGS,
                    Some(n) if (1..=MAX_ROTATE_TAGS).contains(&n) => n as u32,
                    Some(n) => {
                        return Err(invalid(format!(
                            "cleanup.rotate_tags: {n} is out of range (1 to {MAX_ROTATE_TAGS})"
                        )))
                    }
                };
                CleanupMode::Rotate { tags }
            }
            Some(other) => {
                return Err(invalid(format!(
                    "cleanup.mode: unknown mode {other:?} (expected \"delete\" or \"rotate\")"
                )))
            }
        };
        Ok(Cleanup {
            enabled: self.enabled,
            mode,
        })
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
        let mode = match self.mode.as_deref() {
            None | Some("streamed") => UploadMode::Streamed,
            Some("monolithic") => UploadMode::Monolithic,
            Some("chunked") => return Ok(UploadMode::Chunked { chunk_size }),
            Some("post") => UploadMode::Post,
            Some(other) => {
                return Err(invalid(format!(
                    "upload.mode: unknown mode {other:?} (expected \"streamed\", \"monolithic\", \"chunked\" or \"post\")"
                )))
            }
        };
        if self.chunk_size.is_some() {
            return Err(invalid(
                "upload.chunk_size is set but upload.mode is not \"chunked\"",
            ));
        }
        Ok(mode)
    }
}
