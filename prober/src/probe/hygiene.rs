//! Hygiene: the prober's own leftovers are swept at start and periodically. Only what this
//! prober instance created is ever touched: run tags carrying its instance name and old enough
//! that no run can still be using them, and upload sessions whose cancel failed earlier.

use std::time::Duration;

use http::header;
use http::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use super::pull::Manifest;
use super::run::step;
use super::run::{Run, Session};
use super::tags::{parse_run_tag, unix_now};
use super::watch::Watch;
use super::Prober;
use crate::http::{Request, TAG_LIST_BODY};
use crate::oci::image::Image;
use crate::oci::manifest::ACCEPT;
use crate::outcome::{DeviationKind, Failure, Reason, Step, SweepReport};

/// Pages of the tag list read at most (a repository with more tags is not the prober's).
const MAX_TAG_PAGES: usize = 20;
const TAGS_PER_PAGE: usize = 1000;
/// The layer of the image that re-points a dangling tag before it is deleted.
const REPAIR_LAYER_BYTES: u64 = 512;
/// Leftover sessions remembered at most (the registry purges old ones itself).
pub(super) const MAX_LEFTOVER_SESSIONS: usize = 1000;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Prober {
    /// Deletes this instance's run tags older than any run can be (with their manifests and,
    /// when cleanup deletes blobs, their blobs), and cancels remembered upload sessions.
    pub async fn sweep(&self) -> SweepReport {
        let class = &self.target.sizes[0];
        let watch = Watch::default();
        let mut run = Run::new(self, class, Instant::now() + self.target.timeout, &watch);
        let mut tags_deleted = 0;
        let oldest_live = unix_now()
            .saturating_sub((self.target.max_run_time() + Duration::from_secs(60)).as_secs());
        if !run.ping_all().await {
            let steps = run.take_steps();
            return SweepReport {
                target: self.target.name.clone(),
                tags_deleted: 0,
                sessions_cancelled: 0,
                errors: steps.iter().filter_map(|s| s.error_line()).collect(),
                steps,
            };
        }
        if let Ok(tags) = run.list_tags().await {
            for tag in tags {
                let ours = parse_run_tag(&tag)
                    .is_some_and(|(inst, secs)| inst == self.target.instance && secs < oldest_live);
                if ours && run.delete_leftover_tag(&tag).await.is_ok() {
                    tags_deleted += 1;
                }
            }
        }
        // With those a dangling tag's repair may have left open.
        let sessions: Vec<url::Url> = std::mem::take(&mut *self.leftovers_lock());
        run.sessions
            .extend(sessions.into_iter().map(|url| Session::new(url, false)));
        run.cancel_open_sessions().await;
        let sessions_cancelled = run.sessions.iter().filter(|s| s.completed).count() as u32;
        run.remember_open_sessions();
        let steps = run.take_steps();
        let errors = steps.iter().filter_map(|s| s.error_line()).collect();
        SweepReport {
            target: self.target.name.clone(),
            tags_deleted,
            sessions_cancelled,
            errors,
            steps,
        }
    }
}

impl Prober {
    /// Hands the upload sessions this prober still has to cancel to `next`, the prober that
    /// replaces it after a reload, when it probes the same target (name, registry and
    /// repository): a reload between a failed cancel and the next sweep must not forget one.
    pub fn hand_over_leftovers(&self, next: &Prober) {
        let (a, b) = (&self.target, &next.target);
        if a.name != b.name || a.registry != b.registry || a.repository != b.repository {
            return;
        }
        let taken = std::mem::take(&mut *self.leftovers_lock());
        next.keep_leftovers(taken);
    }

    fn leftovers_lock(&self) -> std::sync::MutexGuard<'_, Vec<url::Url>> {
        self.leftover_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers sessions for the next sweep, the newest [`MAX_LEFTOVER_SESSIONS`] at most.
    pub(super) fn keep_leftovers(&self, urls: impl IntoIterator<Item = url::Url>) {
        let mut left = self.leftovers_lock();
        left.extend(urls);
        let excess = left.len().saturating_sub(MAX_LEFTOVER_SESSIONS);
        left.drain(..excess);
    }

    #[cfg(test)]
    pub(super) fn leftovers(&self) -> Vec<url::Url> {
        self.leftovers_lock().clone()
    }
}

impl Run<'_> {
    /// GET the tag list of the origin's repository, following `Link` pages.
    pub(super) async fn list_tags(&mut self) -> Result<Vec<String>, Failure> {
        let origin = self.origin();
        let subject = origin.client.repository();
        step!(self, Step::ListTags, origin, subject, |call| async {
            let mut url = call.url("tags/list")?;
            url.query_pairs_mut()
                .append_pair("n", &TAGS_PER_PAGE.to_string());
            let mut tags = Vec::new();
            let mut next = Some(url);
            for _ in 0..MAX_TAG_PAGES {
                let Some(url) = next.take() else { break };
                let resp = call.send(&Request::new(Method::GET, url)).await?;
                let not_found = resp.status == StatusCode::NOT_FOUND;
                let resp = match call
                    .expect(resp, &[StatusCode::OK], Reason::NameUnknown)
                    .await
                {
                    // A repository nothing was pushed to yet has no tags: an empty list.
                    Err(f) if not_found && f.registry_code.as_deref() == Some("NAME_UNKNOWN") => {
                        return Ok(tags)
                    }
                    // No tag list route (an HTML 404, or 405): canaries and leftovers cannot
                    // be listed, which pushing and pulling do not need.
                    Err(f) if f.registry_code.is_none() && matches!(f.status, Some(404 | 405)) => {
                        call.deviate(
                            DeviationKind::TagListUnsupported,
                            format!("{} (the tag list is not implemented)", f.message),
                        );
                        return Ok(tags);
                    }
                    other => other?,
                };
                next = next_page(resp.header(header::LINK), &resp.raw_url);
                let (method, shown) = (resp.method.clone(), resp.url.clone());
                let body = call.read_body(resp, TAG_LIST_BODY).await?;
                let page = parse_tag_list(&body).map_err(|e| {
                    Failure::new(
                        Reason::Protocol,
                        format!("{method} {shown}: tag list is not JSON: {e}"),
                    )
                })?;
                tags.extend(page);
            }
            Ok(tags)
        })
    }

    /// A leftover run tag: GET its manifest (for the digest and blobs), DELETE the manifest by
    /// digest, then its blobs. A dangling tag is re-pointed, then deleted
    /// ([`Run::delete_dangling_tag`]).
    async fn delete_leftover_tag(&mut self, tag: &str) -> Result<(), Failure> {
        let subject = format!("leftover {tag}");
        let Some(manifest) = self.leftover_manifest(tag, &subject).await? else {
            return self.delete_dangling_tag(tag, &subject).await;
        };
        let digest = crate::oci::digest::Digest::of(&manifest.body);
        // Its artifacts first: they name it as their subject.
        self.sweep_referrers(&digest, &subject).await;
        self.delete(
            Step::DeleteManifest,
            &subject,
            None,
            &format!("manifests/{digest}"),
            true,
        )
        .await?;
        let blobs = self.leftover_blobs(&manifest, &subject).await;
        if self.target().cleanup.deletes_blobs() {
            for blob in blobs {
                let _ = self
                    .delete(
                        Step::DeleteBlob,
                        &format!("leftover {tag}: {}", blob.label),
                        None,
                        &format!("blobs/{}", blob.digest),
                        true,
                    )
                    .await;
            }
        }
        Ok(())
    }

    /// GET a leftover tag's manifest. `None` when the registry answers 404 MANIFEST_UNKNOWN
    /// for the tag its own tag list names: a dangling tag, whose manifest revision is gone.
    async fn leftover_manifest(
        &mut self,
        tag: &str,
        subject: &str,
    ) -> Result<Option<Manifest>, Failure> {
        let (origin, target) = (self.origin(), self.target());
        step!(self, Step::DeleteManifest, origin, subject, |call| async {
            let url = call.url(&format!("manifests/{tag}"))?;
            let req = Request::new(Method::GET, url).header(header::ACCEPT, ACCEPT);
            let resp = call.send(&req).await?;
            let (not_found, shown) = (resp.status == StatusCode::NOT_FOUND, resp.url.clone());
            match call
                .expect(resp, &[StatusCode::OK], Reason::ManifestUnknown)
                .await
            {
                Ok(resp) => call.read_manifest(resp, None).await.map(Some),
                Err(f) if not_found && f.registry_code.as_deref() == Some("MANIFEST_UNKNOWN") => {
                    tracing::warn!(
                        target_name = %target.name,
                        tag,
                        "GET {shown} answered 404 MANIFEST_UNKNOWN for a tag the tag list names \
                         (a dangling tag: its manifest was deleted but the tag was not, as when \
                         the registry stops between the two): pointing it at a fresh image, then \
                         deleting that"
                    );
                    Ok(None)
                }
                Err(f) => Err(f),
            }
        })
    }

    /// A dangling tag cannot be deleted by digest (it names a manifest the registry no longer
    /// has), nor by tag on registries without tag deletion (Distribution answers 400
    /// DIGEST_INVALID). A manifest DELETE untags every tag naming that manifest, so: push a
    /// fresh one-layer image under the tag, then DELETE it by digest (and its blobs, when
    /// cleanup deletes blobs).
    async fn delete_dangling_tag(&mut self, tag: &str, subject: &str) -> Result<(), Failure> {
        let target = self.target();
        let image = Image::generate(
            rand::random(),
            &[REPAIR_LAYER_BYTES],
            target.manifest_type,
            target.layer_format,
        );
        let pushed = self.push_image(&image, tag).await;
        let manifest = format!("manifests/{}", image.manifest_digest);
        let result = match pushed {
            Ok(()) => {
                self.delete(Step::DeleteManifest, subject, None, &manifest, false)
                    .await
            }
            Err(f) => Err(f),
        };
        // A manifest that stays keeps the tag on the fresh image: the next sweep deletes both
        // as any leftover. Otherwise its blobs go now (an upload session a failed push left
        // open is cancelled with the remembered ones).
        let stored = self
            .manifests_pushed
            .iter()
            .any(|m| m.stored && m.digest == image.manifest_digest);
        let manifest_stays = result.is_err() && stored;
        if !manifest_stays && target.cleanup.deletes_blobs() {
            for blob in image.blobs() {
                let label = format!("{subject}: {}", blob.kind);
                let rest = format!("blobs/{}", blob.digest);
                let _ = self
                    .delete(Step::DeleteBlob, &label, None, &rest, true)
                    .await;
            }
        }
        result
    }

    /// Sessions still open after cleanup are remembered for the next sweep.
    pub(super) fn remember_open_sessions(&self) {
        self.prober.keep_leftovers(self.open_session_urls());
    }

    /// The sessions still open that a request can reach: what cleanup or a sweep may cancel.
    pub(super) fn open_session_urls(&self) -> Vec<url::Url> {
        self.sessions
            .iter()
            .filter(|s| !s.completed && !s.unreachable)
            .map(|s| s.url.clone())
            .collect()
    }
}

/// The tags of one tag list page (`"tags": null`, as Distribution sends once the last tag is
/// deleted, is none).
fn parse_tag_list(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let list: TagList = serde_json::from_slice(body)?;
    Ok(list.tags.unwrap_or_default())
}

/// The next page of a paginated list, from the answer's `Link` header resolved against the
/// URL that sent it: `Link: </v2/...?n=..&last=..>; rel="next"`.
fn next_page(link: Option<&str>, base: &url::Url) -> Option<url::Url> {
    let (target, params) = link?.split_once(';')?;
    if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    base.join(target).ok()
}

#[cfg(test)]
#[path = "hygiene_tests.rs"]
mod tests;
