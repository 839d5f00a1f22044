//! One generated layer: a pure function of (seed, size, format), hashed once in a pre-pass to
//! learn its digest and DiffID, then produced again, range by range, while it is sent, never
//! held whole in memory.
//!
//! The pre-pass of a compressed layer compresses its segments on every core (scoped threads,
//! each with one segment in flight) while this thread hashes them in order: compression is
//! what a push of a compressed layer costs (bench/run's `compress` measure says how much).

use std::convert::Infallible;
use std::future::Future as _;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use sha2::{Digest as _, Sha256};

use super::compression::{compress_segment, gzip_trailer, Compression, LayerFormat, GZIP_HEADER};
use super::digest::Digest;
use super::random::{fill_range, BLOCK};
use super::tar::{TarLayout, SEGMENT};

/// The largest frame a `LayerBody` yields.
pub(crate) const MAX_FRAME: u64 = 256 * 1024;
/// Layers from this size on are compressed on several threads in the pre-pass.
const PARALLEL_MIN_BYTES: u64 = 4 * SEGMENT;

/// One layer: its bytes are a pure function of (seed, requested size, format), so any byte
/// range can be regenerated on demand (for the upload, for a retry after a 401, for each chunk
/// of a chunked upload).
#[derive(Clone, Debug)]
pub struct Layer {
    pub seed: u64,
    /// Bytes of the blob as pushed (compressed, when it is).
    pub size: u64,
    pub digest: Digest,
    /// The sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    plan: Option<Arc<Plan>>,
}

/// Where a tar layer's pieces sit in its blob.
#[derive(Debug)]
struct Plan {
    tar: TarLayout,
    compression: Compression,
    /// Bytes before the first segment (the gzip header).
    head: u64,
    /// Blob offset of each segment's first byte, then of the trailer.
    starts: Vec<u64>,
    /// The gzip trailer (empty otherwise).
    trailer: Vec<u8>,
}

impl Plan {
    /// Segment `k`'s tar bytes, compressed as the blob carries them.
    fn segment(&self, k: usize, scratch: &mut Vec<u8>) -> Vec<u8> {
        let start = k as u64 * SEGMENT;
        let len = SEGMENT.min(self.tar.len() - start) as usize;
        let mut tar = vec![0u8; len];
        self.tar.fill(start, &mut tar, scratch);
        if self.compression == Compression::None {
            return tar;
        }
        let mut out = Vec::new();
        compress_segment(self.compression, self.tar.content(k as u64), &tar, &mut out);
        out
    }

    fn segments(&self) -> usize {
        self.tar.len().div_ceil(SEGMENT) as usize
    }
}

impl Layer {
    /// A layer of `format`, generated once through sha256 to learn its digests (memory
    /// independent of size).
    pub fn new(seed: u64, requested: u64, format: LayerFormat) -> Layer {
        let compression = match format {
            LayerFormat::Raw => return Layer::raw(seed, requested),
            LayerFormat::Tar(c) => c,
        };
        let tar = TarLayout::new(seed, requested);
        let mut plan = Plan {
            tar,
            compression,
            head: 0,
            starts: Vec::new(),
            trailer: Vec::new(),
        };
        let mut diff = Sha256::new();
        let mut blob = Sha256::new();
        let mut crc = crc32fast::Hasher::new();
        let mut offset = 0u64;
        if compression == Compression::Gzip {
            blob.update(GZIP_HEADER);
            offset = GZIP_HEADER.len() as u64;
            plan.head = offset;
        }
        let n = plan.segments();
        // An uncompressed blob is the tar: one hash gives both digests.
        let plain = compression == Compression::None;
        let mut consume = |k: usize, tar: &[u8], compressed: &[u8], starts: &mut Vec<u64>| {
            debug_assert_eq!(starts.len(), k);
            diff.update(tar);
            if compression == Compression::Gzip {
                crc.update(tar);
            }
            if !plain {
                blob.update(compressed);
            }
            starts.push(offset);
            offset += compressed.len() as u64;
        };
        let mut starts = Vec::with_capacity(n + 1);
        for_each_segment(&plan, n, |k, tar, compressed| {
            let compressed = compressed.unwrap_or(tar);
            consume(k, tar, compressed, &mut starts);
        });
        starts.push(offset);
        if compression == Compression::Gzip {
            plan.trailer = gzip_trailer(crc.finalize(), plan.tar.len()).to_vec();
            blob.update(&plan.trailer);
        }
        let size = offset + plan.trailer.len() as u64;
        plan.starts = starts;
        let diff_id = Digest::from_sha256(diff.finalize().into());
        let digest = if plain {
            diff_id.clone()
        } else {
            Digest::from_sha256(blob.finalize().into())
        };
        Layer {
            seed,
            size,
            digest,
            diff_id,
            plan: Some(Arc::new(plan)),
        }
    }

    /// A layer of random bytes, as earlier versions pushed.
    fn raw(seed: u64, size: u64) -> Layer {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; BLOCK as usize];
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(BLOCK);
            let chunk = &mut buf[..len as usize];
            fill_range(seed, offset, chunk);
            hasher.update(&*chunk);
            offset += len;
        }
        let digest = Digest::from_sha256(hasher.finalize().into());
        Layer {
            seed,
            size,
            diff_id: digest.clone(),
            digest,
            plan: None,
        }
    }

    /// Writes the whole blob to `w`, segment by segment, on this thread (benchmarks and tests
    /// that need a layer's bytes outside a push).
    pub fn write_blob(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let Some(plan) = &self.plan else {
            let mut buf = vec![0u8; BLOCK as usize];
            let mut offset = 0;
            while offset < self.size {
                let len = (self.size - offset).min(BLOCK) as usize;
                fill_range(self.seed, offset, &mut buf[..len]);
                w.write_all(&buf[..len])?;
                offset += len as u64;
            }
            return Ok(());
        };
        if plan.head > 0 {
            w.write_all(&GZIP_HEADER)?;
        }
        let mut scratch = Vec::new();
        for k in 0..plan.segments() {
            w.write_all(&plan.segment(k, &mut scratch))?;
        }
        w.write_all(&plan.trailer)
    }

    /// The bytes in `range` (half-open), as an http body yielding frames of at most 256 KiB
    /// with an exact size_hint. A range reaching past the end of the layer is cut at the end.
    pub fn body(&self, range: Range<u64>) -> LayerBody {
        let end = range.end.min(self.size);
        LayerBody {
            layer: self.clone(),
            pos: range.start.min(end),
            end,
            segment: None,
            pending: None,
            scratch: Vec::new(),
        }
    }
}

/// Calls `f(k, tar, compressed)` for every segment in order; compressed is None without
/// compression. Large compressed layers are compressed on scoped threads, one segment in flight
/// per thread, consumed here in order.
fn for_each_segment(plan: &Plan, n: usize, mut f: impl FnMut(usize, &[u8], Option<&[u8]>)) {
    let tar_of = |k: usize, scratch: &mut Vec<u8>| {
        let start = k as u64 * SEGMENT;
        let mut tar = vec![0u8; SEGMENT.min(plan.tar.len() - start) as usize];
        plan.tar.fill(start, &mut tar, scratch);
        tar
    };
    let work = |k: usize, scratch: &mut Vec<u8>| {
        let tar = tar_of(k, scratch);
        let mut out = Vec::new();
        if plan.compression != Compression::None {
            compress_segment(plan.compression, plan.tar.content(k as u64), &tar, &mut out);
        }
        (tar, out)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n);
    let compressed = plan.compression != Compression::None;
    if !compressed || threads < 2 || plan.tar.len() < PARALLEL_MIN_BYTES {
        let mut scratch = Vec::new();
        for k in 0..n {
            let (tar, out) = work(k, &mut scratch);
            f(k, &tar, compressed.then_some(&out[..]));
        }
        return;
    }
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(threads);
        for first in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            receivers.push(rx);
            let work = &work;
            scope.spawn(move || {
                let mut scratch = Vec::new();
                for k in (first..n).step_by(threads) {
                    if tx.send(work(k, &mut scratch)).is_err() {
                        return;
                    }
                }
            });
        }
        for k in 0..n {
            let (tar, out) = receivers[k % threads]
                .recv()
                .expect("a compressing thread sends every segment dealt to it");
            f(k, &tar, Some(&out));
        }
    });
}

/// The bytes of a range of a layer as an http body; frames are generated as they are polled.
/// A compressed segment is compressed on the blocking pool (when there is a runtime), the next
/// one while this one is sent.
#[derive(Debug)]
pub struct LayerBody {
    layer: Layer,
    pos: u64,
    end: u64,
    /// The compressed segment being sent: (index, bytes).
    segment: Option<(usize, Bytes)>,
    /// A segment being compressed: (index, task).
    pending: Option<(usize, Task)>,
    scratch: Vec<u8>,
}

impl LayerBody {
    /// Compresses segment `k` on the blocking pool.
    fn spawn(plan: &Arc<Plan>, k: usize, handle: &tokio::runtime::Handle) -> (usize, Task) {
        let plan = plan.clone();
        let task = handle.spawn_blocking(move || Bytes::from(plan.segment(k, &mut Vec::new())));
        (k, task)
    }

    /// The next frame of a compressed layer at `self.pos`.
    fn poll_compressed(&mut self, cx: &mut Context<'_>, plan: &Arc<Plan>) -> Poll<Bytes> {
        let pos = self.pos;
        if pos < plan.head {
            let n = (plan.head - pos).min(self.end - pos) as usize;
            let at = pos as usize;
            return Poll::Ready(Bytes::copy_from_slice(&GZIP_HEADER[at..at + n]));
        }
        let tail = plan.starts[plan.starts.len() - 1];
        if pos >= tail {
            let at = (pos - tail) as usize;
            let n = (plan.trailer.len() - at).min((self.end - pos) as usize);
            return Poll::Ready(Bytes::copy_from_slice(&plan.trailer[at..at + n]));
        }
        let k = plan.starts.partition_point(|&s| s <= pos) - 1;
        if self.segment.as_ref().is_none_or(|(i, _)| *i != k) {
            let handle = tokio::runtime::Handle::try_current().ok();
            let bytes = match (&handle, self.pending.take()) {
                (_, Some((i, mut task))) if i == k => match Pin::new(&mut task).poll(cx) {
                    Poll::Pending => {
                        self.pending = Some((i, task));
                        return Poll::Pending;
                    }
                    Poll::Ready(done) => done.expect("compressing a segment does not panic"),
                },
                (Some(handle), _) => {
                    self.pending = Some(Self::spawn(plan, k, handle));
                    return self.poll_compressed(cx, plan);
                }
                (None, _) => Bytes::from(plan.segment(k, &mut self.scratch)),
            };
            self.segment = Some((k, bytes));
            // The next segment compresses while this one is sent.
            if let Some(handle) = &handle {
                if k + 1 < plan.segments() && plan.starts[k + 1] < self.end {
                    self.pending = Some(Self::spawn(plan, k + 1, handle));
                }
            }
        }
        let (_, bytes) = self.segment.as_ref().expect("the segment at pos is loaded");
        let at = (pos - plan.starts[k]) as usize;
        let n = (bytes.len() - at)
            .min(MAX_FRAME as usize)
            .min((self.end - pos) as usize);
        Poll::Ready(bytes.slice(at..at + n))
    }
}

type Task = tokio::task::JoinHandle<Bytes>;

impl http_body::Body for LayerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.pos >= this.end {
            return Poll::Ready(None);
        }
        let frame = match this.layer.plan.clone() {
            Some(plan) if plan.compression != Compression::None => {
                match this.poll_compressed(cx, &plan) {
                    Poll::Ready(bytes) => bytes,
                    Poll::Pending => return Poll::Pending,
                }
            }
            plan => {
                let len = (this.end - this.pos).min(MAX_FRAME);
                let mut frame = BytesMut::zeroed(len as usize);
                match plan {
                    Some(plan) => plan.tar.fill(this.pos, &mut frame, &mut this.scratch),
                    None => fill_range(this.layer.seed, this.pos, &mut frame),
                }
                frame.freeze()
            }
        };
        this.pos += frame.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.pos))
    }
}

#[cfg(test)]
pub(crate) mod tests;
