//! Platforms as an image index names them (`os`/`architecture`, an optional `variant`), written
//! `linux/arm64/v8` in the config, and matched the way containerd matches an index entry.

use std::fmt;

/// The longest os, architecture or variant accepted (GOOS/GOARCH values are short).
const MAX_PART: usize = 32;

/// One platform of a multi-platform image.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// linux/amd64, what a single-platform image of the prober declares.
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses `os/architecture[/variant]`, each part lowercase letters, digits, '.', '_' or '-'.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!(
                "platform {text:?} is not \"os/architecture\" or \"os/architecture/variant\" (e.g. \"linux/arm64/v8\")"
            ));
        }
        for part in &parts {
            let valid = !part.is_empty()
                && part.len() <= MAX_PART
                && part.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                });
            if !valid {
                return Err(format!(
                    "platform {text:?}: {part:?} must be 1 to {MAX_PART} lowercase letters, digits, '.', '_' or '-'"
                ));
            }
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The platform of an index entry (oci-spec's type).
    pub fn of(p: &oci_spec::image::Platform) -> Platform {
        Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        }
    }

    /// As an index entry names it (oci-spec's type).
    pub fn to_oci(&self) -> oci_spec::image::Platform {
        let mut p = oci_spec::image::PlatformBuilder::default()
            .os(oci_spec::image::Os::from(self.os.as_str()))
            .architecture(oci_spec::image::Arch::from(self.architecture.as_str()))
            .build()
            .expect("os and architecture are set");
        p.set_variant(self.variant.clone());
        p
    }

    /// Whether an index entry for `entry` serves a client asking for this platform, as
    /// containerd's matcher says: same os and architecture, and the variant when this one names
    /// one (an arm64 entry without a variant is v8).
    pub fn matches(&self, entry: &Platform) -> bool {
        if self.os != entry.os || self.architecture != entry.architecture {
            return false;
        }
        let normal = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match normal(self) {
            None => true,
            Some(want) => normal(entry).as_deref() == Some(want.as_str()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_os_architecture_and_variant() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("linux/amd64").unwrap(),
            Platform::linux_amd64()
        );
    }

    #[test]
    fn rejects_what_is_not_a_platform_naming_the_part() {
        assert_eq!(
            Platform::parse("linux").unwrap_err(),
            "platform \"linux\" is not \"os/architecture\" or \"os/architecture/variant\" (e.g. \"linux/arm64/v8\")"
        );
        assert_eq!(
            Platform::parse("linux/ARM64").unwrap_err(),
            "platform \"linux/ARM64\": \"ARM64\" must be 1 to 32 lowercase letters, digits, '.', '_' or '-'"
        );
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn round_trips_through_oci_spec() {
        for text in [
            "linux/amd64",
            "linux/arm/v7",
            "windows/amd64",
            "linux/riscv64",
        ] {
            let p = Platform::parse(text).unwrap();
            assert_eq!(Platform::of(&p.to_oci()), p, "{text}");
        }
        let json = serde_json::to_string(&Platform::parse("linux/arm/v7").unwrap().to_oci())
            .expect("serializes");
        assert_eq!(
            json,
            r#"{"architecture":"arm","os":"linux","variant":"v7"}"#
        );
    }

    #[test]
    fn matches_as_containerd_does() {
        let p = |s| Platform::parse(s).unwrap();
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(p("linux/arm").matches(&p("linux/arm/v6")));
    }
}
