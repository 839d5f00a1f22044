//! Credentials: a user name and password (never shown), and reading them from a Docker
//! config.json.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::{Map, Value};

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    #[cfg(test)]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The Authorization header value, "Basic base64(user:pass)".
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &format_args!("<redacted>"))
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user \"{}\" (password redacted)", self.username)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("cannot read docker config {path:?}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker config {path:?} is not valid JSON")]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("docker config {path:?}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error(
        "docker config {path:?}: auths[\"{key}\"] holds an identity token, which is not \
         supported; put a username and password there instead"
    )]
    IdentityToken { path: PathBuf, key: String },
    #[error(
        "docker config {path:?}: credentials for \"{host}\" are kept by credential helper \
         \"{helper}\", and credential helpers are not supported; put the credentials inline \
         in \"auths\" or use username/password_file"
    )]
    CredentialHelper {
        path: PathBuf,
        host: String,
        helper: String,
    },
}

/// Registry hosts that all mean Docker Hub: `docker login` files its credentials under the
/// legacy key "https://index.docker.io/v1/" whichever of them the image names.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// How well an "auths" key names `registry_host`: lower is better, None is no match. An exact
/// key beats a URL form, so a file holding both uses the one `docker login` writes today.
fn key_rank(key: &str, registry_host: &str) -> Option<u8> {
    let (rest, scheme_rank) = if let Some(rest) = key.strip_prefix("https://") {
        (rest, 1)
    } else if let Some(rest) = key.strip_prefix("http://") {
        (rest, 2)
    } else {
        (key, 0)
    };
    // "host/v1/", "host/v2/": old docker versions stored the API endpoint.
    let (host, path_rank) = match rest.split_once('/') {
        Some((host, _)) => (host, 3),
        None => (rest, 0),
    };
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let hub = |h: &str| DOCKER_HUB_HOSTS.iter().any(|hub| same(h, hub));
    if same(host, registry_host) {
        Some(scheme_rank + path_rank)
    } else if hub(host) && hub(registry_host) {
        Some(4 + scheme_rank + path_rank)
    } else {
        None
    }
}

/// Credentials for `registry_host` (host[:port], as in a registry URL) from a Docker
/// config.json. Ok(None) when no entry matches.
///
/// "auths" entries may be keyed "host[:port]", "https://host[:port]", "http://host[:port]",
/// with or without a "/v1/"/"/v2/" path; an entry holds "auth" (base64 "user:pass") or
/// "username" and "password". Identity tokens and credential helpers ("credHelpers",
/// "credsStore") are not supported and give an error saying so.
pub fn docker_config_credentials(
    path: &Path,
    registry_host: &str,
) -> Result<Option<Credentials>, DockerConfigError> {
    let text = std::fs::read(path).map_err(|source| DockerConfigError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let config: Value =
        serde_json::from_slice(&text).map_err(|source| DockerConfigError::NotJson {
            path: path.to_owned(),
            source,
        })?;
    let invalid = |problem: String| DockerConfigError::Invalid {
        path: path.to_owned(),
        problem,
    };
    let Value::Object(config) = config else {
        return Err(invalid("not a JSON object".to_owned()));
    };

    let empty = Map::new();
    let auths = match config.get("auths") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(auths)) => auths,
        Some(_) => return Err(invalid("\"auths\" is not an object".to_owned())),
    };
    let entry = auths
        .iter()
        .filter_map(|(key, entry)| Some((key_rank(key, registry_host)?, key, entry)))
        .min_by_key(|(rank, _, _)| *rank);
    if let Some((_, key, entry)) = entry {
        if let Some(credentials) = inline_credentials(key, entry, &invalid, path)? {
            return Ok(Some(credentials));
        }
    }

    // No inline credentials: docker would now ask a helper, which we cannot do.
    let helper = match config.get("credHelpers") {
        Some(Value::Object(helpers)) => helpers
            .iter()
            .filter(|(key, _)| key_rank(key, registry_host).is_some())
            .find_map(|(_, helper)| helper.as_str()),
        _ => None,
    }
    .or_else(|| config.get("credsStore").and_then(Value::as_str))
    .filter(|helper| !helper.is_empty());
    if let Some(helper) = helper {
        return Err(DockerConfigError::CredentialHelper {
            path: path.to_owned(),
            host: registry_host.to_owned(),
            helper: helper.to_owned(),
        });
    }
    match entry {
        // An entry that is there but holds nothing usable is a broken file, not "no creds".
        Some((_, key, _)) => Err(invalid(format!(
            "auths[\"{key}\"] has neither \"auth\" nor \"username\" and \"password\""
        ))),
        None => Ok(None),
    }
}

/// The credentials held inline in one "auths" entry, None when it holds none (as when
/// `docker login` wrote them to a credential store and left `{}` behind).
fn inline_credentials(
    key: &str,
    entry: &Value,
    invalid: &impl Fn(String) -> DockerConfigError,
    path: &Path,
) -> Result<Option<Credentials>, DockerConfigError> {
    let Value::Object(entry) = entry else {
        return Err(invalid(format!("auths[\"{key}\"] is not an object")));
    };
    let string = |field: &str| match entry.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(invalid(format!("auths[\"{key}\"].{field} is not a string"))),
    };
    // With an identity token, "auth" holds the placeholder user "<token>", not a password.
    if string("identitytoken")?.is_some() {
        return Err(DockerConfigError::IdentityToken {
            path: path.to_owned(),
            key: key.to_owned(),
        });
    }
    if let Some(auth) = string("auth")? {
        // Padding is optional: some tools that write config.json strip it. The decode error
        // is not chained: it quotes an offending byte, which would be part of the secret.
        let lenient = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let decoded = lenient
            .decode(auth.trim())
            .map_err(|_| invalid(format!("auths[\"{key}\"].auth is not valid base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| invalid(format!("auths[\"{key}\"].auth does not decode to UTF-8")))?;
        let Some((username, password)) = decoded.split_once(':') else {
            return Err(invalid(format!(
                "auths[\"{key}\"].auth does not decode to \"user:password\""
            )));
        };
        return Ok(Some(Credentials::new(username, password)));
    }
    match (string("username")?, string("password")?) {
        (Some(username), Some(password)) => Ok(Some(Credentials::new(username, password))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(format!(
            "auths[\"{key}\"] has \"username\" but no \"password\""
        ))),
        (None, Some(_)) => Err(invalid(format!(
            "auths[\"{key}\"] has \"password\" but no \"username\""
        ))),
    }
}
