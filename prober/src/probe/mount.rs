//! Cross-repository blob mount: `POST /v2/<other>/blobs/uploads/?mount=<digest>&from=<repo>`.
//! 201 means the registry linked the blob without an upload. 202 is the spec's fallback: the
//! registry opened an upload session instead, and a client then uploads the blob into it, which
//! the run does, so the mount repository holds the blob either way.

use http::{Method, StatusCode};

use super::push::{blob_body, check_digest_header, close_upload};
use super::{Run, Session};
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
        let c = self.client();
        let mut url = c.repo_url(&mount_repo, "blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", blob.digest.as_str())
            .append_pair("from", c.repository());
        let body = blob_body(image, &blob);
        let digest = blob.digest.clone();
        let opened = std::sync::Mutex::new(None);
        let opened_ref = &opened;
        let subject = format!("{} into {mount_repo}", blob.kind);
        let result = self
            .step(Step::MountBlob, subject, |deadline, mut tr| async move {
                let r = async {
                    let resp = c
                        .send(&Request::new(Method::POST, url), deadline, &mut tr)
                        .await?;
                    match resp.status {
                        StatusCode::CREATED => {
                            check_digest_header(&resp, &digest)?;
                            c.discard(resp, deadline, &mut tr).await?;
                            Ok(MountOutcome::Mounted)
                        }
                        StatusCode::ACCEPTED => {
                            let location = c.resolve_location(&resp)?;
                            c.discard(resp, deadline, &mut tr).await?;
                            if let Ok(mut o) = opened_ref.lock() {
                                *o = Some(location.clone());
                            }
                            close_upload(c, location, &digest, body, deadline, &mut tr).await?;
                            Ok(MountOutcome::Fallback)
                        }
                        _ => {
                            let f = c
                                .expect(
                                    resp,
                                    &[StatusCode::CREATED, StatusCode::ACCEPTED],
                                    Reason::BlobUnknown,
                                    deadline,
                                    &mut tr,
                                )
                                .await
                                .err()
                                .unwrap_or_else(|| {
                                    Failure::new(Reason::Protocol, "unexpected answer to a mount")
                                });
                            Err(f)
                        }
                    }
                }
                .await;
                (r, tr)
            })
            .await;
        if let Some(url) = opened.into_inner().ok().flatten() {
            self.sessions.push(Session {
                url,
                completed: result.is_ok(),
            });
        }
        match result {
            Ok(outcome) => {
                self.mount = Some(outcome);
                self.mounted = Some(blob.digest);
                Ok(())
            }
            Err(f) => Err(f),
        }
    }
}
