//! Validation of what a target pushes besides its layers: the platforms of a multi-platform
//! index and the ones pulls resolve, the platforms of golden indexes verified, and the artifact
//! pushed about a run's image or a canary.

use super::model::{ArtifactConfig, PlatformChoice, Platforms};
use super::raw::{RawArtifact, RawPlatforms};
use super::size::parse_size;
use super::{invalid, ConfigError};
use crate::oci::platform::Platform;

/// Platforms an index may list at most (each is a full image per run).
const MAX_PLATFORMS: usize = 16;
const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.registry-prober.artifact.v1+json";
/// A canary's artifact has a type and size of its own, fixed: it is regenerated days after it
/// was pushed, and must not change with the `artifact` section.
const CANARY_ARTIFACT_TYPE: &str = "application/vnd.registry-prober.canary.v1+json";
const CANARY_ARTIFACT_SIZE: u64 = 1024;
const DEFAULT_ARTIFACT_SIZE: u64 = 1024;
/// The payload is held in memory and is meant to be small, like a signature or an SBOM.
const MAX_ARTIFACT_SIZE: u64 = 4 * 1024 * 1024;
/// RFC 6838 restricted-name characters, besides letters and digits.
const MEDIA_TYPE_SYMBOLS: &str = "!#$&-^_.+";

/// `image.platforms` and `image.pull_platforms`: None without platforms (one image).
pub(super) fn platforms(
    push: Option<Vec<String>>,
    pull: Option<RawPlatforms>,
) -> Result<Option<Platforms>, ConfigError> {
    let Some(list) = push else {
        if pull.is_some() {
            return Err(invalid(
                "image.pull_platforms is set but image.platforms is not",
            ));
        }
        return Ok(None);
    };
    if list.is_empty() {
        return Err(invalid(
            "image.platforms: at least one platform is required",
        ));
    }
    if list.len() > MAX_PLATFORMS {
        return Err(invalid(format!(
            "image.platforms: {} platforms, at most {MAX_PLATFORMS}",
            list.len()
        )));
    }
    let mut push = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let platform =
            Platform::parse(text).map_err(|e| invalid(format!("image.platforms[{i}]: {e}")))?;
        if push.contains(&platform) {
            return Err(invalid(format!(
                "image.platforms[{i}]: {platform} is listed twice"
            )));
        }
        push.push(platform);
    }
    let pull = match pull {
        None => PlatformChoice::These(vec![push[0].clone()]),
        Some(raw) => choice("image.pull_platforms", raw)?,
    };
    if let PlatformChoice::These(wanted) = &pull {
        if let Some(missing) = wanted.iter().find(|w| !push.iter().any(|p| w.matches(p))) {
            let pushed: Vec<String> = push.iter().map(Platform::to_string).collect();
            return Err(invalid(format!(
                "image.pull_platforms: {missing} is not among image.platforms ({})",
                pushed.join(", ")
            )));
        }
    }
    Ok(Some(Platforms { push, pull }))
}

/// `golden_platforms` (default all), only with golden images.
pub(super) fn golden_platforms(
    raw: Option<RawPlatforms>,
    golden_images: usize,
) -> Result<PlatformChoice, ConfigError> {
    match raw {
        None => Ok(PlatformChoice::All),
        Some(_) if golden_images == 0 => Err(invalid(
            "golden_platforms is set but golden_images is empty",
        )),
        Some(raw) => choice("golden_platforms", raw),
    }
}

/// "all", or a non-empty list of platforms, each once.
fn choice(field: &str, raw: RawPlatforms) -> Result<PlatformChoice, ConfigError> {
    let list = match raw {
        RawPlatforms::Word(word) if word == "all" => return Ok(PlatformChoice::All),
        RawPlatforms::Word(word) => {
            return Err(invalid(format!(
                "{field}: {word:?} is neither \"all\" nor a list of platforms"
            )))
        }
        RawPlatforms::List(list) => list,
    };
    if list.is_empty() {
        return Err(invalid(format!(
            "{field}: at least one platform is required (or \"all\")"
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let platform = Platform::parse(text).map_err(|e| invalid(format!("{field}[{i}]: {e}")))?;
        if out.contains(&platform) {
            return Err(invalid(format!("{field}[{i}]: {platform} is listed twice")));
        }
        out.push(platform);
    }
    Ok(PlatformChoice::These(out))
}

impl RawArtifact {
    /// The artifact of runs (`enabled`) and of canaries (`canaries`: canaries.artifact).
    pub(super) fn validate(
        self,
        canaries: bool,
    ) -> Result<(Option<ArtifactConfig>, Option<ArtifactConfig>), ConfigError> {
        let settings = self.artifact_type.is_some() || self.size.is_some() || self.filter.is_some();
        if !self.enabled && !canaries {
            if settings {
                return Err(invalid(
                    "artifact: settings are given but neither artifact.enabled nor canaries.artifact is true",
                ));
            }
            return Ok((None, None));
        }
        let artifact_type = match self.artifact_type {
            None => DEFAULT_ARTIFACT_TYPE.to_string(),
            Some(t) => {
                media_type("artifact.artifact_type", &t)?;
                t
            }
        };
        let size = match &self.size {
            None => DEFAULT_ARTIFACT_SIZE,
            Some(raw) => parse_size("artifact.size", raw)?,
        };
        if size > MAX_ARTIFACT_SIZE {
            return Err(invalid(format!(
                "artifact.size: {size} bytes is more than the 4MiB an artifact payload may have"
            )));
        }
        let filter = self.filter.unwrap_or(false);
        let canary = ArtifactConfig {
            artifact_type: CANARY_ARTIFACT_TYPE.to_string(),
            size: CANARY_ARTIFACT_SIZE,
            filter,
        };
        let runs = ArtifactConfig {
            artifact_type,
            size,
            filter,
        };
        Ok((self.enabled.then_some(runs), canaries.then_some(canary)))
    }
}

/// A media type as RFC 6838 restricts names: `type/subtype`, each 1 to 127 letters, digits or
/// `!#$&-^_.+`, starting with a letter or digit.
fn media_type(field: &str, value: &str) -> Result<(), ConfigError> {
    let part_ok = |p: &str| {
        (1..=127).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || MEDIA_TYPE_SYMBOLS.contains(c))
    };
    match value.split_once('/') {
        Some((kind, sub)) if part_ok(kind) && part_ok(sub) => Ok(()),
        _ => Err(invalid(format!(
            "{field}: {value:?} is not a media type (type/subtype, e.g. \"application/spdx+json\")"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn pulls_resolve_the_first_platform_unless_told_otherwise() {
        let p = platforms(list(&["linux/amd64", "linux/arm64"]), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            p.pull,
            PlatformChoice::These(vec![Platform::parse("linux/amd64").unwrap()])
        );
        let p = platforms(
            list(&["linux/amd64", "linux/arm64/v8"]),
            Some(RawPlatforms::List(vec!["linux/arm64".into()])),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p.pull,
            PlatformChoice::These(vec![Platform::parse("linux/arm64").unwrap()])
        );
        let p = platforms(
            list(&["linux/amd64"]),
            Some(RawPlatforms::Word("all".into())),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.pull, PlatformChoice::All);
        assert_eq!(platforms(None, None).unwrap(), None);
    }

    #[test]
    fn rejects_platforms_that_cannot_be_pushed_or_pulled() {
        let err = |push, pull| platforms(push, pull).unwrap_err().to_string();
        assert_eq!(
            err(list(&[]), None),
            "image.platforms: at least one platform is required"
        );
        assert_eq!(
            err(list(&["linux/amd64", "linux/amd64"]), None),
            "image.platforms[1]: linux/amd64 is listed twice"
        );
        assert_eq!(
            err(
                list(&["linux/amd64"]),
                Some(RawPlatforms::List(vec!["linux/s390x".into()]))
            ),
            "image.pull_platforms: linux/s390x is not among image.platforms (linux/amd64)"
        );
        assert_eq!(
            err(None, Some(RawPlatforms::Word("all".into()))),
            "image.pull_platforms is set but image.platforms is not"
        );
        assert_eq!(
            err(
                list(&["linux/amd64"]),
                Some(RawPlatforms::Word("every".into()))
            ),
            "image.pull_platforms: \"every\" is neither \"all\" nor a list of platforms"
        );
    }

    #[test]
    fn an_artifact_gets_defaults_and_its_type_must_be_a_media_type() {
        let raw = RawArtifact {
            enabled: true,
            ..RawArtifact::default()
        };
        let (runs, canaries) = raw.validate(false).unwrap();
        assert_eq!(
            runs,
            Some(ArtifactConfig {
                artifact_type: DEFAULT_ARTIFACT_TYPE.into(),
                size: 1024,
                filter: false
            })
        );
        assert_eq!(canaries, None);
        let raw = RawArtifact {
            artifact_type: Some("application/spdx+json".into()),
            filter: Some(true),
            ..RawArtifact::default()
        };
        let (runs, canaries) = raw.validate(true).unwrap();
        assert_eq!(runs, None);
        assert_eq!(
            canaries,
            Some(ArtifactConfig {
                artifact_type: CANARY_ARTIFACT_TYPE.into(),
                size: CANARY_ARTIFACT_SIZE,
                filter: true
            })
        );
        let raw = RawArtifact {
            artifact_type: Some("application/spdx+json".into()),
            ..RawArtifact::default()
        };
        assert_eq!(
            raw.validate(false).unwrap_err().to_string(),
            "artifact: settings are given but neither artifact.enabled nor canaries.artifact is true"
        );
        let raw = RawArtifact {
            artifact_type: Some("sbom".into()),
            ..RawArtifact::default()
        };
        assert_eq!(
            raw.validate(true).unwrap_err().to_string(),
            "artifact.artifact_type: \"sbom\" is not a media type (type/subtype, e.g. \"application/spdx+json\")"
        );
        assert!(media_type("f", "application/vnd.dev.cosign.artifact.sig.v1+json").is_ok());
        assert!(media_type("f", "application/spdx json").is_err());
    }
}
