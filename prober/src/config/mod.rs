//! Configuration: `RawConfig` is the YAML as written (`raw`, unknown keys rejected, every field
//! documented); `validate` turns it into `Config` (`model`), what the prober runs on, with
//! secrets read and each endpoint's TLS client config built, once.

mod access;
mod content;
mod durations;
mod model;
mod names;
pub(crate) mod otlp;
mod raw;
mod registry_url;
mod size;
mod validate;
mod yaml;

pub use otlp::{OtlpConfig, OtlpHeaders, OtlpSource, RawOtlp};

#[cfg(test)]
pub(crate) use model::DEFAULT_SIZE_CLASS;
pub(crate) use model::{
    ArtifactConfig, Canaries, CleanupMode, Confirmation, PlatformChoice, Platforms, Propagation,
    Reference, SizeClass, UploadMode, ORIGIN,
};
pub use model::{Config, Target};
pub use raw::RawConfig;
pub(crate) use raw::{
    RawArtifact, RawAuth, RawCleanup, RawDefaults, RawImage, RawPlatforms, RawSize, RawTarget,
    RawTls, RawUpload,
};
pub use yaml::YamlError;

use std::path::{Path, PathBuf};

// The sections that still hold durations as text (`otlp`) read them with this.
use durations::duration;

/// A configuration problem: where (file, target, field) and what was wrong with which value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: YamlError },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

impl ConfigError {
    /// A validation message prefixed with where it applies (`target "eu"`, `paths[0]`).
    fn within(self, place: &str) -> ConfigError {
        match self {
            ConfigError::Invalid(msg) => invalid(format!("{place}: {msg}")),
            other => other,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw = RawConfig::from_yaml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        raw.validate()
            .map_err(|e| e.within(&format!("config file {}", path.display())))
    }
}

#[cfg(test)]
mod tests;
