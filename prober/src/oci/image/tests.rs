use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::oci::compression::Compression;
use crate::oci::layer::tests::collect_into;

const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const GZIP: LayerFormat = LayerFormat::Tar(Compression::Gzip);

fn created() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[test]
fn the_config_is_an_image_config_listing_every_layers_diff_id_and_how_it_was_made() {
    let image = Image::generate_at(
        0x0123_4567_89ab_cdef,
        &[10, 0],
        ManifestType::Oci,
        GZIP,
        created(),
    );
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    let diff_ids: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(
        config,
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {"Labels": {
                "io.registry-prober.nonce": "0123456789abcdef",
                "io.registry-prober.layers": "tar+gzip:10,0",
            }},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "registry-prober"}, {"created_by": "registry-prober"}],
        })
    );
    // The smallest layers still differ: each holds a file named for its seed.
    assert_ne!(image.layers[1].diff_id, Digest::of(&[0u8; 1024]));
    assert_ne!(image.layers[0].diff_id, image.layers[1].diff_id);
    assert_ne!(image.layers[0].digest, image.layers[0].diff_id);
    assert_eq!(image.config_digest, Digest::of(&image.config));
}

#[test]
fn a_raw_image_has_the_config_and_manifest_of_versions_before_tar_layers() {
    let image = Image::generate_at(
        0x0123_4567_89ab_cdef,
        &[10, 0],
        ManifestType::Oci,
        LayerFormat::Raw,
        created(),
    );
    let digests: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(
        std::str::from_utf8(&image.config).unwrap(),
        format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2023-11-14T22:13:20Z\",\
             \"config\":{{\"Labels\":{{\"io.registry-prober.nonce\":\"0123456789abcdef\"}}}},\
             \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{}\",\"{}\"]}},\
             \"history\":[{{\"created_by\":\"registry-prober\"}},{{\"created_by\":\"registry-prober\"}}]}}",
            digests[0], digests[1]
        )
    );
    assert_eq!(image.layers[1].digest.as_str(), EMPTY);
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(manifest["layers"][0]["size"], 10);
}

#[test]
fn the_manifest_names_each_layer_with_its_media_type_size_and_digest() {
    for (manifest_type, format, manifest_mt, config_mt, layer_mt) in [
        (
            ManifestType::Oci,
            GZIP,
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            ManifestType::Oci,
            LayerFormat::Tar(Compression::Zstd),
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            ManifestType::Oci,
            LayerFormat::Tar(Compression::None),
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            ManifestType::Docker,
            GZIP,
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        (
            ManifestType::Docker,
            LayerFormat::Tar(Compression::None),
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar",
        ),
    ] {
        let image = Image::generate_at(77, &[1000, 70_000], manifest_type, format, created());
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(
            manifest,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest_mt,
                "config": {"mediaType": config_mt, "digest": image.config_digest.as_str(), "size": image.config.len()},
                "layers": [
                    {"mediaType": layer_mt, "digest": image.layers[0].digest.as_str(), "size": image.layers[0].size},
                    {"mediaType": layer_mt, "digest": image.layers[1].digest.as_str(), "size": image.layers[1].size},
                ],
            })
        );
        assert_eq!(image.manifest_digest, Digest::of(&image.manifest));
        let blobs = image.blobs();
        assert_eq!(blobs[1].media_type, layer_mt);
        let mut sent = Vec::new();
        collect_into(&image.layers[1], &mut sent);
        assert_eq!(Digest::of(&sent), blobs[2].digest);
    }
}

#[test]
fn the_manifest_is_compact_json_in_field_order() {
    let image = Image::generate_at(1, &[], ManifestType::Docker, GZIP, created());
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
    let a = Image::generate_at(9, &[100, 100], ManifestType::Oci, GZIP, created());
    let b = Image::generate_at(9, &[100, 100], ManifestType::Oci, GZIP, created());
    let c = Image::generate_at(10, &[100, 100], ManifestType::Oci, GZIP, created());
    assert_eq!(a.manifest, b.manifest);
    assert_ne!(a.layers[0].digest, a.layers[1].digest);
    assert_ne!(a.layers[0].digest, c.layers[0].digest);
    assert_ne!(a.manifest_digest, c.manifest_digest);
}

#[test]
fn the_layers_label_round_trips_and_refuses_what_it_does_not_know() {
    let label = layers_label(GZIP, &[4096, 65536]);
    assert_eq!(label, "tar+gzip:4096,65536");
    assert_eq!(parse_layers_label(&label), Some((GZIP, vec![4096, 65536])));
    assert_eq!(parse_layers_label("tar+xz:1"), None);
    assert_eq!(parse_layers_label("tar:1,x"), None);
    assert_eq!(parse_layers_label("raw:1"), None);
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
}
