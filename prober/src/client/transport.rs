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

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one request body type every connection carries.
pub type ReqBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// Idle HTTP/1.1 connections kept per origin; the oldest goes first beyond this.
const MAX_IDLE_H1_PER_ORIGIN: usize = 8;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    FirstByte,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::FirstByte => "first_byte",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
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

        let mut checkout = self.checkout(&origin);
        if matches!(checkout, Checkout::Busy) {
            // A connection whose body was just read turns ready when its driver task gets to
            // poll again; give it that chance before paying for a new connection.
            tokio::task::yield_now().await;
            checkout = self.checkout(&origin);
        }
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

        let server_name = ServerName::try_from(origin.host.clone()).map_err(|err| {
            TransportError::Tls {
                host: origin.host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, err),
            }
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
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

async fn handshake_h1<T>(io: T, origin: &Origin) -> Result<http1::SendRequest<ReqBody>, TransportError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
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

async fn handshake_h2<T>(io: T, origin: &Origin) -> Result<http2::SendRequest<ReqBody>, TransportError>
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
