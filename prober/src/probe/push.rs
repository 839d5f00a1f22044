//! The push path, on the origin: HEAD each blob, upload it in the target's mode (an upload
//! session opened by POST, then one PATCH and a closing PUT as docker does, one PUT, or chunked
//! PATCHes and a closing PUT; or the OCI spec's single POST), then PUT the manifest under the
//! run's unique tag.

use http::header;
use http::{Method, StatusCode};
use tokio::time::Instant;

use super::run::step;
use super::run::{PushedManifest, Run, Session};
use super::upload::{
    blob_body, chunk_min_length, close_upload, put_created_saying, upload_chunks, upload_whole,
    CHUNK_MIN_LENGTH, OCI_SUBJECT,
};
use super::verify;
use crate::config::UploadMode;
use crate::http::{BodySource, Request};
use crate::oci::digest::Digest;
use crate::oci::image::Image;
use crate::outcome::{Failure, Reason, Step};

/// A blob to push: what the steps name it, its digest and size, and its bytes.
pub(super) struct Blob {
    pub(super) subject: String,
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) body: BodySource,
}

impl Blob {
    /// Every blob of `image`, config first, each subject prefixed with `prefix`.
    pub(super) fn of_image(image: &Image, prefix: &str) -> Vec<Blob> {
        image
            .blobs()
            .into_iter()
            .map(|b| Blob {
                subject: format!("{prefix}{}", b.kind),
                body: blob_body(image, &b),
                digest: b.digest,
                size: b.size,
            })
            .collect()
    }
}

/// A manifest to PUT: where (a tag or its digest), what the steps name it, its bytes.
pub(super) struct ManifestPut<'m> {
    pub(super) step: Step,
    pub(super) reference: &'m str,
    pub(super) subject: String,
    pub(super) media_type: &'m str,
    pub(super) body: &'m bytes::Bytes,
    pub(super) digest: &'m Digest,
    /// What cleanup calls it.
    pub(super) label: &'m str,
}

impl Run<'_> {
    /// Pushes every blob, then the manifest. Stops at the first failure.
    pub(super) async fn push_image(&mut self, image: &Image, tag: &str) -> Result<(), Failure> {
        self.push_blobs(Blob::of_image(image, "")).await?;
        self.push_manifest(ManifestPut {
            step: Step::PushManifest,
            reference: tag,
            subject: tag.to_string(),
            media_type: image.manifest_type.manifest_media_type(),
            body: &image.manifest,
            digest: &image.manifest_digest,
            label: "manifest",
        })
        .await
        .map(|_| ())
    }

    /// Pushes each blob the registry does not hold yet, in the target's upload mode. Stops at
    /// the first failure.
    pub(super) async fn push_blobs(&mut self, blobs: Vec<Blob>) -> Result<(), Failure> {
        for blob in blobs {
            if self.check_blob(&blob).await? {
                continue;
            }
            if self.class.upload == UploadMode::Post {
                self.post_blob(&blob).await?;
                continue;
            }
            let min_chunk = self.start_upload(&blob).await?;
            self.upload_blob(&blob, min_chunk).await?;
        }
        Ok(())
    }

    /// HEAD the blob: a fresh random blob must be unknown (404); an existing one is not re-sent.
    async fn check_blob(&mut self, blob: &Blob) -> Result<bool, Failure> {
        let origin = self.origin();
        step!(
            self,
            Step::CheckBlob,
            origin,
            blob.subject.clone(),
            |call| async {
                let url = call.url(&format!("blobs/{}", blob.digest))?;
                let resp = call
                    .fetch(
                        &Request::new(Method::HEAD, url),
                        &[StatusCode::OK, StatusCode::NOT_FOUND],
                        Reason::BlobUnknown,
                    )
                    .await?;
                let exists = resp.status == StatusCode::OK;
                call.discard(resp).await?;
                Ok(exists)
            }
        )
    }

    /// POST /blobs/uploads/: 202 with the session's Location, which the run remembers (cleanup
    /// cancels it unless the upload completes). Returns the registry's minimum chunk size.
    async fn start_upload(&mut self, blob: &Blob) -> Result<u64, Failure> {
        let origin = self.origin();
        let (location, min_chunk) = step!(
            self,
            Step::StartUpload,
            origin,
            blob.subject.clone(),
            |call| async {
                let url = call.url("blobs/uploads/")?;
                let resp = call
                    .fetch_spec(
                        &Request::new(Method::POST, url),
                        StatusCode::ACCEPTED,
                        &[StatusCode::OK],
                        Reason::NameUnknown,
                    )
                    .await?;
                let location = resp.location()?;
                let min_chunk = chunk_min_length(resp.header(CHUNK_MIN_LENGTH));
                call.discard(resp).await?;
                Ok((location, min_chunk))
            }
        )?;
        self.sessions.push(Session {
            url: location,
            completed: false,
        });
        Ok(min_chunk)
    }

    /// Uploads one blob into the session just opened and checks the registry stored what was
    /// sent. Each PATCH answer moves the session to a new Location, which the session follows,
    /// so cleanup cancels the latest one.
    async fn upload_blob(&mut self, blob: &Blob, min_chunk: u64) -> Result<(), Failure> {
        let origin = self.origin();
        let at = self.sessions.len() - 1;
        let mut location = self.sessions[at].url.clone();
        let body = blob.body.clone();
        let mode = self.class.upload;
        let subject = format!("{} ({} bytes)", blob.subject, blob.size);
        let result = step!(self, Step::UploadBlob, origin, subject, |call| async {
            let put_body = match mode {
                UploadMode::Monolithic => body,
                UploadMode::Chunked { chunk_size } => {
                    let chunk = chunk_size.max(min_chunk);
                    upload_chunks(call, &mut location, &body, chunk).await?;
                    BodySource::Empty
                }
                UploadMode::Streamed | UploadMode::Post => {
                    upload_whole(call, &mut location, &body).await?;
                    BodySource::Empty
                }
            };
            close_upload(call, location.clone(), &blob.digest, put_body).await
        });
        let session = &mut self.sessions[at];
        session.url = location;
        if result.is_ok() {
            session.completed = true;
            self.uploaded.push(blob.digest.clone());
        }
        result
    }

    /// The OCI spec's single `POST /blobs/uploads/?digest=` carrying the whole blob: 201 with our
    /// digest. A registry that answers 202 opened an upload session instead (the spec allows
    /// it), which the same step completes as docker would: one PATCH, then the closing PUT.
    async fn post_blob(&mut self, blob: &Blob) -> Result<(), Failure> {
        let origin = self.origin();
        let body = blob.body.clone();
        let mut session = None;
        let subject = format!("{} ({} bytes)", blob.subject, blob.size);
        let result = step!(self, Step::UploadBlob, origin, subject, |call| async {
            let mut url = call.url("blobs/uploads/")?;
            url.query_pairs_mut()
                .append_pair("digest", blob.digest.as_str());
            // A registry that answers 202 opened a session and need not read this body (the
            // spec lets it ignore it); the connection is then in no state to carry another
            // request, so this one closes it. (container-registry 0.3.1 closes it without
            // saying so, and the next request on it would fail with a broken pipe.)
            let req = Request::new(Method::POST, url)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONNECTION, "close")
                .body(body.clone());
            let resp = call
                .fetch(
                    &req,
                    &[StatusCode::CREATED, StatusCode::ACCEPTED],
                    Reason::NameUnknown,
                )
                .await?;
            if resp.status == StatusCode::CREATED {
                verify::digest_header(&resp, &blob.digest)?;
                return call.discard(resp).await;
            }
            let mut location = resp.location()?;
            call.discard(resp).await?;
            session = Some(location.clone());
            let completed = async {
                upload_whole(call, &mut location, &body).await?;
                close_upload(call, location.clone(), &blob.digest, BodySource::Empty).await
            }
            .await;
            session = Some(location);
            completed
        });
        if let Some(url) = session {
            self.sessions.push(Session {
                url,
                completed: result.is_ok(),
            });
        }
        if result.is_ok() {
            self.uploaded.push(blob.digest.clone());
        }
        result
    }

    /// PUT a manifest (under the run's tag, or by digest): 201, and the registry's digest must
    /// be ours. Cleanup deletes it. Returns the answer's OCI-Subject, when it has one.
    pub(super) async fn push_manifest(
        &mut self,
        put: ManifestPut<'_>,
    ) -> Result<Option<String>, Failure> {
        let origin = self.origin();
        self.manifests_pushed.push(PushedManifest {
            digest: put.digest.clone(),
            stored: false,
            label: put.label.to_string(),
        });
        let ManifestPut {
            step,
            reference,
            subject,
            media_type,
            body,
            digest,
            ..
        } = put;
        let result = step!(self, step, origin, subject, |call| async {
            let url = call.url(&format!("manifests/{reference}"))?;
            let req = Request::new(Method::PUT, url)
                .header(header::CONTENT_TYPE, media_type)
                .body(BodySource::Bytes(body.clone()));
            put_created_saying(call, &req, Reason::ManifestBlobUnknown, digest, OCI_SUBJECT).await
        });
        if result.is_ok() {
            if let Some(m) = self.manifests_pushed.last_mut() {
                m.stored = true;
            }
            self.manifest_stored_at = Some(Instant::now());
        }
        result
    }
}
