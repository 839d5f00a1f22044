//! What a prober left on a registry, seen two ways: the registry's filesystem storage read
//! directly (tags, upload session directories) and its API (`GET /v2/<repo>/tags/list`, and
//! `GET` of each session's upload URL). Distribution answers a session's URL only with the
//! `_state` the URL carries: 204 while it lives, 404 BLOB_UPLOAD_UNKNOWN once it is gone, and
//! 404 BLOB_UPLOAD_INVALID without a state or with one that no longer matches the bytes it
//! holds (the session lives on, unreachable). So the API is asked with the last URL of the
//! session seen on the wire, when there is one.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::http::HttpClient;
use crate::registry::Registry;

/// A tag of the prober instance's in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub repo: String,
    pub tag: String,
}

/// An upload session directory under `<repo>/_uploads/`.
#[derive(Debug, Clone)]
pub struct Session {
    pub repo: String,
    pub uuid: String,
    /// Whether its `startedat` file exists (a cancelled session keeps only `hashstates/`).
    pub live_on_disk: bool,
    /// When it was opened: the mtime of its `startedat` file (of the directory when that is
    /// gone).
    pub opened: Option<SystemTime>,
    /// What the API says of it.
    pub api: Api,
}

/// What `GET` of a session's last known upload URL answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    /// 204: open, and the URL is current.
    Live,
    /// 404 BLOB_UPLOAD_INVALID: the registry refuses the URL's state (it holds other bytes).
    Stale,
    /// 404 BLOB_UPLOAD_UNKNOWN: gone.
    Gone,
    /// No URL of it was seen on the wire: the API cannot be asked without its state.
    Unaskable,
    /// Anything else: status and body.
    Other(u16, String),
}

impl Session {
    /// Live on disk, or by the API.
    pub fn live(&self) -> bool {
        self.live_on_disk || matches!(self.api, Api::Live | Api::Stale)
    }
}

/// Everything of one audit.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub repositories: Vec<String>,
    /// The instance's canary tags (`registry-prober-<instance>-canary-...`).
    pub canaries: Vec<Tag>,
    /// The instance's other tags: leftovers of runs.
    pub run_tags: Vec<Tag>,
    /// Tags that are not the instance's (golden images, other instances).
    pub other_tags: Vec<Tag>,
    /// `tags/list` of each repository, as the API answered it (`null` as empty).
    pub api_tags: BTreeMap<String, Vec<String>>,
    pub sessions: Vec<Session>,
}

impl Audit {
    pub fn live_sessions(&self) -> Vec<&Session> {
        self.sessions.iter().filter(|s| s.live()).collect()
    }

    /// Tags the filesystem and the API disagree on, as `repo: fs [..] api [..]`.
    pub fn disagreements(&self) -> Vec<String> {
        let mut out = Vec::new();
        for repo in &self.repositories {
            let mut on_disk: Vec<&str> = self
                .canaries
                .iter()
                .chain(&self.run_tags)
                .chain(&self.other_tags)
                .filter(|t| &t.repo == repo)
                .map(|t| t.tag.as_str())
                .collect();
            on_disk.sort_unstable();
            let api: Vec<&str> = self
                .api_tags
                .get(repo)
                .map(|t| t.iter().map(String::as_str).collect())
                .unwrap_or_default();
            if on_disk != api {
                out.push(format!("{repo}: storage {on_disk:?}, tags/list {api:?}"));
            }
        }
        out
    }

    /// One paragraph for a report.
    pub fn describe(&self) -> String {
        let tags = |ts: &[Tag]| {
            ts.iter()
                .map(|t| format!("{}:{}", t.repo, t.tag))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cancelled = self.sessions.iter().filter(|s| !s.live()).count();
        format!(
            "repositories: {}\ncanaries ({}): {}\nrun tags left ({}): {}\nother tags ({}): {}\n\
             upload session directories: {} ({} live, {} cancelled leftovers of hashstates only)\n\
             live sessions: {}\nstorage vs tags/list disagreements: {:?}",
            self.repositories.join(", "),
            self.canaries.len(),
            tags(&self.canaries),
            self.run_tags.len(),
            tags(&self.run_tags),
            self.other_tags.len(),
            tags(&self.other_tags),
            self.sessions.len(),
            self.live_sessions().len(),
            cancelled,
            self.live_sessions()
                .iter()
                .map(|s| format!(
                    "{}/_uploads/{} (startedat on disk: {}, API: {:?})",
                    s.repo, s.uuid, s.live_on_disk, s.api
                ))
                .collect::<Vec<_>>()
                .join(", "),
            self.disagreements(),
        )
    }
}

/// Audits a running registry's storage for the tags and sessions of prober `instance`;
/// `seen`: the `path?query` of requests seen on the wire, where sessions' URLs are found.
pub fn audit(registry: &Registry, instance: &str, seen: &[String]) -> anyhow::Result<Audit> {
    let storage = registry.storage();
    let client = HttpClient::new().with_timeout(Duration::from_secs(10));
    let ours = format!("registry-prober-{instance}-");
    let canary = format!("{ours}canary-");
    let mut audit = Audit {
        repositories: storage.repositories()?,
        ..Audit::default()
    };
    for repo in audit.repositories.clone() {
        for tag in storage.tags(&repo)? {
            let t = Tag {
                repo: repo.clone(),
                tag: tag.clone(),
            };
            if tag.starts_with(&canary) {
                audit.canaries.push(t);
            } else if tag.starts_with(&ours) {
                audit.run_tags.push(t);
            } else {
                audit.other_tags.push(t);
            }
        }
        let url = format!("{}/v2/{repo}/tags/list", registry.url());
        let r = client.get(&url).with_context(|| format!("GET {url}"))?;
        let mut listed: Vec<String> = match r.status {
            200 => serde_json::from_value(r.json()?["tags"].clone()).unwrap_or_default(),
            // A repository with upload sessions and nothing pushed is unknown to tags/list.
            404 => Vec::new(),
            s => anyhow::bail!("GET {url} answered {s}: {}", r.text()),
        };
        listed.sort();
        audit.api_tags.insert(repo.clone(), listed);
        let live = storage.uploads(&repo)?;
        for uuid in storage.upload_dirs(&repo)? {
            let dir = storage.repo_dir(&repo).join("_uploads").join(&uuid);
            let last = seen
                .iter()
                .rev()
                .find(|t| t.contains(&uuid) && t.contains("_state="));
            let api = match last {
                None => Api::Unaskable,
                Some(target) => {
                    let url = format!("{}{target}", registry.url());
                    let r = client.get(&url).with_context(|| format!("GET {url}"))?;
                    let text = r.text();
                    match r.status {
                        204 => Api::Live,
                        404 if text.contains("BLOB_UPLOAD_INVALID") => Api::Stale,
                        404 if text.contains("BLOB_UPLOAD_UNKNOWN") => Api::Gone,
                        s => Api::Other(s, text),
                    }
                }
            };
            audit.sessions.push(Session {
                repo: repo.clone(),
                live_on_disk: live.contains(&uuid),
                opened: std::fs::metadata(dir.join("startedat"))
                    .or_else(|_| std::fs::metadata(&dir))
                    .and_then(|m| m.modified())
                    .ok(),
                uuid,
                api,
            });
        }
    }
    Ok(audit)
}
