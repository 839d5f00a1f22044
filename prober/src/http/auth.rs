//! Registry auth: WWW-Authenticate challenges, bearer token responses and their cache,
//! and credentials from a Docker config.json.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::{Map, Value};

/// Header values quoted in errors are cut here: a broken server may send anything.
const MAX_QUOTED_HEADER: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// A scheme we do not speak (Negotiate, Digest, ...); kept so the caller can say which.
    Other {
        scheme: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("malformed WWW-Authenticate header \"{header}\": {problem} at byte {position}")]
    Malformed {
        header: String,
        problem: &'static str,
        position: usize,
    },
    #[error("WWW-Authenticate header \"{header}\" holds no challenge")]
    Empty { header: String },
    #[error("WWW-Authenticate header \"{header}\": bearer challenge has no realm")]
    BearerWithoutRealm { header: String },
    #[error("token realm \"{realm}\" is not a valid URL")]
    InvalidRealm {
        realm: String,
        #[source]
        source: url::ParseError,
    },
    #[error("token realm \"{realm}\" is not an absolute http(s) URL")]
    RealmNotHttp { realm: String },
}

/// Parses a WWW-Authenticate header value (RFC 7235 section 4.1): one or more challenges,
/// auth-params with quoted strings (with backslash escapes) or tokens, scheme names
/// case-insensitive, commas inside quotes (scope="repository:a:pull,push").
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut parser = ChallengeParser {
        header,
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        // The #rule allows empty list elements: ", ,Basic" is legal.
        parser.skip_while(|b| b == b',' || is_ows(b));
        if parser.at_end() {
            break;
        }
        let scheme = parser.token("expected an auth scheme")?;
        let params = parser.challenge_params()?;
        challenges.push(parser.challenge(scheme, params)?);
    }
    if challenges.is_empty() {
        return Err(ChallengeError::Empty {
            header: quote_header(header),
        });
    }
    Ok(challenges)
}

struct ChallengeParser<'a> {
    header: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ChallengeParser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
    }

    fn malformed(&self, problem: &'static str) -> ChallengeError {
        ChallengeError::Malformed {
            header: quote_header(self.header),
            problem,
            position: self.pos,
        }
    }

    fn token(&mut self, problem: &'static str) -> Result<&'a str, ChallengeError> {
        let start = self.pos;
        self.skip_while(is_tchar);
        if self.pos == start {
            return Err(self.malformed(problem));
        }
        // tchars are ASCII, so both ends are char boundaries.
        Ok(&self.header[start..self.pos])
    }

    /// Whether a `token BWS "="` starts here, i.e. an auth-param rather than the next
    /// challenge's scheme. This is how "Bearer realm=x, Basic realm=y" splits: after a
    /// comma, `Basic` is followed by a space and another token, not by '='.
    fn param_follows(&self) -> bool {
        let mut i = self.pos;
        let start = i;
        while self.bytes.get(i).copied().is_some_and(is_tchar) {
            i += 1;
        }
        if i == start {
            return false;
        }
        while self.bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        self.bytes.get(i) == Some(&b'=')
    }

    /// A token68 (as in `Negotiate YII...==`) ends at the end of the header or at a comma.
    fn token68_follows(&self) -> bool {
        let mut i = self.pos;
        let start = i;
        while self
            .bytes
            .get(i)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        {
            i += 1;
        }
        if i == start {
            return false;
        }
        while self.bytes.get(i) == Some(&b'=') {
            i += 1;
        }
        while self.bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        matches!(self.bytes.get(i), None | Some(b','))
    }

    /// The auth-params after a scheme, stopping before the comma that starts the next
    /// challenge.
    fn challenge_params(&mut self) -> Result<Vec<(&'a str, String)>, ChallengeError> {
        let mut params = Vec::new();
        match self.peek() {
            None | Some(b',') => return Ok(params),
            Some(b' ') => {}
            Some(_) => return Err(self.malformed("expected a space after the auth scheme")),
        }
        self.skip_while(|b| b == b' ');
        if self.at_end() || self.peek() == Some(b',') {
            return Ok(params);
        }
        if !self.param_follows() && self.token68_follows() {
            // A token68 credential blob: no parameter we use, so it is skipped.
            self.skip_while(|b| b != b',');
            return Ok(params);
        }
        loop {
            let name = self.token("expected a parameter name")?;
            self.skip_while(is_ows);
            if self.peek() != Some(b'=') {
                return Err(self.malformed("expected '=' after a parameter name"));
            }
            self.pos += 1;
            self.skip_while(is_ows);
            let value = if self.peek() == Some(b'"') {
                self.quoted_string()?
            } else {
                self.token("expected a token or quoted string as parameter value")?
                    .to_owned()
            };
            params.push((name, value));
            self.skip_while(is_ows);
            if self.at_end() {
                return Ok(params);
            }
            if self.peek() != Some(b',') {
                return Err(self.malformed("expected ',' after a parameter value"));
            }
            // Look past the comma(s): another parameter, or the next challenge?
            let comma = self.pos;
            self.skip_while(|b| b == b',' || is_ows(b));
            if !self.param_follows() {
                self.pos = comma;
                return Ok(params);
            }
        }
    }

    fn quoted_string(&mut self) -> Result<String, ChallengeError> {
        let open = self.pos;
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = open;
                    return Err(self.malformed("unterminated quoted string"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    // Only ASCII backslashes were dropped from a &str, so this is UTF-8;
                    // lossy conversion just avoids a panic path.
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                            value.push(b);
                            self.pos += 1;
                        }
                        _ => return Err(self.malformed("invalid escape in quoted string")),
                    }
                }
                Some(b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                    value.push(b);
                    self.pos += 1;
                }
                Some(_) => return Err(self.malformed("control character in quoted string")),
            }
        }
    }

    fn challenge(
        &self,
        scheme: &str,
        params: Vec<(&str, String)>,
    ) -> Result<Challenge, ChallengeError> {
        // Parameter names are case-insensitive; a repeated one is a server bug, first wins.
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            Ok(Challenge::Basic {
                realm: param("realm"),
            })
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let realm = param("realm").ok_or_else(|| ChallengeError::BearerWithoutRealm {
                header: quote_header(self.header),
            })?;
            Ok(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            })
        } else {
            Ok(Challenge::Other {
                scheme: scheme.to_owned(),
            })
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn quote_header(header: &str) -> String {
    match header.char_indices().nth(MAX_QUOTED_HEADER) {
        Some((cut, _)) => format!("{}...", &header[..cut]),
        None => header.to_owned(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// "repository:<name>:<actions joined by ','>" (actions sorted, deduplicated), so the same
/// permissions always make the same scope string and hit the same cached token.
pub fn repository_scope(repository: &str, actions: &[Action]) -> String {
    let mut actions = actions.to_vec();
    actions.sort_unstable();
    actions.dedup();
    let actions: Vec<&str> = actions.into_iter().map(Action::as_str).collect();
    format!("repository:{repository}:{}", actions.join(","))
}

/// The token request URL: realm + ?service=..&scope=.. (one scope param per scope), properly
/// query-encoded; error if realm is not an absolute http(s) URL. A query already in the realm
/// is kept.
pub fn token_url(
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
) -> Result<url::Url, ChallengeError> {
    let mut url = url::Url::parse(realm).map_err(|source| ChallengeError::InvalidRealm {
        realm: quote_header(realm),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(ChallengeError::RealmNotHttp {
            realm: quote_header(realm),
        });
    }
    if service.is_some() || !scopes.is_empty() {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    Ok(url)
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires_at: Instant,
}

/// Redacts the token: Debug output ends up in logs.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &format_args!("<redacted>"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token response is not valid JSON")]
    NotJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("token response is not a JSON object")]
    NotAnObject,
    #[error("token response has neither \"token\" nor \"access_token\"")]
    MissingToken,
    #[error("\"{field}\" in token response is not a string")]
    TokenNotString { field: &'static str },
    #[error("\"expires_in\" in token response is not a number of seconds (got {got})")]
    BadExpiresIn { got: &'static str },
}

/// The docker token spec's default and minimum lifetime.
const MIN_TOKEN_LIFETIME_SECS: u64 = 60;
/// A token longer-lived than a day is cached for a day: it bounds a stale token's life and
/// keeps `Instant` arithmetic far from overflow on absurd values.
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// Parses a token endpoint response: {"token": ..} or {"access_token": ..} (docker and OAuth2
/// forms; if both, "token" wins), "expires_in" seconds (default 60 per the docker token spec,
/// minimum 60). "issued_at" is ignored for expiry (the registry's clock may be skewed from
/// ours): expiry is `now` + expires_in, minus a 10% safety margin.
pub fn parse_token_response(body: &[u8], now: Instant) -> Result<Token, TokenError> {
    // Parsed as a Value, not a typed struct: serde's type errors quote the offending value,
    // and that value could be a token.
    let value: Value =
        serde_json::from_slice(body).map_err(|source| TokenError::NotJson { source })?;
    let Value::Object(object) = value else {
        return Err(TokenError::NotAnObject);
    };
    let token_field = |field: &'static str| match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        // Some servers send an empty "token" next to a real "access_token".
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::TokenNotString { field }),
    };
    let value = match token_field("token")? {
        Some(token) => token,
        None => token_field("access_token")?.ok_or(TokenError::MissingToken)?,
    };
    let expires_in = match object.get("expires_in") {
        None | Some(Value::Null) => MIN_TOKEN_LIFETIME_SECS,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => secs,
            // Fractional seconds: rounded down (the margin covers the rest).
            (None, Some(secs)) if secs.is_finite() && secs >= 0.0 => secs as u64,
            _ => {
                return Err(TokenError::BadExpiresIn {
                    got: "a negative number",
                })
            }
        },
        Some(other) => {
            return Err(TokenError::BadExpiresIn {
                got: json_type(other),
            })
        }
    };
    let secs = expires_in.clamp(MIN_TOKEN_LIFETIME_SECS, MAX_TOKEN_LIFETIME_SECS);
    let lifetime = Duration::from_secs(secs) * 9 / 10;
    Ok(Token {
        value,
        expires_at: now + lifetime,
    })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Tokens cached per (realm, service, scope) until expiry. Thread-safe (interior Mutex).
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, Token>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub realm: String,
    pub service: Option<String>,
    pub scope: String,
}

impl TokenCache {
    /// The cached token for `key` if it has not expired at `now`; an expired one is dropped.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<String> {
        let mut tokens = self.lock();
        match tokens.get(key) {
            Some(token) if now < token.expires_at => Some(token.value.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: TokenKey, token: Token) {
        self.lock().insert(key, token);
    }

    /// Drops one token, e.g. one the registry rejected before its expiry.
    pub fn remove(&self, key: &TokenKey) {
        self.lock().remove(key);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Token>> {
        // A panic while holding the lock cannot leave a HashMap of whole tokens half-written
        // in a way that matters: at worst a token is missing and gets fetched again.
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("tokens", &self.lock().len())
            .finish()
    }
}

/// Username and password. Debug and Display redact the password.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.to_owned(),
            service: service.map(str::to_owned),
            scope: scope.map(str::to_owned),
        }
    }

    #[test]
    fn parses_docker_hubs_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenges(header).unwrap(),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/alpine:pull")
            )]
        );
    }

    #[test]
    fn parses_distributions_basic_challenge() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#).unwrap(),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".to_owned())
            }]
        );
    }

    #[test]
    fn parses_a_basic_challenge_without_parameters() {
        assert_eq!(
            parse_challenges("Basic").unwrap(),
            vec![Challenge::Basic { realm: None }]
        );
    }

    #[test]
    fn parses_ghcrs_challenge_with_a_comma_inside_the_scope() {
        let header = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull,push""#;
        assert_eq!(
            parse_challenges(header).unwrap(),
            vec![bearer(
                "https://ghcr.io/token",
                Some("ghcr.io"),
                Some("repository:user/image:pull,push")
            )]
        );
    }

    #[test]
    fn parses_several_challenges_in_one_header() {
        let header = r#"Negotiate, Bearer realm="https://r.example/token", service=reg , Basic realm="x", Negotiate YIIabc+/==, Digest realm="d", nonce="n""#;
        assert_eq!(
            parse_challenges(header).unwrap(),
            vec![
                Challenge::Other {
                    scheme: "Negotiate".to_owned()
                },
                bearer("https://r.example/token", Some("reg"), None),
                Challenge::Basic {
                    realm: Some("x".to_owned())
                },
                Challenge::Other {
                    scheme: "Negotiate".to_owned()
                },
                Challenge::Other {
                    scheme: "Digest".to_owned()
                },
            ]
        );
    }

    #[test]
    fn matches_scheme_and_parameter_names_case_insensitively() {
        assert_eq!(
            parse_challenges(r#"bEARER REALM="https://a/t",Service="s",SCOPE="x""#).unwrap(),
            vec![bearer("https://a/t", Some("s"), Some("x"))]
        );
        assert_eq!(
            parse_challenges(r#"BASIC realm="r""#).unwrap(),
            vec![Challenge::Basic {
                realm: Some("r".to_owned())
            }]
        );
    }

    #[test]
    fn unescapes_backslashes_in_quoted_strings() {
        assert_eq!(
            parse_challenges(r#"Basic realm="say \"hi\" \\ \o""#).unwrap(),
            vec![Challenge::Basic {
                realm: Some(r#"say "hi" \ o"#.to_owned())
            }]
        );
    }

    #[test]
    fn tolerates_spaces_around_equals_and_empty_list_elements() {
        assert_eq!(
            parse_challenges(r#" , Bearer realm = "https://a/t" ,, scope=x,"#).unwrap(),
            vec![bearer("https://a/t", None, Some("x"))]
        );
    }

    #[test]
    fn keeps_non_ascii_in_quoted_strings() {
        assert_eq!(
            parse_challenges("Basic realm=\"régistre\"").unwrap(),
            vec![Challenge::Basic {
                realm: Some("régistre".to_owned())
            }]
        );
    }

    #[test]
    fn rejects_an_unterminated_quoted_string() {
        let err = parse_challenges(r#"Bearer realm="https://a/t"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"malformed WWW-Authenticate header "Bearer realm="https://a/t": unterminated quoted string at byte 13"#
        );
    }

    #[test]
    fn rejects_a_bearer_challenge_without_realm() {
        let err = parse_challenges(r#"Bearer service="s""#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"WWW-Authenticate header "Bearer service="s"": bearer challenge has no realm"#
        );
    }

    #[test]
    fn rejects_an_empty_header() {
        let err = parse_challenges(" , ").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"WWW-Authenticate header " , " holds no challenge"#
        );
    }

    #[test]
    fn rejects_malformed_headers_without_panicking() {
        let cases = [
            ("=realm", "expected an auth scheme at byte 0"),
            (
                "Bearer a b",
                "expected '=' after a parameter name at byte 9",
            ),
            (
                "Bearer realm=",
                "expected a token or quoted string as parameter value at byte 13",
            ),
            (
                r#"Bearer realm="a" scope="b""#,
                "expected ',' after a parameter value at byte 17",
            ),
            (
                "Bearer\"x\"",
                "expected a space after the auth scheme at byte 6",
            ),
            (
                "Basic realm=\"a\u{1}\"",
                "control character in quoted string at byte 14",
            ),
            (
                "Basic realm=\"a\\",
                "invalid escape in quoted string at byte 15",
            ),
            (
                "Basic realm=é",
                "expected a token or quoted string as parameter value at byte 12",
            ),
        ];
        for (header, problem) in cases {
            let err = parse_challenges(header).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("malformed WWW-Authenticate header \"{header}\": {problem}"),
                "header {header:?}"
            );
        }
        // Every prefix of a real header is either parsed or rejected, never a panic.
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull,push", Basic realm="é\"""#;
        for (cut, _) in header.char_indices() {
            let _ = parse_challenges(&header[..cut]);
        }
    }

    #[test]
    fn cuts_a_long_header_in_an_error_to_200_characters() {
        let header = format!("Bearer realm=\"{}", "a".repeat(300));
        let ChallengeError::Malformed { header: quoted, .. } =
            parse_challenges(&header).unwrap_err()
        else {
            panic!("expected Malformed");
        };
        assert_eq!(quoted, format!("{}...", &header[..200]));
    }

    #[test]
    fn formats_a_repository_scope_with_sorted_unique_actions() {
        assert_eq!(
            repository_scope(
                "library/alpine",
                &[Action::Push, Action::Pull, Action::Push]
            ),
            "repository:library/alpine:pull,push"
        );
        assert_eq!(
            repository_scope("p/x", &[Action::Delete, Action::Pull]),
            "repository:p/x:pull,delete"
        );
        assert_eq!(repository_scope("x", &[Action::Pull]), "repository:x:pull");
    }

    #[test]
    fn encodes_service_and_each_scope_into_the_token_url() {
        let url = token_url(
            "https://auth.docker.io/token",
            Some("registry.docker.io"),
            &[
                "repository:a/b:pull,push".to_owned(),
                "repository:c d:pull".to_owned(),
            ],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://auth.docker.io/token?service=registry.docker.io\
             &scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository%3Ac+d%3Apull"
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("service".to_owned(), "registry.docker.io".to_owned()),
                ("scope".to_owned(), "repository:a/b:pull,push".to_owned()),
                ("scope".to_owned(), "repository:c d:pull".to_owned()),
            ]
        );
    }

    #[test]
    fn keeps_a_query_already_in_the_realm_and_adds_nothing_when_empty() {
        assert_eq!(
            token_url("http://r:5001/auth?x=1", None, &["s".to_owned()])
                .unwrap()
                .as_str(),
            "http://r:5001/auth?x=1&scope=s"
        );
        assert_eq!(
            token_url("https://r/auth", None, &[]).unwrap().as_str(),
            "https://r/auth"
        );
    }

    #[test]
    fn rejects_a_realm_that_is_not_an_absolute_http_url() {
        let err = token_url("/token", None, &[]).unwrap_err();
        assert_eq!(err.to_string(), "token realm \"/token\" is not a valid URL");
        assert_eq!(
            std::error::Error::source(&err).map(ToString::to_string),
            Some("relative URL without a base".to_owned())
        );
        let err = token_url("ftp://r/token", None, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token realm \"ftp://r/token\" is not an absolute http(s) URL"
        );
    }

    #[test]
    fn reads_a_docker_token_with_its_expiry_less_ten_percent() {
        let now = Instant::now();
        let token = parse_token_response(
            br#"{"token":"abc","expires_in":300,"issued_at":"2020-01-01T00:00:00Z"}"#,
            now,
        )
        .unwrap();
        assert_eq!(token.value, "abc");
        assert_eq!(token.expires_at, now + Duration::from_secs(270));
    }

    #[test]
    fn reads_an_oauth2_access_token() {
        let now = Instant::now();
        let token =
            parse_token_response(br#"{"access_token":"xyz","expires_in":3600}"#, now).unwrap();
        assert_eq!(token.value, "xyz");
        assert_eq!(token.expires_at, now + Duration::from_secs(3240));
    }

    #[test]
    fn prefers_token_when_both_forms_are_present() {
        let token =
            parse_token_response(br#"{"access_token":"b","token":"a"}"#, Instant::now()).unwrap();
        assert_eq!(token.value, "a");
        let token =
            parse_token_response(br#"{"token":"","access_token":"b"}"#, Instant::now()).unwrap();
        assert_eq!(token.value, "b");
    }

    #[test]
    fn defaults_and_raises_expiry_to_sixty_seconds() {
        let now = Instant::now();
        for body in [
            &br#"{"token":"a"}"#[..],
            br#"{"token":"a","expires_in":5}"#,
            br#"{"token":"a","expires_in":null}"#,
            br#"{"token":"a","expires_in":0.5}"#,
        ] {
            assert_eq!(
                parse_token_response(body, now).unwrap().expires_at,
                now + Duration::from_secs(54)
            );
        }
    }

    #[test]
    fn caps_expiry_at_a_day() {
        let now = Instant::now();
        let token =
            parse_token_response(br#"{"token":"a","expires_in":18446744073709551615}"#, now)
                .unwrap();
        assert_eq!(token.expires_at, now + Duration::from_secs(77_760));
    }

    #[test]
    fn rejects_token_responses_naming_the_problem_without_echoing_the_token() {
        let now = Instant::now();
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "token response is not valid JSON"),
            (b"[\"secret\"]", "token response is not a JSON object"),
            (b"{\"expires_in\":60}", "token response has neither \"token\" nor \"access_token\""),
            (b"{\"token\":123}", "\"token\" in token response is not a string"),
            (
                b"{\"token\":\"secret\",\"expires_in\":\"secret\"}",
                "\"expires_in\" in token response is not a number of seconds (got a string)",
            ),
            (
                b"{\"token\":\"secret\",\"expires_in\":-5}",
                "\"expires_in\" in token response is not a number of seconds (got a negative number)",
            ),
        ];
        for (body, message) in cases {
            let err = parse_token_response(body, now).unwrap_err();
            assert_eq!(err.to_string(), message);
            assert!(!format!("{err:?}").contains("secret"));
        }
    }

    #[test]
    fn debug_of_a_token_hides_its_value() {
        let token = parse_token_response(br#"{"token":"secret"}"#, Instant::now()).unwrap();
        let debug = format!("{token:?}");
        assert!(
            debug.starts_with("Token { value: <redacted>, expires_at: "),
            "{debug}"
        );
        assert!(!debug.contains("secret"));
    }

    fn key(scope: &str) -> TokenKey {
        TokenKey {
            realm: "https://auth/token".to_owned(),
            service: Some("reg".to_owned()),
            scope: scope.to_owned(),
        }
    }

    #[test]
    fn caches_a_token_until_it_expires() {
        let cache = TokenCache::default();
        let now = Instant::now();
        cache.insert(
            key("a"),
            Token {
                value: "t".to_owned(),
                expires_at: now + Duration::from_secs(10),
            },
        );
        assert_eq!(cache.get(&key("a"), now), Some("t".to_owned()));
        assert_eq!(
            cache.get(&key("a"), now + Duration::from_secs(9)),
            Some("t".to_owned())
        );
        assert_eq!(cache.get(&key("b"), now), None);
        assert_eq!(cache.get(&key("a"), now + Duration::from_secs(10)), None);
        // Expired tokens are dropped, not just hidden.
        assert_eq!(cache.get(&key("a"), now), None);
        assert_eq!(format!("{cache:?}"), "TokenCache { tokens: 0 }");
    }

    #[test]
    fn keys_tokens_by_realm_service_and_scope_and_clears() {
        let cache = TokenCache::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let other_service = TokenKey {
            service: None,
            ..key("a")
        };
        cache.insert(
            key("a"),
            Token {
                value: "1".to_owned(),
                expires_at: later,
            },
        );
        cache.insert(
            other_service.clone(),
            Token {
                value: "2".to_owned(),
                expires_at: later,
            },
        );
        assert_eq!(cache.get(&key("a"), now), Some("1".to_owned()));
        assert_eq!(cache.get(&other_service, now), Some("2".to_owned()));
        cache.remove(&key("a"));
        assert_eq!(cache.get(&key("a"), now), None);
        assert_eq!(cache.get(&other_service, now), Some("2".to_owned()));
        cache.clear();
        assert_eq!(cache.get(&other_service, now), None);
    }

    #[test]
    fn debug_and_display_of_credentials_hide_the_password() {
        let credentials = Credentials::new("u", "hunter2");
        assert_eq!(
            format!("{credentials:?}"),
            "Credentials { username: \"u\", password: <redacted> }"
        );
        assert_eq!(credentials.to_string(), "user \"u\" (password redacted)");
        assert_eq!(credentials.password(), "hunter2");
    }

    #[test]
    fn builds_a_basic_authorization_header() {
        assert_eq!(
            Credentials::new("aladdin", "open sesame").basic_header(),
            "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    fn config(json: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), json).unwrap();
        file
    }

    fn creds(json: &str, host: &str) -> Result<Option<Credentials>, DockerConfigError> {
        docker_config_credentials(config(json).path(), host)
    }

    /// The error message with the temp file's path replaced by "PATH".
    fn message(json: &str, host: &str) -> String {
        let file = config(json);
        let err = docker_config_credentials(file.path(), host).unwrap_err();
        err.to_string()
            .replace(&format!("{:?}", file.path()), "PATH")
    }

    #[test]
    fn reads_inline_base64_auth() {
        // "user:pa:ss" — the password keeps its colon.
        let json = r#"{"auths":{"registry.example:5000":{"auth":"dXNlcjpwYTpzcw=="}}}"#;
        assert_eq!(
            creds(json, "registry.example:5000").unwrap(),
            Some(Credentials::new("user", "pa:ss"))
        );
    }

    #[test]
    fn reads_base64_auth_without_padding() {
        let json = r#"{"auths":{"r":{"auth":"dXNlcjpwYTpzcw"}}}"#;
        assert_eq!(
            creds(json, "r").unwrap(),
            Some(Credentials::new("user", "pa:ss"))
        );
    }

    #[test]
    fn reads_username_and_password_fields() {
        let json = r#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            creds(json, "r.example").unwrap(),
            Some(Credentials::new("u", "p"))
        );
    }

    #[test]
    fn matches_url_keys_with_scheme_and_path_and_prefers_the_exact_key() {
        for key in [
            "https://r.example",
            "http://r.example",
            "https://r.example/v1/",
            "r.example/v2/",
            "R.EXAMPLE",
        ] {
            let json = format!(r#"{{"auths":{{"{key}":{{"username":"u","password":"p"}}}}}}"#);
            assert_eq!(
                creds(&json, "r.example").unwrap(),
                Some(Credentials::new("u", "p")),
                "key {key}"
            );
        }
        let json = r#"{"auths":{
            "https://r.example/v1/":{"username":"a","password":"1"},
            "https://r.example":{"username":"b","password":"2"},
            "r.example":{"username":"c","password":"3"}}}"#;
        assert_eq!(
            creds(json, "r.example").unwrap(),
            Some(Credentials::new("c", "3"))
        );
    }

    #[test]
    fn does_not_match_another_host_or_port() {
        let json = r#"{"auths":{"r.example:5000":{"username":"u","password":"p"},
                                 "r.example.evil":{"username":"u","password":"p"}}}"#;
        assert_eq!(creds(json, "r.example").unwrap(), None);
    }

    #[test]
    fn finds_docker_hub_credentials_under_the_legacy_index_key() {
        let json = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#;
        assert_eq!(
            creds(json, "registry-1.docker.io").unwrap(),
            Some(Credentials::new("u", "p"))
        );
    }

    #[test]
    fn returns_none_when_no_entry_matches() {
        assert_eq!(
            creds(r#"{"auths":{"other":{"auth":"dTpw"}}}"#, "r").unwrap(),
            None
        );
        assert_eq!(creds("{}", "r").unwrap(), None);
    }

    #[test]
    fn refuses_a_creds_store_when_no_inline_auth_matches() {
        let expected = "docker config PATH: credentials for \"r.example\" are kept by credential \
                        helper \"desktop\", and credential helpers are not supported; put the \
                        credentials inline in \"auths\" or use username/password_file";
        assert_eq!(
            message(r#"{"credsStore":"desktop"}"#, "r.example"),
            expected
        );
        // `docker login` with a store leaves an empty entry behind.
        assert_eq!(
            message(
                r#"{"auths":{"r.example":{}},"credsStore":"desktop"}"#,
                "r.example"
            ),
            expected
        );
    }

    #[test]
    fn prefers_inline_auth_over_a_creds_store() {
        let json = r#"{"auths":{"r":{"auth":"dTpw"}},"credsStore":"desktop"}"#;
        assert_eq!(creds(json, "r").unwrap(), Some(Credentials::new("u", "p")));
    }

    #[test]
    fn refuses_a_cred_helper_for_this_host_only() {
        let json = r#"{"credHelpers":{"https://r.example":"ecr-login"}}"#;
        assert_eq!(
            message(json, "r.example"),
            "docker config PATH: credentials for \"r.example\" are kept by credential helper \
             \"ecr-login\", and credential helpers are not supported; put the credentials \
             inline in \"auths\" or use username/password_file"
        );
        assert_eq!(creds(json, "other.example").unwrap(), None);
    }

    #[test]
    fn rejects_bad_base64_without_echoing_it() {
        let json = r#"{"auths":{"r":{"auth":"c2VjcmV0!!"}}}"#;
        let msg = message(json, "r");
        assert_eq!(
            msg,
            "docker config PATH: auths[\"r\"].auth is not valid base64"
        );
        let file = config(json);
        let err = docker_config_credentials(file.path(), "r").unwrap_err();
        assert!(std::error::Error::source(&err).is_none());
        assert!(!format!("{err:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn rejects_auth_without_a_colon() {
        // base64 of "nocolon"
        assert_eq!(
            message(r#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#, "r"),
            "docker config PATH: auths[\"r\"].auth does not decode to \"user:password\""
        );
    }

    #[test]
    fn refuses_an_identity_token() {
        let json = r#"{"auths":{"r":{"auth":"PHRva2VuPjo=","identitytoken":"secret"}}}"#;
        let msg = message(json, "r");
        assert_eq!(
            msg,
            "docker config PATH: auths[\"r\"] holds an identity token, which is not supported; \
             put a username and password there instead"
        );
    }

    #[test]
    fn rejects_an_entry_with_a_username_but_no_password() {
        assert_eq!(
            message(r#"{"auths":{"r":{"username":"u"}}}"#, "r"),
            "docker config PATH: auths[\"r\"] has \"username\" but no \"password\""
        );
    }

    #[test]
    fn rejects_an_empty_entry_without_a_helper() {
        assert_eq!(
            message(r#"{"auths":{"r":{}}}"#, "r"),
            "docker config PATH: auths[\"r\"] has neither \"auth\" nor \"username\" and \"password\""
        );
    }

    #[test]
    fn reports_invalid_json_with_its_position_in_the_source() {
        let file = config("{\n  \"auths\": {,}\n}");
        let err = docker_config_credentials(file.path(), "r").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("docker config {:?} is not valid JSON", file.path())
        );
        assert_eq!(
            std::error::Error::source(&err).map(ToString::to_string),
            Some("key must be a string at line 2 column 13".to_owned())
        );
    }

    #[test]
    fn rejects_auths_that_is_not_an_object() {
        assert_eq!(
            message(r#"{"auths":[]}"#, "r"),
            "docker config PATH: \"auths\" is not an object"
        );
    }

    #[test]
    fn reports_an_unreadable_file_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.json");
        let err = docker_config_credentials(&path, "r").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read docker config {path:?}")
        );
        assert!(matches!(err, DockerConfigError::Unreadable { .. }));
    }
}
