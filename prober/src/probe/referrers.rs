//! Finding an artifact again through its subject's referrers, as a client such as cosign or
//! oras reads them: `GET /v2/<repo>/referrers/<digest>` (optionally `?artifactType=`); a 404
//! there means the registry has no referrers API, and the referrers tag `sha256-<hex>` is read
//! instead. Which of the two a path serves is recorded; then the artifact's manifest and its
//! payload are pulled and verified like any other content.

use http::header;
use http::{Method, StatusCode};

use super::run::step;
use super::run::{Endpoint, Run};
use super::verify;
use crate::http::{Request, MANIFEST_BODY};
use crate::oci::artifact::Artifact;
use crate::oci::index::Entry;
use crate::oci::manifest::Named;
use crate::oci::referrers::{self, fallback_tag, INDEX_MEDIA_TYPE};
use crate::outcome::{Failure, Reason, ReferrersMode, ReferrersReport, Step};

/// The header by which a registry says it applied the referrers API's filters.
const FILTERS_APPLIED: &str = "oci-filters-applied";

/// An artifact to find among its subject's referrers.
pub(super) struct Lookup<'l> {
    pub(super) artifact: &'l Artifact,
    /// Ask the referrers API with `?artifactType=`.
    pub(super) filter: bool,
    /// Whether the registry answered the artifact's push with OCI-Subject, when this run
    /// pushed it (then its referrers API must list it).
    pub(super) indexed: Option<bool>,
    /// Prefixed to the subjects of the lookup's steps ("canary ...: ").
    pub(super) prefix: String,
    /// The step pulling the payload: `pull_blob` for a run's artifact; old content (a
    /// canary's) is checked with HEAD and `pull_canary_blob`.
    pub(super) blob_step: Step,
}

impl<'a> Run<'a> {
    /// Finds `lookup.artifact` among the referrers of its subject through `endpoint` (the
    /// referrers API, else the referrers tag), then pulls its manifest and payload.
    pub(super) async fn find_referrer(
        &mut self,
        endpoint: &'a Endpoint,
        lookup: &Lookup<'_>,
    ) -> Result<(), Failure> {
        let artifact = lookup.artifact;
        let listed = self.list_referrers(endpoint, lookup).await?;
        let mode = if listed {
            ReferrersMode::Api
        } else {
            ReferrersMode::TagSchema
        };
        self.note_referrers_mode(&endpoint.name, mode);
        if !listed {
            self.pull_referrers_tag(endpoint, lookup).await?;
        }
        let repo = endpoint.client.repository();
        self.pull_manifest(
            endpoint,
            Step::PullArtifact,
            format!("{}artifact {}", lookup.prefix, artifact.digest),
            repo,
            artifact.digest.as_str(),
            Some((&artifact.digest, artifact.manifest.len() as u64)),
        )
        .await?;
        let payload = Named {
            label: format!("{}artifact payload", lookup.prefix),
            digest: artifact.payload_digest.clone(),
            size: artifact.payload.len() as u64,
        };
        if lookup.blob_step == Step::PullBlob {
            self.pull_blob(endpoint, Step::PullBlob, repo, payload)
                .await
                .map(|_| ())
        } else {
            self.pull_old_blobs(endpoint, lookup.blob_step, repo, vec![payload])
                .await
        }
    }

    /// The referrers API: true when it answered (and listed the artifact), false when the
    /// registry has none (404).
    async fn list_referrers(
        &mut self,
        endpoint: &'a Endpoint,
        lookup: &Lookup<'_>,
    ) -> Result<bool, Failure> {
        let artifact = lookup.artifact;
        let subject = &artifact.subject.digest;
        let label = format!("{}{subject}", lookup.prefix);
        step!(self, Step::ListReferrers, endpoint, label, |call| async {
            let mut url = call.url(&format!("referrers/{subject}"))?;
            if lookup.filter {
                url.query_pairs_mut()
                    .append_pair("artifactType", &artifact.artifact_type);
            }
            let req = Request::new(Method::GET, url).header(header::ACCEPT, INDEX_MEDIA_TYPE);
            let resp = call.send(&req).await?;
            if resp.status == StatusCode::NOT_FOUND {
                let shown = resp.url.clone();
                call.discard(resp).await?;
                // The spec forbids a 404 from a registry that has the API.
                if lookup.indexed == Some(true) {
                    return Err(Failure::new(
                        Reason::Protocol,
                        format!(
                            "GET {shown}: 404, but the registry answered the artifact's push with OCI-Subject, which says it serves the referrers API"
                        ),
                    ));
                }
                return Ok(false);
            }
            let resp = call
                .expect(resp, &[StatusCode::OK], Reason::ManifestUnknown)
                .await?;
            let (method, shown) = (resp.method.clone(), resp.url.clone());
            let content_type = resp
                .header(header::CONTENT_TYPE)
                .unwrap_or_default()
                .to_string();
            let filtered = resp
                .header(FILTERS_APPLIED)
                .is_some_and(|f| f.split(',').any(|f| f.trim() == "artifactType"));
            let body = call.read_body(resp, MANIFEST_BODY).await?;
            let what = format!("{method} {shown}: the referrers answer");
            let entries = referrers::parse(&body, &content_type, &what)
                .map_err(|e| Failure::new(Reason::Protocol, e.0))?;
            if lookup.filter && filtered {
                verify::filtered_referrers(&what, &entries, &artifact.artifact_type)?;
            }
            let hint = match lookup.indexed {
                Some(false) => " (the registry answered its push without OCI-Subject, so the prober listed it under the referrers tag instead, but the registry serves a referrers API that does not show it)",
                _ => "",
            };
            found(&what, &entries, artifact, hint)?;
            Ok(true)
        })
    }

    /// The referrers tag schema: the index under `sha256-<hex>` must list the artifact.
    async fn pull_referrers_tag(
        &mut self,
        endpoint: &'a Endpoint,
        lookup: &Lookup<'_>,
    ) -> Result<(), Failure> {
        let artifact = lookup.artifact;
        let tag = fallback_tag(&artifact.subject.digest);
        let label = format!("{}{tag}", lookup.prefix);
        step!(
            self,
            Step::PullReferrersTag,
            endpoint,
            label,
            |call| async {
                let url = call.url(&format!("manifests/{tag}"))?;
                let req = Request::new(Method::GET, url).header(header::ACCEPT, INDEX_MEDIA_TYPE);
                let resp = call
                .fetch(&req, &[StatusCode::OK], Reason::ManifestUnknown)
                .await
                .map_err(|mut f| {
                    if f.status == Some(404) {
                        f.reason = Reason::ReferrerMissing;
                        f.message.push_str(&format!(
                            " (the registry has no referrers API and its referrers tag {tag} is missing: nothing lists artifact {} of {})",
                            artifact.digest, artifact.subject.digest
                        ));
                    }
                    f
                })?;
                let (method, shown) = (resp.method.clone(), resp.url.clone());
                let content_type = resp
                    .header(header::CONTENT_TYPE)
                    .unwrap_or_default()
                    .to_string();
                let header_digest = resp.header("docker-content-digest").map(str::to_string);
                let body = call.read_body(resp, MANIFEST_BODY).await?;
                verify::manifest_body(&method, &shown, &body, None, header_digest.as_deref())?;
                let what = format!("{method} {shown}: the referrers tag's manifest");
                let entries = referrers::parse(&body, &content_type, &what)
                    .map_err(|e| Failure::new(Reason::Protocol, e.0))?;
                found(&what, &entries, artifact, "")
            }
        )
    }

    /// Keeps the latest referrers mode seen on `path`.
    fn note_referrers_mode(&mut self, path: &str, mode: ReferrersMode) {
        match self.referrers.iter_mut().find(|r| r.path == path) {
            Some(known) => known.mode = mode,
            None => self.referrers.push(ReferrersReport {
                path: path.to_string(),
                mode,
            }),
        }
    }
}

/// The artifact's entry among `entries` (of `what`), with the size and artifactType it was
/// pushed with; `referrer_missing` when it is not there.
fn found(what: &str, entries: &[Entry], artifact: &Artifact, hint: &str) -> Result<(), Failure> {
    let Some(entry) = entries.iter().find(|e| e.digest == artifact.digest) else {
        let listed: Vec<&str> = entries.iter().map(|e| e.digest.as_str()).collect();
        return Err(Failure::new(
            Reason::ReferrerMissing,
            format!(
                "{what} lists {} referrers of {} ({}), not the artifact {} pushed for it{hint}",
                entries.len(),
                artifact.subject.digest,
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                },
                artifact.digest
            ),
        ));
    };
    verify::referrer_entry(what, entry, artifact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::artifact::Subject;
    use crate::oci::digest::Digest;

    fn artifact() -> Artifact {
        let subject = Subject {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::of(b"image"),
            size: 5,
        };
        Artifact::generate(7, "application/x.sbom+json", 0, subject)
    }

    fn entry(a: &Artifact, digest: Digest) -> Entry {
        Entry {
            digest,
            size: a.manifest.len() as u64,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            platform: None,
            artifact_type: Some(a.artifact_type.clone()),
        }
    }

    #[test]
    fn an_artifact_the_referrers_do_not_list_is_referrer_missing_naming_what_they_list() {
        let a = artifact();
        let other = Digest::of(b"someone else's signature");
        let f = found("GET u", &[entry(&a, other.clone())], &a, " (hint)").unwrap_err();
        assert_eq!(f.reason, Reason::ReferrerMissing);
        assert_eq!(
            f.message,
            format!(
                "GET u lists 1 referrers of {} ({other}), not the artifact {} pushed for it (hint)",
                a.subject.digest, a.digest
            )
        );
        let f = found("GET u", &[], &a, "").unwrap_err();
        assert!(
            f.message.contains("lists 0 referrers") && f.message.contains("(none)"),
            "{}",
            f.message
        );
        assert_eq!(
            found("GET u", &[entry(&a, a.digest.clone())], &a, ""),
            Ok(())
        );
    }
}
