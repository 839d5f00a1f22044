//! Cleanup, on the origin: cancel every upload session the run left open, DELETE the manifest
//! by digest and the blobs it pushed. Cleanup steps have their own deadline, so they run even
//! after the run deadline; a failure is reported as a cleanup failure, never hidden.

use http::{Method, StatusCode};

use super::run::step;
use super::run::Run;
use crate::http::{redact_url, Request};
use crate::oci::digest::Digest;
use crate::oci::image::Image;
use crate::outcome::{Failure, Reason, Step};

impl Run<'_> {
    /// Undoes everything the run created.
    pub(super) async fn cleanup(&mut self, image: &Image) {
        self.cancel_open_sessions().await;
        if let (Some(digest), Some(repo)) = (self.mounted.clone(), self.target().mount.clone()) {
            if self.target().cleanup.delete_blobs {
                let subject = format!("mounted blob in {repo}");
                let _ = self
                    .delete(
                        Step::DeleteBlob,
                        &subject,
                        Some(&repo),
                        &format!("blobs/{digest}"),
                        false,
                    )
                    .await;
            }
        }
        // Manifests go first: distribution refuses nothing here, but a registry that
        // garbage-collects would otherwise still see the blobs referenced.
        for m in self.manifests_pushed.clone() {
            let rest = format!("manifests/{}", m.digest);
            let _ = self
                .delete(Step::DeleteManifest, "manifest", None, &rest, !m.stored)
                .await;
        }
        if self.target().cleanup.delete_blobs {
            let uploaded: Vec<Digest> = self.uploaded.clone();
            for digest in uploaded {
                let label = image
                    .blobs()
                    .into_iter()
                    .find(|b| b.digest == digest)
                    .map(|b| b.kind.to_string())
                    .unwrap_or_else(|| digest.to_string());
                let _ = self
                    .delete(
                        Step::DeleteBlob,
                        &label,
                        None,
                        &format!("blobs/{digest}"),
                        false,
                    )
                    .await;
            }
        }
    }

    /// Cancels upload sessions that never completed (a failed or cut-off upload).
    pub(super) async fn cancel_open_sessions(&mut self) {
        let origin = self.origin();
        for i in 0..self.sessions.len() {
            if self.sessions[i].completed {
                continue;
            }
            let url = self.sessions[i].url.clone();
            let subject = redact_url(&url);
            let result = step!(self, Step::CancelUpload, origin, subject, |call| async {
                let resp = call
                    .send(&Request::new(Method::DELETE, url.clone()))
                    .await?;
                if matches!(
                    resp.status,
                    StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED
                ) {
                    return call.discard(resp).await;
                }
                let failure = call
                    .expect(resp, &[StatusCode::NO_CONTENT], Reason::BlobUploadUnknown)
                    .await
                    .err()
                    .unwrap_or_else(|| Failure::new(Reason::Protocol, "unexpected answer"));
                // Distribution answers a DELETE whose _state is stale (the upload broke
                // mid-body) with 400 BLOB_UPLOAD_INVALID yet cancels the session anyway. Ask
                // the session itself: 404 means it is gone, which is all we want.
                let status = call.send(&Request::new(Method::GET, url)).await?;
                let gone = status.status == StatusCode::NOT_FOUND;
                call.discard(status).await?;
                if gone {
                    Ok(())
                } else {
                    Err(failure)
                }
            });
            if result.is_ok() {
                self.sessions[i].completed = true;
            }
        }
    }

    /// DELETE `<repository, or the origin's>/<rest>`; `gone_ok`: a 404 means it is already
    /// gone, which is all we want.
    pub(super) async fn delete(
        &mut self,
        step: Step,
        subject: &str,
        repository: Option<&str>,
        rest: &str,
        gone_ok: bool,
    ) -> Result<(), Failure> {
        let origin = self.origin();
        let not_found = if rest.starts_with("manifests/") {
            Reason::ManifestUnknown
        } else {
            Reason::BlobUnknown
        };
        step!(self, step, origin, subject, |call| async {
            let url = match repository {
                Some(repo) => call.repo_url(repo, rest)?,
                None => call.url(rest)?,
            };
            let mut ok = vec![StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT];
            if gone_ok {
                ok.push(StatusCode::NOT_FOUND);
            }
            let resp = call
                .fetch(&Request::new(Method::DELETE, url), &ok, not_found)
                .await
                .map_err(|mut f| {
                    if f.reason == Reason::Unsupported {
                        f.message.push_str(
                            " (the registry does not allow deletes: enable them, e.g. storage.delete.enabled, or set cleanup.delete_blobs: false)",
                        );
                    }
                    f
                })?;
            call.discard(resp).await
        })
    }
}
