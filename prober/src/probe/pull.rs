//! The pull path: GET the manifest by tag and by digest (both digests checked), then GET every
//! blob it names, streamed through sha256 and compared in digest and length.

use bytes::Bytes;
use http::header;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::push::check_digest_header as digest_header_matches;
use super::Run;
use crate::config::Reference;
use crate::http::{Request, MAX_MANIFEST_BYTES};
use crate::oci::digest::{Digest, Verifier};
use crate::oci::image::Image;
use crate::outcome::{Failure, Reason, Step};

/// Every manifest type we can verify; registries pick by Accept.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Child manifests of an index verified per golden image, so a huge index cannot stall a run.
const MAX_INDEX_CHILDREN: usize = 8;

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
}

/// The parts of an image manifest or index that name blobs or child manifests.
#[derive(Debug, Deserialize)]
struct ManifestDoc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A blob to pull, from a manifest.
pub(super) struct BlobToPull {
    pub(super) label: String,
    pub(super) digest: Digest,
    pub(super) size: u64,
}

impl Run<'_> {
    /// Pulls back what was pushed: manifest by tag, by digest, then every blob.
    pub(super) async fn pull_image(&mut self, image: &Image, tag: &str) -> Result<(), Failure> {
        let repo = self.client().repository().to_string();
        let expected = Some((&image.manifest_digest, image.manifest.len() as u64));
        self.pull_manifest(
            Step::PullManifestByTag,
            tag.to_string(),
            &repo,
            tag,
            expected,
        )
        .await?;
        let (body, _) = self
            .pull_manifest(
                Step::PullManifestByDigest,
                image.manifest_digest.to_string(),
                &repo,
                image.manifest_digest.as_str(),
                expected,
            )
            .await?;
        let blobs = blobs_of(&body, "").map_err(|f| self.note_failure(f))?;
        for blob in blobs {
            self.pull_blob(Step::PullBlob, &repo, blob).await?;
        }
        Ok(())
    }

    /// Old content (a golden image or a canary): HEAD each blob, then GET it. Registries that
    /// lost the data often still answer HEAD from their metadata, so both must agree.
    pub(super) async fn pull_old_blobs(
        &mut self,
        step: Step,
        repository: &str,
        blobs: Vec<BlobToPull>,
    ) -> Result<(), Failure> {
        let mut first = Ok(());
        for blob in blobs {
            // Every blob is checked, so one lost layer does not hide another.
            let head = self.head_blob(repository, &blob).await;
            let get = self.pull_blob(step, repository, blob).await.map(|_| ());
            if first.is_ok() {
                first = head.and(get);
            }
        }
        first
    }

    /// HEAD one blob: 200, and Content-Length and Docker-Content-Digest (when sent) name it.
    async fn head_blob(&mut self, repository: &str, blob: &BlobToPull) -> Result<(), Failure> {
        let c = self.client();
        let url = c.repo_url(repository, &format!("blobs/{}", blob.digest))?;
        let (digest, size) = (blob.digest.clone(), blob.size);
        self.step(Step::HeadBlob, blob.label.clone(), |deadline, mut tr| async move {
            let r = async {
                let resp = c.send(&Request::new(Method::HEAD, url), deadline, &mut tr).await?;
                let resp = c.expect(resp, &[StatusCode::OK], Reason::BlobUnknown, deadline, &mut tr).await?;
                let len = resp.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::to_string);
                if let Some(len) = len {
                    if len.parse::<u64>().ok() != Some(size) {
                        return Err(Failure::new(
                            Reason::SizeMismatch,
                            format!("{} {}: HEAD says Content-Length {len} but {digest} has {size} bytes", resp.method, resp.url),
                        ));
                    }
                }
                digest_header_matches(&resp, &digest)?;
                c.discard(resp, deadline, &mut tr).await
            }
            .await;
            (r, tr)
        })
        .await
    }

    /// Pulls and verifies a golden image: read-only content the prober never pushed.
    pub(super) async fn pull_golden(&mut self, golden: &Reference) -> Result<(), Failure> {
        let pinned = golden
            .reference
            .starts_with("sha256:")
            .then(|| Digest::parse(&golden.reference).ok())
            .flatten();
        let (body, media_type) = self
            .pull_manifest(
                Step::PullGoldenManifest,
                golden.to_string(),
                &golden.repository,
                &golden.reference,
                pinned.as_ref().map(|d| (d, 0)),
            )
            .await?;
        let doc = parse_manifest(&body).map_err(|f| self.note_failure(f))?;
        if is_index(&media_type, &doc) {
            for child in doc.manifests.iter().take(MAX_INDEX_CHILDREN) {
                let digest = Digest::parse(&child.digest).map_err(|e| {
                    self.note_failure(Failure::new(
                        Reason::Protocol,
                        format!("index of {golden} names an invalid digest: {e}"),
                    ))
                })?;
                let subject = format!("{golden} > {digest}");
                let (child_body, _) = self
                    .pull_manifest(
                        Step::PullGoldenManifest,
                        subject.clone(),
                        &golden.repository,
                        digest.as_str(),
                        Some((&digest, 0)),
                    )
                    .await?;
                let blobs = blobs_of(&child_body, &subject).map_err(|f| self.note_failure(f))?;
                self.pull_old_blobs(Step::PullGoldenBlob, &golden.repository, blobs)
                    .await?;
            }
            return Ok(());
        }
        let blobs = blobs_of(&body, &golden.to_string()).map_err(|f| self.note_failure(f))?;
        self.pull_old_blobs(Step::PullGoldenBlob, &golden.repository, blobs)
            .await
    }

    /// GET a manifest. Checks: 200, at most 4 MiB, the body's sha256 equals the
    /// Docker-Content-Digest header and (when known) the digest we expect, and it is JSON.
    /// `expected` is (digest, length); a length of 0 means unknown.
    pub(super) async fn pull_manifest(
        &mut self,
        step: Step,
        subject: String,
        repository: &str,
        reference: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Bytes, String), Failure> {
        let c = self.client();
        let url = c.repo_url(repository, &format!("manifests/{reference}"))?;
        let expected = expected.map(|(d, n)| (d.clone(), n));
        self.step(step, subject, |deadline, mut tr| async move {
            let r = async {
                let req = Request::new(Method::GET, url).header(header::ACCEPT, ACCEPT);
                let resp = c.send(&req, deadline, &mut tr).await?;
                let resp = c.expect(resp, &[StatusCode::OK], Reason::ManifestUnknown, deadline, &mut tr).await?;
                let (method, url) = (resp.method.clone(), resp.url.clone());
                let media_type = resp
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let header_digest = resp.headers.get("docker-content-digest").cloned();
                let body = c.read_body(resp, MAX_MANIFEST_BYTES, deadline, &mut tr).await?;
                // Not JSON is a protocol failure even when the digest would also differ: it
                // says the answer came from something that is not a registry (a proxy's page).
                serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| {
                    Failure::new(Reason::Protocol, format!("{method} {url}: manifest is not JSON: {e}"))
                })?;
                let actual = Digest::of(&body);
                if let Some((want, want_len)) = &expected {
                    if *want != actual {
                        let len = if *want_len > 0 { format!("{want_len} bytes") } else { "pinned".to_string() };
                        return Err(Failure::new(
                            Reason::DigestMismatch,
                            format!("{method} {url}: manifest digest mismatch: expected {want} ({len}), got {actual} ({} bytes)", body.len()),
                        ));
                    }
                }
                if let Some(h) = header_digest {
                    let got = h.to_str().unwrap_or("<not text>");
                    if got != actual.as_str() {
                        return Err(Failure::new(
                            Reason::DigestMismatch,
                            format!("{method} {url}: Docker-Content-Digest is {got} but the manifest body hashes to {actual} ({} bytes)", body.len()),
                        ));
                    }
                }
                Ok((body, media_type))
            }
            .await;
            (r, tr)
        })
        .await
    }

    /// GET one blob, streaming it through sha256; compares digest AND length.
    async fn pull_blob(
        &mut self,
        step: Step,
        repository: &str,
        blob: BlobToPull,
    ) -> Result<u64, Failure> {
        let c = self.client();
        let url = c.repo_url(repository, &format!("blobs/{}", blob.digest))?;
        self.step(step, blob.label, |deadline, mut tr| async move {
            let r = async {
                let resp = c.send(&Request::new(Method::GET, url), deadline, &mut tr).await?;
                let resp = c.expect(resp, &[StatusCode::OK], Reason::BlobUnknown, deadline, &mut tr).await?;
                if let Some(len) = resp.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
                    if len.parse::<u64>().ok() != Some(blob.size) {
                        return Err(Failure::new(
                            Reason::SizeMismatch,
                            format!(
                                "{} {}: Content-Length is {len} but the manifest says {} bytes for {}",
                                resp.method, resp.url, blob.size, blob.digest
                            ),
                        ));
                    }
                }
                digest_header_matches(&resp, &blob.digest)?;
                c.verify_body(resp, Verifier::new(blob.digest.clone(), blob.size), deadline, &mut tr).await
            }
            .await;
            (r, tr)
        })
        .await
    }

    /// A failure found between steps (a manifest that names an invalid digest): it belongs
    /// to the step that produced the manifest, which is the last one recorded.
    pub(super) fn note_failure(&mut self, f: Failure) -> Failure {
        if let Some(last) = self.steps.last_mut() {
            last.success = false;
            last.reason = Some(f.reason);
            last.error = Some(f.message.clone());
        }
        f
    }
}

fn parse_manifest(body: &[u8]) -> Result<ManifestDoc, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::new(
            Reason::Protocol,
            format!("manifest is not an image manifest or index: {e}"),
        )
    })
}

fn is_index(content_type: &str, doc: &ManifestDoc) -> bool {
    let t = doc.media_type.as_deref().unwrap_or(content_type);
    t.contains("index")
        || t.contains("manifest.list")
        || (doc.config.is_none() && !doc.manifests.is_empty())
}

/// The blobs an image manifest names: config first, then layers.
pub(super) fn blobs_of(body: &[u8], prefix: &str) -> Result<Vec<BlobToPull>, Failure> {
    let doc = parse_manifest(body)?;
    let config = doc
        .config
        .as_ref()
        .ok_or_else(|| Failure::new(Reason::Protocol, "manifest has no config descriptor"))?;
    let label = |what: String| {
        if prefix.is_empty() {
            what
        } else {
            format!("{prefix}: {what}")
        }
    };
    let mut out = Vec::with_capacity(doc.layers.len() + 1);
    for (what, d) in std::iter::once((label("config".into()), config)).chain(
        doc.layers
            .iter()
            .enumerate()
            .map(|(i, d)| (label(format!("layer {}", i + 1)), d)),
    ) {
        let digest = Digest::parse(&d.digest).map_err(|e| {
            Failure::new(
                Reason::Protocol,
                format!("manifest descriptor of {what}: {e}"),
            )
        })?;
        let size = u64::try_from(d.size).map_err(|_| {
            Failure::new(
                Reason::Protocol,
                format!(
                    "manifest descriptor of {what} ({}) has negative size {}",
                    d.media_type, d.size
                ),
            )
        })?;
        out.push(BlobToPull {
            label: what,
            digest,
            size,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_config_then_layers_from_a_manifest() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let body = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "c", "digest": d('a'), "size": 10},
            "layers": [{"mediaType": "l", "digest": d('b'), "size": 20}, {"mediaType": "l", "digest": d('c'), "size": 0}]
        })
        .to_string();
        let blobs = blobs_of(body.as_bytes(), "").expect("valid");
        let got: Vec<(String, String, u64)> = blobs
            .iter()
            .map(|b| (b.label.clone(), b.digest.to_string(), b.size))
            .collect();
        assert_eq!(
            got,
            vec![
                ("config".into(), d('a'), 10),
                ("layer 1".into(), d('b'), 20),
                ("layer 2".into(), d('c'), 0)
            ]
        );
    }

    #[test]
    fn a_manifest_that_is_not_json_is_a_protocol_failure() {
        let f = blobs_of(b"<html>oops</html>", "").err().expect("fails");
        assert_eq!(f.reason, Reason::Protocol);
        assert!(
            f.message
                .starts_with("manifest is not an image manifest or index"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_negative_or_invalid_descriptor_is_a_protocol_failure() {
        let body = format!(
            r#"{{"config":{{"mediaType":"c","digest":"sha256:{}","size":-1}}}}"#,
            "a".repeat(64)
        );
        assert_eq!(
            blobs_of(body.as_bytes(), "").err().expect("fails").reason,
            Reason::Protocol
        );
        let body = r#"{"config":{"mediaType":"c","digest":"md5:abc","size":1}}"#;
        assert_eq!(
            blobs_of(body.as_bytes(), "").err().expect("fails").reason,
            Reason::Protocol
        );
    }

    #[test]
    fn recognises_an_index() {
        let doc: ManifestDoc =
            serde_json::from_str(r#"{"manifests":[{"mediaType":"m","digest":"d","size":1}]}"#)
                .expect("valid");
        assert!(is_index("application/vnd.oci.image.index.v1+json", &doc));
        assert!(is_index("", &doc));
    }
}
