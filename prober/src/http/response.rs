//! The answer to a request: the head of the final hop, with its body still streaming, and the
//! ways to consume that body: bounded, streamed chunk by chunk, as an error envelope, or drained.
//! Every way records the transfer time and bytes in the exchange's record.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;
use url::Url;

use super::errors::{body_failure, failure_for_status, parse_error_body, RegistryErrors};
use super::transcript::Transcript;
use crate::outcome::{Failure, Reason};

/// A bound on a body the prober reads into memory or drains: what the body is, named in the
/// failure when a registry sends more, and how many bytes it may have. Nothing past the bound
/// is read. Blobs are not read into memory: they stream through the verifier, which stops at
/// the first byte past the size the manifest gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit {
    pub what: &'static str,
    pub bytes: usize,
}

/// Error envelopes, and the bodies of 401s and redirects: a registry's are well under 1 KiB;
/// a proxy's HTML error page past this is cut, its start still reported.
pub const ERROR_BODY: BodyLimit = BodyLimit::new("error body", 64 * 1024);
/// Registries accept manifests of at least 4 MiB (OCI distribution spec), so one may be that
/// big.
pub const MANIFEST_BODY: BodyLimit = BodyLimit::new("manifest", 4 * 1024 * 1024);
/// A page of a tag list: the prober asks for 1000 tags (of at most 128 characters: ~135 KB of
/// JSON); the rest is room for a registry that ignores `n` and sends more.
pub const TAG_LIST_BODY: BodyLimit = BodyLimit::new("tag list page", 4 * 1024 * 1024);
/// A token service's answer: a JWT or two of a few KiB (Docker Hub sends `token` and
/// `access_token`); a token with a big claims set still fits many times over.
pub const TOKEN_BODY: BodyLimit = BodyLimit::new("token response", 1024 * 1024);
/// A body the prober has no use for (a ping's, an upload answer's, a HEAD's), drained so its
/// connection can be reused, never kept.
pub const UNUSED_BODY: BodyLimit = BodyLimit::new("unused body", 4 * 1024 * 1024);

impl BodyLimit {
    const fn new(what: &'static str, bytes: usize) -> BodyLimit {
        BodyLimit { what, bytes }
    }

    /// The failure of a body over this limit, naming the request and the limit.
    fn exceeded(&self, method: &Method, url: &str) -> Failure {
        Failure::new(
            Reason::Protocol,
            format!(
                "{method} {url}: {} over its limit of {} bytes, not read further",
                self.what, self.bytes
            ),
        )
    }
}

/// What a bounded read got: the body (when kept), up to the limit, and how it ended.
struct Bounded {
    body: Vec<u8>,
    result: Result<(), Failure>,
    over: bool,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub method: Method,
    /// The URL that answered, redacted, as reports show it: after redirects, followed by which
    /// URL sent the request there (`<url> (after a 307 redirect from <first url>)`).
    pub url: String,
    /// The URL that answered, for resolving a relative Location.
    pub raw_url: Url,
    pub(super) body: hyper::body::Incoming,
    /// The index of this exchange's record in the transcript.
    pub(super) record: usize,
}

impl Response {
    /// A header as text; None when absent or not text.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Resolves the Location header against the URL that sent it (the spec allows relative
    /// ones).
    pub fn location(&self) -> Result<Url, Failure> {
        let value = self.headers.get(header::LOCATION);
        resolve_location(&self.method, &self.url, self.status, &self.raw_url, value)
    }

    /// Fails unless the status is one of `expected`, reading the error envelope; `not_found` is
    /// what a bare 404 means to the caller (a HEAD has no body to carry a code).
    pub async fn expect(
        self,
        expected: &[StatusCode],
        not_found: Reason,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Response, Failure> {
        if expected.contains(&self.status) {
            return Ok(self);
        }
        let (method, url, status) = (self.method.clone(), self.url.clone(), self.status);
        let errors = self.read_error(deadline, tr).await;
        Err(failure_for_status(
            &method, &url, status, expected, &errors, not_found,
        ))
    }

    /// Reads the whole body, up to `limit`; more is a protocol failure naming the limit.
    pub async fn read_body(
        self,
        limit: BodyLimit,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Bytes, Failure> {
        let read = self.read_bounded(limit, true, deadline, tr).await;
        read.result.map(|()| Bytes::from(read.body))
    }

    /// Reads the body up to `limit`, keeping it when `keep`: never more than `limit` bytes
    /// are held, and reading stops at the frame that goes past it.
    async fn read_bounded(
        self,
        limit: BodyLimit,
        keep: bool,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Bounded {
        let (method, url) = (self.method.clone(), self.url.clone());
        let mut body = Vec::new();
        let mut seen = 0usize;
        let mut over = false;
        let result = self
            .stream(deadline, tr, |data| {
                let room = limit.bytes - seen;
                seen += data.len().min(room);
                if keep {
                    body.extend_from_slice(&data[..data.len().min(room)]);
                }
                if data.len() > room {
                    over = true;
                    return Err(limit.exceeded(&method, &url));
                }
                Ok(())
            })
            .await
            .map(|_| ());
        Bounded { body, result, over }
    }

    /// Hands every data frame of the body to `on_data` until the body ends, `on_data` fails,
    /// the connection breaks or the deadline passes; records transfer time and the bytes
    /// received (also on failure, so a transcript shows how far a broken transfer got).
    pub async fn stream(
        self,
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
        } = self;
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

    /// Reads an error body (bounded) and records its codes in the transcript. A body over the
    /// bound is read as far as the bound, and the message says it was cut.
    pub async fn read_error(self, deadline: Instant, tr: &mut Transcript) -> RegistryErrors {
        let record = self.record;
        // An error body that breaks off is still worth what arrived; the status already failed.
        let read = self.read_bounded(ERROR_BODY, true, deadline, tr).await;
        let mut errors = parse_error_body(&read.body);
        if read.over {
            let cut = format!(
                "the {} is over its limit of {} bytes, the rest was not read",
                ERROR_BODY.what, ERROR_BODY.bytes
            );
            errors.message = Some(match errors.message {
                Some(start) => format!("{start} ({cut})"),
                None => cut,
            });
        }
        if let Some(r) = tr.requests.get_mut(record) {
            r.error_codes = errors.codes.clone();
            r.error_message = errors.message.clone();
        }
        errors
    }

    /// Drains a body the caller does not need, so its connection can be reused: streamed,
    /// never kept, and not past its bound.
    pub async fn discard(self, deadline: Instant, tr: &mut Transcript) -> Result<(), Failure> {
        self.read_bounded(UNUSED_BODY, false, deadline, tr)
            .await
            .result
    }
}

/// `Response::location` on the header as sent: `base` is the URL that answered, `url` the
/// same as reports show it.
fn resolve_location(
    method: &Method,
    url: &str,
    status: StatusCode,
    base: &Url,
    value: Option<&HeaderValue>,
) -> Result<Url, Failure> {
    let protocol = |what: String| Failure::new(Reason::Protocol, what);
    let loc = value.ok_or_else(|| {
        protocol(format!(
            "{method} {url}: {status} without a Location header"
        ))
    })?;
    let loc = loc
        .to_str()
        .map_err(|_| protocol(format!("{method} {url}: Location header is not text")))?;
    base.join(loc)
        .map_err(|e| protocol(format!("{method} {url}: invalid Location {loc:?}: {e}")))
}

#[cfg(test)]
#[path = "response_tests.rs"]
pub(crate) mod tests;
