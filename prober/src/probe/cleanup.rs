//! Cleanup, on the origin: cancel every upload session the run left open, take its artifact
//! out of the referrers tag it was added to, DELETE the manifests it pushed by digest (newest
//! first: an artifact, then the index, then the platform manifests) and the blobs it pushed. Cleanup steps have their own deadline, so they run even
//! after the run deadline; a failure is reported as a cleanup failure, never hidden. A registry
//! that refuses DELETE (405, UNSUPPORTED, DENIED, or an HTML 404 for what the run just pushed:
//! DELETE is not routed) is said to, as `unsupported`, never as lost content; what it keeps is
//! counted as left behind, and the run stops asking.

use http::{Method, StatusCode};

use super::content::Content;
use super::run::step;
use super::run::Run;
use crate::http::{redact_url, Request};
use crate::oci::digest::Digest;
use crate::outcome::{Failure, LeftBehind, Reason, Step};

impl Run<'_> {
    /// Undoes everything the run created; what a registry that refuses DELETE keeps, or what
    /// cleanup does not delete by configuration, is counted as left behind.
    pub(super) async fn cleanup(&mut self, content: &Content) {
        self.cleaning = true;
        self.cancel_open_sessions().await;
        if !self.target().cleanup.deletes() {
            self.leave(content, self.stored_manifests(), &self.uploaded.clone());
            return;
        }
        if let Some(pushed) = self.artifact.clone() {
            self.unlist_artifact(&pushed, "").await;
        }
        let deletes_blobs = self.target().cleanup.deletes_blobs();
        if let (Some(digest), Some(repo)) = (self.mounted.clone(), self.target().mount.clone()) {
            if deletes_blobs {
                let subject = format!("mounted blob in {repo}");
                let rest = format!("blobs/{digest}");
                if refused(
                    &self
                        .delete(Step::DeleteBlob, &subject, Some(&repo), &rest, false)
                        .await,
                ) {
                    self.leave(content, self.stored_manifests(), &self.uploaded.clone());
                    return;
                }
            }
        }
        // Manifests go first: distribution refuses nothing here, but a registry that
        // garbage-collects would otherwise still see the blobs referenced. Newest first, so
        // nothing is deleted while a manifest still names it (an index its platforms, an
        // artifact its subject).
        let manifests: Vec<_> = self.manifests_pushed.iter().rev().cloned().collect();
        for (i, m) in manifests.iter().enumerate() {
            let rest = format!("manifests/{}", m.digest);
            let result = self
                .delete(Step::DeleteManifest, &m.label, None, &rest, !m.stored)
                .await;
            if refused(&result) {
                let left = manifests[i..].iter().filter(|m| m.stored).count() as u32;
                self.leave(content, left, &self.uploaded.clone());
                return;
            }
        }
        let uploaded: Vec<Digest> = self.uploaded.clone();
        if !deletes_blobs {
            self.leave(content, 0, &uploaded);
            return;
        }
        for (i, digest) in uploaded.iter().enumerate() {
            let label = content
                .blob(digest)
                .map(|(label, _)| label)
                .unwrap_or_else(|| digest.to_string());
            let result = self
                .delete(
                    Step::DeleteBlob,
                    &label,
                    None,
                    &format!("blobs/{digest}"),
                    false,
                )
                .await;
            if refused(&result) {
                self.leave(content, 0, &uploaded[i..]);
                return;
            }
        }
    }

    /// The manifests the registry stored for this run.
    fn stored_manifests(&self) -> u32 {
        self.manifests_pushed.iter().filter(|m| m.stored).count() as u32
    }

    /// Records `manifests` and the bytes of `blobs` (of this run's content) as left on the
    /// registry: for its lifecycle policy or garbage collection, not for a later sweep.
    fn leave(&mut self, content: &Content, manifests: u32, blobs: &[Digest]) {
        self.add_left_behind(manifests, content.bytes_of(blobs));
    }

    /// Adds to what the run leaves on the registry knowingly.
    pub(super) fn add_left_behind(&mut self, manifests: u32, bytes: u64) {
        if manifests == 0 && bytes == 0 {
            return;
        }
        let left = self.left_behind.get_or_insert(LeftBehind {
            manifests: 0,
            bytes: 0,
        });
        left.manifests += manifests;
        left.bytes += bytes;
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
                .map_err(|f| refusal(f, !gone_ok))?;
            call.discard(resp).await
        })
    }
}

/// A DELETE the registry refused, rather than one that found nothing: 405 or UNSUPPORTED (the
/// spec's answers), DENIED (not allowed to delete here), or, for something known to be there
/// (`present`: the run stored it), a 404 without the registry's error envelope: no DELETE route,
/// which a registry that lost the content would have answered with MANIFEST_UNKNOWN or
/// BLOB_UNKNOWN.
fn refusal(mut f: Failure, present: bool) -> Failure {
    let not_routed = present && f.status == Some(404) && f.registry_code.is_none();
    let denied = f.registry_code.as_deref() == Some("DENIED");
    if f.reason == Reason::Unsupported || denied || not_routed {
        f.reason = Reason::Unsupported;
        f.message.push_str(
            " (the registry does not allow DELETE through its API: set cleanup.mode: rotate and a lifecycle policy that expires untagged images, see docs/registries.md; on Distribution, storage.delete.enabled)",
        );
    }
    f
}

/// Whether a cleanup step found the registry refusing DELETE.
fn refused(result: &Result<(), Failure>) -> bool {
    result
        .as_ref()
        .is_err_and(|f| f.reason == Reason::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, code: Option<&str>, reason: Reason) -> Failure {
        Failure {
            reason,
            message: "DELETE u: got ...".into(),
            status: Some(status),
            registry_code: code.map(str::to_string),
        }
    }

    #[test]
    fn a_refused_delete_is_unsupported_and_says_what_to_do() {
        for f in [
            failure(405, None, Reason::Unsupported),
            failure(405, Some("UNSUPPORTED"), Reason::Unsupported),
            failure(403, Some("DENIED"), Reason::Auth),
            failure(404, None, Reason::ManifestUnknown),
        ] {
            let f = refusal(f, true);
            assert_eq!(f.reason, Reason::Unsupported);
            assert!(
                f.message.contains("set cleanup.mode: rotate"),
                "{}",
                f.message
            );
        }
    }

    #[test]
    fn a_404_with_the_registry_envelope_is_lost_content_not_a_refusal() {
        let f = refusal(
            failure(404, Some("MANIFEST_UNKNOWN"), Reason::ManifestUnknown),
            true,
        );
        assert_eq!(f.reason, Reason::ManifestUnknown);
        let f = refusal(
            failure(404, Some("BLOB_UNKNOWN"), Reason::BlobUnknown),
            true,
        );
        assert_eq!(f.reason, Reason::BlobUnknown);
        // Something the run never stored may just not be there.
        let f = refusal(failure(404, None, Reason::ManifestUnknown), false);
        assert_eq!(f.reason, Reason::ManifestUnknown);
    }
}
