//! The pull path, on any endpoint: GET the manifest by tag and by digest (both digests checked),
//! then GET every blob it names, streamed through sha256 and compared in digest and length; for
//! old content (golden images, canaries) every blob is also checked with HEAD, and every layer
//! unpacked and checked against the DiffID its config lists, as a runtime would.

use bytes::Bytes;
use http::header;
use http::{Method, StatusCode};

use super::run::step;
use super::run::{Call, Endpoint, Run};
use super::verify::{self, DiffIds};
use crate::config::Reference;
use crate::http::{Request, MANIFEST_BODY};
use crate::oci::digest::{Digest, Verifier};
use crate::oci::image::Image;
use crate::oci::manifest::{Named, Pulled, ACCEPT};
use crate::oci::unpack::LayerCheck;
use crate::outcome::{Failure, Reason, Step};

/// A manifest as pulled: its bytes and the Content-Type it came with.
pub(super) struct Manifest {
    pub(super) body: Bytes,
    pub(super) media_type: String,
}

impl Manifest {
    /// The media type of the config an image manifest names ("" for an index).
    pub(super) fn config_media_type(&self) -> String {
        match self.parse() {
            Ok(Pulled::Image(m)) => m.config().media_type().to_string(),
            _ => String::new(),
        }
    }

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
        let manifest = self
            .pull_tagged(endpoint, tag, &image.manifest_digest, &image.manifest)
            .await?;
        let diff_ids = self.run_diff_ids(image);
        self.pull_run_blobs(endpoint, &diff_ids, &manifest, "")
            .await
    }

    /// What the layers of an image the run pushed are checked against when pulled: their
    /// DiffIDs with `image.verify_diff_ids`, else nothing (their digests prove the bytes).
    pub(super) fn run_diff_ids(&self, image: &Image) -> DiffIds {
        if self.target().verify_diff_ids {
            DiffIds::of_image(image)
        } else {
            DiffIds::Unchecked
        }
    }

    /// GET every blob of an image the run pushed (`manifest` as pulled, labels prefixed with
    /// `prefix`), each layer checked against `diff_ids`.
    pub(super) async fn pull_run_blobs(
        &mut self,
        endpoint: &'a Endpoint,
        diff_ids: &DiffIds,
        manifest: &Manifest,
        prefix: &str,
    ) -> Result<(), Failure> {
        let repo = endpoint.client.repository();
        let blobs = manifest.blobs(prefix).map_err(|f| self.note_failure(f))?;
        for (i, blob) in blobs.into_iter().enumerate() {
            let check = i
                .checked_sub(1)
                .and_then(|layer| diff_ids.check(layer, &blob.digest));
            self.pull_blob(endpoint, Step::PullBlob, repo, blob, check)
                .await?;
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

    /// Old content (a golden image or a canary), as a runtime would use it: the config, then
    /// every layer checked against the DiffID the config lists (see `pull_old_blobs`).
    pub(super) async fn pull_old_image(
        &mut self,
        endpoint: &'a Endpoint,
        step: Step,
        repository: &str,
        manifest: &Manifest,
        prefix: &str,
    ) -> Result<(), Failure> {
        let mut blobs = manifest.blobs(prefix).map_err(|f| self.note_failure(f))?;
        let layers = blobs.split_off(1);
        let config = blobs.remove(0);
        let (first, bytes) = self
            .pull_old_config(endpoint, step, repository, config)
            .await;
        let diff_ids = match bytes {
            Some(bytes) => self.diff_ids(manifest, &bytes, layers.len()),
            None => DiffIds::Unchecked,
        };
        let rest = self
            .pull_old_blobs(endpoint, step, repository, layers, &diff_ids)
            .await;
        first.and(rest)
    }

    /// The DiffIDs a config lists for `layers` layers; a config that lists them wrong is a
    /// failure of the step that pulled it (its layers are then checked by digest only).
    pub(super) fn diff_ids(
        &mut self,
        manifest: &Manifest,
        config: &[u8],
        layers: usize,
    ) -> DiffIds {
        let media_type = manifest.config_media_type();
        match verify::image_config(&media_type, config, layers) {
            Ok(diff_ids) => diff_ids,
            Err(f) => {
                self.note_failure(f);
                DiffIds::Unchecked
            }
        }
    }

    /// HEAD and GET an old image's config, keeping its bytes (configs are small; one past 4
    /// MiB is verified, not kept, and its layers are then checked by digest only).
    pub(super) async fn pull_old_config(
        &mut self,
        endpoint: &'a Endpoint,
        step: Step,
        repository: &str,
        blob: Named,
    ) -> (Result<(), Failure>, Option<Bytes>) {
        let head = self.head_blob(endpoint, repository, &blob).await;
        let label = blob.label.clone();
        let get = step!(self, step, endpoint, label, |call| async {
            let resp = call.get_blob(repository, &blob).await?;
            call.verify_keep(
                resp,
                Verifier::new(blob.digest.clone(), blob.size),
                MANIFEST_BODY.bytes,
            )
            .await
        });
        match get {
            Ok(bytes) => (head, bytes),
            Err(f) => (head.and(Err(f)), None),
        }
    }

    /// HEAD and GET every layer of old content (or a canary artifact's payload), each layer
    /// checked against its DiffID when the config named them. Registries that lost the data
    /// often still answer HEAD from their metadata, so both must agree. Every blob is checked,
    /// so one lost layer does not hide another.
    pub(super) async fn pull_old_blobs(
        &mut self,
        endpoint: &'a Endpoint,
        step: Step,
        repository: &str,
        layers: Vec<Named>,
        diff_ids: &DiffIds,
    ) -> Result<(), Failure> {
        let mut first = Ok(());
        for (i, blob) in layers.into_iter().enumerate() {
            let head = self.head_blob(endpoint, repository, &blob).await;
            let check = diff_ids.check(i, &blob.digest);
            let get = self
                .pull_blob(endpoint, step, repository, blob, check)
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
                let resp = call.fetch_blob(Method::HEAD, repository, blob).await?;
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
            return self
                .pull_old_image(
                    endpoint,
                    Step::PullGoldenBlob,
                    &golden.repository,
                    &manifest,
                    &golden.to_string(),
                )
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
            self.pull_old_image(
                endpoint,
                Step::PullGoldenBlob,
                &golden.repository,
                &manifest,
                &subject,
            )
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
            call.read_manifest(resp, expected).await
        })
    }

    /// GET one blob, streaming it through sha256; compares digest AND length, and for a layer
    /// checked against its DiffID, what it unpacks to.
    pub(super) async fn pull_blob(
        &mut self,
        endpoint: &'a Endpoint,
        step: Step,
        repository: &str,
        blob: Named,
        layer: Option<LayerCheck>,
    ) -> Result<u64, Failure> {
        let label = blob.label.clone();
        step!(self, step, endpoint, label, |call| async {
            let resp = call.get_blob(repository, &blob).await?;
            let size = blob.size;
            call.verify_body(resp, Verifier::new(blob.digest, size), layer, size)
                .await
        })
    }
}

impl Call<'_> {
    /// The manifest a 200 answer carries: at most 4 MiB, and what `verify::manifest_body`
    /// checks (`expected` as for `pull_manifest`).
    pub(super) async fn read_manifest(
        &mut self,
        resp: crate::http::Response,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Manifest, Failure> {
        let (method, url) = (resp.method.clone(), resp.url.clone());
        let media_type = resp
            .header(header::CONTENT_TYPE)
            .unwrap_or_default()
            .to_string();
        let header_digest = resp
            .headers
            .get("docker-content-digest")
            .map(|v| v.to_str().unwrap_or("<not text>").to_string());
        let body = self.read_body(resp, MANIFEST_BODY).await?;
        verify::manifest_body(&method, &url, &body, expected, header_digest.as_deref())?;
        Ok(Manifest { body, media_type })
    }

    /// GET a blob: 200, and Content-Length and Docker-Content-Digest (when sent) name it; the
    /// body is the caller's to verify.
    pub(super) async fn get_blob(
        &mut self,
        repository: &str,
        blob: &Named,
    ) -> Result<crate::http::Response, Failure> {
        self.fetch_blob(Method::GET, repository, blob).await
    }

    /// HEAD or GET a blob, checking the status and the headers that name it.
    async fn fetch_blob(
        &mut self,
        method: Method,
        repository: &str,
        blob: &Named,
    ) -> Result<crate::http::Response, Failure> {
        let url = self.repo_url(repository, &format!("blobs/{}", blob.digest))?;
        let resp = self
            .fetch(
                &Request::new(method, url),
                &[StatusCode::OK],
                Reason::BlobUnknown,
            )
            .await?;
        verify::content_length(&resp, &blob.digest, blob.size)?;
        verify::digest_header(&resp, &blob.digest)?;
        Ok(resp)
    }
}
