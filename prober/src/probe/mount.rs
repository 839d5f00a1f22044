//! Cross-repository blob mount: `POST /v2/<other>/blobs/uploads/?mount=<digest>&from=<repo>`.
//! 201 means the registry linked the blob without an upload. 202 is the spec's fallback: the
//! registry opened an upload session instead, and a client then uploads the blob into it, which
//! the run does, so the mount repository holds the blob either way.

use http::{Method, StatusCode};

use super::run::step;
use super::run::{Run, Session};
use super::upload::{blob_body, close_upload};
use super::verify;
use crate::http::Request;
use crate::oci::image::Image;
use crate::outcome::{Failure, MountOutcome, Reason, Step};

impl Run<'_> {
    /// Mounts the image's first layer (its config when it has none) into the mount repository.
    pub(super) async fn mount_blob(&mut self, image: &Image) -> Result<(), Failure> {
        let Some(mount_repo) = self.target().mount.clone() else {
            return Ok(());
        };
        let blobs = image.blobs();
        let Some(blob) = blobs.get(1).or(blobs.first()).cloned() else {
            return Ok(());
        };
        let origin = self.origin();
        let from = origin.client.repository();
        let body = blob_body(image, &blob);
        // The session a 202 opened, which cleanup cancels if the fallback upload fails.
        let mut opened = None;
        let subject = format!("{} into {mount_repo}", blob.kind);
        let result = step!(self, Step::MountBlob, origin, subject, |call| async {
            let mut url = call.repo_url(&mount_repo, "blobs/uploads/")?;
            url.query_pairs_mut()
                .append_pair("mount", blob.digest.as_str())
                .append_pair("from", from);
            let resp = call.send(&Request::new(Method::POST, url)).await?;
            match resp.status {
                StatusCode::CREATED => {
                    verify::digest_header(&resp, &blob.digest)?;
                    call.discard(resp).await?;
                    Ok(MountOutcome::Mounted)
                }
                StatusCode::ACCEPTED => {
                    let location = resp.location()?;
                    call.discard(resp).await?;
                    opened = Some(location.clone());
                    close_upload(call, location, &blob.digest, body).await?;
                    Ok(MountOutcome::Fallback)
                }
                _ => Err(call
                    .expect(
                        resp,
                        &[StatusCode::CREATED, StatusCode::ACCEPTED],
                        Reason::BlobUnknown,
                    )
                    .await
                    .err()
                    .unwrap_or_else(|| {
                        Failure::new(Reason::Protocol, "unexpected answer to a mount")
                    })),
            }
        });
        if let Some(url) = opened {
            self.sessions.push(Session::new(url, result.is_ok()));
        }
        let outcome = result?;
        self.mount = Some(outcome);
        self.mounted = Some(blob.digest);
        Ok(())
    }
}
