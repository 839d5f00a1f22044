//! The timed OCI Distribution client: one request at a time, redirects followed and
//! timed hop by hop, reactive auth (basic and bearer), every response's error envelope kept.
//!
//! oci-client cannot be this path: its HTTP client is private (no phase timing), it buffers
//! whole blobs and it cannot DELETE. So this is a thin client of our own on hyper 1 + rustls.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use tokio::time::Instant;
use url::Url;

use super::auth::{self, Action, Challenge, Credentials, TokenCache, TokenKey};
use super::response::{failure_for_status, parse_error_body, rate_limit_headers, RegistryErrors};
use super::transport::{BoxError, ReqBody, Transport, TransportError};
use crate::oci::digest::{Mismatch, Verifier};
use crate::oci::image::Layer;
use crate::outcome::{Failure, HttpRecord, Reason, Step, StepReport};

/// Registry error bodies and manifests are small; anything bigger is not read in full.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Registries accept manifests of at least 4 MiB (OCI distribution spec).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
const USER_AGENT: &str = concat!("registry-prober/", env!("CARGO_PKG_VERSION"));

/// A request body that can be made again: after a 401 challenge the request is repeated, and
/// a generated layer is regenerated from its seed rather than buffered.
#[derive(Clone, Debug)]
pub enum BodySource {
    Empty,
    Bytes(Bytes),
    Layer { layer: Layer, range: Range<u64> },
}

impl BodySource {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of bytes the body sends.
    pub fn len(&self) -> u64 {
        match self {
            BodySource::Empty => 0,
            BodySource::Bytes(b) => b.len() as u64,
            BodySource::Layer { range, .. } => range.end - range.start,
        }
    }

    fn make(&self) -> ReqBody {
        match self {
            BodySource::Empty => Empty::<Bytes>::new()
                .map_err(|e| -> BoxError { match e {} })
                .boxed(),
            BodySource::Bytes(b) => Full::new(b.clone())
                .map_err(|e| -> BoxError { match e {} })
                .boxed(),
            BodySource::Layer { layer, range } => layer
                .body(range.clone())
                .map_err(|e| -> BoxError { match e {} })
                .boxed(),
        }
    }
}

/// One request as a step describes it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: BodySource,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: BodySource::Empty,
        }
    }

    pub fn header(mut self, name: header::HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: BodySource) -> Request {
        self.body = body;
        self
    }
}

/// What a step's requests left behind: one record per HTTP exchange, and the token fetches
/// (each its own step) the client made on the step's behalf.
#[derive(Debug, Default)]
pub struct Transcript {
    pub requests: Vec<HttpRecord>,
    pub token_steps: Vec<StepReport>,
}

/// How to reach one registry: its base URL, credentials and TLS.
pub struct Client {
    transport: Arc<Transport>,
    base: Url,
    repository: String,
    credentials: Option<Credentials>,
    tokens: TokenCache,
    /// What the registry asked for the last time it challenged us, so later requests
    /// authenticate up front instead of taking a 401 each.
    scheme: Mutex<Option<Challenge>>,
}

/// The response head of the final hop, body still streaming.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub method: Method,
    /// The URL that answered (after redirects), redacted for reports.
    pub url: String,
    /// The URL that answered, for resolving a relative Location.
    pub raw_url: Url,
    body: hyper::body::Incoming,
    record: usize,
}

impl Client {
    pub fn new(
        transport: Arc<Transport>,
        base: Url,
        repository: &str,
        credentials: Option<Credentials>,
    ) -> Client {
        Client {
            transport,
            base,
            repository: repository.to_string(),
            credentials,
            tokens: TokenCache::default(),
            scheme: Mutex::new(None),
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `<base>/v2/<target repository>/<rest>`.
    pub fn url(&self, rest: &str) -> Result<Url, Failure> {
        self.repo_url(&self.repository, rest)
    }

    /// `<base>/v2/<repository>/<rest>`, for another repository of the same registry.
    pub fn repo_url(&self, repository: &str, rest: &str) -> Result<Url, Failure> {
        let path = format!("v2/{repository}/{rest}");
        self.base.join(&path).map_err(|e| {
            Failure::new(
                Reason::Protocol,
                format!("cannot build URL {}{path}: {e}", self.base),
            )
        })
    }

    /// Resolves a Location header against the URL that sent it (the spec allows relative ones).
    pub fn resolve_location(&self, resp: &Response) -> Result<Url, Failure> {
        let loc = resp.headers.get(header::LOCATION).ok_or_else(|| {
            Failure::new(
                Reason::Protocol,
                format!(
                    "{} {}: {} without a Location header",
                    resp.method, resp.url, resp.status
                ),
            )
        })?;
        let loc = loc.to_str().map_err(|_| {
            Failure::new(
                Reason::Protocol,
                format!("{} {}: Location header is not text", resp.method, resp.url),
            )
        })?;
        resp.raw_url.join(loc).map_err(|e| {
            Failure::new(
                Reason::Protocol,
                format!(
                    "{} {}: invalid Location {loc:?}: {e}",
                    resp.method, resp.url
                ),
            )
        })
    }

    /// Sends a request: follows redirects (each hop timed and recorded on its own), answers a
    /// 401 challenge once (fetching a bearer token as a step of its own), and returns the final
    /// response with its body unread.
    pub async fn send(
        &self,
        req: &Request,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Response, Failure> {
        let mut url = req.url.clone();
        let mut authed_retry = false;
        let mut hops = 0;
        loop {
            let same_origin = url.origin() == self.base.origin();
            let mut headers = req.headers.clone();
            if same_origin {
                if let Some(v) = self.authorization(&req.method, &url, deadline, tr).await? {
                    headers.insert(header::AUTHORIZATION, v);
                }
            }
            let (resp, _) = self
                .hop(&req.method, &url, headers, &req.body, deadline, tr)
                .await?;
            let status = resp.status;
            if status == StatusCode::UNAUTHORIZED && same_origin {
                let challenge = resp
                    .headers
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let errors = self.read_error(resp, deadline, tr).await;
                // Answer a challenge once; a second 401 means the credentials (or the token
                // they bought) are not good enough.
                if let Some(usable) = self
                    .usable_challenge(challenge.as_deref())
                    .filter(|_| !authed_retry)
                {
                    // A token the registry no longer accepts (expired early, revoked) is dropped.
                    self.tokens.clear();
                    *self
                        .scheme
                        .lock()
                        .expect("scheme lock is never poisoned: no panics under it") = Some(usable);
                    authed_retry = true;
                    continue;
                }
                return Err(self.auth_failure(&req.method, &url, challenge.as_deref(), &errors));
            }
            if status.is_redirection()
                && matches!(req.method, Method::GET | Method::HEAD)
                && status != StatusCode::NOT_MODIFIED
            {
                hops += 1;
                let next = self.resolve_location(&resp);
                let resp_url = resp.url.clone();
                let _ = self.read_error(resp, deadline, tr).await;
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
            return Ok(resp);
        }
    }

    /// One hop: one HTTP exchange, recorded.
    async fn hop(
        &self,
        method: &Method,
        url: &Url,
        headers: HeaderMap,
        body: &BodySource,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<(Response, usize), Failure> {
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
                let index = tr.requests.len() - 1;
                let (parts, body) = resp.into_parts();
                Ok((
                    Response {
                        status: parts.status,
                        headers: parts.headers,
                        method: method.clone(),
                        url: redacted,
                        raw_url: url.clone(),
                        body,
                        record: index,
                    },
                    index,
                ))
            }
            Err(err) => {
                let failure = transport_failure(method, &redacted, &err);
                record.error = Some(failure.message.clone());
                tr.requests.push(record);
                Err(failure)
            }
        }
    }

    /// The Authorization header for a request, fetching a bearer token when the registry
    /// asked for one and none is cached for this request's scope.
    async fn authorization(
        &self,
        method: &Method,
        url: &Url,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Option<HeaderValue>, Failure> {
        let scheme = self
            .scheme
            .lock()
            .expect("scheme lock is never poisoned: no panics under it")
            .clone();
        match scheme {
            None | Some(Challenge::Other { .. }) => Ok(None),
            Some(Challenge::Basic { .. }) => Ok(self
                .credentials
                .as_ref()
                .and_then(|c| HeaderValue::from_str(&c.basic_header()).ok())
                .map(sensitive)),
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
                    .map(sensitive))
            }
        }
    }

    /// GET realm?service=..&scope=.. with basic credentials when we have them, timed and
    /// reported as a `token` step of its own.
    async fn fetch_token(
        &self,
        key: TokenKey,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<String, Failure> {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut sub = Transcript::default();
        let result = self.fetch_token_inner(&key, deadline, &mut sub).await;
        let (sent, received) = sub
            .requests
            .iter()
            .fold((0, 0), |(s, r), h| (s + h.bytes_sent, r + h.bytes_received));
        tr.token_steps.push(StepReport {
            step: Step::Token,
            path: String::new(),
            subject: key.scope.clone(),
            success: result.is_ok(),
            started_at,
            duration_seconds: started.elapsed(),
            reason: result.as_ref().err().map(|f| f.reason),
            error: result.as_ref().err().map(|f| f.message.clone()),
            status: result.as_ref().err().and_then(|f| f.status),
            registry_code: result.as_ref().err().and_then(|f| f.registry_code.clone()),
            bytes_sent: sent,
            bytes_received: received,
            requests: sub.requests,
        });
        let token = result?;
        Ok(token)
    }

    async fn fetch_token_inner(
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
            let (resp, _) = self
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
                let next = self.resolve_location(&resp)?;
                if next.origin() != current.origin() {
                    headers.remove(header::AUTHORIZATION);
                }
                let _ = self.read_error(resp, deadline, tr).await;
                current = next;
                continue;
            }
            if resp.status != StatusCode::OK {
                let (method, url, status) = (resp.method.clone(), resp.url.clone(), resp.status);
                let errors = self.read_error(resp, deadline, tr).await;
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
            let body = self.read_body(resp, MAX_ERROR_BODY, deadline, tr).await?;
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
    fn usable_challenge(&self, header: Option<&str>) -> Option<Challenge> {
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

    fn auth_failure(
        &self,
        method: &Method,
        url: &Url,
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
        let creds = if self.credentials.is_some() {
            "credentials were rejected"
        } else {
            "no credentials configured"
        };
        let challenge = challenge
            .map(|c| format!(" (challenge: {c})"))
            .unwrap_or_default();
        f.message = format!(
            "{method} {}: 401 Unauthorized, {creds}{challenge}",
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

    /// Reads a whole body up to `limit` bytes; more is a protocol failure (never buffered).
    pub async fn read_body(
        &self,
        resp: Response,
        limit: usize,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Bytes, Failure> {
        let (method, url) = (resp.method.clone(), resp.url.clone());
        let mut buf = Vec::new();
        self.stream_body(resp, deadline, tr, |data| {
            if buf.len() + data.len() > limit {
                return Err(Failure::new(
                    Reason::Protocol,
                    format!("{method} {url}: response body larger than {limit} bytes"),
                ));
            }
            buf.extend_from_slice(data);
            Ok(())
        })
        .await?;
        Ok(Bytes::from(buf))
    }

    /// Streams a body through a verifier (sha256 + length) without buffering it. Stops reading
    /// as soon as more bytes arrived than the descriptor declared.
    pub async fn verify_body(
        &self,
        resp: Response,
        mut verifier: Verifier,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<u64, Failure> {
        let (method, url) = (resp.method.clone(), resp.url.clone());
        self.stream_body(resp, deadline, tr, |data| {
            verifier
                .update(data)
                .map_err(|m| mismatch_failure(&method, &url, m))
        })
        .await?;
        verifier
            .finish()
            .map_err(|m| mismatch_failure(&method, &url, m))
    }

    /// Hands every data frame of a body to `on_data` until the body ends, `on_data` fails, the
    /// connection breaks or the deadline passes; records transfer time and the bytes received
    /// (also on failure, so a transcript shows how far a broken transfer got).
    async fn stream_body(
        &self,
        resp: Response,
        deadline: Instant,
        tr: &mut Transcript,
        mut on_data: impl FnMut(&[u8]) -> Result<(), Failure>,
    ) -> Result<u64, Failure> {
        let Response {
            method,
            url,
            mut body,
            record,
            ..
        } = resp;
        let started = Instant::now();
        let mut received: u64 = 0;
        let result = loop {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    break Err(Failure::new(
                        Reason::Timeout,
                        format!("{method} {url}: timed out reading the response body after {received} bytes"),
                    ))
                }
                Ok(None) => break Ok(received),
                Ok(Some(Err(e))) => break Err(body_failure(&method, &url, received, &e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        received += data.len() as u64;
                        if let Err(f) = on_data(&data) {
                            break Err(f);
                        }
                    }
                }
            }
        };
        if let Some(r) = tr.requests.get_mut(record) {
            r.transfer_seconds = Some(started.elapsed());
            r.bytes_received = received;
        }
        result
    }

    /// Reads an error body (bounded) and records its codes in the transcript.
    pub async fn read_error(
        &self,
        resp: Response,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> RegistryErrors {
        let record = resp.record;
        // An error body that breaks off is still worth what arrived; the status already failed.
        let body = self
            .read_body(resp, MAX_ERROR_BODY, deadline, tr)
            .await
            .unwrap_or_default();
        let errors = parse_error_body(&body);
        if let Some(r) = tr.requests.get_mut(record) {
            r.error_codes = errors.codes.clone();
            r.error_message = errors.message.clone();
        }
        errors
    }

    /// Fails a response whose status is not one of `expected`, reading its error envelope.
    pub async fn expect(
        &self,
        resp: Response,
        expected: &[StatusCode],
        not_found: Reason,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Response, Failure> {
        if expected.contains(&resp.status) {
            return Ok(resp);
        }
        let (method, url, status) = (resp.method.clone(), resp.url.clone(), resp.status);
        let errors = self.read_error(resp, deadline, tr).await;
        Err(failure_for_status(
            &method, &url, status, expected, &errors, not_found,
        ))
    }

    /// Drains a response body we do not need, so its connection can be reused.
    pub async fn discard(
        &self,
        resp: Response,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<(), Failure> {
        self.read_body(resp, MAX_MANIFEST_BYTES, deadline, tr)
            .await
            .map(|_| ())
    }

    /// Closes the idle connections; the next request opens a new one.
    pub fn close_idle_connections(&self) {
        self.transport.clear();
    }

    /// Forgets idle connections and cached tokens.
    pub fn reset(&self) {
        self.transport.clear();
        self.tokens.clear();
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

fn transport_failure(method: &Method, url: &str, err: &TransportError) -> Failure {
    let reason = match err {
        TransportError::Dns { .. } | TransportError::NoAddresses { .. } => Reason::Dns,
        TransportError::Connect { .. } => Reason::Connect,
        TransportError::Tls { .. } => Reason::Tls,
        TransportError::Timeout { .. } => Reason::Timeout,
        // A TLS alert after the handshake (TLS 1.3 client-certificate rejection) arrives as
        // the request's I/O error; it is still a TLS failure.
        TransportError::Http(e) if caused_by_tls(e) => Reason::Tls,
        TransportError::Http(_) => Reason::Io,
        TransportError::Url(_) => Reason::Protocol,
    };
    Failure::new(reason, format!("{method} {url}: {}", error_chain(err)))
}

fn caused_by_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        // On HTTP/1.1 the connection task hands a TLS alert to the waiting request as an I/O
        // error that keeps only rustls's text, not its type.
        if e.to_string().contains("received fatal alert") {
            return true;
        }
        source = e.source();
    }
    false
}

fn body_failure(method: &Method, url: &str, got: u64, err: &hyper::Error) -> Failure {
    // hyper reports a body shorter than its Content-Length as an incomplete message: the
    // connection closed early, which is what a truncating proxy or a crashed backend does.
    Failure::new(
        Reason::Io,
        format!(
            "{method} {url}: response body broke off after {got} bytes: {}",
            error_chain(err)
        ),
    )
}

fn mismatch_failure(method: &Method, url: &str, m: Mismatch) -> Failure {
    let reason = match m {
        Mismatch::Size { .. } => Reason::SizeMismatch,
        Mismatch::Digest { .. } => Reason::DigestMismatch,
    };
    Failure::new(reason, format!("{method} {url}: {m}"))
}

/// `err: cause: cause` — the whole source chain on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Query parameters that carry credentials (object-store signatures, tokens) are redacted;
/// upload-session state is shortened. Reports, logs and the status page only see this form.
pub fn redact_url(url: &Url) -> String {
    if url.query().is_none() {
        return url.to_string();
    }
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let lk = k.to_ascii_lowercase();
            let secret = [
                "sig",
                "token",
                "credential",
                "secret",
                "key",
                "auth",
                "policy",
                "password",
            ]
            .iter()
            .any(|s| lk.contains(s));
            let v = if secret {
                "REDACTED".to_string()
            } else if lk == "_state" && v.len() > 12 {
                format!("{}…", &v[..12])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out.to_string()
}

/// A step's deadline from its timeout.
pub fn deadline_in(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signed_url_parameters_and_shortens_upload_state() {
        let u = Url::parse(
            "https://cdn.example/blob?X-Amz-Signature=abc&X-Amz-Credential=AK%2F1&Expires=9",
        )
        .expect("valid");
        assert_eq!(
            redact_url(&u),
            "https://cdn.example/blob?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&Expires=9"
        );
        let u = Url::parse("http://127.0.0.1:5000/v2/p/blobs/uploads/1?_state=abcdefghijklmnopqrstuvwxyz&digest=sha256%3Aab").expect("valid");
        assert_eq!(redact_url(&u), "http://127.0.0.1:5000/v2/p/blobs/uploads/1?_state=abcdefghijkl%E2%80%A6&digest=sha256%3Aab");
    }

    #[test]
    fn leaves_a_url_without_query_untouched() {
        let u = Url::parse("http://127.0.0.1:5000/v2/p/manifests/t").expect("valid");
        assert_eq!(redact_url(&u), "http://127.0.0.1:5000/v2/p/manifests/t");
    }

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

    #[test]
    fn resolves_relative_and_absolute_locations() {
        let base = Url::parse("http://127.0.0.1:5000/v2/p/blobs/uploads/").expect("valid");
        assert_eq!(
            base.join("/v2/p/blobs/uploads/abc?_state=x")
                .expect("joins")
                .as_str(),
            "http://127.0.0.1:5000/v2/p/blobs/uploads/abc?_state=x"
        );
        assert_eq!(
            base.join("https://other:8443/x").expect("joins").as_str(),
            "https://other:8443/x"
        );
    }
}
