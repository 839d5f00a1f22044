//! The timed OCI Distribution client: one request at a time, redirects followed and timed hop
//! by hop, reactive auth (basic and bearer in `auth.rs`, the token service's dialects in
//! `token.rs`), every exchange recorded.
//!
//! oci-client cannot be this path: its HTTP client is private (no phase timing), it buffers
//! whole blobs and it cannot DELETE. So this is a thin client of our own on hyper 1 + rustls.

mod auth;
mod token;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::auth::{Challenge, TokenCache};
use super::errors::{rate_limit_headers, transport_failure};
use super::keychain::CredentialSource;
use super::request::{BodySource, Request};
use super::response::Response;
use super::transcript::Transcript;
use super::transport::Transport;
use super::url::redact_url;
use crate::outcome::{DeviationKind, Failure, HttpRecord, Reason};

const MAX_REDIRECTS: usize = 5;
const USER_AGENT: &str = concat!("registry-prober/", env!("CARGO_PKG_VERSION"));

/// How to reach one registry: its base URL, repository, where its credentials come from, and
/// connections.
pub struct Client {
    transport: Arc<Transport>,
    base: Url,
    repository: String,
    /// Asked for credentials whenever a request or a token needs them: they may change.
    credentials: Option<Arc<CredentialSource>>,
    tokens: TokenCache,
    /// What the registry asked for the last time it challenged us, so later requests
    /// authenticate up front instead of taking a 401 each.
    scheme: Mutex<Option<Challenge>>,
    /// Token realms that refused a POST form request: asked with GET from then on.
    get_only_realms: Mutex<HashSet<String>>,
}

impl Client {
    pub fn new(
        transport: Arc<Transport>,
        base: Url,
        repository: &str,
        credentials: Option<Arc<CredentialSource>>,
    ) -> Client {
        Client {
            transport,
            base,
            repository: repository.to_string(),
            credentials,
            tokens: TokenCache::default(),
            scheme: Mutex::new(None),
            get_only_realms: Mutex::new(HashSet::new()),
        }
    }

    /// The repository the client's target pushes to and pulls from.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `<base>/v2/<repository>/<rest>`.
    pub fn repo_url(&self, repository: &str, rest: &str) -> Result<Url, Failure> {
        let path = format!("v2/{repository}/{rest}");
        self.base.join(&path).map_err(|e| {
            Failure::new(
                Reason::Protocol,
                format!("cannot build URL {}{path}: {e}", self.base),
            )
        })
    }

    /// Sends a request: follows redirects (each hop timed and recorded on its own), answers a
    /// 401 challenge once (fetching a bearer token when asked, recorded as a token fetch), and
    /// returns the final response with its body unread.
    pub async fn send(
        &self,
        req: &Request,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Response, Failure> {
        let mut url = req.url.clone();
        let mut authed_retry = false;
        let mut hops = 0;
        // The first redirect (status, from where), named in every message about the answer.
        let mut redirected: Option<(StatusCode, String)> = None;
        loop {
            let same_origin = url.origin() == self.base.origin();
            let mut headers = req.headers.clone();
            let mut sent = None;
            if same_origin {
                if let Some((v, what)) = self.authorization(&req.method, &url, deadline, tr).await?
                {
                    headers.insert(header::AUTHORIZATION, v);
                    sent = Some(what);
                }
            }
            let resp = self
                .hop(&req.method, &url, headers, &req.body, deadline, tr)
                .await?;
            let status = resp.status;
            if status == StatusCode::UNAUTHORIZED && same_origin {
                let challenge = resp.header(header::WWW_AUTHENTICATE).map(str::to_owned);
                let errors = resp.read_error(deadline, tr).await;
                if challenge.is_none() {
                    tr.deviate(
                        DeviationKind::MissingAuthChallenge,
                        format!(
                            "{} {}: 401 without a WWW-Authenticate challenge",
                            req.method,
                            redact_url(&url)
                        ),
                    );
                }
                // Rejected basic credentials are fetched again for the retry (a rotated
                // password, a helper's token that expired early).
                if let (Some(auth::Sent::Basic { generation, .. }), Some(source)) =
                    (&sent, &self.credentials)
                {
                    source.rejected(*generation);
                }
                // Answer a challenge once; a second 401 means the credentials (or the token
                // they bought) are not good enough. A 401 without a challenge, when nothing was
                // sent, is answered with the configured credentials as basic auth.
                let answer = match self.usable_challenge(challenge.as_deref()) {
                    Some(usable) => Some(usable),
                    None if challenge.is_none() && sent.is_none() && self.credentials.is_some() => {
                        Some(Challenge::Basic { realm: None })
                    }
                    None => None,
                };
                if let Some(answer) = answer.filter(|_| !authed_retry) {
                    self.learn(answer);
                    authed_retry = true;
                    continue;
                }
                return Err(self.auth_failure(
                    &req.method,
                    &url,
                    sent.as_ref(),
                    challenge.as_deref(),
                    &errors,
                ));
            }
            if status.is_redirection()
                && matches!(req.method, Method::GET | Method::HEAD)
                && status != StatusCode::NOT_MODIFIED
            {
                hops += 1;
                let next = resp.location();
                let resp_url = resp.url.clone();
                redirected.get_or_insert((status, resp_url.clone()));
                let _ = resp.read_error(deadline, tr).await;
                let next = next?;
                if hops > MAX_REDIRECTS {
                    return Err(Failure::new(
                        Reason::Protocol,
                        format!(
                            "{} {}: more than {MAX_REDIRECTS} redirects, last to {}",
                            req.method,
                            resp_url,
                            redact_url(&next)
                        ),
                    ));
                }
                url = next;
                continue;
            }
            let mut resp = resp;
            if let Some((status, from)) = redirected {
                resp.url = format!(
                    "{} (after a {} redirect from {from})",
                    resp.url,
                    status.as_u16()
                );
            }
            return Ok(resp);
        }
    }

    /// One hop: one HTTP exchange, recorded in the transcript.
    async fn hop(
        &self,
        method: &Method,
        url: &Url,
        headers: HeaderMap,
        body: &BodySource,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Response, Failure> {
        let redacted = redact_url(url);
        let mut builder = http::Request::builder()
            .method(method.clone())
            .uri(url.as_str());
        for (name, value) in headers.iter() {
            builder = builder.header(name, value);
        }
        builder = builder.header(header::USER_AGENT, USER_AGENT);
        let len = body.len();
        if len > 0 || matches!(*method, Method::PUT | Method::POST | Method::PATCH) {
            builder = builder.header(header::CONTENT_LENGTH, len);
        }
        let request = builder.body(body.make()).map_err(|e| {
            Failure::new(
                Reason::Protocol,
                format!("{method} {redacted}: cannot build request: {e}"),
            )
        })?;
        let mut record = HttpRecord {
            started_at: Some(SystemTime::now()),
            method: method.to_string(),
            url: redacted.clone(),
            ..HttpRecord::default()
        };
        match self.transport.send(request, deadline).await {
            Ok((resp, timing)) => {
                record.status = Some(resp.status().as_u16());
                record.reused_connection = timing.reused;
                record.http_version = Some(timing.http_version);
                record.dns_seconds = timing.dns;
                record.connect_seconds = timing.connect;
                record.tls_seconds = timing.tls;
                record.first_byte_seconds = Some(timing.first_byte);
                record.bytes_sent = len;
                record.rate_limit = rate_limit_headers(resp.headers());
                record.peer_cert_not_after_unix = timing
                    .peer_cert_not_after
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                tr.requests.push(record);
                let (parts, body) = resp.into_parts();
                Ok(Response {
                    status: parts.status,
                    headers: parts.headers,
                    method: method.clone(),
                    url: redacted,
                    raw_url: url.clone(),
                    body,
                    record: tr.requests.len() - 1,
                })
            }
            Err(err) => {
                let failure = transport_failure(method, &redacted, &err);
                record.error = Some(failure.message.clone());
                tr.requests.push(record);
                Err(failure)
            }
        }
    }

    /// Closes the idle connections; the next request opens a new one.
    pub fn close_idle_connections(&self) {
        self.transport.clear();
    }
}

#[cfg(test)]
mod tests;
