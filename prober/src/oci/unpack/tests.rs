use std::io::Write as _;

use super::*;
use crate::oci::compression::{Compression, LayerFormat};
use crate::oci::layer::Layer;
use crate::oci::tar::TarLayout;

fn tar_bytes(seed: u64, size: u64) -> Vec<u8> {
    let layout = TarLayout::new(seed, size);
    let mut out = vec![0u8; layout.len() as usize];
    layout.fill(0, &mut out, &mut Vec::new());
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn run(check: LayerCheck, blob: &[u8], piece: usize) -> Result<u64, UnpackError> {
    let mut check = check;
    for p in blob.chunks(piece) {
        check.update(p)?;
    }
    check.finish()
}

#[test]
fn a_tar_unpacks_to_its_diff_id_plain_gzipped_or_zstd_compressed() {
    let tar = tar_bytes(1, 300_000);
    let diff_id = Digest::of(&tar);
    let zstd = zstd::bulk::compress(&tar, 3).unwrap();
    for (blob, piece) in [
        (tar.clone(), 3),
        (gzip(&tar), 1),
        (gzip(&tar), 65536),
        (zstd, 4097),
    ] {
        assert_eq!(
            run(LayerCheck::new(diff_id.clone()), &blob, piece),
            Ok(tar.len() as u64)
        );
    }
}

#[test]
fn the_layers_the_prober_generates_unpack_to_their_diff_ids() {
    for format in [
        LayerFormat::Tar(Compression::Gzip),
        LayerFormat::Tar(Compression::Zstd),
        LayerFormat::Tar(Compression::None),
    ] {
        let layer = Layer::new(4, 3 * 1024 * 1024 + 100, format);
        let mut body = Vec::new();
        crate::oci::layer::tests::collect_into(&layer, &mut body);
        assert_eq!(Digest::of(&body), layer.digest);
        let n = run(LayerCheck::new(layer.diff_id.clone()), &body, 100_000).expect("unpacks");
        assert!(n >= 3 * 1024 * 1024, "{format:?}: {n}");
    }
}

#[test]
fn a_zstd_frame_ending_exactly_where_the_output_buffer_fills_is_complete() {
    // The generated layers' frames each decode to a whole 1 MiB segment: a multiple of the
    // decoder's 128 KiB output buffer. Fed whole or in pieces, the stream is complete.
    let layer = Layer::new(9, 3 * 1024 * 1024, LayerFormat::Tar(Compression::Zstd));
    let mut body = Vec::new();
    crate::oci::layer::tests::collect_into(&layer, &mut body);
    for piece in [body.len(), 65536, 4097] {
        let n = run(LayerCheck::new(layer.diff_id.clone()), &body, piece).expect("unpacks");
        assert_eq!(n % (1024 * 1024), 0, "{n}");
    }
}

#[test]
fn other_bytes_than_the_diff_id_names_are_a_diff_id_mismatch() {
    let tar = tar_bytes(2, 10_000);
    let wrong = Digest::of(b"other");
    let e = run(LayerCheck::new(wrong.clone()), &gzip(&tar), 999).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "DiffID mismatch: the config lists {wrong}, the layer unpacks to {} ({} bytes, gunzipped)",
            Digest::of(&tar),
            tar.len()
        )
    );
}

#[test]
fn a_layer_that_is_not_gzip_but_random_bytes_is_unreadable_as_a_tar() {
    let mut junk = vec![0u8; 5000];
    crate::oci::random::fill_range(3, 0, &mut junk);
    junk[0] = 0x42;
    let e = run(LayerCheck::new(Digest::of(&junk)), &junk, 100).unwrap_err();
    assert!(matches!(e, UnpackError::Tar(_)), "{e}");
}

#[test]
fn a_gzip_stream_that_goes_bad_is_unreadable_with_where() {
    let tar = tar_bytes(2, 10_000);
    let mut blob = gzip(&tar);
    // The gzip magic, then a deflate block type that does not exist.
    blob[10] = 0xff;
    blob[11] = 0xff;
    let e = run(LayerCheck::new(Digest::of(&tar)), &blob, 7).unwrap_err();
    let UnpackError::Decompress { compression, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*compression, "gzip");
    assert!(
        e.to_string().starts_with("gzip stream unreadable after "),
        "{e}"
    );
}

#[test]
fn a_truncated_gzip_or_zstd_stream_is_unreadable() {
    let tar = tar_bytes(6, 200_000);
    let diff_id = Digest::of(&tar);
    let gz = gzip(&tar);
    let e = run(LayerCheck::new(diff_id.clone()), &gz[..gz.len() / 2], 1000).unwrap_err();
    assert!(
        matches!(
            e,
            UnpackError::Decompress {
                compression: "gzip",
                ..
            }
        ),
        "{e}"
    );
    // Only the trailer missing: the CRC and length are part of the stream.
    let e = run(LayerCheck::new(diff_id.clone()), &gz[..gz.len() - 4], 1000).unwrap_err();
    assert!(
        matches!(
            e,
            UnpackError::Decompress {
                compression: "gzip",
                ..
            }
        ),
        "{e}"
    );
    let zs = zstd::bulk::compress(&tar, 3).unwrap();
    let e = run(LayerCheck::new(diff_id), &zs[..zs.len() - 10], 1000).unwrap_err();
    assert!(
        matches!(
            e,
            UnpackError::Decompress {
                compression: "zstd",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_raw_layer_is_only_hashed() {
    let mut junk = vec![0u8; 5000];
    crate::oci::random::fill_range(3, 0, &mut junk);
    junk[..2].copy_from_slice(&GZIP_MAGIC);
    assert_eq!(
        run(LayerCheck::raw(Digest::of(&junk)), &junk, 100),
        Ok(5000)
    );
}

#[test]
fn an_empty_layer_is_an_empty_archive() {
    let empty = Digest::of(b"");
    assert_eq!(run(LayerCheck::new(empty), b"", 1), Ok(0));
}

#[test]
fn an_uncompressed_layer_is_proven_by_its_blob_digest_and_not_hashed_again() {
    let tar = tar_bytes(5, 40_000);
    let digest = Digest::of(&tar);
    // The same tar with one byte of a file's content changed: still a tar, other bytes.
    let other = (tar.len() / 2..tar.len())
        .map(|at| {
            let mut other = tar.clone();
            other[at] ^= 0xff;
            other
        })
        .find(|other| run(LayerCheck::new(Digest::of(other)), other, 4096).is_ok())
        .expect("a byte of file content");
    assert_ne!(Digest::of(&other), digest);
    // Without the blob's digest the check hashes, and finds the other bytes.
    let e = run(LayerCheck::new(digest.clone()), &other, 4096).unwrap_err();
    assert!(matches!(e, UnpackError::DiffId { .. }), "{e}");
    // Told the blob is `digest` (which the pull verifies, and reports first), it does not
    // hash the bytes again: the pull's digest check is what catches them.
    let proven = || LayerCheck::new(digest.clone()).blob(&digest);
    assert_eq!(run(proven(), &other, 4096), Ok(tar.len() as u64));
    assert_eq!(run(proven(), &tar, 3), Ok(tar.len() as u64));
    // It still reads the bytes as a tar.
    let e = run(proven(), &tar[..tar.len() / 2 + 100], 4096).unwrap_err();
    assert!(matches!(e, UnpackError::Tar(_)), "{e}");
    // A raw layer's DiffID is its digest too.
    assert_eq!(
        run(LayerCheck::raw(digest.clone()).blob(&digest), &other, 7),
        Ok(tar.len() as u64)
    );
}

#[test]
fn a_compressed_layer_is_hashed_whatever_its_blob_digest() {
    let tar = tar_bytes(6, 40_000);
    let gz = gzip(&tar);
    let diff_id = Digest::of(&tar);
    let blob = Digest::of(&gz);
    assert_eq!(
        run(LayerCheck::new(diff_id.clone()).blob(&blob), &gz, 999),
        Ok(tar.len() as u64)
    );
    // A config whose DiffID is the compressed blob's digest (a known mistake of hand-made
    // images): the gunzipped bytes are hashed and do not match it.
    let e = run(LayerCheck::new(blob.clone()).blob(&blob), &gz, 999).unwrap_err();
    assert!(
        matches!(&e, UnpackError::DiffId { expected, actual, .. } if *expected == blob && *actual == diff_id),
        "{e}"
    );
}
