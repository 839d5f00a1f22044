//! Layers as tar streams: the seeded layout of a generated layer (files whose names, sizes and
//! content come from the seed, any byte range of which can be produced on demand), and the
//! streaming check that what a layer unpacks to is a tar a runtime can read.
//!
//! Hand-rolled rather than the `tar` crate's `Builder`/`Archive`: those write to and read from
//! a whole stream in order, while the prober must produce any byte range of a layer without
//! generating what comes before it, and checks a layer from frames pushed to it as they arrive.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::random::{fill_range, fill_text, mix, BLOCK};

/// A tar block: headers and the padding of file data are in units of this.
pub(crate) const TAR_BLOCK: u64 = 512;
/// Compression segments, and the unit in which content switches between random and text.
pub(crate) const SEGMENT: u64 = 1024 * 1024;
/// The most files a generated layer holds; the layout is kept in memory (24 bytes a file).
const MAX_ENTRIES: usize = 4096;
/// The largest file of a generated layer (its size must fit the 11 octal digits of ustar).
const MAX_FILE: u64 = 1024 * 1024 * 1024;
/// Every file of a generated layer has this modification time, so its bytes depend on the seed
/// alone.
const MTIME: u64 = 1_700_000_000;

/// One file of a generated layer: its header's offset in the tar and its data length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: u64,
    data: u64,
}

/// The tar stream of a generated layer: files of seeded names and sizes, then the two zero
/// blocks that end an archive. Exactly `len` bytes: the requested size rounded up to a whole
/// block, and at least the 1024 bytes of an empty archive.
#[derive(Clone, Debug)]
pub(crate) struct TarLayout {
    seed: u64,
    len: u64,
    entries: Arc<[Entry]>,
}

/// What a segment of content is: random bytes (incompressible, like binaries and compressed
/// assets) or word-like text (like source code, scripts and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Content {
    Random,
    Text,
}

impl TarLayout {
    /// The layout of a layer of about `size` bytes seeded with `seed`.
    pub(crate) fn new(seed: u64, size: u64) -> TarLayout {
        // At least one file: its name carries the seed, so no two layers are alike however
        // small (an empty archive is the same 1024 zero bytes for every seed).
        let len = size.div_ceil(TAR_BLOCK).max(3) * TAR_BLOCK;
        let mut rng = SmallRng::seed_from_u64(mix(seed, 0x0074_6172));
        // Files up to an eighth of the layer (at least 4 KiB), their sizes spread over every
        // order of magnitude up to that.
        let cap = (len / 8).clamp(4096, MAX_FILE);
        let max_bits = 64 - cap.leading_zeros() as u64;
        let mut entries = Vec::new();
        let mut start = 0;
        let mut remaining = len - 2 * TAR_BLOCK;
        while remaining > 0 {
            let room = remaining - TAR_BLOCK;
            let data = if entries.len() + 1 == MAX_ENTRIES {
                room
            } else {
                let bits = rng.next_u64() % (max_bits + 1);
                (rng.next_u64() & ((1u64 << bits) - 1)).min(cap).min(room)
            };
            let used = TAR_BLOCK + data.div_ceil(TAR_BLOCK) * TAR_BLOCK;
            entries.push(Entry { start, data });
            start += used;
            remaining -= used;
        }
        TarLayout {
            seed,
            len,
            entries: entries.into(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// What the content of segment `segment` is.
    pub(crate) fn content(&self, segment: u64) -> Content {
        if mix(self.seed ^ 0x6b69_6e64, segment) & 1 == 0 {
            Content::Random
        } else {
            Content::Text
        }
    }

    /// Fills `out` with the tar's bytes from `start` (`scratch` is reused between calls).
    pub(crate) fn fill(&self, start: u64, out: &mut [u8], scratch: &mut Vec<u8>) {
        let mut pos = start;
        let mut out = out;
        while !out.is_empty() {
            let index = self.entries.partition_point(|e| e.start <= pos);
            let (len, what) = match index.checked_sub(1).map(|i| (i, self.entries[i])) {
                Some((i, e)) if pos < e.start + TAR_BLOCK => {
                    let header = self.header(i, e);
                    let at = (pos - e.start) as usize;
                    let len = (TAR_BLOCK as usize - at).min(out.len());
                    out[..len].copy_from_slice(&header[at..at + len]);
                    (len, None)
                }
                Some((_, e)) if pos < e.start + TAR_BLOCK + e.data => {
                    let end = e.start + TAR_BLOCK + e.data;
                    // Content switches kind at segment and block boundaries only.
                    let bound = (pos / BLOCK + 1) * BLOCK;
                    let len = (end.min(bound) - pos).min(out.len() as u64) as usize;
                    (len, Some(self.content(pos / SEGMENT)))
                }
                // Padding after a file's data, and the end of the archive: zeros.
                _ => {
                    let next = self.entries.get(index).map_or(self.len, |e| e.start);
                    let len = next.saturating_sub(pos).max(1).min(out.len() as u64) as usize;
                    out[..len].fill(0);
                    (len, None)
                }
            };
            let (chunk, rest) = out.split_at_mut(len);
            match what {
                Some(Content::Random) => fill_range(self.seed, pos, chunk),
                Some(Content::Text) => fill_text(self.seed, pos, chunk, scratch),
                None => {}
            }
            out = rest;
            pos += len as u64;
        }
    }

    /// The ustar header of file `index`.
    fn header(&self, index: usize, e: Entry) -> [u8; TAR_BLOCK as usize] {
        let ext = if self.content(e.start / SEGMENT) == Content::Text {
            "txt"
        } else {
            "bin"
        };
        let name = format!(
            "registry-prober/{:016x}/{index:04}-{:08x}.{ext}",
            self.seed,
            mix(self.seed, index as u64) as u32
        );
        ustar_header(&name, e.data, MTIME)
    }
}

/// A ustar header of a regular file owned by root, mode 0644.
fn ustar_header(name: &str, size: u64, mtime: u64) -> [u8; TAR_BLOCK as usize] {
    let mut h = [0u8; TAR_BLOCK as usize];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &name.as_bytes()[..name.len().min(100)]);
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, format!("{mtime:011o}\0").as_bytes());
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar stream a runtime could not unpack: what is wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed tar at byte {offset}: {what}")]
pub struct TarError {
    pub offset: u64,
    pub what: String,
}

/// Checks a tar stream fed in pieces as an unpacker reads it: every header's checksum and size,
/// data skipped by its size, the end of the archive (two zero blocks, or the end of the stream
/// at a header boundary, which Go's archive/tar and so containerd accept). What follows the end
/// of the archive is not read by an unpacker and is not checked.
#[derive(Debug)]
pub struct TarCheck {
    /// Bytes fed so far.
    offset: u64,
    header: Box<[u8; TAR_BLOCK as usize]>,
    filled: usize,
    /// Data and padding of the current file still to skip.
    skip: u64,
    /// Zero blocks in a row where a header was due.
    zeros: u8,
    ended: bool,
    files: u64,
    /// The current file's name, for a message about its data.
    name: String,
}

impl Default for TarCheck {
    fn default() -> Self {
        TarCheck {
            offset: 0,
            header: Box::new([0u8; TAR_BLOCK as usize]),
            filled: 0,
            skip: 0,
            zeros: 0,
            ended: false,
            files: 0,
            name: String::new(),
        }
    }
}

impl TarCheck {
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), TarError> {
        while !data.is_empty() && !self.ended {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64) as usize;
                self.skip -= n as u64;
                self.offset += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (TAR_BLOCK as usize - self.filled).min(data.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            self.offset += n as u64;
            data = &data[n..];
            if self.filled == TAR_BLOCK as usize {
                self.filled = 0;
                self.header_done()?;
            }
        }
        Ok(())
    }

    fn header_done(&mut self) -> Result<(), TarError> {
        let at = self.offset - TAR_BLOCK;
        let h = &self.header;
        if h.iter().all(|&b| b == 0) {
            self.zeros += 1;
            self.ended = self.zeros == 2;
            return Ok(());
        }
        if self.zeros > 0 {
            return Err(self.error(at, "a header after a single zero block".to_string()));
        }
        let name = field_text(&h[..100]);
        let stored = parse_octal(&h[148..156]).ok_or_else(|| {
            self.error(
                at,
                format!("header of {name:?} has no valid checksum field"),
            )
        })?;
        let sum: u64 = h[..148]
            .iter()
            .chain([b' '; 8].iter())
            .chain(h[156..].iter())
            .map(|&b| u64::from(b))
            .sum();
        if stored != sum {
            return Err(self.error(
                at,
                format!(
                    "header of {name:?}: checksum field says {stored}, the header sums to {sum}"
                ),
            ));
        }
        let size = parse_size(&h[124..136]).ok_or_else(|| {
            self.error(at, format!("header of {name:?} has an invalid size field"))
        })?;
        // Links, devices, directories and fifos carry no data whatever their size field says
        // (Go's archive/tar reads them so).
        let size = if matches!(h[156], b'1'..=b'6') {
            0
        } else {
            size
        };
        self.skip = size.div_ceil(TAR_BLOCK) * TAR_BLOCK;
        self.files += 1;
        self.name = name;
        Ok(())
    }

    /// Ends the stream: fails if it stopped inside a header or inside a file's data.
    pub fn finish(&self) -> Result<u64, TarError> {
        if self.ended || (self.filled == 0 && self.skip == 0) {
            return Ok(self.files);
        }
        let what = if self.filled > 0 {
            format!("the stream ends {} bytes into a header", self.filled)
        } else {
            format!(
                "the stream ends {} bytes before the end of the data of {:?}",
                self.skip, self.name
            )
        };
        Err(self.error(self.offset, what))
    }

    fn error(&self, offset: u64, what: String) -> TarError {
        TarError { offset, what }
    }
}

/// A NUL-terminated header field as text, at most 100 characters, for messages.
fn field_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end])
        .chars()
        .take(100)
        .collect()
}

/// An octal header field: digits, surrounded by spaces or NULs.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// A size field: octal, or base-256 (GNU, for sizes past 8 GiB) when its first bit is set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 == 0 {
        return parse_octal(field);
    }
    if field[0] & 0x40 != 0 {
        return None; // negative
    }
    let mut n: u64 = u64::from(field[0] & 0x3f);
    for &b in &field[1..] {
        n = n.checked_mul(256)?.checked_add(u64::from(b))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests;
