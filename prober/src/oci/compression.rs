//! How a generated layer is compressed, and the media type that says so. A layer is compressed
//! in independent segments of 1 MiB of tar, so any byte range of the compressed blob can be
//! produced again by compressing only the segments it covers (a chunk of a chunked upload, a
//! retry after a 401) without holding the blob:
//!
//! - gzip: one gzip member (RFC 1952) whose deflate stream is the segments, each compressed
//!   from a fresh state and ended by a sync flush (byte-aligned, not final), then an empty final
//!   block, the CRC-32 and the length: what pigz writes with `--independent`. Segments of
//!   random content are stored (level 0: what deflate ends up doing with random bytes anyway,
//!   without searching for matches in vain), text is compressed at level 1: a prober pays the
//!   compression on every run, twice (see below), and level 1 costs a fifth of gzip's default
//!   level 6 for a blob 6% bigger (docs/benchmarks.md); registries do not care which level.
//! - zstd: one frame per segment (RFC 8878 streams are one or more frames), level 3, zstd's
//!   default.
//!
//! The output is a pure function of the tar for a given encoder version, which is all a run
//! needs (its layers are hashed in a pre-pass and compressed again while sent). Canaries do
//! not rely on it across versions: they are checked by their DiffIDs (see probe/canary.rs).

use flate2::{Compress, FlushCompress};

use super::manifest::ManifestType;
use super::tar::Content;

/// Compression of the layers a target pushes (`image.compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        Some(match s {
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            "none" => Compression::None,
            _ => return None,
        })
    }
}

/// What a generated layer's bytes are. `Raw` is what versions before tar layers pushed (random
/// bytes declared as an uncompressed tar): canaries pushed then are still regenerated so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerFormat {
    Raw,
    Tar(Compression),
}

impl LayerFormat {
    /// The name in the config label of a generated image (`io.registry-prober.layers`).
    pub fn token(self) -> &'static str {
        match self {
            LayerFormat::Raw => "raw",
            LayerFormat::Tar(Compression::None) => "tar",
            LayerFormat::Tar(Compression::Gzip) => "tar+gzip",
            LayerFormat::Tar(Compression::Zstd) => "tar+zstd",
        }
    }

    pub fn from_token(token: &str) -> Option<LayerFormat> {
        Some(match token {
            "tar" => LayerFormat::Tar(Compression::None),
            "tar+gzip" => LayerFormat::Tar(Compression::Gzip),
            "tar+zstd" => LayerFormat::Tar(Compression::Zstd),
            _ => return None,
        })
    }

    /// The layer media type under `manifest_type`. Docker's schema 2 defines no zstd type;
    /// config validation refuses zstd with docker manifests, and the name containerd uses is
    /// given here only to keep the function total.
    pub fn media_type(self, manifest_type: ManifestType) -> &'static str {
        use Compression as C;
        match (manifest_type, self) {
            (ManifestType::Oci, LayerFormat::Raw | LayerFormat::Tar(C::None)) => {
                "application/vnd.oci.image.layer.v1.tar"
            }
            (ManifestType::Oci, LayerFormat::Tar(C::Gzip)) => {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            }
            (ManifestType::Oci, LayerFormat::Tar(C::Zstd)) => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            (ManifestType::Docker, LayerFormat::Raw | LayerFormat::Tar(C::None)) => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
            (ManifestType::Docker, LayerFormat::Tar(C::Gzip)) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (ManifestType::Docker, LayerFormat::Tar(C::Zstd)) => {
                "application/vnd.docker.image.rootfs.diff.tar.zstd"
            }
        }
    }
}

/// The gzip header: deflate, no flags, no time, no extra flags, OS unknown.
pub(crate) const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final deflate block (fixed Huffman, end of block), then CRC-32 and ISIZE.
pub(crate) const GZIP_TRAILER_LEN: u64 = 10;
/// gzip level of text segments: the fastest (see the header; gzip's default 6 costs 5x the CPU).
const GZIP_LEVEL: u32 = 1;
/// zstd level: zstd's default, which containerd and BuildKit use too.
const ZSTD_LEVEL: i32 = 3;

/// The end of a gzip member over `len` bytes of tar whose CRC-32 is `crc`.
pub(crate) fn gzip_trailer(crc: u32, len: u64) -> [u8; GZIP_TRAILER_LEN as usize] {
    let mut t = [0u8; GZIP_TRAILER_LEN as usize];
    t[0] = 0x03;
    t[2..6].copy_from_slice(&crc.to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    t[6..10].copy_from_slice(&(len as u32).to_le_bytes());
    t
}

/// Compresses one segment of tar into `out` (cleared first), as the stream's framing wants it.
pub(crate) fn compress_segment(
    compression: Compression,
    content: Content,
    tar: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    match compression {
        Compression::None => out.extend_from_slice(tar),
        Compression::Gzip => {
            let level = match content {
                Content::Random => flate2::Compression::none(),
                Content::Text => flate2::Compression::new(GZIP_LEVEL),
            };
            let mut c = Compress::new(level, false);
            // Stored blocks add 5 bytes per 64 KiB; the sync flush a few more.
            out.reserve(tar.len() + tar.len() / 1024 + 64);
            loop {
                let consumed = c.total_in() as usize;
                c.compress_vec(&tar[consumed..], out, FlushCompress::Sync)
                    .expect("deflate of an in-memory buffer cannot fail");
                // Done once every byte is in and the flush had room to complete.
                if c.total_in() as usize == tar.len() && out.len() < out.capacity() {
                    break;
                }
                out.reserve(64 * 1024);
            }
        }
        Compression::Zstd => {
            let frame = zstd::bulk::compress(tar, ZSTD_LEVEL)
                .expect("zstd of an in-memory buffer cannot fail");
            out.extend_from_slice(&frame);
        }
    }
}
