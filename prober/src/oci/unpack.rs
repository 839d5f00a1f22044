//! The check a runtime makes when it unpacks a layer, done on the bytes as they arrive: the
//! blob decompressed (gzip or zstd, told apart by their magic numbers as containerd and
//! go-containerregistry do, whatever the media type says), read as a tar, and its sha256
//! compared with the layer's DiffID from the image config (`crane validate` does the same).
//! An uncompressed layer's DiffID is its blob's digest, which the pull checks anyway: that
//! layer is read as a tar without being hashed a second time.

use std::io::Write;

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::tar::{TarCheck, TarError};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Why a layer fails the check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnpackError {
    /// The compressed stream is corrupt or ends early.
    #[error("{compression} stream unreadable after {read} compressed bytes: {why}")]
    Decompress {
        compression: &'static str,
        read: u64,
        why: String,
    },
    /// The layer decompressed, but is not a tar a runtime can unpack.
    #[error("{0}")]
    Tar(#[from] TarError),
    /// The layer unpacked to other bytes than its DiffID names.
    #[error("DiffID mismatch: the config lists {expected}, the layer unpacks to {actual} ({len} bytes{compression})")]
    DiffId {
        expected: Digest,
        actual: Digest,
        len: u64,
        compression: &'static str,
    },
}

/// Where the uncompressed bytes go: sha256 (none when the blob's digest proves it), and the
/// tar check.
struct Sink {
    hasher: Option<Sha256>,
    len: u64,
    tar: Option<TarCheck>,
    /// The first tar error, kept: a Write error loses its type.
    failed: Option<TarError>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(buf);
        }
        self.len += buf.len() as u64;
        if let Some(tar) = &mut self.tar {
            if let Err(e) = tar.update(buf) {
                self.failed = Some(e);
                return Err(std::io::Error::other("malformed tar"));
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    /// Not decided yet: the first bytes, until the magic number can be told.
    Sniff(Vec<u8>, Sink),
    Plain(Sink),
    Gzip(Box<flate2::write::MultiGzDecoder<Sink>>),
    Zstd(Box<Zstd>),
    /// libzstd could not make a decoding context.
    Broken(String),
    /// Failed: nothing more is read.
    Done,
}

/// libzstd's streaming decoder and where it writes.
struct Zstd {
    raw: zstd::stream::raw::Decoder<'static>,
    sink: Sink,
    out: Vec<u8>,
    /// What libzstd said it needs to end the current frame (0: a frame just ended).
    hint: usize,
}

impl Zstd {
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        use zstd::stream::raw::{InBuffer, Operation as _, OutBuffer};
        let mut input = InBuffer::around(data);
        // Runs until every byte is in and libzstd has no output left to give.
        loop {
            let mut output = OutBuffer::around(&mut self.out[..]);
            let before = input.pos();
            let hint = self.raw.run(&mut input, &mut output)?;
            let produced = output.pos();
            // A call that took and gave nothing (the last output filled the buffer exactly,
            // and the frame had ended) says what the *next* frame would need: not a hint
            // about this one, which may be complete.
            if input.pos() > before || produced > 0 {
                self.hint = hint;
            }
            self.sink.write_all(&self.out[..produced])?;
            if input.pos() == data.len() && produced < self.out.len() {
                return Ok(());
            }
        }
    }
}

/// Checks one layer against its DiffID, fed the blob's bytes in order.
pub struct LayerCheck {
    expected: Digest,
    /// The DiffID is the digest of the blob, whose check the caller makes (and reports first):
    /// an uncompressed layer needs no hash of its own.
    proven_by_blob: bool,
    decoder: Decoder,
    read: u64,
    compression: &'static str,
}

impl LayerCheck {
    /// A layer to decompress if it is compressed, and read as a tar.
    pub fn new(expected: Digest) -> LayerCheck {
        LayerCheck::with(expected, true)
    }

    /// A layer of random bytes the prober pushed before layers were tars: only its sha256 is
    /// compared with the DiffID (it is neither compressed nor a tar).
    pub fn raw(expected: Digest) -> LayerCheck {
        let mut check = LayerCheck::with(expected, false);
        if let Decoder::Sniff(_, sink) = std::mem::replace(&mut check.decoder, Decoder::Done) {
            check.decoder = Decoder::Plain(sink);
        }
        check
    }

    /// The layer is the blob `digest`, which the caller verifies (a mismatch there is the
    /// finding, before this check's): when it is also the DiffID, bytes that turn out
    /// uncompressed are not hashed again.
    pub fn blob(mut self, digest: &Digest) -> LayerCheck {
        self.proven_by_blob = *digest == self.expected;
        if self.proven_by_blob {
            if let Decoder::Plain(sink) = &mut self.decoder {
                sink.hasher = None;
            }
        }
        self
    }

    fn with(expected: Digest, tar: bool) -> LayerCheck {
        let sink = Sink {
            hasher: Some(Sha256::new()),
            len: 0,
            tar: tar.then(TarCheck::default),
            failed: None,
        };
        LayerCheck {
            expected,
            proven_by_blob: false,
            decoder: Decoder::Sniff(Vec::with_capacity(4), sink),
            read: 0,
            compression: "",
        }
    }

    pub fn update(&mut self, data: &[u8]) -> Result<(), UnpackError> {
        let mut data = data;
        if let Decoder::Sniff(head, _) = &mut self.decoder {
            let take = (4 - head.len()).min(data.len());
            head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if head.len() < 4 {
                return Ok(());
            }
            let head = self.decide();
            self.feed(&head)?;
        }
        self.feed(data)
    }

    /// Picks the decoder from the magic number in the first bytes; returns them, to be fed.
    fn decide(&mut self) -> Vec<u8> {
        let Decoder::Sniff(head, sink) = std::mem::replace(&mut self.decoder, Decoder::Done) else {
            return Vec::new();
        };
        self.decoder = if head.starts_with(&GZIP_MAGIC) {
            self.compression = "gzip";
            Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(sink)))
        } else if head.starts_with(&ZSTD_MAGIC) {
            self.compression = "zstd";
            match zstd::stream::raw::Decoder::new() {
                Ok(raw) => Decoder::Zstd(Box::new(Zstd {
                    raw,
                    sink,
                    out: vec![0u8; 128 * 1024],
                    hint: 0,
                })),
                // Only an allocation failure of libzstd's context.
                Err(e) => Decoder::Broken(e.to_string()),
            }
        } else {
            let mut sink = sink;
            if self.proven_by_blob {
                sink.hasher = None;
            }
            Decoder::Plain(sink)
        };
        head
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), UnpackError> {
        if data.is_empty() {
            return Ok(());
        }
        let result = match &mut self.decoder {
            Decoder::Plain(sink) => sink.write_all(data),
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Zstd(d) => d.write_all(data),
            Decoder::Broken(why) => Err(std::io::Error::other(why.clone())),
            Decoder::Sniff(..) | Decoder::Done => Ok(()),
        };
        self.read += data.len() as u64;
        result.map_err(|e| self.failure(e))
    }

    /// The error a decoder's Write returned: the tar's, when it came from the tar check.
    fn failure(&mut self, e: std::io::Error) -> UnpackError {
        let tar = match &mut self.decoder {
            Decoder::Plain(sink) => sink.failed.take(),
            Decoder::Gzip(d) => d.get_mut().failed.take(),
            Decoder::Zstd(d) => d.sink.failed.take(),
            _ => None,
        };
        self.decoder = Decoder::Done;
        match tar {
            Some(t) => UnpackError::Tar(t),
            None => UnpackError::Decompress {
                compression: self.compression,
                read: self.read,
                why: e.to_string(),
            },
        }
    }

    /// Ends the blob: the compressed stream must be complete, the tar too, and its sha256 the
    /// DiffID. Returns the uncompressed length.
    pub fn finish(mut self) -> Result<u64, UnpackError> {
        if let Decoder::Sniff(..) = self.decoder {
            let head = self.decide();
            self.feed(&head)?;
        }
        let sink = match std::mem::replace(&mut self.decoder, Decoder::Done) {
            Decoder::Plain(sink) => sink,
            Decoder::Gzip(mut d) => match d.try_finish() {
                Ok(()) => match d.finish() {
                    Ok(sink) => sink,
                    Err(e) => return Err(self.truncated(e)),
                },
                Err(e) => return Err(self.truncated(e)),
            },
            Decoder::Zstd(d) => {
                // libzstd's hint is 0 only when a frame was decoded to its end.
                if d.hint != 0 {
                    return Err(self.truncated(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the stream ends inside a frame ({} more bytes expected at least)",
                            d.hint
                        ),
                    )));
                }
                d.sink
            }
            Decoder::Broken(why) => {
                return Err(self.truncated(std::io::Error::other(why)));
            }
            Decoder::Sniff(..) | Decoder::Done => {
                return Err(UnpackError::Decompress {
                    compression: self.compression,
                    read: self.read,
                    why: "the decoder failed before".to_string(),
                })
            }
        };
        if let Some(tar) = &sink.tar {
            tar.finish()?;
        }
        let actual = match sink.hasher {
            Some(hasher) => Digest::from_sha256(hasher.finalize().into()),
            // The blob's digest, checked by the caller.
            None => self.expected.clone(),
        };
        if actual != self.expected {
            let compression = if self.compression.is_empty() {
                ""
            } else if self.compression == "gzip" {
                ", gunzipped"
            } else {
                ", unzstd'ed"
            };
            return Err(UnpackError::DiffId {
                expected: self.expected,
                actual,
                len: sink.len,
                compression,
            });
        }
        Ok(sink.len)
    }

    fn truncated(&self, e: std::io::Error) -> UnpackError {
        UnpackError::Decompress {
            compression: self.compression,
            read: self.read,
            why: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
