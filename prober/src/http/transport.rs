//! Connections: DNS, TCP connect and TLS handshake each timed, a small pool of idle
//! HTTP/1.1 and HTTP/2 connections per origin, and whether a request reused one.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

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

struct Pooled<S> {
    sender: S,
    remote_addr: Option<SocketAddr>,
}

#[derive(Default)]
struct OriginPool {
    /// Oldest first. Includes senders whose previous response body is still being read:
    /// they become ready once it has been consumed.
    h1: VecDeque<Pooled<http1::SendRequest<ReqBody>>>,
    /// HTTP/2 multiplexes, so one shared connection per origin is enough.
    h2: Option<Pooled<http2::SendRequest<ReqBody>>>,
}

/// What a checkout found.
enum Checkout {
    Ready(Sender, Option<SocketAddr>),
    /// Only HTTP/1.1 connections still reading a previous body.
    Busy,
    Empty,
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

    /// Resolves, connects and (for https) shakes hands, timing each phase.
    async fn connect(
        &self,
        origin: &Origin,
        started: Instant,
        deadline: Instant,
    ) -> Result<(Sender, ConnTiming), TransportError> {
        let mut timing = ConnTiming::default();

        let addrs = match origin.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
            Err(_) => {
                let begun = Instant::now();
                let addrs = timeout_at(deadline, self.resolver.resolve(&origin.host, origin.port))
                    .await
                    .map_err(|_| timed_out(Phase::Dns, started))?
                    .map_err(|source| TransportError::Dns {
                        host: origin.host.clone(),
                        source,
                    })?;
                timing.dns = Some(begun.elapsed());
                if addrs.is_empty() {
                    return Err(TransportError::NoAddresses {
                        host: origin.host.clone(),
                    });
                }
                addrs
            }
        };

        let begun = Instant::now();
        let (tcp, remote_addr) = connect_any(&addrs, started, deadline).await?;
        timing.connect = Some(begun.elapsed());
        timing.remote_addr = Some(remote_addr);
        if let Err(err) = tcp.set_nodelay(true) {
            // Only latency suffers; the connection itself is fine.
            tracing::debug!(%origin, error = %err, "could not set TCP_NODELAY");
        }

        if !origin.https {
            let sender = handshake_h1(tcp, origin).await?;
            return Ok((Sender::H1(sender), timing));
        }

        let server_name =
            ServerName::try_from(origin.host.clone()).map_err(|err| TransportError::Tls {
                host: origin.host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, err),
            })?;
        let begun = Instant::now();
        let tls = timeout_at(deadline, self.tls.connect(server_name, tcp))
            .await
            .map_err(|_| timed_out(Phase::Tls, started))?
            .map_err(|source| TransportError::Tls {
                host: origin.host.clone(),
                source,
            })?;
        timing.tls = Some(begun.elapsed());

        let session = tls.get_ref().1;
        timing.peer_cert_not_after = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| not_after(leaf, origin));

        if session.alpn_protocol() == Some(b"h2".as_slice()) {
            // The HTTP/2 handshake writes the connection preface: still part of setting up
            // the TLS connection as far as deadlines go.
            let sender = timeout_at(deadline, handshake_h2(tls, origin))
                .await
                .map_err(|_| timed_out(Phase::Tls, started))??;
            let mut pool = self.lock_pool();
            let entry = pool.entry(origin.clone()).or_default();
            // Share it with requests that start while this one is under way; keep an
            // existing live connection rather than replacing it.
            if entry.h2.as_ref().is_none_or(|h2| h2.sender.is_closed()) {
                entry.h2 = Some(Pooled {
                    sender: sender.clone(),
                    remote_addr: Some(remote_addr),
                });
            }
            Ok((Sender::H2(sender), timing))
        } else {
            let sender = handshake_h1(tls, origin).await?;
            Ok((Sender::H1(sender), timing))
        }
    }

    fn checkout(&self, origin: &Origin) -> Checkout {
        let mut pool = self.lock_pool();
        let Some(entry) = pool.get_mut(origin) else {
            return Checkout::Empty;
        };
        let mut found = Checkout::Empty;
        if let Some(h2) = &entry.h2 {
            if h2.sender.is_closed() {
                entry.h2 = None;
            } else {
                found = Checkout::Ready(Sender::H2(h2.sender.clone()), h2.remote_addr);
            }
        }
        if matches!(found, Checkout::Empty) {
            entry.h1.retain(|idle| !idle.sender.is_closed());
            if let Some(at) = entry.h1.iter().position(|idle| idle.sender.is_ready()) {
                if let Some(idle) = entry.h1.remove(at) {
                    found = Checkout::Ready(Sender::H1(idle.sender), idle.remote_addr);
                }
            } else if !entry.h1.is_empty() {
                found = Checkout::Busy;
            }
        }
        if entry.h1.is_empty() && entry.h2.is_none() {
            pool.remove(origin);
        }
        found
    }

    /// Like `checkout`, but when only busy HTTP/1.1 connections are pooled, waits up to
    /// BUSY_GRACE for one of them to come free.
    async fn checkout_or_wait(&self, origin: &Origin) -> Checkout {
        match self.checkout(origin) {
            Checkout::Busy => {}
            found => return found,
        }
        tokio::time::timeout(
            BUSY_GRACE,
            std::future::poll_fn(|cx| self.poll_busy(origin, cx)),
        )
        .await
        .unwrap_or(Checkout::Empty)
    }

    /// Takes the first pooled HTTP/1.1 sender that is ready; otherwise registers this task to
    /// be woken when one becomes ready (or closes).
    fn poll_busy(
        &self,
        origin: &Origin,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Checkout> {
        use std::task::Poll;
        let mut pool = self.lock_pool();
        let Some(entry) = pool.get_mut(origin) else {
            return Poll::Ready(Checkout::Empty);
        };
        let mut ready_at = None;
        let mut at = 0;
        entry.h1.retain_mut(|idle| {
            let keep = match idle.sender.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    ready_at.get_or_insert(at);
                    true
                }
                // Closed while we waited.
                Poll::Ready(Err(_)) => false,
                Poll::Pending => true,
            };
            if keep {
                at += 1;
            }
            keep
        });
        let found = ready_at
            .and_then(|at| entry.h1.remove(at))
            .map(|idle| Checkout::Ready(Sender::H1(idle.sender), idle.remote_addr));
        let empty = entry.h1.is_empty() && entry.h2.is_none();
        if empty {
            pool.remove(origin);
        }
        match found {
            Some(found) => Poll::Ready(found),
            None if empty => Poll::Ready(Checkout::Empty),
            None => Poll::Pending,
        }
    }

    fn checkin_h1(
        &self,
        origin: &Origin,
        sender: http1::SendRequest<ReqBody>,
        remote_addr: Option<SocketAddr>,
    ) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.lock_pool();
        let entry = pool.entry(origin.clone()).or_default();
        entry.h1.push_back(Pooled {
            sender,
            remote_addr,
        });
        while entry.h1.len() > MAX_IDLE_H1_PER_ORIGIN {
            // Dropping a sender lets its connection finish the exchange under way, then close.
            entry.h1.pop_front();
        }
    }

    fn lock_pool(&self) -> MutexGuard<'_, HashMap<Origin, OriginPool>> {
        // The map holds no invariant a panicking holder could have broken half-way.
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Rewrites an absolute request to what goes on an HTTP/1.1 wire: origin-form target and a
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

/// Tries the addresses in order; the first that accepts wins.
async fn connect_any(
    addrs: &[SocketAddr],
    started: Instant,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), TransportError> {
    let mut last_err = None;
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(timed_out(Phase::Connect, started)),
            Ok(Ok(tcp)) => return Ok((tcp, *addr)),
            Ok(Err(err)) => {
                tracing::debug!(%addr, error = %err, "connect failed");
                last_err = Some(err);
            }
        }
    }
    Err(TransportError::Connect {
        addr: addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        source: last_err.unwrap_or_else(|| std::io::Error::other("no address to connect to")),
    })
}

async fn handshake_h1<T>(
    io: T,
    origin: &Origin,
) -> Result<http1::SendRequest<ReqBody>, TransportError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_READ_BUFFER)
        .handshake(TokioIo::new(io))
        .await
        .map_err(TransportError::Http)?;
    let origin = origin.to_string();
    tokio::spawn(async move {
        // Errors here already reached the request that saw them; closing is routine.
        match conn.await {
            Ok(()) => tracing::debug!(%origin, "http/1.1 connection closed"),
            Err(err) => tracing::debug!(%origin, error = %err, "http/1.1 connection ended"),
        }
    });
    Ok(sender)
}

async fn handshake_h2<T>(
    io: T,
    origin: &Origin,
) -> Result<http2::SendRequest<ReqBody>, TransportError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(TransportError::Http)?;
    let origin = origin.to_string();
    tokio::spawn(async move {
        match conn.await {
            Ok(()) => tracing::debug!(%origin, "http/2 connection closed"),
            Err(err) => tracing::debug!(%origin, error = %err, "http/2 connection ended"),
        }
    });
    Ok(sender)
}

/// The leaf certificate's notAfter; None (logged) when it does not parse.
fn not_after(leaf: &CertificateDer<'_>, origin: &Origin) -> Option<SystemTime> {
    let cert = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, cert)) => cert,
        Err(err) => {
            tracing::debug!(%origin, error = %err, "could not parse the peer certificate");
            return None;
        }
    };
    let secs = cert.validity().not_after.timestamp();
    match u64::try_from(secs) {
        Ok(after) => SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(after)),
        Err(_) => SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())),
    }
}

fn timed_out(phase: Phase, started: Instant) -> TransportError {
    TransportError::Timeout {
        phase,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::error::Error as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::http::tls::{client_config, TlsOptions};

    /// Large enough that hyper cannot have read it all before the caller asks for it.
    const BIG_BODY: usize = 8 << 20;

    fn get(url: &str) -> Request<ReqBody> {
        Request::get(url)
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("valid test request")
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    fn plain_transport() -> Transport {
        Transport::new(
            client_config(&TlsOptions::default()).expect("default tls config"),
            Arc::new(SystemResolver),
        )
    }

    async fn body_of(resp: Response<Incoming>) -> Bytes {
        resp.into_body()
            .collect()
            .await
            .expect("reading the body")
            .to_bytes()
    }

    /// A raw HTTP/1.1 keep-alive server on 127.0.0.1 that records every request head and
    /// answers `hello`, or BIG_BODY bytes for paths starting with /big.
    struct RawServer {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    impl RawServer {
        async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
            let addr = listener.local_addr().expect("local addr");
            let connections = Arc::new(AtomicUsize::new(0));
            let heads = Arc::new(Mutex::new(Vec::new()));
            let (count, seen) = (connections.clone(), heads.clone());
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let (seen, tls) = (seen.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(tcp).await {
                                    serve_h1(stream, seen).await;
                                }
                            }
                            None => serve_h1(tcp, seen).await,
                        }
                    });
                }
            });
            Self {
                addr,
                connections,
                heads,
            }
        }

        fn heads(&self) -> Vec<String> {
            self.heads.lock().expect("heads lock").clone()
        }
    }

    async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(
        mut io: S,
        heads: Arc<Mutex<Vec<String>>>,
    ) {
        let mut buf = Vec::new();
        loop {
            let end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let mut chunk = [0u8; 4096];
                match io.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let big = head.starts_with("GET /big");
            heads.lock().expect("heads lock").push(head);
            let body = if big {
                vec![b'x'; BIG_BODY]
            } else {
                b"hello".to_vec()
            };
            let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            if io.write_all(response.as_bytes()).await.is_err()
                || io.write_all(&body).await.is_err()
                || io.flush().await.is_err()
            {
                return;
            }
        }
    }

    /// A certificate for 127.0.0.1 valid until 2031-01-01, signed by itself.
    fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let cert = params.self_signed(&key).expect("self-signing");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (cert.der().clone(), key)
    }

    fn acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
        let (cert, key) = self_signed();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    fn insecure_transport() -> Transport {
        let config = client_config(&TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        })
        .expect("insecure tls config");
        Transport::new(config, Arc::new(SystemResolver))
    }

    /// Adds a delay, then points every name at one address.
    struct SlowResolver {
        delay: Duration,
        addrs: Vec<SocketAddr>,
    }

    impl Resolve for SlowResolver {
        fn resolve(
            &self,
            _host: &str,
            _port: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                Ok(self.addrs.clone())
            })
        }
    }

    struct FailingResolver;

    impl Resolve for FailingResolver {
        fn resolve(
            &self,
            _host: &str,
            _port: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>> {
            Box::pin(async { Err(std::io::Error::other("no such host")) })
        }
    }

    #[test]
    fn transport_and_its_send_future_can_cross_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let transport = plain_transport();
        send_sync(&transport);
        send(&transport.send(get("http://127.0.0.1:1/"), Instant::now()));
    }

    // Multi-threaded like the prober: the connection's driver runs on another worker and may
    // still be finishing the first exchange when the second request checks the pool out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reuses_the_connection_for_a_second_request_after_the_body_was_read() {
        let server = RawServer::start(None).await;
        let transport = plain_transport();
        let url = format!("http://127.0.0.1:{}/v2/?n=1", server.addr.port());

        let (resp, first) = transport.send(get(&url), soon(5000)).await.expect("first");
        assert_eq!(body_of(resp).await, "hello");
        assert!(!first.reused);
        assert!(first.dns.is_none(), "IP literal needs no lookup");
        assert!(first.connect.is_some());
        assert!(first.tls.is_none());
        assert_eq!(first.http_version, "HTTP/1.1");
        assert_eq!(first.remote_addr, Some(server.addr));

        let (resp, second) = transport.send(get(&url), soon(5000)).await.expect("second");
        assert_eq!(body_of(resp).await, "hello");
        assert!(second.reused);
        assert!(second.dns.is_none() && second.connect.is_none() && second.tls.is_none());
        assert_eq!(second.remote_addr, Some(server.addr));
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);

        // Origin-form target and a Host header naming the non-default port.
        let head = &server.heads()[0];
        assert!(head.starts_with("GET /v2/?n=1 HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: 127.0.0.1:{}\r\n", server.addr.port())),
            "{head}"
        );
    }

    #[tokio::test]
    async fn opens_a_second_connection_while_the_first_body_is_unread() {
        let server = RawServer::start(None).await;
        let transport = plain_transport();
        let port = server.addr.port();

        let (big, first) = transport
            .send(get(&format!("http://127.0.0.1:{port}/big")), soon(5000))
            .await
            .expect("first");
        let (small, second) = transport
            .send(get(&format!("http://127.0.0.1:{port}/small")), soon(5000))
            .await
            .expect("second");
        assert!(!first.reused && !second.reused);
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);

        assert_eq!(body_of(big).await.len(), BIG_BODY);
        assert_eq!(body_of(small).await, "hello");
        let (resp, third) = transport
            .send(get(&format!("http://127.0.0.1:{port}/small")), soon(5000))
            .await
            .expect("third");
        assert_eq!(body_of(resp).await, "hello");
        assert!(third.reused);
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn clear_drops_the_idle_connections() {
        let server = RawServer::start(None).await;
        let transport = plain_transport();
        let url = format!("http://127.0.0.1:{}/", server.addr.port());
        let (resp, _) = transport.send(get(&url), soon(5000)).await.expect("first");
        body_of(resp).await;

        transport.clear();
        let (resp, timing) = transport.send(get(&url), soon(5000)).await.expect("second");
        body_of(resp).await;
        assert!(!timing.reused);
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn reports_connect_failure_naming_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local addr");
        drop(listener);

        let err = plain_transport()
            .send(get(&format!("http://{addr}/v2/")), soon(5000))
            .await
            .expect_err("nothing listens there");
        match &err {
            TransportError::Connect {
                addr: tried,
                source,
            } => {
                assert_eq!(tried, &addr.to_string());
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
        assert_eq!(err.to_string(), format!("connecting to {addr} failed"));
    }

    #[tokio::test]
    async fn times_out_in_first_byte_when_the_server_never_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });

        let err = plain_transport()
            .send(get(&format!("http://{addr}/v2/")), soon(300))
            .await
            .expect_err("the server never answers");
        match err {
            TransportError::Timeout { phase, elapsed } => {
                assert_eq!(phase, Phase::FirstByte);
                assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
                assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn counts_resolver_delay_in_the_dns_phase_only() {
        let server = RawServer::start(None).await;
        let transport = Transport::new(
            client_config(&TlsOptions::default()).expect("tls config"),
            Arc::new(SlowResolver {
                delay: Duration::from_millis(200),
                addrs: vec![server.addr],
            }),
        );
        let url = format!("http://registry.test:{}/v2/", server.addr.port());
        let (resp, timing) = transport
            .send(get(&url), soon(5000))
            .await
            .expect("request");
        body_of(resp).await;

        let dns = timing.dns.expect("a name was looked up");
        let connect = timing.connect.expect("a connection was made");
        assert!(dns >= Duration::from_millis(200), "{dns:?}");
        assert!(connect < Duration::from_millis(100), "{connect:?}");
        assert!(server.heads()[0]
            .to_ascii_lowercase()
            .contains(&format!("host: registry.test:{}\r\n", server.addr.port())));
    }

    #[tokio::test]
    async fn times_out_in_dns_when_the_resolver_is_slower_than_the_deadline() {
        let transport = Transport::new(
            client_config(&TlsOptions::default()).expect("tls config"),
            Arc::new(SlowResolver {
                delay: Duration::from_secs(10),
                addrs: Vec::new(),
            }),
        );
        let err = transport
            .send(get("http://registry.test/v2/"), soon(100))
            .await
            .expect_err("resolver too slow");
        assert!(
            matches!(
                err,
                TransportError::Timeout {
                    phase: Phase::Dns,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn reports_dns_failure_and_empty_answers_naming_the_host() {
        let failing = Transport::new(
            client_config(&TlsOptions::default()).expect("tls config"),
            Arc::new(FailingResolver),
        );
        let err = failing
            .send(get("http://registry.test/v2/"), soon(5000))
            .await
            .expect_err("lookup fails");
        assert!(matches!(err, TransportError::Dns { .. }), "{err:?}");
        assert_eq!(err.to_string(), "dns lookup of registry.test failed");
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("no such host")
        );

        let empty = Transport::new(
            client_config(&TlsOptions::default()).expect("tls config"),
            Arc::new(SlowResolver {
                delay: Duration::ZERO,
                addrs: Vec::new(),
            }),
        );
        let err = empty
            .send(get("http://registry.test/v2/"), soon(5000))
            .await
            .expect_err("no addresses");
        assert_eq!(
            err.to_string(),
            "dns lookup of registry.test returned no addresses"
        );
    }

    #[tokio::test]
    async fn rejects_urls_without_host_or_with_another_scheme() {
        let transport = plain_transport();
        let err = transport
            .send(get("/v2/?token=secret"), soon(1000))
            .await
            .expect_err("relative url");
        assert!(matches!(err, TransportError::Url(_)), "{err:?}");
        assert!(!err.to_string().contains("secret"), "{err}");

        let err = transport
            .send(get("ftp://registry.test/v2/"), soon(1000))
            .await
            .expect_err("ftp");
        assert_eq!(
            err.to_string(),
            "invalid request url: unsupported scheme ftp (only http and https)"
        );
    }

    #[tokio::test]
    async fn reports_untrusted_certificate_as_tls_error_with_the_cause_in_the_chain() {
        let server = RawServer::start(Some(acceptor(&[b"http/1.1"]))).await;
        let url = format!("https://127.0.0.1:{}/v2/", server.addr.port());
        let err = plain_transport()
            .send(get(&url), soon(5000))
            .await
            .expect_err("self-signed certificate is not trusted");

        let TransportError::Tls { host, source } = &err else {
            panic!("expected a tls error, got {err:?}");
        };
        assert_eq!(host, "127.0.0.1");
        let rustls_err = source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .expect("the rustls error is kept");
        assert!(
            matches!(
                rustls_err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{rustls_err:?}"
        );
        let mut chain = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            chain.push_str(": ");
            chain.push_str(&c.to_string());
            cause = c.source();
        }
        assert!(chain.contains("invalid peer certificate"), "{chain}");
    }

    #[tokio::test]
    async fn speaks_http11_over_tls_and_reports_the_certificate_expiry() {
        let server = RawServer::start(Some(acceptor(&[b"http/1.1"]))).await;
        let transport = insecure_transport();
        let url = format!("https://127.0.0.1:{}/v2/", server.addr.port());

        let (resp, first) = transport.send(get(&url), soon(5000)).await.expect("first");
        assert_eq!(body_of(resp).await, "hello");
        assert_eq!(first.http_version, "HTTP/1.1");
        assert!(first.tls.is_some());
        // 2031-01-01T00:00:00Z, the notAfter the test certificate was given.
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_924_992_000);
        assert_eq!(first.peer_cert_not_after, Some(expected));

        let (resp, second) = transport.send(get(&url), soon(5000)).await.expect("second");
        assert_eq!(body_of(resp).await, "hello");
        assert!(second.reused);
        assert!(second.tls.is_none() && second.peer_cert_not_after.is_none());
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn negotiates_http2_and_shares_one_connection() {
        let acceptor = acceptor(&[b"h2"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let uris = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), uris.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        seen.lock().expect("uris lock").push(req.uri().to_string());
                        async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"hello",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });

        let transport = insecure_transport();
        let url = format!("https://127.0.0.1:{}/v2/?n=1", addr.port());
        let (first_resp, first) = transport.send(get(&url), soon(5000)).await.expect("first");
        assert_eq!(first.http_version, "HTTP/2");
        assert!(!first.reused && first.tls.is_some());
        assert!(first.peer_cert_not_after.is_some());

        // The first body is still unread: HTTP/2 multiplexes anyway.
        let (second_resp, second) = transport.send(get(&url), soon(5000)).await.expect("second");
        assert!(second.reused);
        assert_eq!(second.http_version, "HTTP/2");
        assert_eq!(body_of(first_resp).await, "hello");
        assert_eq!(body_of(second_resp).await, "hello");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(
            uris.lock().expect("uris lock").first().map(String::as_str),
            Some(url.as_str())
        );
    }

    #[test]
    fn host_header_omits_default_ports_and_brackets_ipv6() {
        let origin = |url: &str| Origin::of(&url.parse::<Uri>().expect("uri")).expect("origin");
        let host = |url: &str| origin(url).host_header().expect("host header");
        assert_eq!(host("https://registry.test/v2/"), "registry.test");
        assert_eq!(host("https://registry.test:443/v2/"), "registry.test");
        assert_eq!(host("http://registry.test:5000/v2/"), "registry.test:5000");
        assert_eq!(host("http://[::1]:5000/v2/"), "[::1]:5000");
        assert_eq!(origin("http://[::1]/").host, "::1");
        assert_eq!(origin("http://[::1]/").to_string(), "http://[::1]:80");
    }
}
