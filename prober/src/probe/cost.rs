//! What a target's runs cost a registry that meters pulls: Docker Hub counts every manifest GET
//! as a pull (HEADs are free), against limits like `100;w=21600` per address. Counted from the
//! same flow the runs follow, so `check-config` can say it before the first run.

use std::time::Duration;

use crate::config::{Canaries, PlatformChoice, Target};

/// The manifest GETs of one size class's runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestGets {
    pub class: String,
    pub interval: Duration,
    /// Per run, when every step runs (a failed run makes fewer).
    pub per_run: u64,
}

impl ManifestGets {
    /// Per day at the class's interval.
    pub fn per_day(&self) -> u64 {
        let runs = (86_400.0 / self.interval.as_secs_f64()).ceil() as u64;
        runs * self.per_run
    }
}

/// Per size class, the manifest GETs a run makes: the pushed image (or index) by tag and by
/// digest through every path, with the platform manifests pulled from an index; the artifact's
/// (its referrers tag read on push and in cleanup, then read back, and its manifest: the most,
/// where the registry has no referrers API); and in the first class each golden image (an
/// index counts once, its platform manifests on top) and each kept canary through every path,
/// with its artifact's referrers tag and manifest.
pub fn manifest_gets(target: &Target) -> Vec<ManifestGets> {
    let paths = 1 + target.paths.len() as u64;
    let platforms = match &target.platforms {
        None => 0,
        Some(p) => match &p.pull {
            PlatformChoice::All => p.push.len() as u64,
            PlatformChoice::These(list) => list.len() as u64,
        },
    };
    let artifact = if target.artifact.is_some() { 4 } else { 0 };
    let canary = |c: &Canaries| if c.artifact.is_some() { 3 } else { 1 };
    let old_content = target.golden_images.len() as u64
        + target
            .canaries
            .as_ref()
            .map_or(0, |c| u64::from(c.keep) * canary(c));
    target
        .sizes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let golden_and_canaries = if i == 0 { old_content } else { 0 };
            ManifestGets {
                class: class.name.clone(),
                interval: class.interval,
                per_run: paths * (2 + platforms + golden_and_canaries) + artifact,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn counts_image_golden_and_canary_manifest_gets_per_path_and_day() {
        let yaml = "targets:\n  - name: hub\n    registry: https://registry-1.docker.io\n    repository: team/probe\n    interval: 30s\n    golden_images: [\"team/base:1\"]\n    canaries: {enabled: true, keep: 3}\n    paths:\n      - {name: mirror, registry: https://mirror.example}\n    sizes:\n      - {class: small, layer_sizes: [4KiB]}\n      - {class: big, layer_sizes: [64MiB], interval: 1h}\n";
        let config = RawConfig::from_yaml(yaml)
            .expect("parses")
            .validate()
            .expect("valid");
        let gets = manifest_gets(&config.targets[0]);
        // small: (by tag + by digest + 1 golden + 3 canaries) x 2 paths; big: the image only.
        assert_eq!(gets[0].per_run, 12);
        assert_eq!(gets[0].per_day(), 12 * 2880);
        assert_eq!(gets[1].per_run, 4);
        assert_eq!(gets[1].per_day(), 4 * 24);
    }

    #[test]
    fn counts_platform_manifests_and_artifacts_too() {
        let yaml = "targets:\n  - name: hub\n    registry: https://registry-1.docker.io\n    repository: team/probe\n    image: {platforms: [linux/amd64, linux/arm64], pull_platforms: all}\n    artifact: {enabled: true}\n    canaries: {enabled: true, keep: 2, artifact: true}\n";
        let config = RawConfig::from_yaml(yaml)
            .expect("parses")
            .validate()
            .expect("valid");
        // (by tag + by digest + 2 platforms + 2 canaries x (manifest, referrers tag, artifact))
        // on the one path, + the artifact's 4.
        assert_eq!(manifest_gets(&config.targets[0])[0].per_run, 2 + 2 + 6 + 4);
    }
}
