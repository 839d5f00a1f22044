//! Manifests, with oci-spec's types: the media types the prober pushes, the image manifest it
//! builds, and the manifests and indexes it pulls, parsed into the blobs and child manifests
//! they name (every digest checked to be one the prober verifies).

use std::fmt;

use oci_spec::image::{
    Descriptor, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType, SCHEMA_VERSION,
};

use super::digest::Digest;

/// Every manifest type the prober can verify; registries pick by Accept.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media type a target pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestType {
    Oci,
    Docker,
}

impl ManifestType {
    #[cfg(test)]
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestType::Oci => "oci",
            ManifestType::Docker => "docker",
        }
    }

    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestType::Oci => "application/vnd.oci.image.manifest.v1+json",
            ManifestType::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            ManifestType::Oci => "application/vnd.oci.image.config.v1+json",
            ManifestType::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// Uncompressed tar media types: the bytes are random, not gzip, and claiming gzip would
    /// make clients that unpack the image fail on the first byte.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            ManifestType::Oci => "application/vnd.oci.image.layer.v1.tar",
            ManifestType::Docker => "application/vnd.docker.image.rootfs.diff.tar",
        }
    }
}

/// A manifest that is not one the prober can use: not JSON of an image manifest or index, or
/// naming a digest it does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One blob or child manifest a manifest names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// What it is to the manifest: "config", "layer 2", or a child's digest.
    pub label: String,
    pub digest: Digest,
    pub size: u64,
}

/// A pulled manifest: an image manifest, or an index of child manifests.
#[derive(Debug)]
pub enum Pulled {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// The image manifest of a config and layers, as JSON: schemaVersion, mediaType, config,
/// layers, in that order (byte for byte what earlier versions built, so a canary regenerated
/// from its seed still has the digest it was pushed with).
pub fn image_manifest(
    manifest_type: ManifestType,
    config: (&Digest, u64),
    layers: &[(&Digest, u64)],
) -> Vec<u8> {
    let descriptor = |media_type: &str, (digest, size): (&Digest, u64)| {
        let digest: oci_spec::image::Digest = digest
            .as_str()
            .parse()
            .expect("a sha256 digest of ours is an OCI digest");
        Descriptor::new(MediaType::from(media_type), size, digest)
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::from(manifest_type.manifest_media_type()))
        .config(descriptor(manifest_type.config_media_type(), config))
        .layers(
            layers
                .iter()
                .map(|&layer| descriptor(manifest_type.layer_media_type(), layer))
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("every field of an image manifest is set");
    serde_json::to_vec(&manifest).expect("an image manifest serializes")
}

impl Pulled {
    /// Parses a manifest body; `content_type` is the answer's Content-Type, which says what it
    /// is when the body does not.
    pub fn parse(body: &[u8], content_type: &str) -> Result<Pulled, ManifestError> {
        let not_one = |e: serde_json::Error| {
            ManifestError(format!("manifest is not an image manifest or index: {e}"))
        };
        #[derive(serde::Deserialize)]
        struct Shape {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
            config: Option<serde_json::Value>,
            manifests: Option<serde_json::Value>,
        }
        let shape: Shape = serde_json::from_slice(body).map_err(not_one)?;
        let media_type = shape.media_type.as_deref().unwrap_or(content_type);
        let index = media_type.contains("index")
            || media_type.contains("manifest.list")
            || (shape.config.is_none() && shape.manifests.is_some());
        if index {
            serde_json::from_slice(body)
                .map(|index| Pulled::Index(Box::new(index)))
                .map_err(not_one)
        } else {
            serde_json::from_slice(body)
                .map(|manifest| Pulled::Image(Box::new(manifest)))
                .map_err(not_one)
        }
    }

    /// The blobs of an image manifest, config first, then the layers; each label prefixed with
    /// `prefix` when one is given.
    pub fn blobs(&self, prefix: &str) -> Result<Vec<Named>, ManifestError> {
        let Pulled::Image(manifest) = self else {
            return Err(ManifestError(
                "manifest has no config descriptor".to_string(),
            ));
        };
        let label = |what: String| {
            if prefix.is_empty() {
                what
            } else {
                format!("{prefix}: {what}")
            }
        };
        std::iter::once((label("config".into()), manifest.config()))
            .chain(
                manifest
                    .layers()
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (label(format!("layer {}", i + 1)), d)),
            )
            .map(|(what, d)| named(what, d))
            .collect()
    }

    /// The child manifests of an index, at most `max`.
    pub fn children(&self, max: usize) -> Result<Vec<Named>, ManifestError> {
        let Pulled::Index(index) = self else {
            return Ok(Vec::new());
        };
        index
            .manifests()
            .iter()
            .take(max)
            .map(|d| named(d.digest().to_string(), d))
            .collect()
    }

    /// The layer sizes of an image manifest (none for an index).
    pub fn layer_sizes(&self) -> Vec<u64> {
        match self {
            Pulled::Image(m) => m.layers().iter().map(Descriptor::size).collect(),
            Pulled::Index(_) => Vec::new(),
        }
    }
}

fn named(label: String, d: &Descriptor) -> Result<Named, ManifestError> {
    let digest = Digest::parse(d.digest().as_ref())
        .map_err(|e| ManifestError(format!("manifest descriptor of {label}: {e}")))?;
    Ok(Named {
        label,
        digest,
        size: d.size(),
    })
}

#[cfg(test)]
#[path = "manifest_properties.rs"]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn builds_the_manifest_byte_for_byte_as_before() {
        let (config, layer) = (
            Digest::parse(&d('a')).unwrap(),
            Digest::parse(&d('b')).unwrap(),
        );
        let body = image_manifest(ManifestType::Oci, (&config, 404), &[(&layer, 4096)]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":404}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":4096}}]}}"#,
                d('a'),
                d('b')
            )
        );
    }

    #[test]
    fn lists_config_then_layers_from_a_manifest() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "c", "digest": d('a'), "size": 10},
            "layers": [{"mediaType": "l", "digest": d('b'), "size": 20}, {"mediaType": "l", "digest": d('c'), "size": 0}]
        })
        .to_string();
        let blobs = Pulled::parse(body.as_bytes(), "")
            .unwrap()
            .blobs("")
            .unwrap();
        let got: Vec<(String, String, u64)> = blobs
            .iter()
            .map(|b| (b.label.clone(), b.digest.to_string(), b.size))
            .collect();
        assert_eq!(
            got,
            vec![
                ("config".into(), d('a'), 10),
                ("layer 1".into(), d('b'), 20),
                ("layer 2".into(), d('c'), 0)
            ]
        );
    }

    #[test]
    fn a_manifest_that_is_not_json_says_so() {
        let e = Pulled::parse(b"<html>oops</html>", "").unwrap_err();
        assert!(
            e.0.starts_with("manifest is not an image manifest or index"),
            "{e}"
        );
    }

    #[test]
    fn a_negative_size_or_a_digest_we_do_not_verify_is_refused() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{}","size":-1}},"layers":[]}}"#,
            d('a')
        );
        let e = Pulled::parse(body.as_bytes(), "").unwrap_err();
        assert!(e.0.contains("expected u64"), "{e}");
        let body = r#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"md5:abc","size":1},"layers":[]}"#;
        let e = Pulled::parse(body.as_bytes(), "")
            .unwrap()
            .blobs("")
            .unwrap_err();
        assert!(
            e.0.starts_with("manifest descriptor of config: invalid digest"),
            "{e}"
        );
    }

    #[test]
    fn recognises_an_index_by_media_type_or_shape() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{}","size":1}}]}}"#,
            d('e')
        );
        for content_type in ["application/vnd.oci.image.index.v1+json", ""] {
            let pulled = Pulled::parse(body.as_bytes(), content_type).unwrap();
            assert!(matches!(pulled, Pulled::Index(_)));
            let children = pulled.children(8).unwrap();
            assert_eq!(children.len(), 1);
            assert_eq!(children[0].digest.to_string(), d('e'));
        }
    }
}
