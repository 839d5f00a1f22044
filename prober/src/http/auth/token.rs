//! Bearer tokens: the scope a request needs, the token request URL, the token service's answer
//! and the cache of tokens until they expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
