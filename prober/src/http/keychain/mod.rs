//! Where the client's credentials come from, asked again when they go stale: a password given
//! once, a password file, or a Docker config.json with its credential helpers (`helper`).
//! What came from a file or a helper is used for the refresh interval at most, never past an
//! expiry it states, and fetched again after the registry or its token service rejected it;
//! each distinct value gets a new generation, which keys the tokens it buys.

mod helper;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::auth::{helper_server, parse_docker_config, read_docker_config, Credentials};
use super::auth::{read_capped, MAX_DOCKER_CONFIG_BYTES};
use super::auth::{DockerConfigEntry, DockerConfigError};
pub use helper::HelperError;

/// How long credentials from a file or a helper are used before they are fetched again: well
/// under the shortest lifetime of the tokens helpers hand out (Artifact Registry's, ~1 h).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);
/// How long a credential helper may take to answer.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(5);
/// Credentials that say when they expire are dropped this long before, so none is sent in
/// its last moments (and our clock may be behind the issuer's).
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why no credentials could be had. Messages name the source, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    #[error("cannot read password file {path}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("password file {path} is empty")]
    EmptyPasswordFile { path: PathBuf },
    #[error("password file {path} is not UTF-8 text")]
    PasswordNotText { path: PathBuf },
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
    #[error("docker config {path:?} has no credentials for {host}")]
    NoEntry { path: PathBuf, host: String },
    #[error("docker config {path:?}: {named_by}: {source}")]
    Helper {
        path: PathBuf,
        named_by: String,
        #[source]
        source: HelperError,
    },
    #[error("{from} expired {ago} ago (its exp is {at})")]
    Expired {
        from: String,
        ago: String,
        at: String,
    },
    #[error("{from} expires in {left} (its exp is {at}), too soon to be used")]
    ExpiresTooSoon {
        from: String,
        left: String,
        at: String,
    },
}

/// Where credentials come from.
#[derive(Debug)]
pub enum Origin {
    /// A password given once (from the environment): never fetched again.
    Fixed(Credentials),
    /// `password` in a file, re-read when stale (a Kubernetes Secret is updated in place).
    PasswordFile { username: String, path: PathBuf },
    /// A Docker config.json, re-read when stale; the helper it names is run again.
    DockerConfig { path: PathBuf, host: String },
}

/// Settings of a refreshed source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub interval: Duration,
    pub helper_timeout: Duration,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh {
            interval: DEFAULT_REFRESH,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }
}

/// Credentials as the client uses them: the value, and its generation in its source.
#[derive(Clone, Debug)]
pub struct Current {
    pub credentials: Arc<Credentials>,
    pub generation: u64,
}

/// The client's credentials, asked for when needed. Shared by the endpoints that use the same
/// ones (a pull path on the origin's host).
#[derive(Debug)]
pub struct CredentialSource {
    origin: Origin,
    refresh: Refresh,
    cache: Mutex<Cache>,
    /// One fetch at a time: concurrent askers wait for it instead of running the helper again.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Cache {
    current: Option<Cached>,
    /// The last generation handed out; 0 is "anonymous" in token keys.
    generation: u64,
}

#[derive(Debug)]
struct Cached {
    credentials: Arc<Credentials>,
    generation: u64,
    /// Used until then; after that (or once rejected) fetched again.
    use_until: Instant,
}

impl CredentialSource {
    /// A password given once: the same credentials for as long as the config is loaded.
    pub fn fixed(credentials: Credentials) -> CredentialSource {
        let source = CredentialSource::new(Origin::Fixed(credentials.clone()), Refresh::default());
        source.store(credentials, None);
        source
    }

    /// A user name and a password file, read now (a missing or empty file is a config error)
    /// and again whenever the value is `refresh.interval` old.
    pub fn password_file(
        username: String,
        path: PathBuf,
        refresh: Refresh,
    ) -> Result<CredentialSource, KeychainError> {
        let read = read_capped(&path, MAX_PASSWORD_FILE_BYTES);
        let credentials = Credentials::new(&username, password_from(&path, read)?);
        let source = CredentialSource::new(Origin::PasswordFile { username, path }, refresh);
        source.store(credentials, None);
        Ok(source)
    }

    /// A Docker config.json's credentials for `host`, checked now: the file must be readable
    /// and name credentials for the host, inline ones well-formed and unexpired, a helper one
    /// that is on PATH. A helper is first run when credentials are needed.
    pub fn docker_config(
        path: PathBuf,
        host: String,
        refresh: Refresh,
    ) -> Result<CredentialSource, KeychainError> {
        let entry = read_docker_config(&path, &host)?;
        let source = CredentialSource::new(
            Origin::DockerConfig {
                path: path.clone(),
                host: host.clone(),
            },
            refresh,
        );
        match entry {
            None => return Err(KeychainError::NoEntry { path, host }),
            Some(DockerConfigEntry::Inline { key, credentials }) => {
                let from = format!("docker config {path:?}: auths[\"{key}\"]");
                let until = usable_until(&credentials, &from, SystemTime::now())?;
                source.store(credentials, until);
            }
            Some(DockerConfigEntry::Helper { helper, named_by }) => {
                let program = helper::program(&helper);
                if helper::find_on_path(&program).is_none() {
                    let source = HelperError::NotOnPath { program };
                    return Err(KeychainError::Helper {
                        path,
                        named_by,
                        source,
                    });
                }
            }
        }
        Ok(source)
    }

    fn new(origin: Origin, refresh: Refresh) -> CredentialSource {
        CredentialSource {
            origin,
            refresh,
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The generation of credentials that are still good to use, without fetching any.
    pub fn fresh_generation(&self) -> Option<u64> {
        let cache = self.lock();
        let cached = cache.current.as_ref()?;
        (Instant::now() < cached.use_until).then_some(cached.generation)
    }

    /// Credentials good to use now: the cached ones, or fetched again (the file re-read, the
    /// helper run) when they are stale, rejected or expired; at most until `deadline`.
    pub async fn get(&self, deadline: Instant) -> Result<Current, KeychainError> {
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let _one_at_a_time = self.fetching.lock().await;
        // Another asker may have fetched them while this one waited.
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let (credentials, until) = self.fetch(deadline).await?;
        Ok(self.store(credentials, until))
    }

    /// The registry or its token service rejected credentials of `generation`: the next
    /// `get` fetches them again (a rotated password, a helper's token that expired early).
    /// Fixed credentials stay: there is nothing to fetch them from.
    pub fn rejected(&self, generation: u64) {
        if matches!(self.origin, Origin::Fixed(_)) {
            return;
        }
        let mut cache = self.lock();
        if let Some(cached) = cache.current.as_mut() {
            if cached.generation == generation {
                cached.use_until = Instant::now();
            }
        }
    }

    fn cached(&self) -> Option<Current> {
        let cache = self.lock();
        let cached = cache.current.as_ref()?;
        (Instant::now() < cached.use_until).then(|| Current {
            credentials: cached.credentials.clone(),
            generation: cached.generation,
        })
    }

    /// Keeps `credentials` until the refresh interval ends or `expires` (whichever is first);
    /// a changed value gets a new generation.
    fn store(&self, credentials: Credentials, expires: Option<SystemTime>) -> Current {
        let now = Instant::now();
        let mut use_until = match self.origin {
            // A day at a time: `Instant` has no "never", and a day is far from overflow.
            Origin::Fixed(_) => now + Duration::from_secs(24 * 3600),
            _ => now + self.refresh.interval,
        };
        if let Some(left) = expires.and_then(|e| e.duration_since(SystemTime::now()).ok()) {
            use_until = use_until.min(now + left);
        }
        let mut cache = self.lock();
        let same = cache
            .current
            .as_ref()
            .filter(|c| *c.credentials == credentials);
        let (credentials, generation) = match same {
            Some(c) => (c.credentials.clone(), c.generation),
            None => {
                cache.generation += 1;
                (Arc::new(credentials), cache.generation)
            }
        };
        cache.current = Some(Cached {
            credentials: credentials.clone(),
            generation,
            use_until,
        });
        Current {
            credentials,
            generation,
        }
    }

    /// Fetches the credentials from their origin, with the time they must stop being used.
    async fn fetch(
        &self,
        deadline: Instant,
    ) -> Result<(Credentials, Option<SystemTime>), KeychainError> {
        match &self.origin {
            Origin::Fixed(credentials) => Ok((credentials.clone(), None)),
            Origin::PasswordFile { username, path } => {
                let read = read_capped_blocking(path, MAX_PASSWORD_FILE_BYTES).await;
                let password = password_from(path, read)?;
                Ok((Credentials::new(username, password), None))
            }
            Origin::DockerConfig { path, host } => {
                let read = read_capped_blocking(path, MAX_DOCKER_CONFIG_BYTES).await;
                let text = read.map_err(|source| DockerConfigError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
                let entry = parse_docker_config(&text, path, host)?;
                let (credentials, from) = match entry {
                    None => {
                        return Err(KeychainError::NoEntry {
                            path: path.clone(),
                            host: host.clone(),
                        })
                    }
                    Some(DockerConfigEntry::Inline { key, credentials }) => (
                        credentials,
                        format!("docker config {path:?}: auths[\"{key}\"]"),
                    ),
                    Some(DockerConfigEntry::Helper { helper, named_by }) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let timeout = self.refresh.helper_timeout.min(left);
                        let server = helper_server(host);
                        let credentials =
                            helper::get(&helper, &server, timeout)
                                .await
                                .map_err(|source| KeychainError::Helper {
                                    path: path.clone(),
                                    named_by,
                                    source,
                                })?;
                        let from = format!(
                            "the credential from {} for {server}",
                            helper::program(&helper)
                        );
                        (credentials, from)
                    }
                };
                let until = usable_until(&credentials, &from, SystemTime::now())?;
                Ok((credentials, until))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Whole values are swapped under the lock: a panic cannot leave one half-written.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// When credentials that state an expiry must stop being used (their expiry less a margin),
/// or an error if that is already past: an expired credential is never sent.
fn usable_until(
    credentials: &Credentials,
    from: &str,
    now: SystemTime,
) -> Result<Option<SystemTime>, KeychainError> {
    let Some(expiry) = credentials.expiry() else {
        return Ok(None);
    };
    let until = expiry.checked_sub(EXPIRY_MARGIN).unwrap_or(expiry);
    if until > now {
        return Ok(Some(until));
    }
    let whole =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    let from = from.to_owned();
    let at = humantime::format_rfc3339_seconds(expiry).to_string();
    Err(match expiry.duration_since(now) {
        Ok(left) => KeychainError::ExpiresTooSoon {
            from,
            left: whole(left),
            at,
        },
        Err(past) => KeychainError::Expired {
            from,
            ago: whole(past.duration()),
            at,
        },
    })
}

/// A password file holds one password (or token): a bigger file is not one.
const MAX_PASSWORD_FILE_BYTES: u64 = 64 * 1024;

/// `read_capped` off the runtime's workers, as tokio::fs reads.
async fn read_capped_blocking(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_capped(&path, limit))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// A password file's content: one trailing newline (as `echo` writes) is not part of it.
fn password_from(path: &Path, read: std::io::Result<Vec<u8>>) -> Result<String, KeychainError> {
    let bytes = read.map_err(|source| KeychainError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| KeychainError::PasswordNotText {
        path: path.to_owned(),
    })?;
    let password = text
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(KeychainError::EmptyPasswordFile {
            path: path.to_owned(),
        });
    }
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests;
