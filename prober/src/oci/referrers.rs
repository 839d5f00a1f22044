//! Referrers: the image index the OCI 1.1 referrers API answers with, and the referrers tag
//! schema a client maintains where a registry has no such API (distribution-spec, "Referrers
//! Tag Schema"): an index under the tag `sha256-<hex of the subject>` listing the subject's
//! referrers. Updating it keeps every entry another client put there: the index is edited as
//! JSON, one entry added or removed, the rest left as they were.

use bytes::Bytes;
use oci_spec::image::Descriptor;
use serde_json::Value;

use super::digest::Digest;
use super::index::{entries, Entry};
use super::manifest::{ManifestError, Pulled};

/// The media type of a referrers answer and of a referrers tag's index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// The referrers tag of `subject`: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The entries of a referrers answer or a referrers tag's index, which must be an image index
/// (`what` names it in the error: "referrers answer", "referrers tag sha256-...").
pub fn parse(body: &[u8], content_type: &str, what: &str) -> Result<Vec<Entry>, ManifestError> {
    let not_index = |why: String| ManifestError(format!("{what} is not an image index: {why}"));
    let value: Value =
        serde_json::from_slice(body).map_err(|e| not_index(format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(not_index(format!("a JSON {}", kind(&value))));
    };
    if !object.get("manifests").is_some_and(Value::is_array) {
        return Err(not_index("no \"manifests\" list".to_string()));
    }
    let media_type = object
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(content_type);
    if media_type != INDEX_MEDIA_TYPE {
        return Err(not_index(format!(
            "its media type is {media_type:?}, expected {INDEX_MEDIA_TYPE:?}"
        )));
    }
    match Pulled::parse(body, INDEX_MEDIA_TYPE).map_err(|e| not_index(e.0))? {
        Pulled::Index(index) => entries(&index).map_err(|e| not_index(e.0)),
        Pulled::Image(_) => Err(not_index("an image manifest".to_string())),
    }
}

/// `existing` (a referrers tag's index, or none yet) with `referrer` added: an entry with the
/// same digest is replaced, every other entry kept as it was.
pub fn with_referrer(
    existing: Option<&[u8]>,
    referrer: &Descriptor,
) -> Result<Bytes, ManifestError> {
    let mut index = match existing {
        Some(body) => editable(body)?,
        None => serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [],
        }),
    };
    let entry = serde_json::to_value(referrer).expect("a descriptor serializes");
    let digest = referrer.digest().to_string();
    let list = manifests(&mut index);
    list.retain(|e| e.get("digest").and_then(Value::as_str) != Some(digest.as_str()));
    list.push(entry);
    Ok(Bytes::from(
        serde_json::to_vec(&index).expect("JSON values serialize"),
    ))
}

/// `existing` without the entries naming `digest`; None when nothing is left (the tag can go).
pub fn without_referrer(existing: &[u8], digest: &Digest) -> Result<Option<Bytes>, ManifestError> {
    let mut index = editable(existing)?;
    let list = manifests(&mut index);
    list.retain(|e| e.get("digest").and_then(Value::as_str) != Some(digest.as_str()));
    if list.is_empty() {
        return Ok(None);
    }
    Ok(Some(Bytes::from(
        serde_json::to_vec(&index).expect("JSON values serialize"),
    )))
}

/// A referrers tag's index as JSON to edit; refused unless it is an index.
fn editable(body: &[u8]) -> Result<Value, ManifestError> {
    parse(body, INDEX_MEDIA_TYPE, "the referrers tag's manifest")?;
    serde_json::from_slice(body).map_err(|e| ManifestError(e.to_string()))
}

fn manifests(index: &mut Value) -> &mut Vec<Value> {
    index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .expect("an index checked by `parse` has a manifests list")
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::artifact::{Artifact, Subject};

    fn artifact(seed: u64) -> Artifact {
        let subject = Subject {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::of(b"image"),
            size: 5,
        };
        Artifact::generate(seed, "application/vnd.example+json", 0, subject)
    }

    #[test]
    fn the_fallback_tag_is_sha256_dash_hex() {
        let d = Digest::of(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
    }

    #[test]
    fn adds_to_a_new_index_then_keeps_other_clients_entries() {
        let a = artifact(1);
        let first = with_referrer(None, &a.referrer()).unwrap();
        let listed = parse(&first, "", "index").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].digest, a.digest);
        assert_eq!(
            listed[0].artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );

        // Another client's entry, with annotations we do not know, stays as it was.
        let theirs = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": Digest::of(b"signature").as_str(),
                "size": 7,
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "annotations": {"dev.cosignproject.cosign/signature": "MEUC"},
            }],
            "annotations": {"x": "y"},
        });
        let body = serde_json::to_vec(&theirs).unwrap();
        let b = artifact(2);
        let added = with_referrer(Some(&body), &b.referrer()).unwrap();
        let value: Value = serde_json::from_slice(&added).unwrap();
        assert_eq!(value["manifests"][0], theirs["manifests"][0]);
        assert_eq!(value["annotations"], theirs["annotations"]);
        assert_eq!(value["manifests"][1]["digest"], b.digest.as_str());

        // Adding again replaces rather than duplicates.
        let again = with_referrer(Some(&added), &b.referrer()).unwrap();
        assert_eq!(parse(&again, "", "index").unwrap().len(), 2);

        // Removing ours leaves theirs; removing the last leaves nothing.
        let removed = without_referrer(&again, &b.digest).unwrap().unwrap();
        let value: Value = serde_json::from_slice(&removed).unwrap();
        assert_eq!(value["manifests"], theirs["manifests"]);
        assert_eq!(without_referrer(&first, &a.digest).unwrap(), None);
    }

    #[test]
    fn an_answer_that_is_not_an_index_says_what_it_is() {
        let e = |body: &str, ct: &str| {
            parse(body.as_bytes(), ct, "referrers answer")
                .unwrap_err()
                .0
        };
        assert!(e("<html>", "").starts_with("referrers answer is not an image index: not JSON"));
        assert_eq!(
            e("[]", ""),
            "referrers answer is not an image index: a JSON array"
        );
        assert_eq!(
            e(r#"{"errors":[]}"#, "application/json"),
            "referrers answer is not an image index: no \"manifests\" list"
        );
        assert_eq!(
            e(r#"{"schemaVersion":2,"manifests":[]}"#, "application/json"),
            "referrers answer is not an image index: its media type is \"application/json\", expected \"application/vnd.oci.image.index.v1+json\""
        );
        // The content type says what the body does not.
        assert_eq!(
            parse(
                br#"{"schemaVersion":2,"manifests":[]}"#,
                INDEX_MEDIA_TYPE,
                "referrers answer"
            )
            .unwrap(),
            Vec::new()
        );
        assert!(without_referrer(b"[]", &Digest::of(b"x")).is_err());
    }
}
