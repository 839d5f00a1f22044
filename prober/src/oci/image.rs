//! The randomized image of one cycle: a config blob and N layers (tar streams of seeded files,
//! compressed as the target says; see `layer.rs`), generated and hashed while streaming, never
//! held whole in memory.
//!
//! The config JSON is written by hand, not with oci-spec's `ImageConfiguration`, which orders
//! its fields differently: a canary regenerated from its seed must have the exact bytes (and
//! digest) it was pushed with, by this version or an earlier one.

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use super::compression::LayerFormat;
use super::digest::Digest;
pub use super::layer::Layer;
use super::manifest::{image_manifest, ManifestType};
use super::platform::Platform;

/// The config label naming how the image's layers were generated: their format and the sizes
/// asked for, e.g. "tar+gzip:4096,65536". With the seed (in the tag of a canary), it is all it
/// takes to generate the image again. Images of versions before tar layers have none.
pub const LAYERS_LABEL: &str = "io.registry-prober.layers";
/// The config label carrying the seed, present in every image the prober generates.
pub const NONCE_LABEL: &str = "io.registry-prober.nonce";

/// The image of one cycle.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest_type: ManifestType,
    pub format: LayerFormat,
    /// The config JSON (small; held in memory).
    pub config: Bytes,
    pub config_digest: Digest,
    pub layers: Vec<Layer>,
    /// The manifest JSON exactly as it will be PUT.
    pub manifest: Bytes,
    pub manifest_digest: Digest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: &'static str,
    pub kind: BlobKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    Config,
    /// The 0-based index into `Image::layers`; displayed 1-based.
    Layer(usize),
}

impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobKind::Config => f.write_str("config"),
            BlobKind::Layer(index) => write!(f, "layer {}", index + 1),
        }
    }
}

#[derive(Serialize)]
struct ConfigJson<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    created: &'a str,
    config: RunConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<History>,
}

#[derive(Serialize)]
struct RunConfig<'a> {
    #[serde(rename = "Labels")]
    labels: Labels<'a>,
}

/// The labels carry the cycle's seed, so every pushed config (and so every manifest) is
/// unique, and a failing image can be regenerated from what the registry holds.
#[derive(Serialize)]
struct Labels<'a> {
    #[serde(rename = "io.registry-prober.nonce")]
    nonce: &'a str,
    #[serde(
        rename = "io.registry-prober.layers",
        skip_serializing_if = "Option::is_none"
    )]
    layers: Option<&'a str>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<&'a Digest>,
}

#[derive(Serialize)]
struct History {
    created_by: &'static str,
}

/// The value of the layers label: format and requested sizes.
pub fn layers_label(format: LayerFormat, sizes: &[u64]) -> String {
    let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
    format!("{}:{}", format.token(), sizes.join(","))
}

/// Format and sizes from a layers label; None when it is not one this version writes.
pub fn parse_layers_label(label: &str) -> Option<(LayerFormat, Vec<u64>)> {
    let (token, sizes) = label.split_once(':')?;
    let format = LayerFormat::from_token(token)?;
    let sizes = sizes
        .split(',')
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some((format, sizes))
}

impl Image {
    /// seed: the cycle's random seed; layer_sizes: one entry per layer.
    pub fn generate(
        seed: u64,
        layer_sizes: &[u64],
        manifest_type: ManifestType,
        format: LayerFormat,
    ) -> Image {
        Image::generate_at(seed, layer_sizes, manifest_type, format, SystemTime::now())
    }

    /// `generate` with the config's creation time given: the same arguments give the same
    /// bytes (tests, and canaries, which are regenerated to know what they must still be).
    pub fn generate_at(
        seed: u64,
        layer_sizes: &[u64],
        manifest_type: ManifestType,
        format: LayerFormat,
        created: SystemTime,
    ) -> Image {
        Image::generate_for(
            seed,
            layer_sizes,
            manifest_type,
            format,
            created,
            &Platform::linux_amd64(),
        )
    }

    /// `generate_at` for `platform`, which the config names (an image of a multi-platform
    /// index); linux/amd64 gives the bytes `generate_at` gives.
    pub fn generate_for(
        seed: u64,
        layer_sizes: &[u64],
        manifest_type: ManifestType,
        format: LayerFormat,
        created: SystemTime,
        platform: &Platform,
    ) -> Image {
        let layers: Vec<Layer> = layer_sizes
            .iter()
            .enumerate()
            .map(|(index, &size)| Layer::new(super::random::mix(seed, index as u64), size, format))
            .collect();

        let created = humantime::format_rfc3339_seconds(created).to_string();
        let nonce = format!("{seed:016x}");
        let label = (format != LayerFormat::Raw).then(|| layers_label(format, layer_sizes));
        let config = ConfigJson {
            architecture: &platform.architecture,
            os: &platform.os,
            variant: platform.variant.as_deref(),
            created: &created,
            config: RunConfig {
                labels: Labels {
                    nonce: &nonce,
                    layers: label.as_deref(),
                },
            },
            rootfs: RootFs {
                kind: "layers",
                diff_ids: layers.iter().map(|layer| &layer.diff_id).collect(),
            },
            history: layers
                .iter()
                .map(|_| History {
                    created_by: "registry-prober",
                })
                .collect(),
        };
        let config = Bytes::from(
            serde_json::to_vec(&config).expect("a struct of strings and numbers serializes"),
        );
        let config_digest = Digest::of(&config);

        let layer_refs: Vec<(&Digest, u64)> = layers.iter().map(|l| (&l.digest, l.size)).collect();
        let manifest = Bytes::from(image_manifest(
            manifest_type,
            (&config_digest, config.len() as u64),
            &layer_refs,
            format.media_type(manifest_type),
        ));
        // The registry names the manifest by the digest of the exact bytes PUT, so hash those.
        let manifest_digest = Digest::of(&manifest);

        Image {
            manifest_type,
            format,
            config,
            config_digest,
            layers,
            manifest,
            manifest_digest,
        }
    }

    /// (digest, size, media type) of every blob: config first, then layers in order.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let config = BlobRef {
            digest: self.config_digest.clone(),
            size: self.config.len() as u64,
            media_type: self.manifest_type.config_media_type(),
            kind: BlobKind::Config,
        };
        let media_type = self.format.media_type(self.manifest_type);
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(index, layer)| BlobRef {
                digest: layer.digest.clone(),
                size: layer.size,
                media_type,
                kind: BlobKind::Layer(index),
            });
        std::iter::once(config).chain(layers).collect()
    }

    /// The DiffIDs of the layers, in order.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
