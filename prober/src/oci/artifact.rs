//! OCI 1.1 artifacts: an image manifest with an `artifactType`, the empty config descriptor the
//! image spec recommends for artifacts without a config, one small payload blob (SBOM- or
//! signature-like, a pure function of a seed) and a `subject` naming the image it is about.
//!
//! The manifest is built with oci-spec's types and no annotations (a map whose order would not
//! be stable), so an artifact regenerated from its seed has the digest it was pushed with.

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType, SCHEMA_VERSION};

use super::digest::Digest;
use super::index::descriptor;

/// The empty descriptor's media type, content (`{}`) and digest (image-spec, "Guidance for an
/// Empty Descriptor").
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONTENT: &[u8] = b"{}";
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// `{}` in base64, the empty descriptor's `data`.
const EMPTY_DATA: &str = "e30=";
/// The media type of every artifact manifest: OCI 1.1 puts artifacts in image manifests.
pub const ARTIFACT_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// What an artifact is about: a manifest the registry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// An artifact as the prober pushes it.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub artifact_type: String,
    pub subject: Subject,
    /// The payload blob (small; held in memory).
    pub payload: Bytes,
    pub payload_digest: Digest,
    /// The manifest JSON exactly as it will be PUT.
    pub manifest: Bytes,
    pub digest: Digest,
}

impl Artifact {
    /// The artifact of type `artifact_type` about `subject`, its payload a JSON document naming
    /// the seed and the subject (so every run's is unique), padded to at least `size` bytes.
    pub fn generate(seed: u64, artifact_type: &str, size: u64, subject: Subject) -> Artifact {
        let mut payload = serde_json::json!({
            "registry-prober": {
                "nonce": format!("{seed:016x}"),
                "subject": subject.digest.as_str(),
            }
        })
        .to_string()
        .into_bytes();
        // Whitespace after the document keeps it JSON at any size.
        let want = usize::try_from(size).unwrap_or(usize::MAX);
        if payload.len() < want {
            payload.resize(want, b' ');
        }
        let payload = Bytes::from(payload);
        let payload_digest = Digest::of(&payload);

        let mut config = descriptor(
            EMPTY_MEDIA_TYPE,
            &empty_digest(),
            EMPTY_CONTENT.len() as u64,
        );
        config.set_data(Some(EMPTY_DATA.to_string()));
        let layer = descriptor(artifact_type, &payload_digest, payload.len() as u64);
        let subject_descriptor: Descriptor =
            descriptor(&subject.media_type, &subject.digest, subject.size);
        let manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::from(ARTIFACT_MANIFEST_MEDIA_TYPE))
            .artifact_type(MediaType::from(artifact_type))
            .config(config)
            .layers(vec![layer])
            .subject(subject_descriptor)
            .build()
            .expect("every field of an artifact manifest is set");
        let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("a manifest serializes"));
        let digest = Digest::of(&manifest);
        Artifact {
            artifact_type: artifact_type.to_string(),
            subject,
            payload,
            payload_digest,
            manifest,
            digest,
        }
    }

    /// The artifact's entry in a referrers index: its manifest, with its artifactType.
    pub fn referrer(&self) -> Descriptor {
        let mut d = descriptor(
            ARTIFACT_MANIFEST_MEDIA_TYPE,
            &self.digest,
            self.manifest.len() as u64,
        );
        d.set_artifact_type(Some(MediaType::from(self.artifact_type.as_str())));
        d
    }
}

/// The digest of the empty descriptor's content.
pub fn empty_digest() -> Digest {
    Digest::parse(EMPTY_DIGEST).expect("the empty descriptor's digest is a sha256 digest")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::of(b"image"),
            size: 5,
        }
    }

    #[test]
    fn the_empty_descriptor_is_what_the_image_spec_gives() {
        assert_eq!(Digest::of(EMPTY_CONTENT), empty_digest());
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(EMPTY_CONTENT),
            EMPTY_DATA
        );
    }

    #[test]
    fn the_manifest_is_an_oci_1_1_artifact_about_its_subject() {
        let a = Artifact::generate(1, "application/vnd.example.sbom+json", 0, subject());
        let json: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.example.sbom+json",
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": EMPTY_DIGEST,
                    "size": 2,
                    "data": "e30=",
                },
                "layers": [{
                    "mediaType": "application/vnd.example.sbom+json",
                    "digest": a.payload_digest.as_str(),
                    "size": a.payload.len(),
                }],
                "subject": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": subject().digest.as_str(),
                    "size": 5,
                },
            })
        );
        assert_eq!(a.digest, Digest::of(&a.manifest));
        let payload: serde_json::Value = serde_json::from_slice(&a.payload).unwrap();
        assert_eq!(payload["registry-prober"]["nonce"], "0000000000000001");
    }

    #[test]
    fn the_same_seed_gives_the_same_artifact_and_another_a_new_one() {
        let a = Artifact::generate(5, "t/x", 0, subject());
        let b = Artifact::generate(5, "t/x", 0, subject());
        let c = Artifact::generate(6, "t/x", 0, subject());
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        assert_ne!(a.payload_digest, c.payload_digest);
    }

    #[test]
    fn the_payload_is_padded_to_its_size_and_stays_json() {
        let a = Artifact::generate(5, "t/x", 4096, subject());
        assert_eq!(a.payload.len(), 4096);
        serde_json::from_slice::<serde_json::Value>(&a.payload).expect("still JSON");
    }

    #[test]
    fn its_referrer_entry_carries_the_artifact_type() {
        let a = Artifact::generate(5, "t/x", 0, subject());
        let json = serde_json::to_value(a.referrer()).unwrap();
        assert_eq!(json["artifactType"], "t/x");
        assert_eq!(json["digest"], a.digest.as_str());
        assert_eq!(json["size"], a.manifest.len());
    }
}
