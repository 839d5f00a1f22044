use std::io::Read as _;

use http_body::Body as _;

use super::*;
use crate::oci::compression::Compression;

/// Polls a body to its end (it is always ready without a runtime), checking the frame bound
/// and that size_hint stays exact.
pub(crate) fn collect(mut body: LayerBody) -> Vec<u8> {
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
            Poll::Pending => panic!("a layer body without a runtime is always ready"),
        }
    }
}

pub(crate) fn collect_into(layer: &Layer, out: &mut Vec<u8>) {
    *out = collect(layer.body(0..layer.size));
}

fn tar_of(layer: &Layer) -> Vec<u8> {
    let plan = layer.plan.as_ref().unwrap();
    let mut out = vec![0u8; plan.tar.len() as usize];
    plan.tar.fill(0, &mut out, &mut Vec::new());
    out
}

const FORMATS: [LayerFormat; 3] = [
    LayerFormat::Tar(Compression::Gzip),
    LayerFormat::Tar(Compression::Zstd),
    LayerFormat::Tar(Compression::None),
];

#[test]
fn the_pre_pass_digests_equal_those_of_the_bytes_sent_and_of_the_tar() {
    // 5 MiB: the pre-pass compresses on threads; the body compresses segment by segment.
    for size in [0, 4096, 5 * SEGMENT + 777] {
        for format in FORMATS {
            let layer = Layer::new(11, size, format);
            let sent = collect(layer.body(0..layer.size));
            assert_eq!(sent.len() as u64, layer.size, "{format:?} {size}");
            assert_eq!(Digest::of(&sent), layer.digest, "{format:?} {size}");
            let tar = tar_of(&layer);
            assert_eq!(Digest::of(&tar), layer.diff_id, "{format:?} {size}");
            let unpacked = match format {
                LayerFormat::Tar(Compression::Gzip) => {
                    // One gzip member: a single-member reader reads it all.
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&sent[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                LayerFormat::Tar(Compression::Zstd) => zstd::decode_all(&sent[..]).unwrap(),
                _ => sent.clone(),
            };
            assert!(unpacked == tar, "{format:?} {size}: unpacks to the tar");
        }
    }
}

#[test]
fn gzip_and_zstd_layers_are_smaller_than_their_tar_and_none_is_the_tar() {
    let size = 8 * SEGMENT;
    let gz = Layer::new(3, size, LayerFormat::Tar(Compression::Gzip));
    let zs = Layer::new(3, size, LayerFormat::Tar(Compression::Zstd));
    let plain = Layer::new(3, size, LayerFormat::Tar(Compression::None));
    assert_eq!(plain.size, size);
    assert_eq!(plain.digest, plain.diff_id);
    assert_eq!(gz.diff_id, plain.diff_id);
    assert_eq!(zs.diff_id, plain.diff_id);
    assert!(gz.size < size * 9 / 10, "gzip {} of {size}", gz.size);
    assert!(zs.size < size * 9 / 10, "zstd {} of {size}", zs.size);
}

#[test]
fn any_sub_range_equals_the_same_slice_of_the_whole_body() {
    for format in FORMATS {
        let layer = Layer::new(0xdead_beef, 2 * SEGMENT + 3 * BLOCK + 1_234, format);
        let bytes = collect(layer.body(0..layer.size));
        let size = layer.size;
        let starts = &layer.plan.as_ref().unwrap().starts;
        let s1 = starts[1];
        let ranges = [
            0..0,
            size..size,
            0..1,
            3..15,
            s1 - 1..s1 + 1,
            s1..s1 + MAX_FRAME + 3,
            size - 12..size,
            size - 1..size,
            7..size - 5,
            0..size,
        ];
        for range in ranges {
            let part = collect(layer.body(range.clone()));
            assert!(
                part[..] == bytes[range.start as usize..range.end as usize],
                "{format:?} range {range:?}"
            );
        }
    }
}

#[test]
fn write_blob_writes_the_bytes_the_body_sends() {
    for format in FORMATS.into_iter().chain([LayerFormat::Raw]) {
        let layer = Layer::new(8, 2 * SEGMENT + 99, format);
        let mut written = Vec::new();
        layer.write_blob(&mut written).unwrap();
        assert!(written == collect(layer.body(0..layer.size)), "{format:?}");
    }
}

#[test]
fn same_seed_gives_identical_bytes_and_different_seeds_differ() {
    let a = Layer::new(42, 300_000, LayerFormat::Tar(Compression::Gzip));
    let b = Layer::new(42, 300_000, LayerFormat::Tar(Compression::Gzip));
    let c = Layer::new(43, 300_000, LayerFormat::Tar(Compression::Gzip));
    assert_eq!(a.digest, b.digest);
    assert_ne!(a.digest, c.digest);
    assert_ne!(a.diff_id, c.diff_id);
}

#[test]
fn a_raw_layer_is_the_random_bytes_earlier_versions_pushed() {
    let layer = Layer::new(99, BLOCK + 1, LayerFormat::Raw);
    let bytes = collect(layer.body(0..layer.size));
    let mut want = vec![0u8; (BLOCK + 1) as usize];
    fill_range(99, 0, &mut want);
    assert_eq!(bytes, want);
    assert_eq!(layer.digest, Digest::of(&want));
    assert_eq!(layer.diff_id, layer.digest);
    // The digest of a known raw layer, as versions before tar layers computed it.
    let zero = Layer::new(11, 0, LayerFormat::Raw);
    assert_eq!(
        zero.digest.as_str(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_runtime_segments_compress_on_the_blocking_pool_and_give_the_same_bytes() {
    use http_body_util::BodyExt as _;
    let layer = Layer::new(5, 3 * SEGMENT, LayerFormat::Tar(Compression::Gzip));
    let mut body = layer.body(0..layer.size);
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(Digest::of(&got), layer.digest);
}
