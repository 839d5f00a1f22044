//! The randomized image of one cycle: a config blob and N layers whose bytes come from a
//! seeded fast RNG, generated (and hashed) while streaming, never held whole in memory.
//!
//! The config JSON is written by hand, not with oci-spec's `ImageConfiguration`, which orders
//! its fields differently: a canary regenerated from its seed must have the exact bytes (and
//! digest) earlier versions pushed.

use std::convert::Infallible;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::manifest::{image_manifest, ManifestType};
use super::platform::Platform;

/// Layers are generated in blocks of this size, each from its own RNG, so any byte range can
/// be produced by seeding at the block holding its start.
const BLOCK: u64 = 64 * 1024;
/// The largest frame a `LayerBody` yields.
const MAX_FRAME: u64 = 256 * 1024;
/// Images from this size on hash their layers on several threads.
const PARALLEL_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// One layer: its bytes are a pure function of (seed, size), so any byte range can be
/// regenerated on demand (for the upload, for a retry after a 401, for each chunk of a
/// chunked upload) without holding the layer in memory.
#[derive(Clone, Debug)]
pub struct Layer {
    pub seed: u64,
    pub size: u64,
    pub digest: Digest,
}

impl Layer {
    /// Generates the bytes once, streaming through sha256, to learn the digest (memory
    /// independent of size: one block-sized buffer, reused).
    pub fn new(seed: u64, size: u64) -> Layer {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; BLOCK as usize];
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(BLOCK);
            let chunk = &mut buf[..len as usize];
            fill_block(seed, offset / BLOCK, 0, chunk);
            hasher.update(&*chunk);
            offset += len;
        }
        Layer {
            seed,
            size,
            digest: Digest::from_sha256(hasher.finalize().into()),
        }
    }

    /// The bytes in `range` (half-open), as an http body yielding frames of at most 256 KiB
    /// with an exact size_hint; each frame freshly generated. A range reaching past the end
    /// of the layer is cut at the end (an empty range past it yields nothing).
    pub fn body(&self, range: Range<u64>) -> LayerBody {
        let end = range.end.min(self.size);
        LayerBody {
            seed: self.seed,
            pos: range.start.min(end),
            end,
        }
    }
}

/// Fills `out` with bytes `offset..offset + out.len()` of block `block` of the layer seeded
/// with `seed`.
///
/// Words are written explicitly as little-endian `next_u64`s instead of with `fill_bytes`:
/// rand's `fill_bytes` takes the high half of a word for a tail of 1-4 bytes, so a short fill
/// would not be a prefix of a long one, and a block must read the same whether it is generated
/// whole or cut by a range.
fn fill_block(seed: u64, block: u64, offset: usize, out: &mut [u8]) {
    let mut rng = SmallRng::seed_from_u64(mix(seed, block));
    // Skips whole words up to the one holding `offset`: only the first block of an unaligned
    // range pays this, at most 8 Ki cheap steps.
    for _ in 0..offset / 8 {
        rng.next_u64();
    }
    let mut out = out;
    let lead = offset % 8;
    if lead != 0 && !out.is_empty() {
        let word = rng.next_u64().to_le_bytes();
        let take = (8 - lead).min(out.len());
        let (head, rest) = out.split_at_mut(take);
        head.copy_from_slice(&word[lead..lead + take]);
        out = rest;
    }
    let mut words = out.chunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let word = rng.next_u64().to_le_bytes();
        tail.copy_from_slice(&word[..tail.len()]);
    }
}

/// Fills `out` with the bytes of the layer seeded with `seed` starting at `start`.
fn fill_range(seed: u64, start: u64, out: &mut [u8]) {
    let mut pos = start;
    let mut out = out;
    while !out.is_empty() {
        let in_block = pos % BLOCK;
        let len = (BLOCK - in_block).min(out.len() as u64) as usize;
        let (chunk, rest) = out.split_at_mut(len);
        fill_block(seed, pos / BLOCK, in_block as usize, chunk);
        out = rest;
        pos += len as u64;
    }
}

/// splitmix64's finaliser: a bijective mix, so distinct inputs never collide.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed for item `index` under `seed` (a block of a layer, a layer of an image). Mixing the
/// index before combining keeps (seed, i) and (seed + 1, i - 1) apart.
fn mix(seed: u64, index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(index))
}

/// The layers of an image seeded with `seed`. From `parallel_min` bytes on, the digest pre-pass
/// (the one CPU-bound step before the first byte is sent) runs on up to one scoped thread per
/// core, layers dealt round-robin: 4 x 64 MiB took 0.2 s on one core.
fn layers_of(seed: u64, sizes: &[u64], parallel_min: u64) -> Vec<Layer> {
    let new = |(index, &size): (usize, &u64)| Layer::new(mix(seed, index as u64), size);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sizes.len());
    if threads < 2 || sizes.iter().sum::<u64>() < parallel_min {
        return sizes.iter().enumerate().map(new).collect();
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|first| {
                scope.spawn(move || {
                    let dealt = sizes.iter().enumerate().skip(first).step_by(threads);
                    dealt.map(new).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut dealt: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .expect("hashing a layer does not panic")
                    .into_iter()
            })
            .collect();
        (0..sizes.len())
            .map(|index| {
                dealt[index % threads]
                    .next()
                    .expect("every layer was dealt to one thread")
            })
            .collect()
    })
}

/// The bytes of a range of a layer as an http body; frames are generated as they are polled.
#[derive(Debug)]
pub struct LayerBody {
    seed: u64,
    pos: u64,
    end: u64,
}

impl http_body::Body for LayerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.pos >= this.end {
            return Poll::Ready(None);
        }
        let len = (this.end - this.pos).min(MAX_FRAME);
        let mut frame = BytesMut::zeroed(len as usize);
        fill_range(this.seed, this.pos, &mut frame);
        this.pos += len;
        Poll::Ready(Some(Ok(Frame::data(frame.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.pos))
    }
}

/// The image of one cycle.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest_type: ManifestType,
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

/// The label carries the cycle's seed, so every pushed config (and so every manifest) is
/// unique, and a failing image can be regenerated from what the registry holds.
#[derive(Serialize)]
struct Labels<'a> {
    #[serde(rename = "io.registry-prober.nonce")]
    nonce: &'a str,
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

impl Image {
    /// seed: the cycle's random seed; layer_sizes: one entry per layer.
    pub fn generate(seed: u64, layer_sizes: &[u64], manifest_type: ManifestType) -> Image {
        Image::generate_at(seed, layer_sizes, manifest_type, SystemTime::now())
    }

    /// `generate` with the config's creation time given: the same arguments give the same
    /// bytes (tests, and canaries, which are regenerated to know what they must still be).
    pub fn generate_at(
        seed: u64,
        layer_sizes: &[u64],
        manifest_type: ManifestType,
        created: SystemTime,
    ) -> Image {
        Image::generate_for(
            seed,
            layer_sizes,
            manifest_type,
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
        created: SystemTime,
        platform: &Platform,
    ) -> Image {
        let layers = layers_of(seed, layer_sizes, PARALLEL_MIN_BYTES);

        let created = humantime::format_rfc3339_seconds(created).to_string();
        let nonce = format!("{seed:016x}");
        let config = ConfigJson {
            architecture: &platform.architecture,
            os: &platform.os,
            variant: platform.variant.as_deref(),
            created: &created,
            config: RunConfig {
                labels: Labels { nonce: &nonce },
            },
            rootfs: RootFs {
                kind: "layers",
                // diff_ids are digests of the uncompressed layers, which is what we push.
                diff_ids: layers.iter().map(|layer| &layer.digest).collect(),
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
        ));
        // The registry names the manifest by the digest of the exact bytes PUT, so hash those.
        let manifest_digest = Digest::of(&manifest);

        Image {
            manifest_type,
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
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(index, layer)| BlobRef {
                digest: layer.digest.clone(),
                size: layer.size,
                media_type: self.manifest_type.layer_media_type(),
                kind: BlobKind::Layer(index),
            });
        std::iter::once(config).chain(layers).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use std::time::{Duration, UNIX_EPOCH};

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Polls a body to its end (it is always ready), checking the frame bound and that
    /// size_hint stays exact along the way.
    fn collect(mut body: LayerBody) -> Vec<u8> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            let remaining = body.size_hint().exact().unwrap();
            assert_eq!(body.is_end_stream(), remaining == 0);
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let data = frame.into_data().unwrap();
                    assert!(!data.is_empty() && data.len() as u64 <= MAX_FRAME);
                    out.extend_from_slice(&data);
                    assert_eq!(
                        body.size_hint().exact().unwrap(),
                        remaining - data.len() as u64
                    );
                }
                Poll::Ready(None) => {
                    assert_eq!(remaining, 0);
                    return out;
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Pending => panic!("a layer body is always ready"),
            }
        }
    }

    fn full(layer: &Layer) -> Vec<u8> {
        collect(layer.body(0..layer.size))
    }

    #[test]
    fn same_seed_gives_identical_bytes_and_digest() {
        let a = Layer::new(42, 300_000);
        let b = Layer::new(42, 300_000);
        assert_eq!(a.digest, b.digest);
        assert_eq!(full(&a), full(&b));
    }

    #[test]
    fn different_seeds_give_different_bytes_and_digests() {
        let a = Layer::new(1, 100_000);
        let b = Layer::new(2, 100_000);
        assert_ne!(a.digest, b.digest);
        let (a, b) = (full(&a), full(&b));
        // Not just different somewhere: no block of one repeats in the other.
        for (x, y) in a.chunks(BLOCK as usize).zip(b.chunks(BLOCK as usize)) {
            assert_ne!(x, y);
        }
    }

    #[test]
    fn blocks_of_one_layer_differ_from_each_other() {
        let bytes = full(&Layer::new(7, 2 * BLOCK));
        assert_ne!(bytes[..BLOCK as usize], bytes[BLOCK as usize..]);
    }

    #[test]
    fn the_digest_pre_pass_equals_the_sha256_of_the_collected_body() {
        for size in [1, 7, 8, 9, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let layer = Layer::new(99, size);
            let bytes = full(&layer);
            assert_eq!(bytes.len() as u64, size);
            assert_eq!(layer.digest, Digest::of(&bytes), "size {size}");
        }
    }

    #[test]
    fn a_layer_is_a_prefix_of_a_longer_layer_with_the_same_seed() {
        let short = full(&Layer::new(5, BLOCK + 3));
        let long = full(&Layer::new(5, 2 * BLOCK));
        assert_eq!(short[..], long[..short.len()]);
    }

    #[test]
    fn any_sub_range_equals_the_same_slice_of_the_full_body() {
        let size = 5 * MAX_FRAME + 3 * BLOCK + 1_234;
        let layer = Layer::new(0xdead_beef, size);
        let bytes = full(&layer);
        let b = BLOCK;
        let ranges = [
            0..0,
            b..b,
            size..size,
            0..1,
            1..2,
            3..5,
            5..13,
            b - 1..b + 1,
            b - 3..b,
            b..2 * b,
            b + 1..2 * b - 1,
            7..3 * b + 9,
            MAX_FRAME - 5..2 * MAX_FRAME + 3,
            size - 1_234..size,
            size - 1..size,
            size - 5..size - 2,
            4 * b + 13..size,
            0..size,
        ];
        for range in ranges {
            let part = collect(layer.body(range.clone()));
            assert_eq!(
                part[..],
                bytes[range.start as usize..range.end as usize],
                "range {range:?}"
            );
        }
    }

    #[test]
    fn frames_are_at_most_256_kib_and_size_hint_is_exact() {
        let layer = Layer::new(3, 3 * MAX_FRAME + 1);
        let body = layer.body(10..3 * MAX_FRAME + 1);
        assert_eq!(body.size_hint().exact(), Some(3 * MAX_FRAME - 9));
        assert!(!body.is_end_stream());
        let mut body = body;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut lens = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            lens.push(frame.into_data().unwrap().len() as u64);
        }
        assert_eq!(lens, vec![MAX_FRAME, MAX_FRAME, MAX_FRAME - 9]);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn an_empty_range_is_an_ended_body() {
        let body = Layer::new(3, 100).body(40..40);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(collect(body), Vec::<u8>::new());
    }

    #[test]
    fn a_zero_byte_layer_has_the_digest_of_nothing() {
        let layer = Layer::new(11, 0);
        assert_eq!(layer.digest.as_str(), EMPTY);
        assert_eq!(full(&layer), Vec::<u8>::new());
    }

    fn created() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn the_config_is_a_valid_image_config_naming_every_layer() {
        let image = Image::generate_at(
            0x0123_4567_89ab_cdef,
            &[10, 0],
            ManifestType::Oci,
            created(),
        );
        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        let digests: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(
            config,
            serde_json::json!({
                "architecture": "amd64",
                "os": "linux",
                "created": "2023-11-14T22:13:20Z",
                "config": {"Labels": {"io.registry-prober.nonce": "0123456789abcdef"}},
                "rootfs": {"type": "layers", "diff_ids": digests},
                "history": [{"created_by": "registry-prober"}, {"created_by": "registry-prober"}],
            })
        );
        assert_eq!(image.layers[1].digest.as_str(), EMPTY);
        assert_eq!(image.config_digest, Digest::of(&image.config));
    }

    #[test]
    fn the_manifest_parses_back_with_the_right_media_types_sizes_and_digests() {
        for (manifest_type, manifest_mt, config_mt, layer_mt) in [
            (
                ManifestType::Oci,
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
            ),
            (
                ManifestType::Docker,
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar",
            ),
        ] {
            let image = Image::generate_at(77, &[1000, BLOCK + 1], manifest_type, created());
            let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
            assert_eq!(
                manifest,
                serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": manifest_mt,
                    "config": {
                        "mediaType": config_mt,
                        "digest": image.config_digest.as_str(),
                        "size": image.config.len(),
                    },
                    "layers": [
                        {"mediaType": layer_mt, "digest": image.layers[0].digest.as_str(), "size": 1000},
                        {"mediaType": layer_mt, "digest": image.layers[1].digest.as_str(), "size": BLOCK + 1},
                    ],
                })
            );
            assert_eq!(image.manifest_digest, Digest::of(&image.manifest));
            assert_eq!(image.manifest_type, manifest_type);
        }
    }

    #[test]
    fn the_manifest_is_compact_json_in_field_order() {
        let image = Image::generate_at(1, &[], ManifestType::Docker, created());
        assert_eq!(
            std::str::from_utf8(&image.manifest).unwrap(),
            format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\
                 \"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\
                 \"digest\":\"{}\",\"size\":{}}},\"layers\":[]}}",
                image.config_digest,
                image.config.len()
            )
        );
    }

    #[test]
    fn layer_seeds_derive_from_the_image_seed_and_index() {
        let a = Image::generate_at(9, &[100, 100], ManifestType::Oci, created());
        let b = Image::generate_at(9, &[100, 100], ManifestType::Oci, created());
        let c = Image::generate_at(10, &[100, 100], ManifestType::Oci, created());
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_ne!(a.layers[0].digest, a.layers[1].digest);
        assert_ne!(a.layers[0].digest, c.layers[0].digest);
        assert_ne!(a.manifest_digest, c.manifest_digest);
    }

    #[test]
    fn layers_hashed_in_parallel_equal_layers_hashed_in_turn() {
        let sizes = [BLOCK + 5, 7, 0, 3 * BLOCK, 1, BLOCK];
        let in_turn = layers_of(21, &sizes, u64::MAX);
        let parallel = layers_of(21, &sizes, 0);
        let key = |l: &Layer| (l.seed, l.size, l.digest.clone());
        assert_eq!(
            parallel.iter().map(key).collect::<Vec<_>>(),
            in_turn.iter().map(key).collect::<Vec<_>>()
        );
    }

    #[test]
    fn blobs_list_the_config_then_the_layers_in_order() {
        let image = Image::generate_at(4, &[5, 6], ManifestType::Docker, created());
        assert_eq!(
            image.blobs(),
            vec![
                BlobRef {
                    digest: image.config_digest.clone(),
                    size: image.config.len() as u64,
                    media_type: "application/vnd.docker.container.image.v1+json",
                    kind: BlobKind::Config,
                },
                BlobRef {
                    digest: image.layers[0].digest.clone(),
                    size: 5,
                    media_type: "application/vnd.docker.image.rootfs.diff.tar",
                    kind: BlobKind::Layer(0),
                },
                BlobRef {
                    digest: image.layers[1].digest.clone(),
                    size: 6,
                    media_type: "application/vnd.docker.image.rootfs.diff.tar",
                    kind: BlobKind::Layer(1),
                },
            ]
        );
    }

    #[test]
    fn blob_kinds_display_one_based() {
        assert_eq!(BlobKind::Config.to_string(), "config");
        assert_eq!(BlobKind::Layer(0).to_string(), "layer 1");
        assert_eq!(BlobKind::Layer(11).to_string(), "layer 12");
    }

    #[test]
    fn manifest_types_name_themselves_in_config_and_serde() {
        assert_eq!(ManifestType::Oci.as_str(), "oci");
        assert_eq!(ManifestType::Docker.as_str(), "docker");
        assert_eq!(
            serde_json::to_string(&ManifestType::Docker).unwrap(),
            "\"docker\""
        );
        assert_eq!(
            serde_json::from_str::<ManifestType>("\"oci\"").unwrap(),
            ManifestType::Oci
        );
    }
}
