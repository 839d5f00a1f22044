//! Multi-platform images: one image per platform (each from its own seed, its config naming its
//! platform), and the image index over their manifests, built with oci-spec's types; and the
//! entries of an index as pulled, with the platform each names.

use std::time::SystemTime;

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType, SCHEMA_VERSION};

use super::digest::Digest;
use super::image::Image;
use super::manifest::{ManifestError, ManifestType};
use super::platform::Platform;

/// An index over one image per platform, as the prober pushes it.
#[derive(Clone, Debug)]
pub struct Index {
    pub manifest_type: ManifestType,
    /// The images, in the order of `platforms` given to `generate`.
    pub images: Vec<(Platform, Image)>,
    /// The index JSON exactly as it will be PUT.
    pub body: Bytes,
    pub digest: Digest,
}

/// The media type of an index of `manifest_type` manifests: an OCI image index, or Docker's
/// manifest list.
pub fn index_media_type(manifest_type: ManifestType) -> &'static str {
    match manifest_type {
        ManifestType::Oci => "application/vnd.oci.image.index.v1+json",
        ManifestType::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
    }
}

/// The seed of platform `index` of an image seeded with `seed`: the first platform's is the
/// seed itself, the others are mixed from it so no two platforms share a layer.
pub fn platform_seed(seed: u64, index: usize) -> u64 {
    if index == 0 {
        return seed;
    }
    // splitmix64's increment, odd, so distinct indexes give distinct seeds.
    seed.rotate_left(17) ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// An OCI descriptor of our content.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    let digest: oci_spec::image::Digest = digest
        .as_str()
        .parse()
        .expect("a sha256 digest of ours is an OCI digest");
    Descriptor::new(MediaType::from(media_type), size, digest)
}

impl Index {
    /// One image per platform (layer sizes alike, seeds apart), and the index over them.
    pub fn generate(
        seed: u64,
        layer_sizes: &[u64],
        manifest_type: ManifestType,
        platforms: &[Platform],
        created: SystemTime,
    ) -> Index {
        let images = platforms
            .iter()
            .enumerate()
            .map(|(i, platform)| {
                let image = Image::generate_for(
                    platform_seed(seed, i),
                    layer_sizes,
                    manifest_type,
                    created,
                    platform,
                );
                (platform.clone(), image)
            })
            .collect();
        Index::over(manifest_type, images)
    }

    /// The index over `images`: a descriptor per image with its platform, in order.
    pub fn over(manifest_type: ManifestType, images: Vec<(Platform, Image)>) -> Index {
        let manifests: Vec<Descriptor> = images
            .iter()
            .map(|(platform, image)| {
                let mut d = descriptor(
                    manifest_type.manifest_media_type(),
                    &image.manifest_digest,
                    image.manifest.len() as u64,
                );
                d.set_platform(Some(platform.to_oci()));
                d
            })
            .collect();
        let index = ImageIndexBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::from(index_media_type(manifest_type)))
            .manifests(manifests)
            .build()
            .expect("every field of an index is set");
        let body = Bytes::from(serde_json::to_vec(&index).expect("an index serializes"));
        let digest = Digest::of(&body);
        Index {
            manifest_type,
            images,
            body,
            digest,
        }
    }
}

/// One manifest an index lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub platform: Option<Platform>,
    pub artifact_type: Option<String>,
}

/// The entries of a pulled index, every digest checked to be one the prober verifies.
pub fn entries(index: &ImageIndex) -> Result<Vec<Entry>, ManifestError> {
    index
        .manifests()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let digest = Digest::parse(d.digest().as_ref()).map_err(|e| {
                ManifestError(format!(
                    "index entry {} names an invalid digest: {e}",
                    i + 1
                ))
            })?;
            Ok(Entry {
                digest,
                size: d.size(),
                media_type: d.media_type().to_string(),
                platform: d.platform().as_ref().map(Platform::of),
                artifact_type: d.artifact_type().as_ref().map(|t| t.to_string()),
            })
        })
        .collect()
}

/// The entry of an index that serves `want`, as containerd picks it: the first that matches.
pub fn pick<'e>(entries: &'e [Entry], want: &Platform) -> Option<&'e Entry> {
    entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| want.matches(p)))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::oci::manifest::Pulled;

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|p| Platform::parse(p).unwrap()).collect()
    }

    fn created() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn lists_every_platform_manifest_with_its_platform_in_order() {
        let index = Index::generate(
            7,
            &[100, 200],
            ManifestType::Oci,
            &platforms(&["linux/amd64", "linux/arm64/v8"]),
            created(),
        );
        assert_eq!(index.digest, Digest::of(&index.body));
        let pulled = Pulled::parse(&index.body, "").unwrap();
        let Pulled::Index(parsed) = pulled else {
            panic!("an index")
        };
        let got = entries(&parsed).unwrap();
        assert_eq!(got.len(), 2);
        for ((platform, image), entry) in index.images.iter().zip(&got) {
            assert_eq!(entry.digest, image.manifest_digest);
            assert_eq!(entry.size, image.manifest.len() as u64);
            assert_eq!(entry.platform.as_ref(), Some(platform));
            assert_eq!(
                entry.media_type,
                "application/vnd.oci.image.manifest.v1+json"
            );
        }
        let json: serde_json::Value = serde_json::from_slice(&index.body).unwrap();
        assert_eq!(json["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(json["schemaVersion"], 2);
    }

    #[test]
    fn each_platform_config_names_its_platform_and_no_layer_is_shared() {
        let index = Index::generate(
            7,
            &[100],
            ManifestType::Docker,
            &platforms(&["linux/amd64", "linux/arm/v7"]),
            created(),
        );
        let config = |i: usize| -> serde_json::Value {
            serde_json::from_slice(&index.images[i].1.config).unwrap()
        };
        assert_eq!(
            (&config(0)["os"], &config(0)["architecture"]),
            (&"linux".into(), &"amd64".into())
        );
        assert!(config(0).get("variant").is_none());
        assert_eq!(config(1)["variant"], "v7");
        assert_ne!(
            index.images[0].1.layers[0].digest,
            index.images[1].1.layers[0].digest
        );
        let json: serde_json::Value = serde_json::from_slice(&index.body).unwrap();
        assert_eq!(
            json["mediaType"],
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
    }

    #[test]
    fn the_first_platform_is_the_single_platform_image_of_the_seed() {
        let index = Index::generate(
            9,
            &[64],
            ManifestType::Oci,
            &platforms(&["linux/amd64"]),
            created(),
        );
        let single = Image::generate_at(9, &[64], ManifestType::Oci, created());
        assert_eq!(index.images[0].1.manifest_digest, single.manifest_digest);
    }

    #[test]
    fn platform_seeds_differ_from_each_other_and_from_the_seed() {
        let seeds: Vec<u64> = (0..16).map(|i| platform_seed(42, i)).collect();
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len());
        assert_eq!(seeds[0], 42);
    }

    #[test]
    fn picks_the_first_entry_that_serves_the_platform() {
        let entry = |p: &str, c: char| Entry {
            digest: Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap(),
            size: 1,
            media_type: String::new(),
            platform: Some(Platform::parse(p).unwrap()),
            artifact_type: None,
        };
        let list = [entry("linux/amd64", 'a'), entry("linux/arm64/v8", 'b')];
        let want = Platform::parse("linux/arm64").unwrap();
        assert_eq!(pick(&list, &want).map(|e| e.size), Some(1));
        assert_eq!(pick(&list, &want).unwrap().digest.hex(), "b".repeat(64));
        assert!(pick(&list, &Platform::parse("linux/s390x").unwrap()).is_none());
    }

    #[test]
    fn an_entry_with_an_invalid_digest_is_named() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"sha512:{}","size":1}}]}}"#,
            "a".repeat(128)
        );
        let Pulled::Index(index) = Pulled::parse(body.as_bytes(), "").unwrap() else {
            panic!("an index")
        };
        let e = entries(&index).unwrap_err();
        assert!(
            e.0.starts_with("index entry 1 names an invalid digest"),
            "{e}"
        );
    }
}
