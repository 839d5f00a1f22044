//! Inspecting and damaging the registry's filesystem storage, as an outage or a bad disk
//! would. Layout (Distribution 2.8, filesystem driver), under `<root>/docker/registry/v2`:
//!
//! - `blobs/sha256/<2 hex>/<hex>/data` — blob contents (layers, configs, manifests alike).
//! - `repositories/<repo>/_layers/sha256/<hex>/link` — the repo links a blob (text `sha256:<hex>`).
//! - `repositories/<repo>/_manifests/revisions/sha256/<hex>/link` — the repo has this manifest.
//! - `repositories/<repo>/_manifests/tags/<tag>/current/link` — the tag points here, and
//!   `.../tags/<tag>/index/sha256/<hex>/link` for every digest the tag ever pointed to.
//! - `repositories/<repo>/_uploads/<uuid>/{data,startedat,hashstates/...}` — upload sessions.
//!
//! Checked against the real registry (see the harness tests; details in the docs of
//! [`Storage::manifest_revisions`], [`Storage::uploads`] and [`Storage::delete_blob`]).

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};

/// The storage of one registry, by its root (the directory containing `docker/registry/v2`).
/// Works whether the registry is running or not.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn new(root: &Path) -> Storage {
        Storage {
            root: root.to_path_buf(),
        }
    }

    /// `<root>/docker/registry/v2`.
    pub fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    /// `<root>/docker/registry/v2/repositories/<repo>`.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.v2().join("repositories").join(repo)
    }

    /// Repository names, nested ones as `a/b`, sorted. A directory is a repository when it
    /// has `_manifests`, `_layers` or `_uploads`.
    pub fn repositories(&self) -> anyhow::Result<Vec<String>> {
        let base = self.v2().join("repositories");
        let mut out = Vec::new();
        if base.is_dir() {
            walk_repos(&base, "", &mut out)?;
        }
        out.sort();
        Ok(out)
    }

    /// Tag names (directories under `_manifests/tags`), sorted. A tag deleted through the API
    /// has its whole directory removed, so it disappears here.
    pub fn tags(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        list_dir(&self.repo_dir(repo).join("_manifests/tags"))
    }

    /// Digest the tag currently points to (`tags/<tag>/current/link`), if the tag exists.
    pub fn tag_target(&self, repo: &str, tag: &str) -> anyhow::Result<Option<String>> {
        read_link(
            &self
                .repo_dir(repo)
                .join("_manifests/tags")
                .join(tag)
                .join("current/link"),
        )
    }

    /// Manifest digests (`sha256:<hex>`) the repository still has: directories under
    /// `_manifests/revisions/sha256` whose `link` file exists, sorted.
    ///
    /// Seen with Distribution 2.8: `DELETE /v2/<repo>/manifests/<digest>` (202) removes only
    /// the `link` file, leaving an empty `revisions/sha256/<hex>/` directory behind, and
    /// removes the whole directory (`current` and `index` history) of every tag that pointed
    /// to that digest; other tags stay. The manifest's blob under `blobs/` and the
    /// repository's `_layers` links stay (until garbage collection). So count links, not
    /// directories. After the last tag goes, `tags/list` answers `"tags": null`.
    pub fn manifest_revisions(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        linked_digests(&self.repo_dir(repo).join("_manifests/revisions/sha256"))
    }

    /// Blob digests the repository links (`_layers/sha256/<hex>/link` exists), sorted.
    ///
    /// Seen with Distribution 2.8: `DELETE /v2/<repo>/blobs/<digest>` removes only that
    /// `link` file (its directory stays, empty); the data under `blobs/` stays, and so the
    /// blob is still served by other repositories that link it.
    pub fn layer_links(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        linked_digests(&self.repo_dir(repo).join("_layers/sha256"))
    }

    /// Live upload session IDs, sorted: entries under `_uploads` that still have their
    /// `startedat` file.
    ///
    /// Seen with Distribution 2.8: a started upload is `_uploads/<uuid>/{data,startedat,
    /// hashstates/sha256/0}`; a completed upload removes its directory; a cancelled one
    /// (`DELETE` on the upload URL, 204) removes `data` and `startedat` but leaves
    /// `_uploads/<uuid>/hashstates/sha256/0` behind (the registry logs "error closing
    /// blobwriter ... file already closed"), so it shows in [`Storage::upload_dirs`] but not
    /// here. An abandoned upload stays (upload purging is disabled in the harness's config).
    pub fn uploads(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        let dir = self.repo_dir(repo).join("_uploads");
        Ok(list_dir(&dir)?
            .into_iter()
            .filter(|u| dir.join(u).join("startedat").is_file())
            .collect())
    }

    /// Every entry under `_uploads`, including leftovers of cancelled uploads, sorted.
    pub fn upload_dirs(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        list_dir(&self.repo_dir(repo).join("_uploads"))
    }

    /// `blobs/sha256/<2 hex>/<hex>/data` of `sha256:<hex>` (whether it exists or not).
    pub fn blob_data_path(&self, digest: &str) -> anyhow::Result<PathBuf> {
        let hex = digest_hex(digest)?;
        Ok(self
            .v2()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data"))
    }

    /// Whether the blob's data file exists.
    pub fn blob_exists(&self, digest: &str) -> anyhow::Result<bool> {
        Ok(self.blob_data_path(digest)?.is_file())
    }

    /// All blob digests in the store, sorted.
    pub fn blobs(&self) -> anyhow::Result<Vec<String>> {
        let base = self.v2().join("blobs/sha256");
        let mut out = Vec::new();
        for prefix in list_dir(&base)? {
            for hex in list_dir(&base.join(&prefix))? {
                if base.join(&prefix).join(&hex).join("data").is_file() {
                    out.push(format!("sha256:{hex}"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the revision link of the manifest `tag` names, leaving the tag: what a registry
    /// stopped between the two writes of a manifest DELETE leaves (Distribution 2.8 removes the
    /// revision link first, then the tags naming it). The registry then lists the tag but
    /// answers 404 MANIFEST_UNKNOWN for it. Returns the digest the tag still names.
    pub fn dangle_tag(&self, repo: &str, tag: &str) -> anyhow::Result<String> {
        let digest = self
            .tag_target(repo, tag)?
            .with_context(|| format!("{repo} has no tag {tag}"))?;
        let link = self
            .repo_dir(repo)
            .join("_manifests/revisions/sha256")
            .join(digest_hex(&digest)?)
            .join("link");
        std::fs::remove_file(&link)
            .with_context(|| format!("removing revision link {}", link.display()))?;
        Ok(digest)
    }

    /// Flips every bit of the blob's middle byte in place (same size, wrong digest): bit rot.
    pub fn corrupt_blob(&self, digest: &str) -> anyhow::Result<()> {
        let path = self.blob_data_path(digest)?;
        let mut data =
            std::fs::read(&path).with_context(|| format!("reading blob {}", path.display()))?;
        if data.is_empty() {
            bail!("blob {} is empty: nothing to corrupt", path.display());
        }
        let i = data.len() / 2;
        data[i] ^= 0xff;
        std::fs::write(&path, data)
            .with_context(|| format!("writing corrupted blob {}", path.display()))
    }

    /// Removes the blob's directory (`blobs/sha256/<2 hex>/<hex>/`) while repository links to it
    /// remain: a lost blob. The registry then answers 404 BLOB_UNKNOWN for it.
    pub fn delete_blob(&self, digest: &str) -> anyhow::Result<()> {
        let path = self.blob_data_path(digest)?;
        let dir = path.parent().context("blob data path has no parent")?;
        std::fs::remove_dir_all(dir).with_context(|| format!("removing blob dir {}", dir.display()))
    }
}

/// Lowercase hex of a `sha256:<64 hex>` digest, validated.
fn digest_hex(digest: &str) -> anyhow::Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("digest {digest:?} is not sha256:<hex>"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("digest {digest:?} is not sha256 followed by 64 lowercase hex digits");
    }
    Ok(hex)
}

/// Sorted names of the entries of `dir`; empty when it does not exist.
fn list_dir(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

fn read_link(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn linked_digests(dir: &Path) -> anyhow::Result<Vec<String>> {
    Ok(list_dir(dir)?
        .into_iter()
        .filter(|hex| dir.join(hex).join("link").is_file())
        .map(|hex| format!("sha256:{hex}"))
        .collect())
}

fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> anyhow::Result<()> {
    for name in list_dir(dir)? {
        if name.starts_with('_') {
            continue;
        }
        let path = dir.join(&name);
        if !path.is_dir() {
            continue;
        }
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if ["_manifests", "_layers", "_uploads"]
            .iter()
            .any(|m| path.join(m).is_dir())
        {
            out.push(full.clone());
        }
        walk_repos(&path, &full, out)?;
    }
    Ok(())
}
