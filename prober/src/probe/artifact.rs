//! Artifacts on the origin: push one (its blobs, then its manifest by digest), and where the
//! registry does not say it indexed the subject (no OCI-Subject on the answer), keep the
//! referrers tag `sha256-<hex>` up to date as oras and regclient do: add the artifact's entry
//! to the index under it, keeping every other client's, and delete the index it replaced.
//! Cleanup takes the entry out again the same way, and deletes the index once it is empty.

use http::header;
use http::{Method, StatusCode};
use oci_spec::image::Descriptor;

use super::content::artifact_blobs;
use super::push::ManifestPut;
use super::run::step;
use super::run::Run;
use super::upload::put_created;
use super::verify;
use crate::http::{BodySource, Request, MANIFEST_BODY};
use crate::oci::artifact::{empty_digest, Artifact, ARTIFACT_MANIFEST_MEDIA_TYPE};
use crate::oci::digest::Digest;
use crate::oci::referrers::{self, fallback_tag, INDEX_MEDIA_TYPE};
use crate::outcome::{Failure, Reason, Step};

/// An artifact the registry holds, and how its subject knows of it.
#[derive(Clone, Debug)]
pub(super) struct PushedArtifact {
    pub(super) digest: Digest,
    pub(super) subject: Digest,
    /// The registry answered the push with OCI-Subject: it lists the artifact in its
    /// referrers API. Otherwise the prober added it to the referrers tag.
    pub(super) indexed: bool,
}

/// What to do to a referrers tag's index.
pub(super) enum Edit<'e> {
    Add(&'e Descriptor),
    Remove(&'e Digest),
}

impl Run<'_> {
    /// Pushes `artifact` (subjects of its steps prefixed with `prefix`); without OCI-Subject on
    /// the answer, adds it to its subject's referrers tag. Stops at the first failure.
    pub(super) async fn push_artifact(
        &mut self,
        artifact: &Artifact,
        prefix: &str,
    ) -> Result<PushedArtifact, Failure> {
        self.push_blobs(artifact_blobs(artifact, prefix)).await?;
        // The empty config (`{}`) is every artifact's in the repository, the canaries' kept
        // ones too: it is never deleted (2 bytes).
        let empty = empty_digest();
        self.uploaded.retain(|d| *d != empty);
        let subject = &artifact.subject.digest;
        let said = self
            .push_manifest(ManifestPut {
                step: Step::PushArtifact,
                reference: artifact.digest.as_str(),
                subject: format!("{prefix}artifact {}", artifact.artifact_type),
                media_type: ARTIFACT_MANIFEST_MEDIA_TYPE,
                body: &artifact.manifest,
                digest: &artifact.digest,
                label: &format!("{prefix}artifact"),
            })
            .await?;
        let indexed = match said {
            Some(s) if s == subject.as_str() => true,
            Some(other) => {
                return Err(self.note_failure(Failure::new(
                    Reason::Protocol,
                    format!(
                        "PUT manifests/{}: OCI-Subject is {other:?}, but the artifact's subject is {subject}",
                        artifact.digest
                    ),
                )))
            }
            None => false,
        };
        if !indexed {
            let (old, new) = self
                .update_referrers_tag(subject, Edit::Add(&artifact.referrer()), prefix)
                .await?;
            self.drop_superseded(old, new.as_ref(), "superseded referrers index")
                .await;
        }
        Ok(PushedArtifact {
            digest: artifact.digest.clone(),
            subject: subject.clone(),
            indexed,
        })
    }

    /// Takes a pushed artifact out of its subject's referrers tag (when the prober put it
    /// there), deleting the index once nothing else is in it. The artifact's manifest is
    /// deleted with the run's other manifests.
    pub(super) async fn unlist_artifact(&mut self, pushed: &PushedArtifact, prefix: &str) {
        if pushed.indexed {
            return;
        }
        let edited = self
            .update_referrers_tag(&pushed.subject, Edit::Remove(&pushed.digest), prefix)
            .await;
        if let Ok((old, new)) = edited {
            let label = match new {
                Some(_) => format!("{prefix}superseded referrers index"),
                None => format!("{prefix}emptied referrers index"),
            };
            self.drop_superseded(old, new.as_ref(), &label).await;
        }
    }

    /// Deletes the referrers index `old` once the tag names `new` (or nothing), as oras does:
    /// nothing else refers to it.
    async fn drop_superseded(&mut self, old: Option<Digest>, new: Option<&Digest>, label: &str) {
        let Some(old) = old.filter(|o| Some(o) != new) else {
            return;
        };
        if let Err(f) = self
            .delete(
                Step::DeleteManifest,
                label,
                None,
                &format!("manifests/{old}"),
                true,
            )
            .await
        {
            if f.reason == Reason::Unsupported {
                self.add_left_behind(1, 0);
            }
        }
    }

    /// GET the referrers tag of `subject` (none yet: 404), apply `edit`, PUT the result back
    /// under the tag unless it is unchanged or empty. Returns the digests of the index the tag
    /// named before and of the one it names now (None: no index; an emptied one is left for
    /// the caller to delete).
    pub(super) async fn update_referrers_tag(
        &mut self,
        subject: &Digest,
        edit: Edit<'_>,
        prefix: &str,
    ) -> Result<(Option<Digest>, Option<Digest>), Failure> {
        let origin = self.origin();
        let tag = fallback_tag(subject);
        let label = format!("{prefix}{tag}");
        step!(
            self,
            Step::UpdateReferrersTag,
            origin,
            label,
            |call| async {
                let url = call.url(&format!("manifests/{tag}"))?;
                let get =
                    Request::new(Method::GET, url.clone()).header(header::ACCEPT, INDEX_MEDIA_TYPE);
                let resp = call.send(&get).await?;
                let existing = if resp.status == StatusCode::NOT_FOUND {
                    call.discard(resp).await?;
                    None
                } else {
                    let resp = call
                        .expect(resp, &[StatusCode::OK], Reason::ManifestUnknown)
                        .await?;
                    let (method, shown) = (resp.method.clone(), resp.url.clone());
                    let header_digest = resp.header("docker-content-digest").map(str::to_string);
                    let body = call.read_body(resp, MANIFEST_BODY).await?;
                    verify::manifest_body(&method, &shown, &body, None, header_digest.as_deref())?;
                    Some((body, shown))
                };
                let old = existing.as_ref().map(|(body, _)| Digest::of(body));
                let refused = |shown: &str, e: crate::oci::manifest::ManifestError| {
                    Failure::new(
                        Reason::Protocol,
                        format!("GET {shown}: {e}; the prober does not overwrite it"),
                    )
                };
                let edited = match (edit, &existing) {
                    (Edit::Add(entry), Some((body, shown))) => Some(
                        referrers::with_referrer(Some(body), entry)
                            .map_err(|e| refused(shown, e))?,
                    ),
                    (Edit::Add(entry), None) => Some(
                        referrers::with_referrer(None, entry)
                            .map_err(|e| refused(url.as_str(), e))?,
                    ),
                    (Edit::Remove(digest), Some((body, shown))) => {
                        referrers::without_referrer(body, digest).map_err(|e| refused(shown, e))?
                    }
                    (Edit::Remove(_), None) => None,
                };
                let Some(body) = edited else {
                    return Ok((old, None));
                };
                let new = Digest::of(&body);
                if Some(&new) == old.as_ref() {
                    return Ok((old, Some(new)));
                }
                let put = Request::new(Method::PUT, url)
                    .header(header::CONTENT_TYPE, INDEX_MEDIA_TYPE)
                    .body(BodySource::Bytes(body));
                put_created(call, &put, Reason::ManifestBlobUnknown, &new).await?;
                Ok((old, Some(new)))
            }
        )
    }
}
