//! Aged canaries: images the prober pushes once per period, keeps, and verifies every run
//! through every path, so content of several ages is always being read back. A canary that
//! vanished or changed is a loud failure (content loss) and is never silently re-pushed: it
//! keeps failing until it ages out of the rotation.
//!
//! A canary's tag names its period and seed (`registry-prober-<instance>-canary-<period start
//! unix>-<seed hex>`), and its content is a pure function of those, its layer sizes and its
//! layer format, so the prober knows what every canary must contain without storing anything:
//! after a restart the tag list tells it which canaries exist. The sizes and format are in its
//! config's `io.registry-prober.layers` label; a canary without one was pushed before layers
//! were tars (random bytes, sized as its manifest says) and is regenerated so.
//!
//! A canary seen for the first time is checked by its config: regenerated from its seed, the
//! config (and so every layer's DiffID) must be the one its manifest names; each layer must
//! then unpack to its DiffID. The compressed bytes are not regenerated for this: they depend on
//! the compressor's version, which may have changed since the canary was pushed.
//!
//! A canary that carries an artifact (with `canaries.artifact`) says so in its tag
//! (`-canary-a-<period>-<seed>`), so an artifact lost from its referrers is told apart from
//! one it never had; the artifact is a pure function of the seed and the canary's manifest,
//! and is found through the referrers like a blob.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::artifact::PushedArtifact;
use super::content::artifact_seed;
use super::pull::Manifest;
use super::referrers::Lookup;
use super::run::{Endpoint, Run};
use super::tags::{unix_now, TAG_PREFIX};
use super::verify::{self, DiffIds};
use crate::config::{ArtifactConfig, Canaries};
use crate::oci::artifact::{Artifact, Subject};
use crate::oci::compression::LayerFormat;
use crate::oci::digest::Digest;
use crate::oci::image::{parse_layers_label, Image, LAYERS_LABEL};
use crate::oci::manifest::ManifestType;
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
        let (manifest_type, format) = (self.target().manifest_type, self.target().layer_format);
        let image = tokio::task::spawn_blocking(move || {
            Image::generate_at(seed, &sizes, manifest_type, format, period_time(period))
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

    /// Pulls a canary's manifest by tag through `endpoint` and checks it is the one pushed
    /// (or, seen for the first time, the one its seed gives), then HEADs and GETs every blob,
    /// each layer checked against its DiffID, and finds its artifact among its referrers.
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
        // The manifest's step, the last recorded (token fetches are recorded before theirs).
        let manifest_step = self.next_step_index().saturating_sub(1);
        let actual = Digest::of(&manifest.body);
        if let Some(expected) = &canary.manifest {
            verify::canary_unchanged(&canary.tag, &pushed, "manifest", &actual, expected)
                .map_err(|f| self.note_failure(f))?;
        }
        let mut blobs = manifest
            .blobs(&format!("canary {}", canary.tag))
            .map_err(|f| self.note_failure(f))?;
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        let layers = blobs.split_off(1);
        let config_blob = blobs.remove(0);
        let config_digest = config_blob.digest.clone();
        let (first, bytes) = self
            .pull_old_config(endpoint, Step::PullCanaryBlob, repo, config_blob)
            .await;
        if canary.manifest.is_none() {
            let Some(bytes) = &bytes else {
                // Its config could not be read: that failure stands, and what the canary
                // should be stays unknown until a run reads it.
                return first;
            };
            let regenerated = self.regenerate(&canary, &manifest, bytes).await;
            let unchanged = match regenerated {
                Some(Regenerated::Config(expected)) => verify::canary_unchanged(
                    &canary.tag,
                    &pushed,
                    "config",
                    &config_digest,
                    &expected,
                ),
                Some(Regenerated::Manifest(expected)) => {
                    verify::canary_unchanged(&canary.tag, &pushed, "manifest", &actual, &expected)
                }
                None => Ok(()),
            };
            // The manifest is what changed: its step fails, as when the book knew its digest.
            unchanged.map_err(|f| self.note_failure_at(manifest_step, f))?;
        }
        let subject = Subject {
            media_type: self
                .target()
                .manifest_type
                .manifest_media_type()
                .to_string(),
            digest: actual.clone(),
            size: manifest.body.len() as u64,
        };
        self.book(|b| {
            if let Some(c) = b.known.get_mut(&canary.period) {
                c.manifest = Some(actual.clone());
                c.blobs = digests;
                c.subject = Some(subject.clone());
            }
        });
        let diff_ids = match &bytes {
            Some(bytes) => self.diff_ids(&manifest, bytes, layers.len()),
            None => DiffIds::Unchecked,
        };
        let rest = self
            .pull_old_blobs(endpoint, Step::PullCanaryBlob, repo, layers, &diff_ids)
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
        first.and(rest).and(found)
    }

    /// What a canary seen for the first time must be, from its seed: its config (from the
    /// sizes and format its config's label names), or for a canary of raw layers its whole
    /// manifest (from the sizes its manifest names). None when the label is not one this
    /// version reads (a newer version's canary): its DiffIDs are still checked.
    async fn regenerate(
        &self,
        canary: &Canary,
        manifest: &Manifest,
        config: &[u8],
    ) -> Option<Regenerated> {
        let manifest_type = if manifest.config_media_type().contains("docker") {
            ManifestType::Docker
        } else {
            ManifestType::Oci
        };
        let (seed, created) = (canary.seed, period_time(canary.period));
        let (format, sizes) = match layers_label_of(config) {
            Label::Absent => (LayerFormat::Raw, manifest.parse().ok()?.layer_sizes()),
            Label::Reads(format, sizes) => (format, sizes),
            Label::Unknown => return None,
        };
        let image = tokio::task::spawn_blocking(move || {
            Image::generate_at(seed, &sizes, manifest_type, format, created)
        })
        .await
        .expect("image generation does not panic");
        Some(match format {
            LayerFormat::Raw => Regenerated::Manifest(image.manifest_digest),
            LayerFormat::Tar(_) => Regenerated::Config(image.config_digest),
        })
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

/// What a canary must be, regenerated from its seed.
enum Regenerated {
    Config(Digest),
    Manifest(Digest),
}

/// The layers label of a config, as far as this version reads it.
enum Label {
    Absent,
    Reads(LayerFormat, Vec<u64>),
    Unknown,
}

fn layers_label_of(config: &[u8]) -> Label {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(config) else {
        return Label::Unknown;
    };
    match value
        .pointer("/config/Labels")
        .and_then(|l| l.get(LAYERS_LABEL))
    {
        None => Label::Absent,
        Some(label) => match label.as_str().and_then(parse_layers_label) {
            Some((format, sizes)) => Label::Reads(format, sizes),
            None => Label::Unknown,
        },
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
    fn a_raw_canary_regenerates_to_the_manifest_it_was_pushed_with() {
        // Canaries pushed before tar layers: no layers label, sizes from the manifest.
        let pushed = Image::generate_at(
            42,
            &[4096, 100],
            ManifestType::Oci,
            LayerFormat::Raw,
            period_time(86_400),
        );
        assert!(matches!(layers_label_of(&pushed.config), Label::Absent));
        let sizes = crate::oci::manifest::Pulled::parse(&pushed.manifest, "")
            .expect("parses")
            .layer_sizes();
        assert_eq!(sizes, vec![4096, 100]);
        let again = Image::generate_at(
            42,
            &sizes,
            ManifestType::Oci,
            LayerFormat::Raw,
            period_time(86_400),
        );
        assert_eq!(again.manifest_digest, pushed.manifest_digest);
    }

    #[test]
    fn a_tar_canary_regenerates_to_its_config_from_its_label() {
        let format = LayerFormat::Tar(crate::oci::compression::Compression::Zstd);
        let pushed = Image::generate_at(
            42,
            &[4096, 100],
            ManifestType::Oci,
            format,
            period_time(86_400),
        );
        let Label::Reads(f, sizes) = layers_label_of(&pushed.config) else {
            panic!("the label reads back");
        };
        assert_eq!((f, sizes.clone()), (format, vec![4096, 100]));
        let again = Image::generate_at(42, &sizes, ManifestType::Oci, f, period_time(86_400));
        assert_eq!(again.config_digest, pushed.config_digest);
        assert!(matches!(
            layers_label_of(br#"{"config":{"Labels":{"io.registry-prober.layers":"tar+xz:1"}}}"#),
            Label::Unknown
        ));
    }
}
