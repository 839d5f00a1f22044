//! Multi-platform images on the wire: push one image per platform (blobs, then its manifest by
//! digest) and the index over them under the run's tag; pull it as containerd does (the index
//! by tag and by digest, then the chosen platform's manifest from what the index lists, then
//! its blobs); and pick the platform manifests of a golden index to verify.

use super::pull::Manifest;
use super::push::{Blob, ManifestPut};
use super::run::{Endpoint, Run};
use crate::config::{PlatformChoice, Reference};
use crate::oci::digest::Digest;
use crate::oci::index::{entries, index_media_type, pick, Entry, Index};
use crate::oci::manifest::{ManifestError, Named, Pulled};
use crate::oci::platform::Platform;
use crate::outcome::{Failure, Reason, Step};

/// Child manifests of a golden index verified at most, so a huge index cannot stall a run.
pub(super) const MAX_INDEX_CHILDREN: usize = 8;

impl<'a> Run<'a> {
    /// Pushes every platform's blobs and manifest (by digest), then the index under `tag`.
    /// Stops at the first failure.
    pub(super) async fn push_index(&mut self, index: &Index, tag: &str) -> Result<(), Failure> {
        for (platform, image) in &index.images {
            self.push_blobs(Blob::of_image(image, &format!("{platform}: ")))
                .await?;
            let digest = image.manifest_digest.as_str();
            self.push_manifest(ManifestPut {
                step: Step::PushManifest,
                reference: digest,
                subject: platform.to_string(),
                media_type: index.manifest_type.manifest_media_type(),
                body: &image.manifest,
                digest: &image.manifest_digest,
                label: &format!("{platform} manifest"),
            })
            .await?;
        }
        self.push_manifest(ManifestPut {
            step: Step::PushIndex,
            reference: tag,
            subject: tag.to_string(),
            media_type: index_media_type(index.manifest_type),
            body: &index.body,
            digest: &index.digest,
            label: "index",
        })
        .await
        .map(|_| ())
    }

    /// Pulls the pushed index through `endpoint` as containerd does: by tag, by digest, then
    /// for each platform the target pulls, the manifest the index lists for it and its blobs.
    pub(super) async fn pull_index(
        &mut self,
        endpoint: &'a Endpoint,
        index: &Index,
        tag: &str,
        wanted: &PlatformChoice,
    ) -> Result<(), Failure> {
        let repo = endpoint.client.repository();
        let pulled = self
            .pull_tagged(endpoint, tag, &index.digest, &index.body)
            .await?;
        let listed = index_entries(&pulled).map_err(|f| self.note_failure(f))?;
        let platforms: Vec<&Platform> = match wanted {
            PlatformChoice::All => index.images.iter().map(|(p, _)| p).collect(),
            PlatformChoice::These(list) => list.iter().collect(),
        };
        let what = format!("index {}", index.digest);
        let mut chosen = Vec::with_capacity(platforms.len());
        for platform in platforms {
            let entry =
                platform_entry(&listed, platform, &what).map_err(|f| self.note_failure(f))?;
            chosen.push((platform.to_string(), entry.clone()));
        }
        for (platform, entry) in chosen {
            let manifest = self
                .pull_manifest(
                    endpoint,
                    Step::PullPlatformManifest,
                    platform.clone(),
                    repo,
                    entry.digest.as_str(),
                    Some((&entry.digest, entry.size)),
                )
                .await?;
            let blobs = manifest
                .blobs(&platform)
                .map_err(|f| self.note_failure(f))?;
            for blob in blobs {
                self.pull_blob(endpoint, Step::PullBlob, repo, blob).await?;
            }
        }
        Ok(())
    }

    /// The platform manifests of a golden index to verify, each with its subject: every one it
    /// lists (at most `MAX_INDEX_CHILDREN`), or the one it lists for each configured platform,
    /// which it must list.
    pub(super) fn golden_children(
        &mut self,
        golden: &Reference,
        pulled: &Pulled,
    ) -> Result<Vec<(String, Named)>, Failure> {
        let chosen = match &self.target().golden_platforms {
            PlatformChoice::All => pulled
                .children(MAX_INDEX_CHILDREN)
                .map_err(|e| invalid_index(golden, &e))
                .map(|children| {
                    children
                        .into_iter()
                        .map(|c| (format!("{golden} > {}", c.digest), c))
                        .collect()
                }),
            PlatformChoice::These(platforms) => golden_platforms(golden, pulled, platforms),
        };
        chosen.map_err(|f| self.note_failure(f))
    }
}

fn invalid_index(golden: &Reference, e: &ManifestError) -> Failure {
    Failure::new(
        Reason::Protocol,
        format!("index of {golden} names an invalid digest: {e}"),
    )
}

/// The manifest a golden index lists for each of `platforms`.
fn golden_platforms(
    golden: &Reference,
    pulled: &Pulled,
    platforms: &[Platform],
) -> Result<Vec<(String, Named)>, Failure> {
    let listed = match pulled {
        Pulled::Index(index) => entries(index).map_err(|e| invalid_index(golden, &e))?,
        Pulled::Image(_) => Vec::new(),
    };
    let what = format!("index of {golden}");
    platforms
        .iter()
        .map(|platform| {
            let e = platform_entry(&listed, platform, &what)?;
            let named = Named {
                label: e.digest.to_string(),
                digest: e.digest.clone(),
                size: e.size,
            };
            Ok((format!("{golden} > {platform}"), named))
        })
        .collect()
}

/// The entries of a pulled index, or a protocol failure saying why it is not one.
fn index_entries(manifest: &Manifest) -> Result<Vec<Entry>, Failure> {
    match manifest.parse()? {
        Pulled::Index(index) => {
            entries(&index).map_err(|e| Failure::new(Reason::Protocol, e.to_string()))
        }
        Pulled::Image(_) => Err(Failure::new(
            Reason::Protocol,
            "the manifest under the tag is an image manifest, not the index that was pushed",
        )),
    }
}

/// The entry of `listed` (the entries of `what`) for `platform`, or `platform_missing` naming
/// what the index lists instead.
fn platform_entry<'e>(
    listed: &'e [Entry],
    platform: &Platform,
    what: &str,
) -> Result<&'e Entry, Failure> {
    pick(listed, platform).ok_or_else(|| {
        let have: Vec<String> = listed
            .iter()
            .map(|e| {
                e.platform
                    .as_ref()
                    .map_or("(no platform)".into(), Platform::to_string)
            })
            .collect();
        Failure::new(
            Reason::PlatformMissing,
            format!(
                "{what} lists no manifest for {platform}; it lists: {}",
                if have.is_empty() {
                    "nothing".to_string()
                } else {
                    have.join(", ")
                }
            ),
        )
    })
}

/// The digests of the platform manifests an index names (for deleting a leftover index).
pub(super) fn children_of(manifest: &Manifest) -> Vec<Digest> {
    match manifest.parse() {
        Ok(Pulled::Index(index)) => entries(&index)
            .map(|list| list.into_iter().map(|e| e.digest).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: Option<&str>, c: char) -> Entry {
        Entry {
            digest: Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap(),
            size: 10,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            platform: platform.map(|p| Platform::parse(p).unwrap()),
            artifact_type: None,
        }
    }

    #[test]
    fn a_platform_the_index_lacks_is_platform_missing_naming_what_it_lists() {
        let listed = [entry(Some("linux/amd64"), 'a'), entry(None, 'b')];
        let f = platform_entry(
            &listed,
            &Platform::parse("linux/arm64").unwrap(),
            "index sha256:x",
        )
        .unwrap_err();
        assert_eq!(f.reason, Reason::PlatformMissing);
        assert_eq!(
            f.message,
            "index sha256:x lists no manifest for linux/arm64; it lists: linux/amd64, (no platform)"
        );
        let found = platform_entry(
            &listed,
            &Platform::parse("linux/amd64").unwrap(),
            "index sha256:x",
        )
        .unwrap();
        assert_eq!(found.digest.hex(), "a".repeat(64));
    }
}
