//! The client's side of registry auth: the Authorization header a request carries (basic, or a
//! bearer token for the request's repository and actions, fetched when none is cached), what a
//! 401 challenge teaches, and a message that says exactly why a request stayed unauthorized.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::Client;
use crate::http::auth::{self, Action, Challenge, TokenKey};
use crate::http::error_chain;
use crate::http::errors::{failure_for_status, RegistryErrors};
use crate::http::keychain::{CredentialSource, Current};
use crate::http::request::BodySource;
use crate::http::transcript::Transcript;
use crate::http::url::redact_url;
use crate::outcome::{DeviationKind, Failure, Reason};

/// What authorization a request carried, so a 401 can say what was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// Basic credentials of this user, of this generation in the credential source.
    Basic { user: String, generation: u64 },
    /// A bearer token for this scope, from this realm.
    Bearer { scope: String, realm: String },
}

impl Client {
    /// The Authorization header for a request and what it is, fetching a bearer token when the
    /// registry asked for one and none is cached for this request's scope.
    pub(super) async fn authorization(
        &self,
        method: &Method,
        url: &Url,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Option<(HeaderValue, Sent)>, Failure> {
        let scheme = self
            .scheme
            .lock()
            .expect("scheme lock is never poisoned: no panics under it")
            .clone();
        match scheme {
            None | Some(Challenge::Other { .. }) => Ok(None),
            Some(Challenge::Basic { .. }) => {
                let Some(source) = &self.credentials else {
                    return Ok(None);
                };
                let current = credentials_from(source, deadline).await?;
                basic_authorization(&current, method, url).map(Some)
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let repository = repository_of(url.path()).unwrap_or(&self.repository);
                let scope = auth::repository_scope(repository, actions_for(method));
                let key = TokenKey {
                    realm: realm.clone(),
                    service: service.clone(),
                    scope: scope.clone(),
                    credentials: 0,
                };
                let token = self.bearer_token(key, deadline, tr).await?;
                Ok(HeaderValue::from_str(&format!("Bearer {token}"))
                    .ok()
                    .map(|v| (sensitive(v), Sent::Bearer { scope, realm })))
            }
        }
    }

    /// GET /v2/, as docker does before its first request to a registry: 200 means no auth is
    /// needed there; a 401 teaches the challenge, so later requests authenticate up front. A
    /// 401 without a challenge (some registries send one only here, others nowhere) makes the
    /// client send the configured credentials as basic auth up front. Credentials for basic
    /// auth are had here (a credential helper run when they are stale), so one that cannot be
    /// had fails the ping; for bearer auth that is the token fetch's.
    pub async fn ping(&self, deadline: Instant, tr: &mut Transcript) -> Result<(), Failure> {
        let url = self.base.join("v2/").map_err(|e| {
            Failure::new(
                Reason::Protocol,
                format!("cannot build URL {}v2/: {e}", self.base),
            )
        })?;
        let resp = self
            .hop(
                &Method::GET,
                &url,
                HeaderMap::new(),
                &BodySource::Empty,
                deadline,
                tr,
            )
            .await?;
        if resp.status == StatusCode::UNAUTHORIZED {
            let challenge = resp.header(header::WWW_AUTHENTICATE).map(str::to_owned);
            let _ = resp.read_error(deadline, tr).await;
            if challenge.is_none() {
                tr.deviate(
                    DeviationKind::MissingAuthChallenge,
                    format!(
                        "GET {}: 401 without a WWW-Authenticate challenge",
                        redact_url(&url)
                    ),
                );
            }
            match self.usable_challenge(challenge.as_deref()) {
                Some(usable) => self.learn(usable),
                None if challenge.is_none() && self.credentials.is_some() => {
                    self.learn(Challenge::Basic { realm: None })
                }
                None => {}
            }
            let basic = matches!(
                *self
                    .scheme
                    .lock()
                    .expect("scheme lock is never poisoned: no panics under it"),
                Some(Challenge::Basic { .. })
            );
            if let (true, Some(source)) = (basic, &self.credentials) {
                let current = credentials_from(source, deadline).await?;
                basic_authorization(&current, &Method::GET, &url)?;
            }
            return Ok(());
        }
        let resp = resp
            .expect(&[StatusCode::OK], Reason::Protocol, deadline, tr)
            .await?;
        resp.discard(deadline, tr).await
    }

    /// A challenge the client can answer: later requests authenticate up front with it. A
    /// token the registry no longer accepts (expired early, revoked) is dropped.
    pub(super) fn learn(&self, challenge: Challenge) {
        self.tokens.clear();
        *self
            .scheme
            .lock()
            .expect("scheme lock is never poisoned: no panics under it") = Some(challenge);
    }

    /// Picks the challenge we can answer: bearer always (anonymous tokens exist), basic only
    /// with credentials.
    pub(super) fn usable_challenge(&self, header: Option<&str>) -> Option<Challenge> {
        let challenges = auth::parse_challenges(header?).ok()?;
        challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }))
            .or_else(|| {
                challenges
                    .iter()
                    .find(|c| matches!(c, Challenge::Basic { .. }) && self.credentials.is_some())
            })
            .cloned()
    }

    /// Why a request stayed unauthorized, saying what was sent and what came back.
    pub(super) fn auth_failure(
        &self,
        method: &Method,
        url: &Url,
        sent: Option<&Sent>,
        challenge: Option<&str>,
        errors: &RegistryErrors,
    ) -> Failure {
        let mut f = failure_for_status(
            method,
            &redact_url(url),
            StatusCode::UNAUTHORIZED,
            &[],
            errors,
            Reason::Auth,
        );
        f.reason = Reason::Auth;
        let what = match (sent, challenge) {
            (Some(Sent::Basic { user, .. }), _) => {
                format!("basic credentials of user {user:?} were sent and rejected")
            }
            (Some(Sent::Bearer { scope, realm }), _) => format!(
                "a bearer token for {scope} from {realm} was sent and rejected (expired, revoked, or not enough scope)"
            ),
            (None, None) if self.credentials.is_some() => {
                "401 without a WWW-Authenticate challenge and no credentials sent".to_string()
            }
            (None, None) => {
                "401 without a WWW-Authenticate challenge and no credentials configured"
                    .to_string()
            }
            (None, Some(header)) => match auth::parse_challenges(header) {
                Err(e) => format!("the challenge cannot be read: {e}"),
                Ok(challenges)
                    if challenges
                        .iter()
                        .any(|c| matches!(c, Challenge::Basic { .. })) =>
                {
                    "the registry asks for basic credentials and none are configured".to_string()
                }
                Ok(challenges) => {
                    let schemes: Vec<&str> = challenges
                        .iter()
                        .filter_map(|c| match c {
                            Challenge::Other { scheme } => Some(scheme.as_str()),
                            _ => None,
                        })
                        .collect();
                    format!(
                        "the registry asks for {}, which the prober does not speak",
                        schemes.join(", ")
                    )
                }
            },
        };
        let challenge = challenge
            .map(|c| format!(" (challenge: {c})"))
            .unwrap_or_default();
        f.message = format!(
            "{method} {}: 401 Unauthorized, {what}{challenge}",
            redact_url(url)
        );
        if let (false, Some(msg)) = (errors.codes.is_empty(), &errors.message) {
            f.message.push_str(&format!(
                ", registry error {}: {msg}",
                errors.codes.join(",")
            ));
        }
        f
    }
}

/// Credentials from `source`, fetched again when stale; why not, as an auth failure.
pub(super) async fn credentials_from(
    source: &CredentialSource,
    deadline: Instant,
) -> Result<Current, Failure> {
    source.get(deadline).await.map_err(|e| {
        Failure::new(
            Reason::Auth,
            format!("cannot get credentials: {}", error_chain(&e)),
        )
    })
}

/// The basic Authorization header of `current` credentials, unless they are an identity token.
fn basic_authorization(
    current: &Current,
    method: &Method,
    url: &Url,
) -> Result<(HeaderValue, Sent), Failure> {
    let value = current
        .credentials
        .basic_header()
        .and_then(|b| HeaderValue::from_str(&b).ok());
    let Some(value) = value else {
        return Err(Failure::new(
            Reason::Auth,
            format!(
                "{method} {}: the registry asks for basic credentials, and the configured ones \
                 are an identity token, which only a token service takes",
                redact_url(url)
            ),
        ));
    };
    let sent = Sent::Basic {
        user: current.credentials.username.clone(),
        generation: current.generation,
    };
    Ok((sensitive(value), sent))
}

/// Distribution maps methods to token actions: GET/HEAD pull; POST/PUT/PATCH pull+push; DELETE delete.
fn actions_for(method: &Method) -> &'static [Action] {
    match *method {
        Method::GET | Method::HEAD => &[Action::Pull],
        Method::DELETE => &[Action::Delete],
        _ => &[Action::Pull, Action::Push],
    }
}

/// The repository a Distribution API path acts on: `/v2/<name>/(blobs|manifests|tags)/...`.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|m| rest.rfind(m))
        .min()
        .map(|i| &rest[..i])
}

pub(super) fn sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_the_actions_distribution_checks_per_method() {
        assert_eq!(actions_for(&Method::HEAD), &[Action::Pull]);
        assert_eq!(actions_for(&Method::PATCH), &[Action::Pull, Action::Push]);
        assert_eq!(actions_for(&Method::DELETE), &[Action::Delete]);
    }

    #[test]
    fn finds_the_repository_a_path_acts_on() {
        assert_eq!(repository_of("/v2/a/b/blobs/uploads/123"), Some("a/b"));
        assert_eq!(repository_of("/v2/p/manifests/sha256:ab"), Some("p"));
        assert_eq!(repository_of("/v2/"), None);
        assert_eq!(repository_of("/token"), None);
    }
}
