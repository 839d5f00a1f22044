//! The push path: HEAD each blob, open an upload session, upload it (monolithic PUT or chunked
//! PATCH + PUT), then PUT the manifest under a unique tag.

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::{Run, Session};
use crate::config::UploadMode;
use crate::http::{BodySource, Client, Request, Transcript};
use crate::oci::digest::Digest;
use crate::oci::image::{BlobRef, Image};
use crate::outcome::{Failure, Reason, Step};

/// Registries may require a minimum chunk size (OCI-Chunk-Min-Length on the POST answer).
const CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";

impl Run<'_> {
    /// Pushes every blob, then the manifest. Stops at the first failure.
    pub(super) async fn push_image(&mut self, image: &Image, tag: &str) -> Result<(), Failure> {
        for blob in image.blobs() {
            let exists = self.check_blob(&blob).await?;
            if exists {
                continue;
            }
            let session = self.start_upload(&blob).await?;
            self.upload_blob(image, &blob, session).await?;
        }
        self.push_manifest(image, tag).await
    }

    /// HEAD the blob: a fresh random blob must be unknown (404); an existing one is not re-sent.
    async fn check_blob(&mut self, blob: &BlobRef) -> Result<bool, Failure> {
        let c = self.client();
        let url = c.url(&format!("blobs/{}", blob.digest))?;
        self.step(
            Step::CheckBlob,
            blob.kind.to_string(),
            |deadline, mut tr| async move {
                let r = async {
                    let resp = c
                        .send(&Request::new(Method::HEAD, url), deadline, &mut tr)
                        .await?;
                    let resp = c
                        .expect(
                            resp,
                            &[StatusCode::OK, StatusCode::NOT_FOUND],
                            Reason::BlobUnknown,
                            deadline,
                            &mut tr,
                        )
                        .await?;
                    let exists = resp.status == StatusCode::OK;
                    c.discard(resp, deadline, &mut tr).await?;
                    Ok(exists)
                }
                .await;
                (r, tr)
            },
        )
        .await
    }

    /// POST /blobs/uploads/: 202 with the session's Location.
    async fn start_upload(&mut self, blob: &BlobRef) -> Result<(Url, u64), Failure> {
        let c = self.client();
        let url = c.url("blobs/uploads/")?;
        let result = self
            .step(
                Step::StartUpload,
                blob.kind.to_string(),
                |deadline, mut tr| async move {
                    let r = async {
                        let resp = c
                            .send(&Request::new(Method::POST, url), deadline, &mut tr)
                            .await?;
                        let resp = c
                            .expect(
                                resp,
                                &[StatusCode::ACCEPTED],
                                Reason::NameUnknown,
                                deadline,
                                &mut tr,
                            )
                            .await?;
                        let location = c.resolve_location(&resp)?;
                        let min_chunk = chunk_min_length(resp.headers.get(CHUNK_MIN_LENGTH));
                        c.discard(resp, deadline, &mut tr).await?;
                        Ok((location, min_chunk))
                    }
                    .await;
                    (r, tr)
                },
            )
            .await?;
        self.sessions.push(Session {
            url: result.0.clone(),
            completed: false,
        });
        Ok(result)
    }

    /// Uploads one blob into an open session and checks the registry stored what we sent.
    async fn upload_blob(
        &mut self,
        image: &Image,
        blob: &BlobRef,
        session: (Url, u64),
    ) -> Result<(), Failure> {
        let c = self.client();
        let (location, min_chunk) = session;
        let body = blob_body(image, blob);
        let mode = self.class.upload;
        let digest = blob.digest.clone();
        let size = blob.size;
        let session_index = self.sessions.len() - 1;
        let subject = format!("{} ({} bytes)", blob.kind, size);
        // Each PATCH answer moves the session to a new Location; cleanup must cancel the latest.
        let latest = std::sync::Mutex::new(location.clone());
        let latest_ref = &latest;
        let result = self
            .step(Step::UploadBlob, subject, |deadline, mut tr| async move {
                let r = async {
                    let put_url = match mode {
                        UploadMode::Monolithic => location,
                        UploadMode::Chunked { chunk_size } => {
                            let chunk = chunk_size.max(min_chunk);
                            upload_chunks(c, location, &body, chunk, latest_ref, deadline, &mut tr)
                                .await?
                        }
                    };
                    let put_body = match mode {
                        UploadMode::Monolithic => body,
                        UploadMode::Chunked { .. } => BodySource::Empty,
                    };
                    close_upload(c, put_url, &digest, put_body, deadline, &mut tr).await
                }
                .await;
                (r, tr)
            })
            .await;
        let session = &mut self.sessions[session_index];
        session.url = latest
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if result.is_ok() {
            session.completed = true;
            self.uploaded.push(blob.digest.clone());
        }
        result
    }

    /// PUT the manifest under the run's tag: 201, and the registry's digest must be ours.
    async fn push_manifest(&mut self, image: &Image, tag: &str) -> Result<(), Failure> {
        let c = self.client();
        let url = c.url(&format!("manifests/{tag}"))?;
        self.manifests_pushed.push(super::PushedManifest {
            digest: image.manifest_digest.clone(),
            stored: false,
        });
        let req = Request::new(Method::PUT, url)
            .header(
                header::CONTENT_TYPE,
                image.manifest_type.manifest_media_type(),
            )
            .body(BodySource::Bytes(image.manifest.clone()));
        let digest = image.manifest_digest.clone();
        let result = self
            .step(
                Step::PushManifest,
                tag.to_string(),
                |deadline, mut tr| async move {
                    let r = async {
                        put_created(
                            c,
                            &req,
                            Reason::ManifestBlobUnknown,
                            &digest,
                            deadline,
                            &mut tr,
                        )
                        .await
                    }
                    .await;
                    (r, tr)
                },
            )
            .await;
        if result.is_ok() {
            if let Some(m) = self.manifests_pushed.last_mut() {
                m.stored = true;
            }
            self.manifest_stored_at = Some(Instant::now());
        }
        result
    }
}

/// What to send for a blob: the config bytes, or a layer regenerated from its seed.
pub(super) fn blob_body(image: &Image, blob: &BlobRef) -> BodySource {
    match blob.kind {
        crate::oci::image::BlobKind::Config => BodySource::Bytes(image.config.clone()),
        crate::oci::image::BlobKind::Layer(i) => {
            let layer = image.layers[i].clone();
            let size = layer.size;
            BodySource::Layer {
                layer,
                range: 0..size,
            }
        }
    }
}

/// PATCH the blob in chunks; each 202 answer carries the Location for the next request and the
/// Range the registry holds so far, which must be exactly what we sent.
async fn upload_chunks(
    client: &Client,
    mut location: Url,
    body: &BodySource,
    chunk: u64,
    latest: &std::sync::Mutex<Url>,
    deadline: Instant,
    tr: &mut Transcript,
) -> Result<Url, Failure> {
    let size = body.len();
    let mut offset = 0;
    while offset < size {
        let end = (offset + chunk).min(size);
        let part = match body {
            BodySource::Layer { layer, .. } => BodySource::Layer {
                layer: layer.clone(),
                range: offset..end,
            },
            BodySource::Bytes(b) => BodySource::Bytes(b.slice(offset as usize..end as usize)),
            BodySource::Empty => BodySource::Empty,
        };
        let req = Request::new(Method::PATCH, location)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, &format!("{}-{}", offset, end - 1))
            .body(part);
        let resp = client.send(&req, deadline, tr).await?;
        let resp = client
            .expect(
                resp,
                &[StatusCode::ACCEPTED],
                Reason::BlobUploadUnknown,
                deadline,
                tr,
            )
            .await?;
        if let Some(range) = resp
            .headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
        {
            let want = format!("0-{}", end - 1);
            if range != want {
                return Err(Failure::new(
                    Reason::Protocol,
                    format!(
                        "{} {}: registry holds Range {range} after this chunk, expected {want}",
                        resp.method, resp.url
                    ),
                ));
            }
        }
        location = client.resolve_location(&resp)?;
        if let Ok(mut l) = latest.lock() {
            l.clone_from(&location);
        }
        client.discard(resp, deadline, tr).await?;
        offset = end;
    }
    Ok(location)
}

/// The closing PUT of a blob or the manifest PUT: 201 Created, and the registry's
/// Docker-Content-Digest (when sent) must name what we pushed.
/// Closes an upload session: `PUT <location>?digest=<digest>` with the rest of the blob
/// (all of it for a monolithic upload, nothing after chunks), answered 201 with our digest.
pub(super) async fn close_upload(
    client: &Client,
    mut location: Url,
    digest: &Digest,
    body: BodySource,
    deadline: Instant,
    tr: &mut Transcript,
) -> Result<(), Failure> {
    location
        .query_pairs_mut()
        .append_pair("digest", digest.as_str());
    let req = Request::new(Method::PUT, location)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
    put_created(
        client,
        &req,
        Reason::BlobUploadUnknown,
        digest,
        deadline,
        tr,
    )
    .await
}

pub(super) async fn put_created(
    client: &Client,
    req: &Request,
    not_found: Reason,
    digest: &Digest,
    deadline: Instant,
    tr: &mut Transcript,
) -> Result<(), Failure> {
    let resp = client.send(req, deadline, tr).await?;
    let resp = client
        .expect(resp, &[StatusCode::CREATED], not_found, deadline, tr)
        .await?;
    check_digest_header(&resp, digest)?;
    client.discard(resp, deadline, tr).await
}

fn chunk_min_length(value: Option<&HeaderValue>) -> u64 {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Docker-Content-Digest, when sent, must name what we pushed.
pub(super) fn check_digest_header(
    resp: &crate::http::Response,
    expected: &Digest,
) -> Result<(), Failure> {
    let Some(value) = resp.headers.get("docker-content-digest") else {
        return Ok(());
    };
    let got = value.to_str().unwrap_or("<not text>");
    if got != expected.as_str() {
        return Err(Failure::new(
            Reason::DigestMismatch,
            format!(
                "{} {}: Docker-Content-Digest is {got}, expected {expected}",
                resp.method, resp.url
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_chunk_minimum_and_ignores_garbage() {
        assert_eq!(
            chunk_min_length(Some(&HeaderValue::from_static("5242880"))),
            5_242_880
        );
        assert_eq!(chunk_min_length(Some(&HeaderValue::from_static("lots"))), 0);
        assert_eq!(chunk_min_length(None), 0);
    }
}
