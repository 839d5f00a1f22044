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
    /// The URL that answered (after redirects), redacted for reports.
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
        let mut reader = BodyReader::new(self);
        let result = loop {
            match reader.next(deadline).await {
                Err(f) => break Err(f),
                Ok(None) => break Ok(reader.received),
                Ok(Some(data)) => {
                    if let Err(f) = on_data(&data) {
                        break Err(f);
                    }
                }
            }
        };
        reader.record(tr);
        result
    }

    /// Sends every data frame of the body to each of `sinks` (consumers on other threads),
    /// waiting when one is behind, until the body ends, the connection breaks or the deadline
    /// passes; a sink whose consumer stopped is skipped from then on, and when the first one
    /// stops (its consumer has its verdict: more bytes than expected) reading stops. Records
    /// transfer time and bytes as `stream` does.
    pub async fn pipe(
        self,
        deadline: Instant,
        tr: &mut Transcript,
        mut sinks: Vec<tokio::sync::mpsc::Sender<Bytes>>,
    ) -> Result<u64, Failure> {
        let mut reader = BodyReader::new(self);
        let result = 'read: loop {
            let data = match reader.next(deadline).await {
                Err(f) => break Err(f),
                Ok(None) => break Ok(reader.received),
                Ok(Some(data)) => data,
            };
            let mut i = 0;
            while i < sinks.len() {
                match tokio::time::timeout_at(deadline, sinks[i].send(data.clone())).await {
                    Err(_) => break 'read Err(reader.timed_out()),
                    Ok(Ok(())) => i += 1,
                    Ok(Err(_)) if i == 0 => break 'read Ok(reader.received),
                    Ok(Err(_)) => {
                        sinks.remove(i);
                    }
                }
            }
        };
        reader.record(tr);
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

/// A body read frame by frame under a deadline, counting what arrived.
struct BodyReader {
    method: Method,
    url: String,
    body: hyper::body::Incoming,
    record: usize,
    started: Instant,
    received: u64,
}

impl BodyReader {
    fn new(resp: Response) -> BodyReader {
        BodyReader {
            method: resp.method,
            url: resp.url,
            body: resp.body,
            record: resp.record,
            started: Instant::now(),
            received: 0,
        }
    }

    /// The next data frame; None at the end of the body.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Bytes>, Failure> {
        loop {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Err(self.timed_out()),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(body_failure(&self.method, &self.url, self.received, &e))
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.received += data.len() as u64;
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    fn timed_out(&self) -> Failure {
        Failure::new(
            Reason::Timeout,
            format!(
                "{} {}: timed out reading the response body after {} bytes",
                self.method, self.url, self.received
            ),
        )
    }

    /// Records the transfer time and bytes in the exchange's record.
    fn record(&self, tr: &mut Transcript) {
        if let Some(r) = tr.requests.get_mut(self.record) {
            r.transfer_seconds = Some(self.started.elapsed());
            r.bytes_received = self.received;
        }
    }
}
