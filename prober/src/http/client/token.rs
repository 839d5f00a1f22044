//! The client's token requests in the dialects token services speak: with a password, the POST
//! form (OAuth2 password grant) that containerd sends, falling back to the docker token spec's
//! GET with basic credentials where the service refuses the POST; with an identity token, the
//! POST refresh-token grant (ACR, `docker login` tokens); anonymously, a plain GET. Each fetch
//! is timed and recorded as a token fetch of its own, and its token cached for the credentials
//! that bought it.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::auth::{credentials_from, sensitive};
use super::{Client, MAX_REDIRECTS};
use crate::http::auth::{self, Credentials, Grant, TokenKey};
use crate::http::errors::failure_for_status;
use crate::http::keychain::Current;
use crate::http::request::BodySource;
use crate::http::response::{Response, TOKEN_BODY};
use crate::http::transcript::{TokenFetch, Transcript};
use crate::outcome::{Failure, Reason};

/// What a POST token request may be answered with by a service that only speaks GET, so the
/// GET follows (containerd's list: GCR answered 404, Artifactory 401, ACR 400, others 405).
const POST_REFUSED: [u16; 4] = [400, 401, 404, 405];

impl Client {
    /// A bearer token for `key`'s realm, service and scope: the one cached for the credentials
    /// in use, or fetched (with the credentials fetched again first when they are stale).
    pub(super) async fn bearer_token(
        &self,
        mut key: TokenKey,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<String, Failure> {
        let fresh = match &self.credentials {
            None => Some(0),
            Some(source) => source.fresh_generation(),
        };
        if let Some(generation) = fresh {
            key.credentials = generation;
            if let Some(token) = self.tokens.get(&key, std::time::Instant::now()) {
                return Ok(token);
            }
        }
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut sub = Transcript::default();
        let scope = key.scope.clone();
        let result = self.token_for(key, deadline, &mut sub).await;
        // Credentials fetched again that turned out the same found their token cached: no
        // request went out, so there is no token step to report.
        if let Ok((token, false)) = result {
            return Ok(token);
        }
        tr.token_fetches.push(TokenFetch {
            scope,
            started_at,
            duration: started.elapsed(),
            result: result.as_ref().map(|_| ()).map_err(Clone::clone),
            requests: sub.requests,
        });
        result.map(|(token, _)| token)
    }

    /// The token for `key` with the current credentials, and whether it took a request. A token
    /// service that refuses the credentials gets them once more, fetched again, if they changed.
    async fn token_for(
        &self,
        mut key: TokenKey,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<(String, bool), Failure> {
        let current = match &self.credentials {
            None => None,
            Some(source) => Some(credentials_from(source, deadline).await?),
        };
        key.credentials = current.as_ref().map_or(0, |c| c.generation);
        if let Some(token) = self.tokens.get(&key, std::time::Instant::now()) {
            return Ok((token, false));
        }
        let first = self
            .request_token(&key, current.as_ref(), deadline, tr)
            .await;
        let (Err(failure), Some(source), Some(current)) = (&first, &self.credentials, &current)
        else {
            return first.map(|token| (token, true));
        };
        if !matches!(failure.status, Some(401 | 403)) {
            return first.map(|token| (token, true));
        }
        source.rejected(current.generation);
        let again = credentials_from(source, deadline).await?;
        if again.generation == current.generation {
            return first.map(|token| (token, true));
        }
        key.credentials = again.generation;
        let token = self.request_token(&key, Some(&again), deadline, tr).await?;
        Ok((token, true))
    }

    /// One token request in the dialect the credentials and the realm call for.
    async fn request_token(
        &self,
        key: &TokenKey,
        current: Option<&Current>,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<String, Failure> {
        let scopes = std::slice::from_ref(&key.scope);
        let url = auth::token_url(&key.realm, None, &[])
            .map_err(|e| Failure::new(Reason::Auth, format!("bearer challenge: {e}")))?;
        let credentials: Option<&Credentials> = current.map(|c| &*c.credentials);
        let Some(credentials) = credentials else {
            return self.get_token(key, None, deadline, tr).await;
        };
        if let Some(refresh_token) = credentials.refresh_token() {
            // No fallback: a GET cannot carry an identity token.
            let form = auth::token_form(
                Grant::RefreshToken(refresh_token),
                key.service.as_deref(),
                scopes,
            );
            return self.post_token(key, &url, form, deadline, tr).await;
        }
        let password = credentials.password().unwrap_or_default();
        let basic = credentials
            .basic_header()
            .and_then(|b| HeaderValue::from_str(&b).ok());
        if self.get_only(&key.realm) {
            return self.get_token(key, basic, deadline, tr).await;
        }
        let grant = Grant::Password {
            username: &credentials.username,
            password,
        };
        let form = auth::token_form(grant, key.service.as_deref(), scopes);
        match self.post_token(key, &url, form, deadline, tr).await {
            Err(f) if f.status.is_some_and(|s| POST_REFUSED.contains(&s)) => {
                self.get_only_realms
                    .lock()
                    .expect("realm lock is never poisoned: no panics under it")
                    .insert(key.realm.clone());
                let status = f.status.unwrap_or_default();
                self.get_token(key, basic, deadline, tr)
                    .await
                    .map_err(|mut g| {
                        g.message = format!(
                            "{} (a POST form request was answered {status} before)",
                            g.message
                        );
                        g
                    })
            }
            other => other,
        }
    }

    fn get_only(&self, realm: &str) -> bool {
        self.get_only_realms
            .lock()
            .expect("realm lock is never poisoned: no panics under it")
            .contains(realm)
    }

    /// POST realm with `form` (a password or refresh-token grant). Not redirected: a service
    /// that moved its realm answers GET, which the fallback sends.
    async fn post_token(
        &self,
        key: &TokenKey,
        url: &Url,
        form: String,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<String, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        let sent = Instant::now();
        let sent_wall = SystemTime::now();
        let body = BodySource::Bytes(form.into());
        let resp = self
            .hop(&Method::POST, url, headers, &body, deadline, tr)
            .await?;
        self.token_answer(resp, key, sent, sent_wall, deadline, tr)
            .await
    }

    /// GET realm?service=..&scope=.. with basic credentials when there are any, following
    /// redirects (the credentials only within the realm's origin).
    async fn get_token(
        &self,
        key: &TokenKey,
        basic: Option<HeaderValue>,
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
        if let Some(v) = basic {
            headers.insert(header::AUTHORIZATION, sensitive(v));
        }
        let mut current = url;
        for _ in 0..=MAX_REDIRECTS {
            let sent = Instant::now();
            let sent_wall = SystemTime::now();
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
            return self
                .token_answer(resp, key, sent, sent_wall, deadline, tr)
                .await;
        }
        Err(Failure::new(
            Reason::Protocol,
            format!("token request: more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// The token in a token service's answer, cached under `key`; an answer that is not 200
    /// is an auth failure naming it.
    async fn token_answer(
        &self,
        resp: Response,
        key: &TokenKey,
        sent: Instant,
        sent_wall: SystemTime,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<String, Failure> {
        let (method, url, status) = (resp.method.clone(), resp.url.clone(), resp.status);
        if status != StatusCode::OK {
            let errors = resp.read_error(deadline, tr).await;
            let mut f = failure_for_status(
                &method,
                &url,
                status,
                &[StatusCode::OK],
                &errors,
                Reason::Auth,
            );
            // Refused credentials (OAuth2 says 400 invalid_grant), no such realm, a method it
            // does not take: the token service's 4xx are auth failures, but for a rate limit.
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                f.reason = Reason::Auth;
            }
            f.message = format!("token request failed: {}", f.message);
            return Err(f);
        }
        let body = resp.read_body(TOKEN_BODY, deadline, tr).await?;
        let token = auth::parse_token_response(&body, sent.into_std(), sent_wall)
            .map_err(|e| Failure::new(Reason::Auth, format!("{method} {url}: {e}")))?;
        let value = token.value.clone();
        self.tokens.insert(key.clone(), token);
        Ok(value)
    }
}
