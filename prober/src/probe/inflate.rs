//! A pulled blob verified at the hash's speed: the body is received on the async task while
//! sha256 runs on a blocking thread, and, for a layer checked against its DiffID, the inflate,
//! its sha256 and the tar check on another, every frame handed to both (a refcounted `Bytes`,
//! never copied). On two cores the receive, the hash and the inflate overlap instead of taking
//! turns; bench/run's `verify` measure compares the result with curl and openssl.
//!
//! Small blobs are checked inline: handing frames to threads costs more than it saves there.

use bytes::Bytes;
use tokio::time::Instant;

use super::verify;
use crate::http::{Response, Transcript};
use crate::oci::digest::{Mismatch, Verifier};
use crate::oci::unpack::LayerCheck;
use crate::outcome::Failure;

/// Blobs from this size on are hashed (and unpacked) on threads of their own.
const PIPELINE_MIN_BYTES: u64 = 1024 * 1024;
/// Frames queued for a consumer before the receive waits for it. A frame is up to 1 MiB (what
/// HTTP/1.1 reads at once), so this bounds what a pull holds per consumer: 32 frames each for
/// the hash and the inflate held up to 64 MiB (1 GiB layer: 85 MiB peak RSS against 12 MiB for
/// 1 MiB); a few frames are enough slack for the threads to overlap.
const QUEUE: usize = 4;

/// Streams `resp` through `verifier` (digest and length) and, when given, `layer` (inflate,
/// tar, DiffID). A digest or size mismatch wins over a layer that does not unpack: a layer
/// re-compressed on the way fails on its digest, as a runtime's pull would.
pub(super) async fn verify_stream(
    resp: Response,
    deadline: Instant,
    tr: &mut Transcript,
    verifier: Verifier,
    layer: Option<LayerCheck>,
    expected_len: u64,
) -> Result<u64, Failure> {
    let (method, url) = (resp.method.clone(), resp.url.clone());
    let mismatch = |m: Mismatch| verify::mismatch(&method, &url, m);
    let unreadable = |e| verify::unpack(&method, &url, e);
    if expected_len < PIPELINE_MIN_BYTES {
        let (mut verifier, mut layer) = (verifier, layer);
        let mut layer_failed = None;
        resp.stream(deadline, tr, |data| {
            verifier.update(data).map_err(mismatch)?;
            if let Some(check) = &mut layer {
                if let Err(e) = check.update(data) {
                    layer_failed = Some(e);
                    layer = None;
                }
            }
            Ok(())
        })
        .await?;
        let len = verifier.finish().map_err(mismatch)?;
        if let Some(e) = layer_failed {
            return Err(unreadable(e));
        }
        if let Some(check) = layer {
            check.finish().map_err(unreadable)?;
        }
        return Ok(len);
    }

    let (digest_tx, digest_rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let digest = tokio::task::spawn_blocking(move || {
        let (mut verifier, mut rx) = (verifier, digest_rx);
        while let Some(data) = rx.blocking_recv() {
            verifier.update(&data)?;
        }
        verifier.finish()
    });
    let mut sinks = vec![digest_tx];
    let unpacked = layer.map(|check| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
        sinks.push(tx);
        tokio::task::spawn_blocking(move || {
            let mut check = check;
            while let Some(data) = rx.blocking_recv() {
                check.update(&data)?;
            }
            check.finish()
        })
    });
    let transfer = resp.pipe(deadline, tr, sinks).await;
    let digest = digest.await.expect("hashing a blob does not panic");
    let unpacked = match unpacked {
        Some(task) => Some(task.await.expect("unpacking a layer does not panic")),
        None => None,
    };
    // More bytes than expected stopped the transfer: that is the finding, not the transfer.
    if let Err(m @ Mismatch::Size { more: true, .. }) = digest {
        return Err(mismatch(m));
    }
    transfer?;
    let len = digest.map_err(mismatch)?;
    if let Some(result) = unpacked {
        result.map_err(unreadable)?;
    }
    Ok(len)
}

/// Streams a small blob (an image config) through `verifier`, keeping its bytes when there are
/// at most `keep` of them (None past that: checked, not kept).
pub(super) async fn verify_keep(
    resp: Response,
    deadline: Instant,
    tr: &mut Transcript,
    mut verifier: Verifier,
    keep: usize,
) -> Result<Option<Bytes>, Failure> {
    let (method, url) = (resp.method.clone(), resp.url.clone());
    let mismatch = |m: Mismatch| verify::mismatch(&method, &url, m);
    let mut kept = Some(Vec::new());
    resp.stream(deadline, tr, |data| {
        verifier.update(data).map_err(mismatch)?;
        if kept.as_ref().is_some_and(|k| k.len() + data.len() > keep) {
            kept = None;
        }
        if let Some(k) = &mut kept {
            k.extend_from_slice(data);
        }
        Ok(())
    })
    .await?;
    verifier.finish().map_err(mismatch)?;
    Ok(kept.map(Bytes::from))
}
