//! Connections: DNS, TCP connect and TLS handshake each timed, a small pool of idle
//! HTTP/1.1 and HTTP/2 connections per origin, and whether a request reused one.

mod connect;
mod pool;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use tokio::time::{timeout_at, Instant};

use pool::{Checkout, OriginPool};

pub use crate::outcome::Phase;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one request body type every connection carries.
pub type ReqBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// Idle HTTP/1.1 connections kept per origin; the oldest goes first beyond this.
const MAX_IDLE_H1_PER_ORIGIN: usize = 8;

/// The most an HTTP/1.1 connection reads from its socket at once (hyper's default is ~400 KiB;
/// its buffer only grows this far while a large body streams in). Each read becomes one frame
/// handed to the task that hashes it, so bigger reads mean fewer cross-thread wake-ups: a 64 MiB
/// blob pulled from a local registry took a median 57 ms instead of 66 ms (4 alternating pairs,
/// 8 pulls each). Larger buffers were slower again (2 MiB ~70 ms, 4 MiB ~78 ms): a frame no
/// longer fits the core's cache between the read and the hash. Peak RSS of a 1 GiB pull: +2 MiB.
const MAX_READ_BUFFER: usize = 1024 * 1024;

/// How long a request waits for a busy HTTP/1.1 connection of its origin before opening
/// another. A body read to its end frees the connection as soon as the connection's driver
/// task has run once more, microseconds later but often after the caller's next request;
/// a connection still streaming a body is not worth waiting for.
const BUSY_GRACE: Duration = Duration::from_millis(2);

/// How one request (one hop) got its connection and its response head.
#[derive(Clone, Debug, Default)]
pub struct ConnTiming {
    pub reused: bool,
    /// None when reused, or when the host is an IP literal.
    pub dns: Option<Duration>,
    /// TCP connect; None when reused.
    pub connect: Option<Duration>,
    /// TLS handshake; None when reused or plain http.
    pub tls: Option<Duration>,
    /// From handing the request to the connection until the response head arrived.
    pub first_byte: Duration,
    /// "HTTP/1.1" or "HTTP/2".
    pub http_version: &'static str,
    pub remote_addr: Option<SocketAddr>,
    /// The leaf certificate's notAfter, when this request made a new TLS connection.
    pub peer_cert_not_after: Option<SystemTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("dns lookup of {host} failed")]
    Dns {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dns lookup of {host} returned no addresses")]
    NoAddresses { host: String },
    #[error("connecting to {addr} failed")]
    Connect {
        /// Every address tried, comma separated.
        addr: String,
        /// The error of the last address tried.
        #[source]
        source: std::io::Error,
    },
    /// The source is tokio-rustls's io::Error wrapping the rustls::Error
    /// (reach it with `source.get_ref()` and a downcast).
    #[error("tls handshake with {host} failed")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out during {phase} after {elapsed:?}")]
    Timeout { phase: Phase, elapsed: Duration },
    #[error("sending the request or reading the response head failed")]
    Http(#[source] hyper::Error),
    #[error("invalid request url: {0}")]
    Url(String),
}

/// Turns a host name into addresses. The default asks the system (getaddrinfo via tokio::net::lookup_host);
/// tests plug in a resolver that adds delay so it shows up in the dns phase only.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>>;
}

/// Resolves through the operating system (getaddrinfo on a blocking thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>> {
        // The future may only borrow `self`, so the name is copied; one small allocation per
        // new connection.
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

/// Scheme, host and port: what a connection can be shared by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    /// Without the brackets of an IPv6 literal, as DNS, SNI and IP parsing want it.
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Result<Self, TransportError> {
        // Only the path is named in these errors: queries may carry signed-URL credentials.
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => {
                return Err(TransportError::Url(format!(
                    "unsupported scheme {other} (only http and https)"
                )))
            }
            None => {
                return Err(TransportError::Url(format!(
                    "{} has no scheme and host",
                    uri.path()
                )))
            }
        };
        let host = uri
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| TransportError::Url(format!("{} has no host", uri.path())))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Ok(Origin {
            https,
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }

    fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }

    /// The Host header: host[:port], the port only when it is not the scheme's default.
    fn host_header(&self) -> Result<HeaderValue, TransportError> {
        let bracketed = self.host.contains(':');
        let value = match (bracketed, self.default_port()) {
            (false, true) => self.host.clone(),
            (true, true) => format!("[{}]", self.host),
            (false, false) => format!("{}:{}", self.host, self.port),
            (true, false) => format!("[{}]:{}", self.host, self.port),
        };
        HeaderValue::try_from(value)
            .map_err(|_| TransportError::Url(format!("host {} is no valid header", self.host)))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

/// What one attempt to exchange a request on a connection gave.
enum Exchange {
    Done(Response<Incoming>),
    /// The connection failed before the request was written; the request is handed back.
    Unsent(Request<ReqBody>, hyper::Error),
    Failed(TransportError),
}

pub struct Transport {
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<dyn Resolve>,
    pool: Mutex<HashMap<Origin, OriginPool>>,
}

impl Transport {
    pub fn new(tls: Arc<rustls::ClientConfig>, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            tls: tokio_rustls::TlsConnector::from(tls),
            resolver,
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// Sends one request on a pooled or new connection and returns as soon as the response head
    /// arrived; the body is still streaming. Every phase is bounded by `deadline`.
    pub async fn send(
        &self,
        mut req: Request<ReqBody>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, ConnTiming), TransportError> {
        let started = Instant::now();
        let origin = Origin::of(req.uri())?;

        let checkout = self.checkout_or_wait(&origin).await;
        if let Checkout::Ready(sender, remote_addr) = checkout {
            let mut timing = ConnTiming {
                reused: true,
                remote_addr,
                ..ConnTiming::default()
            };
            match self
                .exchange(&origin, sender, req, &mut timing, started, deadline)
                .await
            {
                Exchange::Done(resp) => return Ok(self.finish(&origin, resp, timing)),
                Exchange::Failed(err) => return Err(err),
                Exchange::Unsent(unsent, err) => {
                    // The server closed the idle connection before we used it; nothing was
                    // written, so the request can go out on a new one.
                    tracing::debug!(%origin, error = %err, "pooled connection was closed, reconnecting");
                    req = unsent;
                }
            }
        }

        let (sender, mut timing) = self.connect(&origin, started, deadline).await?;
        match self
            .exchange(&origin, sender, req, &mut timing, started, deadline)
            .await
        {
            Exchange::Done(resp) => Ok(self.finish(&origin, resp, timing)),
            Exchange::Failed(err) => Err(err),
            Exchange::Unsent(_, err) => Err(TransportError::Http(err)),
        }
    }

    /// Drops every idle connection (used on config reload and shutdown).
    pub fn clear(&self) {
        self.lock_pool().clear();
    }

    fn finish(
        &self,
        origin: &Origin,
        resp: Response<Incoming>,
        timing: ConnTiming,
    ) -> (Response<Incoming>, ConnTiming) {
        // Headers are never logged: they carry credentials.
        tracing::debug!(
            %origin,
            reused = timing.reused,
            dns = ?timing.dns,
            connect = ?timing.connect,
            tls = ?timing.tls,
            first_byte = ?timing.first_byte,
            version = timing.http_version,
            status = resp.status().as_u16(),
            "response head received"
        );
        (resp, timing)
    }

    /// Hands the request to the connection and waits for the response head.
    async fn exchange(
        &self,
        origin: &Origin,
        sender: Sender,
        mut req: Request<ReqBody>,
        timing: &mut ConnTiming,
        started: Instant,
        deadline: Instant,
    ) -> Exchange {
        match sender {
            Sender::H1(mut sender) => {
                timing.http_version = "HTTP/1.1";
                // Kept so a request handed back unsent can go out again in HTTP/2's
                // absolute form; cloning a Uri only bumps reference counts.
                let absolute = req.uri().clone();
                let host_added = match to_origin_form(&mut req, origin) {
                    Ok(added) => added,
                    Err(err) => return Exchange::Failed(err),
                };
                let handed = Instant::now();
                let sent = timeout_at(deadline, sender.try_send_request(req)).await;
                timing.first_byte = handed.elapsed();
                match sent {
                    Err(_) => Exchange::Failed(timed_out(Phase::FirstByte, started)),
                    Ok(Ok(resp)) => {
                        // Back into the pool at once: it turns ready when this body has been read.
                        self.checkin_h1(origin, sender, timing.remote_addr);
                        Exchange::Done(resp)
                    }
                    Ok(Err(mut err)) => match err.take_message() {
                        Some(mut unsent) => {
                            *unsent.uri_mut() = absolute;
                            if host_added {
                                unsent.headers_mut().remove(header::HOST);
                            }
                            Exchange::Unsent(unsent, err.into_error())
                        }
                        None => Exchange::Failed(TransportError::Http(err.into_error())),
                    },
                }
            }
            Sender::H2(mut sender) => {
                timing.http_version = "HTTP/2";
                // hyper takes :scheme and :authority from the absolute URI.
                *req.version_mut() = Version::HTTP_2;
                let handed = Instant::now();
                let sent = timeout_at(deadline, sender.try_send_request(req)).await;
                timing.first_byte = handed.elapsed();
                match sent {
                    Err(_) => Exchange::Failed(timed_out(Phase::FirstByte, started)),
                    Ok(Ok(resp)) => Exchange::Done(resp),
                    Ok(Err(mut err)) => match err.take_message() {
                        Some(unsent) => Exchange::Unsent(unsent, err.into_error()),
                        None => Exchange::Failed(TransportError::Http(err.into_error())),
                    },
                }
            }
        }
    }
}

/// Host header. Returns whether the Host header was added.
fn to_origin_form(req: &mut Request<ReqBody>, origin: &Origin) -> Result<bool, TransportError> {
    let host_added = !req.headers().contains_key(header::HOST);
    if host_added {
        let host = origin.host_header()?;
        req.headers_mut().insert(header::HOST, host);
    }
    let target = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(target);
    *req.version_mut() = Version::HTTP_11;
    Ok(host_added)
}

fn timed_out(phase: Phase, started: Instant) -> TransportError {
    TransportError::Timeout {
        phase,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests;
