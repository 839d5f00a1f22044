//! A Docker config.json, read the way docker reads it for one registry: the credential helper
//! it names for the host (`credHelpers`), inline credentials (`auths`: a password or an
//! identity token), or the default store (`credsStore`). Parsing only: running a helper is
//! `http::keychain`'s.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::{Map, Value};

use super::credentials::{token_shape, Credentials, MalformedToken, IDENTITY_TOKEN_USER};

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
    #[error("docker config {path:?}: auths[\"{key}\"].identitytoken {problem}")]
    MalformedIdentityToken {
        path: PathBuf,
        key: String,
        problem: MalformedToken,
    },
}

/// Where a docker config says the credentials for one registry are.
#[derive(Debug, PartialEq, Eq)]
pub enum DockerConfigEntry {
    /// In the file itself, under `auths[key]`.
    Inline {
        key: String,
        credentials: Credentials,
    },
    /// Kept by `docker-credential-<helper>`, named by `named_by` (`credHelpers["host"]` or
    /// `credsStore`).
    Helper { helper: String, named_by: String },
}

/// Registry hosts that all mean Docker Hub: `docker login` files its credentials under the
/// legacy key "https://index.docker.io/v1/" whichever of them the image names.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// The server name docker stores and asks helpers for when it means Docker Hub.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// How well an "auths" or "credHelpers" key names `registry_host`: lower is better, None is no
/// match. An exact key beats a URL form, so a file holding both uses the one `docker login`
/// writes today.
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
    if same(host, registry_host) {
        Some(scheme_rank + path_rank)
    } else if is_docker_hub(host) && is_docker_hub(registry_host) {
        Some(4 + scheme_rank + path_rank)
    } else {
        None
    }
}

fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_HOSTS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
}

/// The server name a credential helper is asked about for `registry_host`: what `docker
/// login` stored it under (host[:port], or Docker Hub's legacy index URL).
pub fn helper_server(registry_host: &str) -> String {
    if is_docker_hub(registry_host) {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        registry_host.to_owned()
    }
}

/// A docker config.json holding credentials for hundreds of registries stays far under this;
/// a bigger file is not one (a path to the wrong file, a device).
pub const MAX_DOCKER_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of a file the user named, at most `limit` of them: a bigger file is an error
/// saying so, and no more than `limit` + 1 bytes are read.
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {limit} bytes, not read further"
        )));
    }
    Ok(bytes)
}

/// Reads `path` and finds the entry for `registry_host` (see [`parse_docker_config`]).
pub fn read_docker_config(
    path: &Path,
    registry_host: &str,
) -> Result<Option<DockerConfigEntry>, DockerConfigError> {
    let text = read_capped(path, MAX_DOCKER_CONFIG_BYTES).map_err(|source| {
        DockerConfigError::Unreadable {
            path: path.to_owned(),
            source,
        }
    })?;
    parse_docker_config(&text, path, registry_host)
}

/// Where the config.json `text` (read from `path`, named in errors) keeps the credentials for
/// `registry_host` (host[:port], as in a registry URL). Ok(None) when it has none.
///
/// As docker: a `credHelpers` entry for the host comes first, then the inline `auths` entry
/// ("auth" as base64 "user:pass", or "username" and "password", or an "identitytoken"), then
/// `credsStore`. Unlike docker, an inline entry wins over `credsStore`, so a file copied from a
/// desktop whose store is not installed here still works for the registries it holds inline.
/// Keys may be "host[:port]", "https://host[:port]", "http://host[:port]", with or without a
/// "/v1/" or "/v2/" path.
pub fn parse_docker_config(
    text: &[u8],
    path: &Path,
    registry_host: &str,
) -> Result<Option<DockerConfigEntry>, DockerConfigError> {
    let config: Value =
        serde_json::from_slice(text).map_err(|source| DockerConfigError::NotJson {
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
    let object = |field: &str| match config.get(field) {
        None | Some(Value::Null) => Ok(&empty),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(invalid(format!("\"{field}\" is not an object"))),
    };
    let best = |map: &'_ Map<String, Value>| {
        map.iter()
            .filter_map(|(key, value)| Some((key_rank(key, registry_host)?, key.clone(), value)))
            .min_by_key(|(rank, _, _)| *rank)
            .map(|(_, key, value)| (key, value.clone()))
    };

    if let Some((key, helper)) = best(object("credHelpers")?) {
        let named_by = format!("credHelpers[\"{key}\"]");
        let Value::String(helper) = helper else {
            return Err(invalid(format!("{named_by} is not a string")));
        };
        check_helper_name(&helper).map_err(|p| invalid(format!("{named_by} {p}")))?;
        return Ok(Some(DockerConfigEntry::Helper { helper, named_by }));
    }
    let entry = best(object("auths")?);
    if let Some((key, entry)) = &entry {
        let found = inline_credentials(key, entry, &invalid).map_err(|e| match e {
            Inline::Invalid(e) => e,
            Inline::Token(problem) => DockerConfigError::MalformedIdentityToken {
                path: path.to_owned(),
                key: key.clone(),
                problem,
            },
        })?;
        if let Some(credentials) = found {
            return Ok(Some(DockerConfigEntry::Inline {
                key: key.clone(),
                credentials,
            }));
        }
    }
    match config.get("credsStore") {
        None | Some(Value::Null) => {}
        Some(Value::String(helper)) if helper.is_empty() => {}
        Some(Value::String(helper)) => {
            check_helper_name(helper).map_err(|p| invalid(format!("credsStore {p}")))?;
            return Ok(Some(DockerConfigEntry::Helper {
                helper: helper.clone(),
                named_by: "credsStore".to_owned(),
            }));
        }
        Some(_) => return Err(invalid("\"credsStore\" is not a string".to_owned())),
    }
    match entry {
        // An entry that is there but holds nothing usable is a broken file, not "no creds".
        Some((key, _)) => Err(invalid(format!(
            "auths[\"{key}\"] has neither \"auth\" nor \"username\" and \"password\" nor \
             \"identitytoken\", and no credential helper is named for it"
        ))),
        None => Ok(None),
    }
}

/// A helper is named by the suffix of its program, `docker-credential-<name>`: a path or an
/// option there would run something else.
fn check_helper_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "names helper {name:?}, which is not a helper name (letters, digits, '.', '_' and \
             '-', the suffix of docker-credential-<name>)"
        ))
    }
}

enum Inline {
    Invalid(DockerConfigError),
    Token(MalformedToken),
}

/// The credentials held inline in one "auths" entry, None when it holds none (as when
/// `docker login` wrote them to a credential store and left `{}` behind).
fn inline_credentials(
    key: &str,
    entry: &Value,
    invalid: &impl Fn(String) -> DockerConfigError,
) -> Result<Option<Credentials>, Inline> {
    let fail = |problem: String| Inline::Invalid(invalid(problem));
    let Value::Object(entry) = entry else {
        return Err(fail(format!("auths[\"{key}\"] is not an object")));
    };
    let string = |field: &str| match entry.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(fail(format!("auths[\"{key}\"].{field} is not a string"))),
    };
    // "auth" is "user:password", or "user:" next to an identity token.
    let from_auth = match string("auth")? {
        Some(auth) => Some(decode_auth(key, auth).map_err(fail)?),
        None => None,
    };
    if let Some(token) = string("identitytoken")? {
        token_shape(token).map_err(Inline::Token)?;
        let username = match &from_auth {
            Some((user, _)) if !user.is_empty() => user.clone(),
            _ => string("username")?
                .unwrap_or(IDENTITY_TOKEN_USER)
                .to_owned(),
        };
        return Ok(Some(Credentials::identity_token(username, token)));
    }
    if let Some((username, password)) = from_auth {
        return Ok(Some(Credentials::new(username, password)));
    }
    match (string("username")?, string("password")?) {
        (Some(username), Some(password)) => Ok(Some(Credentials::new(username, password))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(fail(format!(
            "auths[\"{key}\"] has \"username\" but no \"password\""
        ))),
        (None, Some(_)) => Err(fail(format!(
            "auths[\"{key}\"] has \"password\" but no \"username\""
        ))),
    }
}

/// "auth": base64 of "user:password". Padding is optional: some tools that write config.json
/// strip it. The decode error is not chained: it quotes an offending byte, which would be part
/// of the secret.
fn decode_auth(key: &str, auth: &str) -> Result<(String, String), String> {
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = lenient
        .decode(auth.trim())
        .map_err(|_| format!("auths[\"{key}\"].auth is not valid base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| format!("auths[\"{key}\"].auth does not decode to UTF-8"))?;
    let Some((username, password)) = decoded.split_once(':') else {
        return Err(format!(
            "auths[\"{key}\"].auth does not decode to \"user:password\""
        ));
    };
    Ok((username.to_owned(), password.to_owned()))
}

#[cfg(test)]
#[path = "docker_config_tests.rs"]
mod tests;
