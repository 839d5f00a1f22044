//! Cleanup: cancel every upload session the run left open, DELETE the manifest by digest and
//! the blobs it pushed. Each cleanup step has its own deadline, so it runs even after the run
//! deadline; a failure is reported as a cleanup failure, never hidden.

use http::{Method, StatusCode};

use super::{cleanup_deadline, Run};
use crate::http::Request;
use crate::oci::digest::Digest;
use crate::oci::image::Image;
use crate::outcome::{Failure, Reason, Step};

impl Run<'_> {
    /// Undoes everything the run created.
    pub(super) async fn cleanup(&mut self, image: &Image) {
        self.cancel_open_sessions().await;
        if let (Some(digest), Some(repo)) = (self.mounted.clone(), self.target().mount.clone()) {
            if self.target().cleanup.delete_blobs {
                let _ = self
                    .delete_in(
                        Step::DeleteBlob,
                        &format!("mounted blob in {repo}"),
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
            let _ = self
                .delete_in(
                    Step::DeleteManifest,
                    "manifest",
                    None,
                    &format!("manifests/{}", m.digest),
                    !m.stored,
                )
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
                    .delete_in(
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
        let open: Vec<usize> = (0..self.sessions.len())
            .filter(|&i| !self.sessions[i].completed)
            .collect();
        for i in open {
            let url = self.sessions[i].url.clone();
            let p = self.prober;
            let c = self.client();
            let deadline = cleanup_deadline(p.target.cleanup_timeout);
            let subject = crate::http::redact_url(&url);
            let result = self
                .step_until(
                    Step::CancelUpload,
                    subject,
                    deadline,
                    |deadline, mut tr| async move {
                        let r = async {
                            let resp = c
                                .send(
                                    &Request::new(Method::DELETE, url.clone()),
                                    deadline,
                                    &mut tr,
                                )
                                .await?;
                            if matches!(
                                resp.status,
                                StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED
                            ) {
                                return c.discard(resp, deadline, &mut tr).await;
                            }
                            let failure = c
                                .expect(
                                    resp,
                                    &[StatusCode::NO_CONTENT],
                                    Reason::BlobUploadUnknown,
                                    deadline,
                                    &mut tr,
                                )
                                .await
                                .err()
                                .unwrap_or_else(|| {
                                    Failure::new(Reason::Protocol, "unexpected answer")
                                });
                            // Distribution answers a DELETE whose _state is stale (the upload broke
                            // mid-body) with 400 BLOB_UPLOAD_INVALID yet cancels the session anyway.
                            // Ask the session itself: 404 means it is gone, which is all we want.
                            let status = c
                                .send(&Request::new(Method::GET, url), deadline, &mut tr)
                                .await?;
                            let gone = status.status == StatusCode::NOT_FOUND;
                            c.discard(status, deadline, &mut tr).await?;
                            if gone {
                                Ok(())
                            } else {
                                Err(failure)
                            }
                        }
                        .await;
                        (r, tr)
                    },
                )
                .await;
            if result.is_ok() {
                self.sessions[i].completed = true;
            }
        }
    }

    /// DELETE `<repository or the endpoint's>/<rest>` under a cleanup deadline; `gone_ok`: a
    /// 404 means it is already gone, which is all we want.
    pub(super) async fn delete_in(
        &mut self,
        step: Step,
        subject: &str,
        repository: Option<&str>,
        rest: &str,
        gone_ok: bool,
    ) -> Result<(), Failure> {
        let p = self.prober;
        let c = self.client();
        let url = match repository {
            Some(repo) => c.repo_url(repo, rest)?,
            None => c.url(rest)?,
        };
        let not_found = if rest.starts_with("manifests/") {
            Reason::ManifestUnknown
        } else {
            Reason::BlobUnknown
        };
        let deadline = cleanup_deadline(p.target.cleanup_timeout);
        self.step_until(step, subject.to_string(), deadline, |deadline, mut tr| async move {
            let r = async {
                let resp = c.send(&Request::new(Method::DELETE, url), deadline, &mut tr).await?;
                let mut ok = vec![StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT];
                if gone_ok {
                    ok.push(StatusCode::NOT_FOUND);
                }
                let resp = c.expect(resp, &ok, not_found, deadline, &mut tr).await.map_err(|mut f| {
                    if f.reason == Reason::Unsupported {
                        f.message.push_str(
                            " (the registry does not allow deletes: enable them, e.g. storage.delete.enabled, or set cleanup.delete_blobs: false)",
                        );
                    }
                    f
                })?;
                c.discard(resp, deadline, &mut tr).await
            }
            .await;
            (r, tr)
        })
        .await
    }
}
