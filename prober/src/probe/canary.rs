//! Aged canaries: images the prober pushes once per period, keeps, and verifies every run
//! through every path, so content of several ages is always being read back. A canary that
//! vanished or changed is a loud failure (content loss) and is never silently re-pushed: it
//! keeps failing until it ages out of the rotation.
//!
//! A canary's tag names its period and seed (`registry-prober-<instance>-canary-<period start
//! unix>-<seed hex>`), and its content is a pure function of those and its layer sizes, so the
//! prober knows what every canary must contain without storing anything: after a restart the
//! tag list tells it which canaries exist. A canary that carries an artifact (with
//! `canaries.artifact`) says so in its tag (`-canary-a-<period>-<seed>`), so an artifact lost
//! from its referrers is told apart from one it never had; the artifact is a pure function of
//! the seed and the canary's manifest, and is found through the referrers like a blob.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::artifact::PushedArtifact;
use super::content::artifact_seed;
use super::referrers::Lookup;
use super::run::{Endpoint, Run};
use super::tags::{unix_now, TAG_PREFIX};
use super::verify;
use crate::config::{ArtifactConfig, Canaries};
use crate::oci::artifact::{Artifact, Subject};
use crate::oci::digest::Digest;
use crate::oci::image::Image;
use crate::outcome::{CanarySummary, Failure, Step};

/// The canaries a prober knows exist, by period start (unix seconds).
#[derive(Debug, Default)]
pub(super) struct Book {
    known: BTreeMap<u64, Canary>,
}

#[derive(Clone, Debug)]
struct Canary {
    tag: String,
    period: u64,
    seed: u64,
    /// The manifest digest it must have (known once pushed or first verified).
    manifest: Option<Digest>,
    /// Its blobs, for deleting them when it expires.
    blobs: Vec<Digest>,
    /// Whether it carries an artifact (its tag says so).
    with_artifact: bool,
    /// Its manifest as its artifact's subject (known once pushed or first verified).
    subject: Option<Subject>,
}

pub fn canary_tag(instance: &str, period: u64, seed: u64, with_artifact: bool) -> String {
    let a = if with_artifact { "a-" } else { "" };
    format!("{TAG_PREFIX}{instance}-canary-{a}{period}-{seed:016x}")
}

/// (period, seed, whether it carries an artifact) of a canary tag of `instance`.
pub fn parse_canary_tag(instance: &str, tag: &str) -> Option<(u64, u64, bool)> {
    let rest = tag
        .strip_prefix(TAG_PREFIX)?
        .strip_prefix(instance)?
        .strip_prefix("-canary-")?;
    let (rest, with_artifact) = match rest.strip_prefix("a-") {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    let (period, seed) = rest.split_once('-')?;
    if seed.len() != 16 {
        return None;
    }
    Some((
        period.parse().ok()?,
        u64::from_str_radix(seed, 16).ok()?,
        with_artifact,
    ))
}

/// The artifact a canary carries: a pure function of its seed and its manifest.
fn canary_artifact(seed: u64, config: &ArtifactConfig, subject: Subject) -> Artifact {
    Artifact::generate(
        artifact_seed(seed),
        &config.artifact_type,
        config.size,
        subject,
    )
}

fn period_time(period: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(period)
}

impl<'a> Run<'a> {
    /// Finds the canaries (tag list), pushes this period's if it has none, verifies every
    /// known canary through every path, and deletes the ones past the rotation.
    pub(super) async fn check_canaries(&mut self, config: &Canaries) -> CanarySummary {
        let instance = self.target().instance.clone();
        let listed = self.list_tags().await;
        if let Ok(tags) = &listed {
            let mut book = self
                .prober
                .canaries
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for tag in tags {
                if let Some((period, seed, with_artifact)) = parse_canary_tag(&instance, tag) {
                    book.known.entry(period).or_insert_with(|| Canary {
                        tag: tag.clone(),
                        period,
                        seed,
                        manifest: None,
                        blobs: Vec::new(),
                        with_artifact,
                        subject: None,
                    });
                }
            }
        }
        let every = config.every.as_secs().max(1);
        let current = unix_now() / every * every;
        let have_current = self.book(|b| b.known.contains_key(&current));
        if listed.is_ok() && !have_current && self.may_continue() {
            let _ = self.push_canary(config, current).await;
        }
        for endpoint in self.endpoints() {
            for canary in self.book(|b| b.known.values().cloned().collect::<Vec<_>>()) {
                if self.may_continue() {
                    let _ = self.verify_canary(endpoint, canary, config).await;
                }
            }
        }
        if self.may_continue() {
            self.rotate(config.keep as usize).await;
        }
        self.book(|b| CanarySummary {
            count: b.known.len() as u32,
            oldest_pushed_at: b.known.keys().next().map(|&p| period_time(p)),
        })
    }

    fn book<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut book = self
            .prober
            .canaries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut book)
    }

    async fn push_canary(&mut self, config: &Canaries, period: u64) -> Result<(), Failure> {
        let seed: u64 = rand::random();
        let tag = canary_tag(
            &self.target().instance,
            period,
            seed,
            config.artifact.is_some(),
        );
        let sizes = config.layer_sizes.clone();
        let manifest_type = self.target().manifest_type;
        let image = tokio::task::spawn_blocking(move || {
            Image::generate_at(seed, &sizes, manifest_type, period_time(period))
        })
        .await
        .expect("image generation does not panic");
        // A canary is kept: what it uploads is not the run's to clean up, once it is complete.
        let (uploaded, manifests) = (self.uploaded.len(), self.manifests_pushed.len());
        let subject = Subject {
            media_type: manifest_type.manifest_media_type().to_string(),
            digest: image.manifest_digest.clone(),
            size: image.manifest.len() as u64,
        };
        let mut result = self.push_image(&image, &tag).await;
        if let (Ok(()), Some(artifact)) = (&result, &config.artifact) {
            let artifact = canary_artifact(seed, artifact, subject.clone());
            let prefix = format!("canary {tag}: ");
            result = Box::pin(self.push_artifact(&artifact, &prefix))
                .await
                .map(|_| ());
        }
        if result.is_ok() {
            self.uploaded.truncate(uploaded);
            self.manifests_pushed.truncate(manifests);
            self.book(|b| {
                b.known.insert(
                    period,
                    Canary {
                        tag,
                        period,
                        seed,
                        manifest: Some(image.manifest_digest.clone()),
                        blobs: image.blobs().into_iter().map(|b| b.digest).collect(),
                        with_artifact: config.artifact.is_some(),
                        subject: Some(subject),
                    },
                )
            });
        }
        result
    }

    /// Pulls a canary's manifest by tag through `endpoint` and checks it is the one pushed,
    /// then HEADs and GETs every blob, and finds its artifact among its referrers.
    async fn verify_canary(
        &mut self,
        endpoint: &'a Endpoint,
        canary: Canary,
        config: &Canaries,
    ) -> Result<(), Failure> {
        let repo = endpoint.client.repository();
        let pushed = humantime::format_rfc3339_seconds(period_time(canary.period)).to_string();
        let subject = format!("canary {} (pushed {pushed})", canary.tag);
        let manifest = self
            .pull_manifest(
                endpoint,
                Step::PullCanaryManifest,
                subject,
                repo,
                &canary.tag,
                None,
            )
            .await?;
        let actual = Digest::of(&manifest.body);
        let expected = match &canary.manifest {
            Some(d) => d.clone(),
            None => {
                // First seen in the tag list: regenerate it from its seed and the layer sizes
                // its manifest names, which gives the manifest it was pushed with.
                let sizes = manifest
                    .parse()
                    .map_err(|f| self.note_failure(f))?
                    .layer_sizes();
                let (seed, period, manifest_type) =
                    (canary.seed, canary.period, self.target().manifest_type);
                let image = tokio::task::spawn_blocking(move || {
                    Image::generate_at(seed, &sizes, manifest_type, period_time(period))
                })
                .await
                .expect("image generation does not panic");
                image.manifest_digest
            }
        };
        verify::canary_unchanged(&canary.tag, &pushed, &actual, &expected)
            .map_err(|f| self.note_failure(f))?;
        let blobs = manifest.blobs("").map_err(|f| self.note_failure(f))?;
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        let subject = Subject {
            media_type: self
                .target()
                .manifest_type
                .manifest_media_type()
                .to_string(),
            digest: actual,
            size: manifest.body.len() as u64,
        };
        self.book(|b| {
            if let Some(c) = b.known.get_mut(&canary.period) {
                c.manifest = Some(expected.clone());
                c.blobs = digests;
                c.subject = Some(subject.clone());
            }
        });
        let blobs = blobs
            .into_iter()
            .map(|mut b| {
                b.label = format!("canary {}: {}", canary.tag, b.label);
                b
            })
            .collect();
        let pulled = self
            .pull_old_blobs(endpoint, Step::PullCanaryBlob, repo, blobs)
            .await;
        // The artifact is checked whatever the blobs said: one loss must not hide another.
        let found = match (&config.artifact, canary.with_artifact) {
            (Some(artifact), true) => {
                let artifact = canary_artifact(canary.seed, artifact, subject);
                let lookup = Lookup {
                    artifact: &artifact,
                    filter: config.artifact.as_ref().is_some_and(|a| a.filter),
                    indexed: None,
                    prefix: format!("canary {}: ", canary.tag),
                    blob_step: Step::PullCanaryBlob,
                };
                // Boxed: the lookup's steps would otherwise sit in the run's future, inline,
                // and debug builds overflow a worker's stack polling it.
                Box::pin(self.find_referrer(endpoint, &lookup)).await
            }
            _ => Ok(()),
        };
        pulled.and(found)
    }

    /// Deletes the canaries beyond the newest `keep` (manifest by digest, then its blobs). A
    /// target whose cleanup deletes nothing (rotate mode: the registry refuses DELETE) only
    /// stops checking them; the registry's lifecycle policy is to expire them.
    async fn rotate(&mut self, keep: usize) {
        let expired: Vec<Canary> = self.book(|b| {
            let n = b.known.len().saturating_sub(keep);
            b.known.values().take(n).cloned().collect()
        });
        if !self.target().cleanup.deletes() {
            self.book(|b| {
                for canary in &expired {
                    b.known.remove(&canary.period);
                }
            });
            return;
        }
        let artifact = self
            .target()
            .canaries
            .as_ref()
            .and_then(|c| c.artifact.clone());
        for canary in expired {
            let subject = format!("expired canary {}", canary.tag);
            if let (Some(config), Some(of), true) =
                (&artifact, canary.subject.clone(), canary.with_artifact)
            {
                self.delete_canary_artifact(&canary, config, of, &subject)
                    .await;
            }
            let deleted = match &canary.manifest {
                Some(digest) => self
                    .delete(
                        Step::DeleteManifest,
                        &subject,
                        None,
                        &format!("manifests/{digest}"),
                        true,
                    )
                    .await
                    .is_ok(),
                // Never verified (it vanished, or every pull of it failed): nothing to delete
                // by digest; it leaves the book, its failures already reported.
                None => true,
            };
            if !deleted {
                continue;
            }
            if self.target().cleanup.deletes_blobs() {
                for blob in &canary.blobs {
                    let _ = self
                        .delete(
                            Step::DeleteBlob,
                            &subject,
                            None,
                            &format!("blobs/{blob}"),
                            true,
                        )
                        .await;
                }
            }
            self.book(|b| b.known.remove(&canary.period));
        }
    }

    /// An expiring canary's artifact: out of the referrers tag (where the prober put it
    /// there), its manifest and its payload deleted.
    async fn delete_canary_artifact(
        &mut self,
        canary: &Canary,
        config: &ArtifactConfig,
        subject: Subject,
        label: &str,
    ) {
        let artifact = canary_artifact(canary.seed, config, subject);
        let pushed = PushedArtifact {
            digest: artifact.digest.clone(),
            subject: artifact.subject.digest.clone(),
            // Not known after a restart: looking at the tag costs one GET, and finds nothing
            // to do when the registry indexed the artifact itself.
            indexed: false,
        };
        self.unlist_artifact(&pushed, &format!("{label}: ")).await;
        let manifest = format!("manifests/{}", artifact.digest);
        let deleted = self
            .delete(
                Step::DeleteManifest,
                &format!("{label}: artifact"),
                None,
                &manifest,
                true,
            )
            .await;
        if deleted.is_ok() && self.target().cleanup.deletes_blobs() {
            let blob = format!("blobs/{}", artifact.payload_digest);
            let label = format!("{label}: artifact payload");
            let _ = self
                .delete(Step::DeleteBlob, &label, None, &blob, true)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_tags_round_trip_and_belong_to_one_instance() {
        let tag = canary_tag("eu1", 1_700_006_400, 0x0123_4567_89ab_cdef, false);
        assert_eq!(
            tag,
            "registry-prober-eu1-canary-1700006400-0123456789abcdef"
        );
        assert!(tag.len() <= 128);
        assert_eq!(
            parse_canary_tag("eu1", &tag),
            Some((1_700_006_400, 0x0123_4567_89ab_cdef, false))
        );
        let with = canary_tag("eu1", 1_700_006_400, 0x0123_4567_89ab_cdef, true);
        assert_eq!(
            with,
            "registry-prober-eu1-canary-a-1700006400-0123456789abcdef"
        );
        assert_eq!(
            parse_canary_tag("eu1", &with),
            Some((1_700_006_400, 0x0123_4567_89ab_cdef, true))
        );
        // Never a run tag, so sweeps leave it alone.
        assert_eq!(super::super::tags::parse_run_tag(&with), None);
        assert_eq!(parse_canary_tag("us1", &tag), None);
        assert_eq!(
            parse_canary_tag("eu1", "registry-prober-eu1-1700000000-0a0b0c0d"),
            None
        );
    }

    #[test]
    fn a_canary_regenerates_to_the_manifest_it_was_pushed_with() {
        use crate::oci::manifest::ManifestType;
        let pushed = Image::generate_at(42, &[4096, 100], ManifestType::Oci, period_time(86_400));
        let sizes = crate::oci::manifest::Pulled::parse(&pushed.manifest, "")
            .expect("parses")
            .layer_sizes();
        assert_eq!(sizes, vec![4096, 100]);
        let again = Image::generate_at(42, &sizes, ManifestType::Oci, period_time(86_400));
        assert_eq!(again.manifest_digest, pushed.manifest_digest);
    }
}
