//! Credentials: a user name with a password or with an identity (refresh) token, never shown,
//! and the shape checks an identity token passes before the prober sends it anywhere.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::Value;

/// The user name `docker login` and credential helpers put next to an identity token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

#[derive(Clone, PartialEq, Eq)]
enum Secret {
    /// Sent as basic auth, or in a token request's password grant.
    Password(String),
    /// An OAuth2 refresh token, sent only to a token service's refresh-token grant.
    IdentityToken(String),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    secret: Secret,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            secret: Secret::Password(password.into()),
        }
    }

    /// An identity token, as `docker login` stores it for ACR and helpers answer with the user
    /// `<token>`: `username` is kept for messages only, the token service never sees it.
    pub fn identity_token(username: impl Into<String>, token: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            secret: Secret::IdentityToken(token.into()),
        }
    }

    /// The password, unless these credentials are an identity token.
    pub fn password(&self) -> Option<&str> {
        match &self.secret {
            Secret::Password(p) => Some(p),
            Secret::IdentityToken(_) => None,
        }
    }

    /// The identity (refresh) token, if these credentials are one.
    pub fn refresh_token(&self) -> Option<&str> {
        match &self.secret {
            Secret::IdentityToken(t) => Some(t),
            Secret::Password(_) => None,
        }
    }

    /// The Authorization header value, "Basic base64(user:pass)"; None for an identity token,
    /// which only a token service takes.
    pub fn basic_header(&self) -> Option<String> {
        let password = self.password()?;
        Some(format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{password}", self.username))
        ))
    }

    /// When the secret stops working, if it says so: a JWT's `exp` (ACR's identity tokens and
    /// the access tokens some registries take as passwords are JWTs). None for opaque secrets
    /// (ECR's and Artifact Registry's) and for a JWT without `exp`.
    pub fn expiry(&self) -> Option<SystemTime> {
        let secret = match &self.secret {
            Secret::Password(s) | Secret::IdentityToken(s) => s,
        };
        match token_shape(secret) {
            Ok(TokenShape::Jwt { expires }) => expires,
            _ => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = match self.secret {
            Secret::Password(_) => "password",
            Secret::IdentityToken(_) => "identity_token",
        };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field(field, &format_args!("<redacted>"))
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.secret {
            Secret::Password(_) => write!(f, "user \"{}\" (password redacted)", self.username),
            Secret::IdentityToken(_) => write!(f, "an identity token (redacted)"),
        }
    }
}

/// What a token looks like from outside: opaque, or a JWT with the expiry it claims.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenShape {
    Opaque,
    Jwt { expires: Option<SystemTime> },
}

/// Why a token cannot be what it claims to be. No variant carries any of the token's text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedToken {
    #[error("is empty")]
    Empty,
    #[error("contains whitespace, control or non-ASCII characters")]
    BadCharacters,
    #[error("looks like a JWT but its payload is not base64url-encoded JSON")]
    JwtPayload,
    #[error("is a JWT whose \"exp\" is not a number of seconds")]
    JwtExp,
}

/// Checks a token's shape without showing it: printable ASCII without spaces (a token copied
/// with a line break in it is the usual mistake), and when its first segment is a JWT header,
/// a readable payload whose `exp` is a number.
pub fn token_shape(token: &str) -> Result<TokenShape, MalformedToken> {
    if token.is_empty() {
        return Err(MalformedToken::Empty);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MalformedToken::BadCharacters);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, _signature] = parts[..] else {
        return Ok(TokenShape::Opaque);
    };
    // A JWT header is a JSON object naming its algorithm; anything else with two dots is just
    // an opaque token that happens to have them.
    let is_jwt = base64url_json(header).is_some_and(|h| h.get("alg").is_some());
    if !is_jwt {
        return Ok(TokenShape::Opaque);
    }
    let claims = base64url_json(payload).ok_or(MalformedToken::JwtPayload)?;
    let expires = match claims.get("exp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let secs = n.as_f64().filter(|s| s.is_finite() && *s >= 0.0);
            let secs = secs.ok_or(MalformedToken::JwtExp)?;
            // Past year 9999 is "never" for a prober; it also keeps the addition in range.
            Some(UNIX_EPOCH + Duration::from_secs(secs.min(253_402_300_799.0) as u64))
        }
        Some(_) => return Err(MalformedToken::JwtExp),
    };
    Ok(TokenShape::Jwt { expires })
}

/// A base64url segment (padding optional) that decodes to a JSON object.
fn base64url_json(segment: &str) -> Option<serde_json::Map<String, Value>> {
    let engine = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    match serde_json::from_slice(&engine.decode(segment).ok()?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A JWT with these claims, unsigned: for tests, where only its shape matters.
#[cfg(test)]
pub fn unsigned_jwt(claims: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"ES256","typ":"JWT"}"#),
        b64(claims)
    )
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
