//! What a crashed run left besides its tag, for the hygiene sweep: the platform manifests of a
//! leftover index, and the artifacts of the prober's type about a leftover manifest (found
//! through the referrers API, else the referrers tag, which loses only their entries).

use http::header;
use http::{Method, StatusCode};

use super::artifact::PushedArtifact;
use super::index::children_of;
use super::pull::Manifest;
use super::run::step;
use super::run::Run;
use crate::http::{Request, MANIFEST_BODY};
use crate::oci::artifact::empty_digest;
use crate::oci::digest::Digest;
use crate::oci::index::Entry;
use crate::oci::manifest::Named;
use crate::oci::referrers::{self, fallback_tag, INDEX_MEDIA_TYPE};
use crate::outcome::{Failure, Reason, Step};

impl Run<'_> {
    /// The blobs of a leftover manifest: its own, or for an index, those of each platform
    /// manifest, which are deleted on the way.
    pub(super) async fn leftover_blobs(&mut self, manifest: &Manifest, label: &str) -> Vec<Named> {
        let children = children_of(manifest);
        if children.is_empty() {
            return manifest.blobs("").unwrap_or_default();
        }
        let origin = self.origin();
        let repo = origin.client.repository();
        let mut blobs = Vec::new();
        for child in children {
            let subject = format!("{label} > {child}");
            let Ok(pulled) = self
                .pull_manifest(
                    origin,
                    Step::DeleteManifest,
                    subject.clone(),
                    repo,
                    child.as_str(),
                    Some((&child, 0)),
                )
                .await
            else {
                continue;
            };
            let rest = format!("manifests/{child}");
            if self
                .delete(Step::DeleteManifest, &subject, None, &rest, true)
                .await
                .is_ok()
            {
                blobs.extend(pulled.blobs("").unwrap_or_default());
            }
        }
        blobs
    }

    /// Deletes the artifacts of the target's artifact type about `subject` (a leftover
    /// manifest), with their payloads when cleanup deletes blobs.
    pub(super) async fn sweep_referrers(&mut self, subject: &Digest, label: &str) {
        let Some(artifact_type) = self
            .target()
            .artifact
            .as_ref()
            .map(|a| a.artifact_type.clone())
        else {
            return;
        };
        let (listed, in_tag) = match self.leftover_referrers(subject, label, false).await {
            Ok(Some(listed)) => (listed, false),
            Ok(None) => match self.leftover_referrers(subject, label, true).await {
                Ok(Some(listed)) => (listed, true),
                _ => return,
            },
            Err(_) => return,
        };
        let origin = self.origin();
        let repo = origin.client.repository();
        let empty = empty_digest();
        let ours = listed
            .into_iter()
            .filter(|e| e.artifact_type.as_deref() == Some(artifact_type.as_str()));
        for entry in ours {
            let what = format!("{label}: artifact {}", entry.digest);
            if in_tag {
                let pushed = PushedArtifact {
                    digest: entry.digest.clone(),
                    subject: subject.clone(),
                    indexed: false,
                };
                self.unlist_artifact(&pushed, &format!("{label}: ")).await;
            }
            let Ok(manifest) = self
                .pull_manifest(
                    origin,
                    Step::DeleteManifest,
                    what.clone(),
                    repo,
                    entry.digest.as_str(),
                    Some((&entry.digest, entry.size)),
                )
                .await
            else {
                continue;
            };
            let rest = format!("manifests/{}", entry.digest);
            let deleted = self.delete(Step::DeleteManifest, &what, None, &rest, true);
            if deleted.await.is_err() || !self.target().cleanup.deletes_blobs() {
                continue;
            }
            for blob in manifest.blobs("").unwrap_or_default() {
                // The empty config is every artifact's: kept.
                if blob.digest != empty {
                    let rest = format!("blobs/{}", blob.digest);
                    let _ = self
                        .delete(Step::DeleteBlob, &what, None, &rest, true)
                        .await;
                }
            }
        }
    }

    /// The referrers of `subject` through the referrers API (None: the registry has none), or
    /// with `tag`, the referrers tag (None: there is none).
    async fn leftover_referrers(
        &mut self,
        subject: &Digest,
        label: &str,
        tag: bool,
    ) -> Result<Option<Vec<Entry>>, Failure> {
        let origin = self.origin();
        let (step, rest) = if tag {
            (
                Step::PullReferrersTag,
                format!("manifests/{}", fallback_tag(subject)),
            )
        } else {
            (Step::ListReferrers, format!("referrers/{subject}"))
        };
        step!(self, step, origin, label, |call| async {
            let req = Request::new(Method::GET, call.url(&rest)?)
                .header(header::ACCEPT, INDEX_MEDIA_TYPE);
            let resp = call.send(&req).await?;
            if resp.status == StatusCode::NOT_FOUND {
                call.discard(resp).await?;
                return Ok(None);
            }
            let resp = call
                .expect(resp, &[StatusCode::OK], Reason::ManifestUnknown)
                .await?;
            let what = format!("{} {}", resp.method, resp.url);
            let content_type = resp
                .header(header::CONTENT_TYPE)
                .unwrap_or_default()
                .to_string();
            let body = call.read_body(resp, MANIFEST_BODY).await?;
            referrers::parse(&body, &content_type, &what)
                .map(Some)
                .map_err(|e| Failure::new(Reason::Protocol, e.0))
        })
    }
}
