//! The client's side of registry auth: the Authorization header a request carries (basic, or a
//! bearer token for the request's repository and actions, fetched when none is cached), what a
//! 401 challenge teaches, and a message that says exactly why a request stayed unauthorized.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::{Client, MAX_REDIRECTS};

/// What authorization a request carried, so a 401 can say what was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// Basic credentials of this user.
    Basic(String),
    /// A bearer token for this scope, from this realm.
    Bearer { scope: String, realm: String },
}
use crate::http::auth::{self, Action, Challenge, TokenKey};
use crate::http::errors::{failure_for_status, RegistryErrors};
use crate::http::request::BodySource;
use crate::http::response::MAX_ERROR_BODY;
use crate::http::transcript::{TokenFetch, Transcript};
use crate::http::url::redact_url;
use crate::outcome::{DeviationKind, Failure, Reason};

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
            Some(Challenge::Basic { .. }) => Ok(self.credentials.as_ref().and_then(|c| {
                let value = HeaderValue::from_str(&c.basic_header()).ok()?;
                Some((sensitive(value), Sent::Basic(c.username.clone())))
            })),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let repository = repository_of(url.path()).unwrap_or(&self.repository);
                let scope = auth::repository_scope(repository, actions_for(method));
                let key = TokenKey {
                    realm: realm.clone(),
                    service: service.clone(),
                    scope: scope.clone(),
                };
                let token = match self.tokens.get(&key, std::time::Instant::now()) {
                    Some(t) => t,
                    None => self.fetch_token(key, deadline, tr).await?,
                };
                Ok(HeaderValue::from_str(&format!("Bearer {token}"))
                    .ok()
                    .map(|v| (sensitive(v), Sent::Bearer { scope, realm })))
            }
        }
    }

    /// GET /v2/, as docker does before its first request to a registry: 200 means no auth is
    /// needed there; a 401 teaches the challenge, so later requests authenticate up front. A
    /// 401 without a challenge (some registries send one only here, others nowhere) makes the
    /// client send the configured credentials as basic auth up front.
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

    /// GET realm?service=..&scope=.. with basic credentials when we have them, timed and
    /// recorded as a token fetch of its own.
    async fn fetch_token(
        &self,
        key: TokenKey,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<String, Failure> {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut sub = Transcript::default();
        let result = self.request_token(&key, deadline, &mut sub).await;
        tr.token_fetches.push(TokenFetch {
            scope: key.scope,
            started_at,
            duration: started.elapsed(),
            result: result.as_ref().map(|_| ()).map_err(Clone::clone),
            requests: sub.requests,
        });
        result
    }

    async fn request_token(
        &self,
        key: &TokenKey,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<String, Failure> {
        let url = auth::token_url(
            &key.realm,
            key.service.as_deref(),
            std::slice::from_ref(&key.scope),
        )
        .map_err(|e| Failure::new(Reason::Auth, format!("bearer challenge: {e}")))?;
        let mut headers = HeaderMap::new();
        if let Some(v) = self
            .credentials
            .as_ref()
            .and_then(|c| HeaderValue::from_str(&c.basic_header()).ok())
        {
            headers.insert(header::AUTHORIZATION, sensitive(v));
        }
        let mut current = url;
        for _ in 0..=MAX_REDIRECTS {
            let resp = self
                .hop(
                    &Method::GET,
                    &current,
                    headers.clone(),
                    &BodySource::Empty,
                    deadline,
                    tr,
                )
                .await?;
            if resp.status.is_redirection() {
                let next = resp.location()?;
                if next.origin() != current.origin() {
                    headers.remove(header::AUTHORIZATION);
                }
                let _ = resp.read_error(deadline, tr).await;
                current = next;
                continue;
            }
            if resp.status != StatusCode::OK {
                let (method, url, status) = (resp.method.clone(), resp.url.clone(), resp.status);
                let errors = resp.read_error(deadline, tr).await;
                let mut f = failure_for_status(
                    &method,
                    &url,
                    status,
                    &[StatusCode::OK],
                    &errors,
                    Reason::Auth,
                );
                if matches!(status.as_u16(), 401 | 403 | 404) {
                    f.reason = Reason::Auth;
                }
                f.message = format!("token request failed: {}", f.message);
                return Err(f);
            }
            let (method, url) = (resp.method.clone(), resp.url.clone());
            let body = resp.read_body(MAX_ERROR_BODY, deadline, tr).await?;
            let token = auth::parse_token_response(&body, std::time::Instant::now())
                .map_err(|e| Failure::new(Reason::Auth, format!("{method} {url}: {e}")))?;
            let value = token.value.clone();
            self.tokens.insert(key.clone(), token);
            return Ok(value);
        }
        Err(Failure::new(
            Reason::Protocol,
            format!("token request: more than {MAX_REDIRECTS} redirects"),
        ))
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
            (Some(Sent::Basic(user)), _) => {
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

fn sensitive(mut v: HeaderValue) -> HeaderValue {
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
