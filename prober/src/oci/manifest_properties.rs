//! Properties of the manifest reader: any bytes are read or refused without a panic (deep
//! nesting included); the manifest the prober writes reads back to the blobs it names; an image
//! manifest or an index written from a model, with descriptors valid or not, gives back
//! exactly the blobs or children it names, each digest one the prober verifies.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::proptests::cases;

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest::from_sha256)
}

/// A descriptor's digest as a server might send it: ours, another algorithm, or garbage.
fn digest_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => digest().prop_map(String::from),
        1 => "sha512:[0-9a-f]{128}",
        1 => "sha256:[0-9A-F]{64}",
        1 => "[ -~]{0,20}",
    ]
}

fn size() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => any::<u64>().prop_map(Value::from),
        1 => (i64::MIN..0).prop_map(Value::from),
        1 => Just(json!(1.5)),
        1 => Just(json!("12")),
    ]
}

fn descriptor() -> impl Strategy<Value = Value> {
    (digest_text(), size(), "[a-z./+-]{1,30}").prop_map(|(digest, size, media_type)| {
        json!({ "mediaType": media_type, "digest": digest, "size": size })
    })
}

fn manifest_type() -> impl Strategy<Value = ManifestType> {
    prop_oneof![Just(ManifestType::Oci), Just(ManifestType::Docker)]
}

/// What a descriptor should give: its digest if the prober verifies it, and its size.
fn named_of(d: &Value) -> Option<(String, u64)> {
    let digest = d["digest"].as_str()?;
    Digest::parse(digest).ok()?;
    Some((digest.to_owned(), d["size"].as_u64()?))
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_bytes_are_read_or_refused_without_a_panic(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[{}\\[\\]\":,0-9a-z ]{0,300}".prop_map(String::into_bytes),
        ],
        content_type in prop::sample::select(vec!["", "application/vnd.oci.image.index.v1+json", "text/html"]),
    ) {
        if let Ok(pulled) = Pulled::parse(&body, content_type) {
            let _ = pulled.blobs("p");
            let _ = pulled.children(8);
            let _ = pulled.layer_sizes();
        }
    }

    #[test]
    fn json_nested_without_end_is_refused_not_a_stack_overflow(depth in 1usize..20_000, key in any::<bool>()) {
        let (open, close) = if key { (r#"{"config":"#, "}") } else { ("[", "]") };
        let body = format!("{}{}{}", open.repeat(depth), "1", close.repeat(depth));
        prop_assert!(Pulled::parse(body.as_bytes(), "").is_err());
    }

    #[test]
    fn the_manifest_the_prober_writes_reads_back_to_its_blobs(
        manifest_type in manifest_type(),
        config in (digest(), any::<u64>()),
        layers in proptest::collection::vec((digest(), any::<u64>()), 0..8),
    ) {
        let layer_refs: Vec<(&Digest, u64)> = layers.iter().map(|(d, s)| (d, *s)).collect();
        let body = image_manifest(manifest_type, (&config.0, config.1), &layer_refs);
        let pulled = Pulled::parse(&body, "").expect("our own manifest reads");
        let blobs = pulled.blobs("").expect("our digests verify");
        let want: Vec<Named> = std::iter::once(("config".to_owned(), config.clone()))
            .chain(layers.iter().enumerate().map(|(i, l)| (format!("layer {}", i + 1), l.clone())))
            .map(|(label, (digest, size))| Named { label, digest, size })
            .collect();
        prop_assert_eq!(blobs, want);
        prop_assert_eq!(pulled.layer_sizes(), layers.iter().map(|l| l.1).collect::<Vec<_>>());
        prop_assert!(pulled.children(8).expect("none").is_empty());
    }

    #[test]
    fn an_image_manifest_gives_exactly_the_blobs_it_names(
        config in descriptor(),
        layers in proptest::collection::vec(descriptor(), 0..6),
        media_type in proptest::option::of(prop::sample::select(vec![
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])),
        annotations in proptest::option::of(proptest::collection::btree_map("[a-z.]{1,10}", "[ -~]{0,10}", 0..3)),
    ) {
        let mut m = json!({ "schemaVersion": 2, "config": config, "layers": layers });
        if let Some(t) = media_type {
            m["mediaType"] = json!(t);
        }
        if let Some(a) = annotations {
            m["annotations"] = json!(a);
        }
        let body = m.to_string();
        let all: Vec<&Value> = std::iter::once(&config).chain(&layers).collect();
        // Sizes that are not a u64 are refused when reading; digests we do not verify when
        // listing the blobs.
        let sizes_ok = all.iter().all(|d| d["size"].is_u64());
        match Pulled::parse(body.as_bytes(), "") {
            Err(e) => prop_assert!(!sizes_ok || all.iter().any(|d| oci_spec::image::Digest::try_from(d["digest"].as_str().unwrap_or_default()).is_err()), "{}", e),
            Ok(pulled) => {
                prop_assert!(sizes_ok);
                let want: Option<Vec<(String, u64)>> = all.iter().map(|d| named_of(d)).collect();
                let got = pulled.blobs("").ok().map(|b| b.into_iter().map(|n| (n.digest.to_string(), n.size)).collect());
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn an_index_gives_its_first_children(
        children in proptest::collection::vec((digest(), any::<u64>()), 0..12),
        max in 0usize..10,
        by_media_type in any::<bool>(),
    ) {
        let manifests: Vec<Value> = children
            .iter()
            .map(|(d, s)| json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s }))
            .collect();
        let mut index = json!({ "schemaVersion": 2, "manifests": manifests });
        let content_type = if by_media_type {
            index["mediaType"] = json!("application/vnd.docker.distribution.manifest.list.v2+json");
            ""
        } else {
            "application/vnd.oci.image.index.v1+json"
        };
        let pulled = Pulled::parse(index.to_string().as_bytes(), content_type).expect("an index reads");
        let got: Vec<(Digest, u64)> = pulled.children(max).expect("our digests").into_iter().map(|n| (n.digest, n.size)).collect();
        prop_assert_eq!(got, children.iter().take(max).cloned().collect::<Vec<_>>());
        prop_assert!(pulled.blobs("").is_err());
    }
}
