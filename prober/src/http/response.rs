//! The answer to a request: the head of the final hop, with its body still streaming, and the
//! ways to consume that body: bounded, streamed chunk by chunk, as an error envelope, or drained.
//! Every way records the transfer time and bytes in the exchange's record.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;
use url::Url;

use super::errors::{body_failure, failure_for_status, parse_error_body, RegistryErrors};
use super::transcript::Transcript;
use crate::outcome::{Failure, Reason};

/// Registry error bodies are small; anything bigger is not read in full.
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;
/// Registries accept manifests of at least 4 MiB (OCI distribution spec).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

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
        let protocol = |what: String| Failure::new(Reason::Protocol, what);
        let loc = self.headers.get(header::LOCATION).ok_or_else(|| {
            protocol(format!(
                "{} {}: {} without a Location header",
                self.method, self.url, self.status
            ))
        })?;
        let loc = loc.to_str().map_err(|_| {
            protocol(format!(
                "{} {}: Location header is not text",
                self.method, self.url
            ))
        })?;
        self.raw_url.join(loc).map_err(|e| {
            protocol(format!(
                "{} {}: invalid Location {loc:?}: {e}",
                self.method, self.url
            ))
        })
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

    /// Reads the whole body up to `limit` bytes; more is a protocol failure (never buffered).
    pub async fn read_body(
        self,
        limit: usize,
        deadline: Instant,
        tr: &mut Transcript,
    ) -> Result<Bytes, Failure> {
        let (method, url) = (self.method.clone(), self.url.clone());
        let mut buf = Vec::new();
        self.stream(deadline, tr, |data| {
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

    /// Reads an error body (bounded) and records its codes in the transcript.
    pub async fn read_error(self, deadline: Instant, tr: &mut Transcript) -> RegistryErrors {
        let record = self.record;
        // An error body that breaks off is still worth what arrived; the status already failed.
        let body = self
            .read_body(MAX_ERROR_BODY, deadline, tr)
            .await
            .unwrap_or_default();
        let errors = parse_error_body(&body);
        if let Some(r) = tr.requests.get_mut(record) {
            r.error_codes = errors.codes.clone();
            r.error_message = errors.message.clone();
        }
        errors
    }

    /// Drains a body the caller does not need, so its connection can be reused.
    pub async fn discard(self, deadline: Instant, tr: &mut Transcript) -> Result<(), Failure> {
        self.read_body(MAX_MANIFEST_BYTES, deadline, tr)
            .await
            .map(|_| ())
    }
}
