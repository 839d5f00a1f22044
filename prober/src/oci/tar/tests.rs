use super::*;

fn whole(layout: &TarLayout) -> Vec<u8> {
    let mut out = vec![0u8; layout.len() as usize];
    layout.fill(0, &mut out, &mut Vec::new());
    out
}

fn check(bytes: &[u8], piece: usize) -> Result<u64, TarError> {
    let mut c = TarCheck::default();
    for p in bytes.chunks(piece.max(1)) {
        c.update(p)?;
    }
    c.finish()
}

#[test]
fn a_layout_is_its_size_rounded_up_to_whole_blocks_and_at_least_one_file() {
    for (asked, len) in [
        (0, 1536),
        (1, 1536),
        (1024, 1536),
        (1025, 1536),
        (4096, 4096),
        (1 << 20, 1 << 20),
    ] {
        let layout = TarLayout::new(3, asked);
        assert_eq!(layout.len(), len, "asked {asked}");
        assert!(!layout.entries.is_empty(), "asked {asked}");
        assert_eq!(whole(&layout).len() as u64, len);
    }
}

#[test]
fn a_generated_tar_reads_back_as_a_tar_of_several_files_in_any_piece_size() {
    for size in [0, 600, 4096, 70_000, 3 * SEGMENT + 12_345] {
        let layout = TarLayout::new(size ^ 0x55, size);
        let bytes = whole(&layout);
        let files = check(&bytes, 7919).expect("a valid tar");
        assert_eq!(files, layout.entries.len() as u64);
        if size >= 70_000 {
            assert!(files > 1, "size {size}: {files} files");
        }
        assert_eq!(check(&bytes, 512).expect("valid"), files);
        assert_eq!(check(&bytes, bytes.len()).expect("valid"), files);
    }
}

#[test]
fn any_range_of_a_tar_equals_the_same_slice_of_the_whole() {
    let layout = TarLayout::new(77, 2 * SEGMENT + 5000);
    let bytes = whole(&layout);
    let len = bytes.len() as u64;
    let mut scratch = Vec::new();
    for (start, end) in [
        (0, 1),
        (100, 700),
        (511, 513),
        (BLOCK - 7, BLOCK + 9),
        (SEGMENT - 100, SEGMENT + 100),
        (len - 1030, len),
        (3, len),
    ] {
        let mut part = vec![0u8; (end - start) as usize];
        layout.fill(start, &mut part, &mut scratch);
        assert_eq!(
            part[..],
            bytes[start as usize..end as usize],
            "{start}..{end}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_tar_and_another_seed_another() {
    let a = whole(&TarLayout::new(1, 300_000));
    assert_eq!(a, whole(&TarLayout::new(1, 300_000)));
    assert_ne!(a, whole(&TarLayout::new(2, 300_000)));
}

#[test]
fn content_mixes_random_and_text_segments() {
    let layout = TarLayout::new(9, 64 * SEGMENT);
    let kinds: Vec<Content> = (0..64).map(|k| layout.content(k)).collect();
    assert!(kinds.contains(&Content::Random) && kinds.contains(&Content::Text));
}

#[test]
fn a_header_with_a_wrong_checksum_is_malformed_and_named() {
    let mut bytes = whole(&TarLayout::new(5, 8192));
    bytes[0] ^= 0x01; // the first byte of the first file's name
    let e = check(&bytes, 1000).unwrap_err();
    assert_eq!(e.offset, 0);
    assert!(e.what.contains("checksum field says"), "{e}");
}

#[test]
fn a_tar_cut_inside_a_header_or_inside_data_is_malformed() {
    let bytes = whole(&TarLayout::new(5, 200_000));
    let e = check(&bytes[..100], 64).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed tar at byte 100: the stream ends 100 bytes into a header"
    );
    let e = check(&bytes[..1000], 64).unwrap_err();
    assert!(
        e.what
            .contains("bytes before the end of the data of \"registry-prober/"),
        "{e}"
    );
}

#[test]
fn a_tar_ending_at_a_header_boundary_without_its_zero_blocks_is_read_as_go_reads_it() {
    let layout = TarLayout::new(5, 4096);
    let bytes = whole(&layout);
    let end = bytes.len() - 1024;
    assert_eq!(
        check(&bytes[..end], 100).expect("valid"),
        layout.entries.len() as u64
    );
}

#[test]
fn a_header_after_a_lone_zero_block_is_malformed() {
    let mut bytes = vec![0u8; 512];
    bytes.extend_from_slice(&ustar_header("x", 0, 0));
    let e = check(&bytes, 512).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed tar at byte 512: a header after a single zero block"
    );
}

#[test]
fn random_bytes_are_not_a_tar() {
    let mut bytes = vec![0u8; 4096];
    fill_range(1, 0, &mut bytes);
    assert!(check(&bytes, 4096).is_err());
}

#[test]
fn size_fields_read_octal_and_base_256() {
    assert_eq!(parse_size(b"00000001750\0"), Some(1000));
    let mut big = [0u8; 12];
    big[0] = 0x80;
    big[8..].copy_from_slice(&(10u32 << 30).to_be_bytes()[..4]);
    assert_eq!(parse_size(&big), Some(u64::from(10u32 << 30)));
    assert_eq!(parse_size(b"12x4\0\0\0\0\0\0\0\0"), None);
}
