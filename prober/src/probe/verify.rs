//! Every check the prober makes on what a registry sends, each a named function written once
//! (cloudprober's validators): lengths and digests in headers, manifest bodies, blob bodies
//! streamed through sha256, the progress an upload session reports. A check fails with the
//! precise reason and a message that says what was sent, what came back and what was expected.

use http::{header, Method};

use crate::http::Response;
use crate::oci::artifact::Artifact;
use crate::oci::compression::LayerFormat;
use crate::oci::digest::{Digest, Mismatch};
use crate::oci::image::{Image, LAYERS_LABEL, NONCE_LABEL};
use crate::oci::index::Entry;
use crate::oci::unpack::{LayerCheck, UnpackError};
use crate::outcome::{DeviationKind, Failure, Reason};

/// A deviation from the spec that real clients tolerate: its kind and what came back.
pub(super) type Tolerated = (DeviationKind, String);

/// Content-Length, when sent, is the size the manifest gives the blob.
pub(super) fn content_length(resp: &Response, digest: &Digest, size: u64) -> Result<(), Failure> {
    let Some(len) = resp.header(header::CONTENT_LENGTH) else {
        return Ok(());
    };
    if len.parse::<u64>().ok() == Some(size) {
        return Ok(());
    }
    Err(Failure::new(
        Reason::SizeMismatch,
        format!(
            "{} {}: Content-Length is {len} but the manifest says {size} bytes for {digest}",
            resp.method, resp.url
        ),
    ))
}

/// Docker-Content-Digest, when sent, names what the prober pushed or asked for.
pub(super) fn digest_header(resp: &Response, expected: &Digest) -> Result<(), Failure> {
    let Some(value) = resp.headers.get("docker-content-digest") else {
        return Ok(());
    };
    let got = value.to_str().unwrap_or("<not text>");
    if got == expected.as_str() {
        return Ok(());
    }
    Err(Failure::new(
        Reason::DigestMismatch,
        format!(
            "{} {}: Docker-Content-Digest is {got}, expected {expected}",
            resp.method, resp.url
        ),
    ))
}

/// A pulled manifest: JSON (anything else came from something that is not a registry, such as
/// a proxy's error page), hashing to the digest expected when one is (`want_len` 0: a pinned
/// digest whose length is not known), and to the Docker-Content-Digest the registry sent.
pub(super) fn manifest_body(
    method: &Method,
    url: &str,
    body: &[u8],
    expected: Option<(&Digest, u64)>,
    header_digest: Option<&str>,
) -> Result<Digest, Failure> {
    // Not JSON is a protocol failure even when the digest would also differ: it says the answer
    // came from something that is not a registry.
    serde_json::from_slice::<serde_json::Value>(body).map_err(|e| {
        Failure::new(
            Reason::Protocol,
            format!("{method} {url}: manifest is not JSON: {e}"),
        )
    })?;
    let actual = Digest::of(body);
    if let Some((want, want_len)) = expected {
        if *want != actual {
            let len = if want_len > 0 {
                format!("{want_len} bytes")
            } else {
                "pinned".to_string()
            };
            return Err(Failure::new(
                Reason::DigestMismatch,
                format!(
                    "{method} {url}: manifest digest mismatch: expected {want} ({len}), got {actual} ({} bytes)",
                    body.len()
                ),
            ));
        }
    }
    if let Some(got) = header_digest {
        if got != actual.as_str() {
            return Err(Failure::new(
                Reason::DigestMismatch,
                format!(
                    "{method} {url}: Docker-Content-Digest is {got} but the manifest body hashes to {actual} ({} bytes)",
                    body.len()
                ),
            ));
        }
    }
    Ok(actual)
}

/// A blob body that did not hash to its digest or was not its length.
pub(super) fn mismatch(method: &Method, url: &str, m: Mismatch) -> Failure {
    let reason = match m {
        Mismatch::Size { .. } => Reason::SizeMismatch,
        Mismatch::Digest { .. } => Reason::DigestMismatch,
    };
    Failure::new(reason, format!("{method} {url}: {m}"))
}

/// A layer that does not unpack to its DiffID: it unpacked to other bytes, or not at all.
pub(super) fn unpack(method: &Method, url: &str, e: UnpackError) -> Failure {
    let reason = match e {
        UnpackError::DiffId { .. } => Reason::DiffIdMismatch,
        UnpackError::Decompress { .. } | UnpackError::Tar(_) => Reason::LayerUnreadable,
    };
    Failure::new(reason, format!("{method} {url}: {e}"))
}

/// What the layers of an image must unpack to, from its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum DiffIds {
    /// Not a container image (an artifact, or a config not kept): digests only.
    Unchecked,
    /// An image the prober pushed before layers were tars: random bytes, whose sha256 is the
    /// DiffID; neither compressed nor a tar.
    Raw(Vec<Digest>),
    /// Tar layers, compressed or not.
    Tar(Vec<Digest>),
}

impl DiffIds {
    /// The DiffIDs of an image the prober generated.
    pub(super) fn of_image(image: &Image) -> DiffIds {
        match image.format {
            LayerFormat::Raw => DiffIds::Raw(image.diff_ids()),
            LayerFormat::Tar(_) => DiffIds::Tar(image.diff_ids()),
        }
    }

    /// The check of layer `index` (0-based), the blob `digest`.
    pub(super) fn check(&self, index: usize, digest: &Digest) -> Option<LayerCheck> {
        let check = match self {
            DiffIds::Unchecked => None,
            DiffIds::Raw(ids) => ids.get(index).cloned().map(LayerCheck::raw),
            DiffIds::Tar(ids) => ids.get(index).cloned().map(LayerCheck::new),
        };
        check.map(|c| c.blob(digest))
    }
}

/// The config media types of container images; anything else (an artifact's config) names no
/// layers a runtime unpacks.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The DiffIDs an image config lists for `layers` layers, as a runtime reads them: one per
/// layer, each a digest. Not an image config: none to check.
pub(super) fn image_config(
    media_type: &str,
    config: &[u8],
    layers: usize,
) -> Result<DiffIds, Failure> {
    if !IMAGE_CONFIGS.contains(&media_type) {
        return Ok(DiffIds::Unchecked);
    }
    let bad = |what: String| Failure::new(Reason::DiffIdMismatch, what);
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: Option<RootFs>,
        config: Option<RunConfig>,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Option<Vec<String>>,
    }
    #[derive(serde::Deserialize)]
    struct RunConfig {
        #[serde(rename = "Labels")]
        labels: Option<std::collections::BTreeMap<String, String>>,
    }
    let parsed: Config = serde_json::from_slice(config).map_err(|e| {
        bad(format!(
            "the image config ({media_type}) is not one a runtime reads: {e}"
        ))
    })?;
    let listed = parsed
        .rootfs
        .and_then(|r| r.diff_ids)
        .ok_or_else(|| bad("the image config lists no rootfs.diff_ids".to_string()))?;
    if listed.len() != layers {
        return Err(bad(format!(
            "the image config lists {} DiffIDs for the manifest's {layers} layers",
            listed.len()
        )));
    }
    let ids = listed
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Digest::parse(d)
                .map_err(|e| bad(format!("the image config's DiffID of layer {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let labels = parsed.config.and_then(|c| c.labels).unwrap_or_default();
    // The prober's own images from before tar layers carry its nonce and no layers label.
    if labels.contains_key(NONCE_LABEL) && !labels.contains_key(LAYERS_LABEL) {
        return Ok(DiffIds::Raw(ids));
    }
    Ok(DiffIds::Tar(ids))
}

/// After a PATCH, the Range an upload session reports holding, when it reports one, is every
/// byte sent so far: `0-<last byte index>`. Anything else is a deviation real clients tolerate:
/// the end off by one (`0-<bytes held>`), a `bytes=` prefix, or another range (some registries
/// count the last chunk only). Whether the registry holds the right bytes, the closing PUT's
/// digest and the pull of every byte say.
pub(super) fn upload_range(resp: &Response, end: u64) -> Option<Tolerated> {
    range_held(&resp.method, &resp.url, resp.header(header::RANGE)?, end)
}

/// `upload_range` on the Range header's text, `end` the bytes sent so far (none sent: nothing
/// to check).
fn range_held(method: &Method, url: &str, range: &str, end: u64) -> Option<Tolerated> {
    let want = format!("0-{}", end.checked_sub(1)?);
    let (value, prefixed) = match range.strip_prefix("bytes=") {
        Some(rest) => (rest, true),
        None => (range, false),
    };
    let said =
        format!("{method} {url}: registry holds Range {range} after this chunk, expected {want}");
    if value == want {
        return prefixed.then_some((DeviationKind::RangeFormat, said));
    }
    if value == format!("0-{end}") {
        return Some((
            DeviationKind::RangeOffByOne,
            format!("{said} (the end is the last byte's index)"),
        ));
    }
    Some((DeviationKind::RangeMismatch, said))
}

/// A HEAD answered 200 should name the digest; clients tolerate it missing.
pub(super) fn digest_header_on_head(resp: &Response) -> Option<Tolerated> {
    if resp.headers.contains_key("docker-content-digest") {
        return None;
    }
    Some((
        DeviationKind::MissingDigestHeader,
        format!(
            "{} {}: 200 without a Docker-Content-Digest header",
            resp.method, resp.url
        ),
    ))
}

/// An aged canary's manifest (`what`), or for a canary seen for the first time its config, is
/// the one it was pushed with: a different one means the content under its tag was replaced.
pub(super) fn canary_unchanged(
    tag: &str,
    pushed: &str,
    what: &str,
    actual: &Digest,
    expected: &Digest,
) -> Result<(), Failure> {
    if actual == expected {
        return Ok(());
    }
    Err(Failure::new(
        Reason::ContentChanged,
        format!(
            "canary {tag} (pushed {pushed}) changed: its {what} is {actual}, it was pushed as {expected}"
        ),
    ))
}

/// A referrers answer that says it applied the artifactType filter lists that type only.
pub(super) fn filtered_referrers(
    what: &str,
    entries: &[Entry],
    artifact_type: &str,
) -> Result<(), Failure> {
    match entries
        .iter()
        .find(|e| e.artifact_type.as_deref() != Some(artifact_type))
    {
        None => Ok(()),
        Some(other) => Err(Failure::new(
            Reason::Protocol,
            format!(
                "{what} says it applied the artifactType filter ({artifact_type}) but lists {} of type {}",
                other.digest,
                other.artifact_type.as_deref().unwrap_or("(none)")
            ),
        )),
    }
}

/// A referrers entry of our artifact gives the size and artifactType it was pushed with (the
/// spec has the registry copy artifactType into the entry).
pub(super) fn referrer_entry(
    what: &str,
    entry: &Entry,
    artifact: &Artifact,
) -> Result<(), Failure> {
    let size = artifact.manifest.len() as u64;
    if entry.size != size {
        return Err(Failure::new(
            Reason::SizeMismatch,
            format!(
                "{what} lists artifact {} with size {}, it was pushed with {size} bytes",
                artifact.digest, entry.size
            ),
        ));
    }
    if entry.artifact_type.as_deref() != Some(artifact.artifact_type.as_str()) {
        return Err(Failure::new(
            Reason::Protocol,
            format!(
                "{what} lists artifact {} with artifactType {}, it was pushed as {}",
                artifact.digest,
                entry.artifact_type.as_deref().unwrap_or("(none)"),
                artifact.artifact_type
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "verify_properties.rs"]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:5000/v2/p/manifests/t";

    #[test]
    fn a_manifest_that_is_not_json_fails_as_protocol_before_its_digest_is_checked() {
        let want = Digest::of(b"{}");
        let f = manifest_body(&Method::GET, URL, b"<html>", Some((&want, 2)), None).unwrap_err();
        assert_eq!(f.reason, Reason::Protocol);
        assert!(f.message.contains("manifest is not JSON"), "{}", f.message);
    }

    #[test]
    fn a_manifest_checks_the_expected_digest_then_the_header() {
        let body = br#"{"a":1}"#;
        let actual = Digest::of(body);
        assert_eq!(
            manifest_body(
                &Method::GET,
                URL,
                body,
                Some((&actual, 7)),
                Some(actual.as_str())
            ),
            Ok(actual.clone())
        );
        let other = Digest::of(b"{}");
        let f = manifest_body(&Method::GET, URL, body, Some((&other, 2)), None).unwrap_err();
        assert_eq!(f.reason, Reason::DigestMismatch);
        assert_eq!(
            f.message,
            format!("GET {URL}: manifest digest mismatch: expected {other} (2 bytes), got {actual} (7 bytes)")
        );
        let f = manifest_body(&Method::GET, URL, body, Some((&other, 0)), None).unwrap_err();
        assert!(f.message.contains(
            "expected {other} (pinned)"
                .replace("{other}", other.as_str())
                .as_str()
        ));
        let f = manifest_body(&Method::GET, URL, body, None, Some(other.as_str())).unwrap_err();
        assert_eq!(
            f.message,
            format!("GET {URL}: Docker-Content-Digest is {other} but the manifest body hashes to {actual} (7 bytes)")
        );
    }

    #[test]
    fn a_changed_canary_names_both_digests() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        assert_eq!(
            canary_unchanged("t", "2026-01-01T00:00:00Z", "manifest", &a, &a),
            Ok(())
        );
        let f = canary_unchanged("t", "2026-01-01T00:00:00Z", "manifest", &a, &b).unwrap_err();
        assert_eq!(f.reason, Reason::ContentChanged);
        assert_eq!(
            f.message,
            format!("canary t (pushed 2026-01-01T00:00:00Z) changed: its manifest is {a}, it was pushed as {b}")
        );
    }

    #[test]
    fn a_referrer_entry_must_carry_the_pushed_size_and_artifact_type() {
        use crate::oci::artifact::Subject;
        let subject = Subject {
            media_type: "m".into(),
            digest: Digest::of(b"s"),
            size: 1,
        };
        let a = Artifact::generate(1, "application/x.a+json", 0, subject);
        let entry = |size, artifact_type: Option<&str>| Entry {
            digest: a.digest.clone(),
            size,
            media_type: String::new(),
            platform: None,
            artifact_type: artifact_type.map(str::to_string),
        };
        let len = a.manifest.len() as u64;
        assert!(referrer_entry("w", &entry(len, Some("application/x.a+json")), &a).is_ok());
        let f = referrer_entry("w", &entry(len + 1, Some("application/x.a+json")), &a).unwrap_err();
        assert_eq!(f.reason, Reason::SizeMismatch);
        let f = referrer_entry("w", &entry(len, None), &a).unwrap_err();
        assert_eq!(
            f.message,
            format!(
                "w lists artifact {} with artifactType (none), it was pushed as application/x.a+json",
                a.digest
            )
        );
        let f = filtered_referrers("w", &[entry(len, Some("other/x"))], "application/x.a+json")
            .unwrap_err();
        assert_eq!(f.reason, Reason::Protocol);
        assert!(
            f.message
                .contains("says it applied the artifactType filter"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_blob_mismatch_is_a_size_or_a_digest_failure() {
        let m = Mismatch::Size {
            expected: 2,
            actual: 1,
            more: false,
        };
        let f = mismatch(&Method::GET, URL, m);
        assert_eq!(f.reason, Reason::SizeMismatch);
        assert_eq!(
            f.message,
            format!("GET {URL}: size mismatch: expected 2 bytes, got 1 bytes")
        );
    }
}
