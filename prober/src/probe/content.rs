//! What a run pushes, as one value the steps and cleanup read: one image, or an index over one
//! image per platform (`image.platforms`); and the artifact about it (`artifact`), all pure
//! functions of the run's seed.

use std::time::SystemTime;

use bytes::Bytes;

use super::push::Blob;
use crate::config::{ArtifactConfig, Platforms};
use crate::oci::artifact::{Artifact, Subject};
use crate::oci::digest::Digest;
use crate::oci::image::Image;
use crate::oci::index::{index_media_type, Index};
use crate::oci::manifest::ManifestType;

/// The manifest a run tags: an image's, or an index's.
#[derive(Clone, Debug)]
pub(super) enum Tagged {
    Image(Image),
    Index(Index),
}

/// Everything a run pushes.
#[derive(Clone, Debug)]
pub(super) struct Content {
    pub(super) tagged: Tagged,
    pub(super) artifact: Option<Artifact>,
}

/// The seed of the artifact about an image seeded with `seed`.
pub(super) fn artifact_seed(seed: u64) -> u64 {
    seed.rotate_left(29) ^ 0xa076_1d64_78bd_642f
}

impl Content {
    /// The content of a run seeded with `seed` (image generation hashes every layer: call it
    /// off the async workers).
    pub(super) fn generate(
        seed: u64,
        layer_sizes: &[u64],
        manifest_type: ManifestType,
        platforms: Option<&Platforms>,
        artifact: Option<&ArtifactConfig>,
    ) -> Content {
        let tagged = match platforms {
            None => Tagged::Image(Image::generate(seed, layer_sizes, manifest_type)),
            Some(p) => Tagged::Index(Index::generate(
                seed,
                layer_sizes,
                manifest_type,
                &p.push,
                SystemTime::now(),
            )),
        };
        let mut content = Content {
            tagged,
            artifact: None,
        };
        content.artifact = artifact.map(|a| {
            Artifact::generate(
                artifact_seed(seed),
                &a.artifact_type,
                a.size,
                content.subject(),
            )
        });
        content
    }

    /// The images, each with the prefix its steps' subjects get ("" for a single image,
    /// "linux/arm64: " in an index).
    pub(super) fn images(&self) -> Vec<(String, &Image)> {
        match &self.tagged {
            Tagged::Image(image) => vec![(String::new(), image)],
            Tagged::Index(index) => index
                .images
                .iter()
                .map(|(platform, image)| (format!("{platform}: "), image))
                .collect(),
        }
    }

    /// The first image: the one a cross-repository mount takes a blob of.
    pub(super) fn first_image(&self) -> &Image {
        match &self.tagged {
            Tagged::Image(image) => image,
            Tagged::Index(index) => &index.images[0].1,
        }
    }

    /// The tagged manifest: its digest, bytes and media type.
    pub(super) fn top(&self) -> (&Digest, &Bytes, &'static str) {
        match &self.tagged {
            Tagged::Image(i) => (
                &i.manifest_digest,
                &i.manifest,
                i.manifest_type.manifest_media_type(),
            ),
            Tagged::Index(i) => (&i.digest, &i.body, index_media_type(i.manifest_type)),
        }
    }

    /// The tagged manifest as an artifact's subject.
    pub(super) fn subject(&self) -> Subject {
        let (digest, body, media_type) = self.top();
        Subject {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size: body.len() as u64,
        }
    }

    /// What the steps call a blob of the run, and its size, when it is one.
    pub(super) fn blob(&self, digest: &Digest) -> Option<(String, u64)> {
        let images = self.images();
        let of_images = images.iter().flat_map(|(prefix, image)| {
            image
                .blobs()
                .into_iter()
                .map(move |b| (format!("{prefix}{}", b.kind), b.digest, b.size))
        });
        let of_artifact = self.artifact.iter().map(|a| {
            (
                "artifact payload".to_string(),
                a.payload_digest.clone(),
                a.payload.len() as u64,
            )
        });
        of_images
            .chain(of_artifact)
            .find(|(_, d, _)| d == digest)
            .map(|(label, _, size)| (label, size))
    }

    /// The bytes of those of `digests` that are blobs of the run.
    pub(super) fn bytes_of(&self, digests: &[Digest]) -> u64 {
        digests
            .iter()
            .filter_map(|d| self.blob(d))
            .map(|(_, size)| size)
            .sum()
    }
}

/// The blobs of an artifact: the empty config, then the payload.
pub(super) fn artifact_blobs(artifact: &Artifact, prefix: &str) -> Vec<Blob> {
    use crate::http::BodySource;
    use crate::oci::artifact::{empty_digest, EMPTY_CONTENT};
    vec![
        Blob {
            subject: format!("{prefix}artifact config"),
            digest: empty_digest(),
            size: EMPTY_CONTENT.len() as u64,
            body: BodySource::Bytes(Bytes::from_static(EMPTY_CONTENT)),
        },
        Blob {
            subject: format!("{prefix}artifact payload"),
            digest: artifact.payload_digest.clone(),
            size: artifact.payload.len() as u64,
            body: BodySource::Bytes(artifact.payload.clone()),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlatformChoice;
    use crate::oci::platform::Platform;

    fn platforms() -> Platforms {
        Platforms {
            push: vec![
                Platform::parse("linux/amd64").unwrap(),
                Platform::parse("linux/arm64").unwrap(),
            ],
            pull: PlatformChoice::All,
        }
    }

    fn artifact() -> ArtifactConfig {
        ArtifactConfig {
            artifact_type: "application/x.test+json".into(),
            size: 200,
            filter: false,
        }
    }

    #[test]
    fn an_index_run_tags_the_index_and_its_artifact_is_about_it() {
        let c = Content::generate(
            3,
            &[10],
            ManifestType::Oci,
            Some(&platforms()),
            Some(&artifact()),
        );
        let Tagged::Index(index) = &c.tagged else {
            panic!("an index")
        };
        assert_eq!(c.top().0, &index.digest);
        assert_eq!(c.top().2, "application/vnd.oci.image.index.v1+json");
        let a = c.artifact.as_ref().expect("an artifact");
        assert_eq!(a.subject.digest, index.digest);
        assert_eq!(a.subject.size, index.body.len() as u64);
        let prefixes: Vec<String> = c.images().into_iter().map(|(p, _)| p).collect();
        assert_eq!(prefixes, ["linux/amd64: ", "linux/arm64: "]);
    }

    #[test]
    fn names_and_sizes_every_blob_of_the_run() {
        let c = Content::generate(
            3,
            &[10, 20],
            ManifestType::Oci,
            Some(&platforms()),
            Some(&artifact()),
        );
        let arm = &c.images()[1].1.layers[1];
        assert_eq!(
            c.blob(&arm.digest),
            Some(("linux/arm64: layer 2".to_string(), 20))
        );
        let a = c.artifact.as_ref().unwrap();
        assert_eq!(
            c.blob(&a.payload_digest),
            Some(("artifact payload".to_string(), 200))
        );
        assert_eq!(c.blob(&Digest::of(b"other")), None);
        assert_eq!(c.bytes_of(&[arm.digest.clone(), Digest::of(b"other")]), 20);
    }

    #[test]
    fn a_plain_run_is_the_image_of_its_seed() {
        let c = Content::generate(3, &[10], ManifestType::Docker, None, None);
        let Tagged::Image(image) = &c.tagged else {
            panic!("an image")
        };
        assert_eq!(c.top().0, &image.manifest_digest);
        assert!(c.artifact.is_none());
        assert_ne!(artifact_seed(3), 3);
    }
}
