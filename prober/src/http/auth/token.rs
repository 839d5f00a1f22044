//! Bearer tokens: the scope a request needs, the token request (a GET URL or a POST form), the
//! token service's answer and the cache of tokens until they expire, keyed on the credentials
//! that bought them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::challenge::quote_header;
use super::challenge::ChallengeError;

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

/// The `client_id` the prober names itself by in a POST token request (containerd sends
/// "containerd-client", docker "docker").
pub const CLIENT_ID: &str = "registry-prober";

/// What a POST token request (the OAuth2 form the distribution spec describes and containerd
/// sends) trades for a token.
#[derive(Clone, Copy)]
pub enum Grant<'a> {
    /// `grant_type=password`: a user name and password.
    Password {
        username: &'a str,
        password: &'a str,
    },
    /// `grant_type=refresh_token`: an identity token (ACR, `docker login` with a token).
    RefreshToken(&'a str),
}

/// The form-encoded body of a POST token request: the grant, `service`, the scopes joined by
/// spaces in one `scope` (as the OAuth2 spec has it) and our `client_id`.
pub fn token_form(grant: Grant<'_>, service: Option<&str>, scopes: &[String]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    match grant {
        Grant::Password { username, password } => {
            form.append_pair("grant_type", "password");
            form.append_pair("username", username);
            form.append_pair("password", password);
        }
        Grant::RefreshToken(token) => {
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", token);
        }
    }
    if let Some(service) = service {
        form.append_pair("service", service);
    }
    if !scopes.is_empty() {
        form.append_pair("scope", &scopes.join(" "));
    }
    form.append_pair("client_id", CLIENT_ID);
    form.finish()
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
/// How far the token service's clock may be from ours before `issued_at` counts.
const ISSUED_AT_SKEW: Duration = Duration::from_secs(5 * 60);

/// Parses a token endpoint response: {"token": ..} or {"access_token": ..} (docker and OAuth2
/// forms; if both, "token" wins), "expires_in" seconds (default 60 per the docker token spec,
/// minimum 60), "issued_at" (RFC 3339).
///
/// The lifetime counts on our monotonic clock from `sent`, when the request went out: the token
/// was issued after that, so it expires no earlier than we think. `issued_at` is a reading of
/// the token service's clock, which may be minutes from ours, so it only ever shortens the
/// lifetime, and only by the token's age beyond [`ISSUED_AT_SKEW`] at `sent_wall` (a service
/// that hands out a cached token issued long ago); an `issued_at` in the future, or unreadable,
/// counts as "just issued". Then 10% comes off as a safety margin.
pub fn parse_token_response(
    body: &[u8],
    sent: Instant,
    sent_wall: SystemTime,
) -> Result<Token, TokenError> {
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
    let issued_at = match object.get("issued_at") {
        Some(Value::String(s)) => humantime::parse_rfc3339_weak(s).ok(),
        _ => None,
    };
    let age = issued_at
        .and_then(|t| sent_wall.duration_since(t).ok())
        .unwrap_or_default();
    let lifetime = Duration::from_secs(secs).saturating_sub(age.saturating_sub(ISSUED_AT_SKEW));
    Ok(Token {
        value,
        expires_at: sent + lifetime * 9 / 10,
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

/// Tokens cached per (realm, service, scope, credentials) until expiry. Thread-safe (interior
/// Mutex).
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, Token>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub realm: String,
    pub service: Option<String>,
    pub scope: String,
    /// Which credentials bought the token: their generation in the client's credential source
    /// (0: anonymous), so a token bought with credentials since replaced is never used.
    pub credentials: u64,
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

    /// Caches `token`; tokens bought with other credentials are dropped, for new credentials
    /// replace the old ones.
    pub fn insert(&self, key: TokenKey, token: Token) {
        let mut tokens = self.lock();
        tokens.retain(|k, _| k.credentials == key.credentials);
        tokens.insert(key, token);
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

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
