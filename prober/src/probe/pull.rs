//! The pull path, on any endpoint: GET the manifest by tag and by digest (both digests checked),
//! then GET every blob it names, streamed through sha256 and compared in digest and length; for
//! old content (golden images, canaries) every blob is also checked with HEAD.

use bytes::Bytes;
use http::header;
use http::{Method, StatusCode};

use super::run::step;
use super::run::{Endpoint, Run};
use super::verify;
use crate::config::Reference;
use crate::http::{Request, MANIFEST_BODY};
use crate::oci::digest::{Digest, Verifier};
use crate::oci::image::Image;
use crate::oci::manifest::{Named, Pulled, ACCEPT};
use crate::outcome::{Failure, Reason, Step};

/// A manifest as pulled: its bytes and the Content-Type it came with.
pub(super) struct Manifest {
    pub(super) body: Bytes,
    pub(super) media_type: String,
}

impl Manifest {
    /// The manifest parsed, or a protocol failure saying why it is not one.
    pub(super) fn parse(&self) -> Result<Pulled, Failure> {
        Pulled::parse(&self.body, &self.media_type)
            .map_err(|e| Failure::new(Reason::Protocol, e.to_string()))
    }

    /// The blobs of the image manifest, config first, labels prefixed with `prefix`.
    pub(super) fn blobs(&self, prefix: &str) -> Result<Vec<Named>, Failure> {
        self.parse()?
            .blobs(prefix)
            .map_err(|e| Failure::new(Reason::Protocol, e.to_string()))
    }
}

impl<'a> Run<'a> {
    /// Pulls back what was pushed through `endpoint`: manifest by tag, by digest, then every
    /// blob.
    pub(super) async fn pull_image(
        &mut self,
        endpoint: &'a Endpoint,
        image: &Image,
        tag: &str,
    ) -> Result<(), Failure> {
        let repo = endpoint.client.repository();
        let manifest = self
            .pull_tagged(endpoint, tag, &image.manifest_digest, &image.manifest)
            .await?;
        let blobs = manifest.blobs("").map_err(|f| self.note_failure(f))?;
        for blob in blobs {
            self.pull_blob(endpoint, Step::PullBlob, repo, blob).await?;
        }
        Ok(())
    }

    /// The manifest a run pushed (`body`, hashing to `digest`), pulled by `tag` and by digest
    /// through `endpoint`; both must be the bytes pushed.
    pub(super) async fn pull_tagged(
        &mut self,
        endpoint: &'a Endpoint,
        tag: &str,
        digest: &Digest,
        body: &Bytes,
    ) -> Result<Manifest, Failure> {
        let repo = endpoint.client.repository();
        let expected = Some((digest, body.len() as u64));
        self.pull_manifest(
            endpoint,
            Step::PullManifestByTag,
            tag.to_string(),
            repo,
            tag,
            expected,
        )
        .await?;
        self.pull_manifest(
            endpoint,
            Step::PullManifestByDigest,
            digest.to_string(),
            repo,
            digest.as_str(),
            expected,
        )
        .await
    }

    /// Old content (a golden image or a canary): HEAD each blob, then GET it. Registries that
    /// lost the data often still answer HEAD from their metadata, so both must agree. Every
    /// blob is checked, so one lost layer does not hide another.
    pub(super) async fn pull_old_blobs(
        &mut self,
        endpoint: &'a Endpoint,
        step: Step,
        repository: &str,
        blobs: Vec<Named>,
    ) -> Result<(), Failure> {
        let mut first = Ok(());
        for blob in blobs {
            let head = self.head_blob(endpoint, repository, &blob).await;
            let get = self
                .pull_blob(endpoint, step, repository, blob)
                .await
                .map(|_| ());
            if first.is_ok() {
                first = head.and(get);
            }
        }
        first
    }

    /// HEAD one blob: 200, and Content-Length and Docker-Content-Digest (when sent) name it.
    async fn head_blob(
        &mut self,
        endpoint: &'a Endpoint,
        repository: &str,
        blob: &Named,
    ) -> Result<(), Failure> {
        step!(
            self,
            Step::HeadBlob,
            endpoint,
            blob.label.clone(),
            |call| async {
                let url = call.repo_url(repository, &format!("blobs/{}", blob.digest))?;
                let resp = call
                    .fetch(
                        &Request::new(Method::HEAD, url),
                        &[StatusCode::OK],
                        Reason::BlobUnknown,
                    )
                    .await?;
                verify::content_length(&resp, &blob.digest, blob.size)?;
                verify::digest_header(&resp, &blob.digest)?;
                call.tolerate(verify::digest_header_on_head(&resp));
                call.discard(resp).await
            }
        )
    }

    /// Pulls and verifies a golden image through `endpoint`: read-only content the prober
    /// never pushed, an image or an index of images.
    pub(super) async fn pull_golden(
        &mut self,
        endpoint: &'a Endpoint,
        golden: &Reference,
    ) -> Result<(), Failure> {
        let pinned = golden
            .reference
            .starts_with("sha256:")
            .then(|| Digest::parse(&golden.reference).ok())
            .flatten();
        let manifest = self
            .pull_manifest(
                endpoint,
                Step::PullGoldenManifest,
                golden.to_string(),
                &golden.repository,
                &golden.reference,
                pinned.as_ref().map(|d| (d, 0)),
            )
            .await?;
        let pulled = manifest.parse().map_err(|f| self.note_failure(f))?;
        if let Pulled::Image(_) = pulled {
            let blobs = manifest
                .blobs(&golden.to_string())
                .map_err(|f| self.note_failure(f))?;
            return self
                .pull_old_blobs(endpoint, Step::PullGoldenBlob, &golden.repository, blobs)
                .await;
        }
        for (subject, child) in self.golden_children(golden, &pulled)? {
            let manifest = self
                .pull_manifest(
                    endpoint,
                    Step::PullGoldenManifest,
                    subject.clone(),
                    &golden.repository,
                    child.digest.as_str(),
                    Some((&child.digest, 0)),
                )
                .await?;
            let blobs = manifest.blobs(&subject).map_err(|f| self.note_failure(f))?;
            self.pull_old_blobs(endpoint, Step::PullGoldenBlob, &golden.repository, blobs)
                .await?;
        }
        Ok(())
    }

    /// GET a manifest: 200, at most 4 MiB, and what `verify::manifest_body` checks. `expected`
    /// is (digest, length); a length of 0 means unknown.
    pub(super) async fn pull_manifest(
        &mut self,
        endpoint: &'a Endpoint,
        step: Step,
        subject: String,
        repository: &str,
        reference: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Manifest, Failure> {
        step!(self, step, endpoint, subject, |call| async {
            let url = call.repo_url(repository, &format!("manifests/{reference}"))?;
            let req = Request::new(Method::GET, url).header(header::ACCEPT, ACCEPT);
            let resp = call
                .fetch(&req, &[StatusCode::OK], Reason::ManifestUnknown)
                .await?;
            let (method, url) = (resp.method.clone(), resp.url.clone());
            let media_type = resp
                .header(header::CONTENT_TYPE)
                .unwrap_or_default()
                .to_string();
            let header_digest = resp
                .headers
                .get("docker-content-digest")
                .map(|v| v.to_str().unwrap_or("<not text>").to_string());
            let body = call.read_body(resp, MANIFEST_BODY).await?;
            verify::manifest_body(&method, &url, &body, expected, header_digest.as_deref())?;
            Ok(Manifest { body, media_type })
        })
    }

    /// GET one blob, streaming it through sha256; compares digest AND length.
    pub(super) async fn pull_blob(
        &mut self,
        endpoint: &'a Endpoint,
        step: Step,
        repository: &str,
        blob: Named,
    ) -> Result<u64, Failure> {
        let label = blob.label.clone();
        step!(self, step, endpoint, label, |call| async {
            let url = call.repo_url(repository, &format!("blobs/{}", blob.digest))?;
            let resp = call
                .fetch(
                    &Request::new(Method::GET, url),
                    &[StatusCode::OK],
                    Reason::BlobUnknown,
                )
                .await?;
            verify::content_length(&resp, &blob.digest, blob.size)?;
            verify::digest_header(&resp, &blob.digest)?;
            call.verify_body(resp, Verifier::new(blob.digest, blob.size))
                .await
        })
    }
}
