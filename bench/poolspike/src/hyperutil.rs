//! The contender: the prober transport's contract, `send(request, deadline) -> (response,
//! ConnTiming)`, on hyper-util's legacy pooled `Client`, with a connector (a tower `Service<Uri>`)
//! that resolves through the prober's `Resolve`, connects and shakes hands, timing each phase.
//!
//! What hyper-util hands back per request is the connector's `Connected::extra`, copied into the
//! extensions of *every* response on that connection. Telling the request that opened a connection
//! from the ones that reuse it takes a task-local: the pool calls the connector lazily, inside
//! the task of the request whose checkout started it, so the connector can note that request's
//! id in the connection's extra; a request is "new" only when the serving connection names it.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use registry_prober::{ConnTiming, Phase, ReqBody, Resolve, TransportError};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// As the prober: idle HTTP/1.1 connections kept per origin, and the HTTP/1.1 read buffer.
const MAX_IDLE_PER_HOST: usize = 8;
const MAX_READ_BUFFER: usize = 1024 * 1024;

tokio::task_local! {
    /// The request being sent, seen by the connector when the pool starts a connect for it.
    static REQUEST: Arc<RequestCell>;
}

/// One request as the connector sees it: who it is, its deadline, and the phase it is in.
struct RequestCell {
    id: u64,
    deadline: Instant,
    /// 0 waiting (for a pooled connection or for the response head), else a connect phase.
    phase: AtomicU8,
}

const WAITING: u8 = 0;
const DNS: u8 = 1;
const CONNECT: u8 = 2;
const TLS: u8 = 3;

impl RequestCell {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            DNS => Phase::Dns,
            CONNECT => Phase::Connect,
            TLS => Phase::Tls,
            // hyper-util cannot say whether the request was still waiting for a connection.
            _ => Phase::FirstByte,
        }
    }
}

/// What a connection knows about its own opening; hyper-util copies it into every response.
#[derive(Clone)]
pub struct ConnInfo(Arc<ConnInner>);

struct ConnInner {
    /// The request whose checkout started the connect (0: none, e.g. outside `send`).
    opened_by: u64,
    dns: Option<Duration>,
    connect: Duration,
    tls: Option<Duration>,
    remote_addr: SocketAddr,
    peer_cert_not_after: Option<SystemTime>,
    /// When the TLS handshake (or the TCP connect) finished.
    ready_at: Instant,
    /// The one-shot flag: set by the first response this connection carried.
    first_use_claimed: AtomicBool,
}

/// Counters the comparison reads.
#[derive(Default)]
pub struct Stats {
    /// Connections the connector opened (TCP connects that succeeded).
    pub opened: AtomicU64,
    /// Connections whose first response went to a request other than the one that opened them:
    /// a one-shot "first response is new" flag would have reported that request as new, with
    /// phases it never waited for.
    pub first_use_by_other: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpikeError {
    #[error("timed out during {phase} after {elapsed:?}")]
    Timeout { phase: Phase, elapsed: Duration },
    #[error("hyper-util client")]
    Client(#[from] hyper_util::client::legacy::Error),
}

pub struct HyperTransport {
    client: Client<TimingConnector, ReqBody>,
    next_id: AtomicU64,
    pub stats: Arc<Stats>,
}

impl HyperTransport {
    pub fn new(tls: Arc<rustls::ClientConfig>, resolver: Arc<dyn Resolve>) -> Self {
        let stats = Arc::new(Stats::default());
        let connector = TimingConnector {
            tls: tokio_rustls::TlsConnector::from(tls),
            resolver,
            stats: stats.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .http1_max_buf_size(MAX_READ_BUFFER)
            .build(connector);
        HyperTransport {
            client,
            next_id: AtomicU64::new(1),
            stats,
        }
    }

    /// Same contract as the prober's `Transport::send`: returns once the response head arrived.
    pub async fn send(
        &self,
        req: Request<ReqBody>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, ConnTiming), SpikeError> {
        let started = Instant::now();
        let cell = Arc::new(RequestCell {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            deadline,
            phase: AtomicU8::new(WAITING),
        });
        let sent = timeout_at(
            deadline,
            REQUEST.scope(cell.clone(), self.client.request(req)),
        )
        .await;
        let head_at = Instant::now();
        let resp = match sent {
            Err(_) => {
                return Err(SpikeError::Timeout {
                    phase: cell.phase(),
                    elapsed: started.elapsed(),
                })
            }
            Ok(result) => result?,
        };
        let mut timing = ConnTiming {
            reused: true,
            // Includes any wait for a pooled connection: hyper-util does not mark when the
            // request was handed to a connection.
            first_byte: head_at - started,
            http_version: if resp.version() == Version::HTTP_2 {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            ..ConnTiming::default()
        };
        if let Some(ConnInfo(info)) = resp.extensions().get::<ConnInfo>() {
            timing.remote_addr = Some(info.remote_addr);
            let opener = info.opened_by == cell.id;
            let first_use = !info.first_use_claimed.swap(true, Ordering::AcqRel);
            if first_use && !opener {
                self.stats
                    .first_use_by_other
                    .fetch_add(1, Ordering::Relaxed);
            }
            if opener {
                timing.reused = false;
                timing.dns = info.dns;
                timing.connect = Some(info.connect);
                timing.tls = info.tls;
                timing.peer_cert_not_after = info.peer_cert_not_after;
                // From the end of the handshake; the HTTP/2 preface is in it, as in the prober.
                timing.first_byte = head_at.saturating_duration_since(info.ready_at.max(started));
            }
        }
        Ok((resp, timing))
    }
}

#[derive(Clone)]
struct TimingConnector {
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<dyn Resolve>,
    stats: Arc<Stats>,
}

impl tower_service::Service<Uri> for TimingConnector {
    type Response = Conn;
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, TransportError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Called on the first poll of the pool's connect future, in the requesting task.
        let request = REQUEST.try_with(Arc::clone).ok();
        let this = self.clone();
        Box::pin(async move { this.connect(dst, request).await })
    }
}

impl TimingConnector {
    async fn connect(
        &self,
        dst: Uri,
        request: Option<Arc<RequestCell>>,
    ) -> Result<Conn, TransportError> {
        let started = Instant::now();
        // A connect left running in the background (its request got a pooled connection first)
        // still ends at that request's deadline.
        let deadline = request
            .as_ref()
            .map_or(started + Duration::from_secs(30), |r| r.deadline);
        let set_phase = |phase: u8| {
            if let Some(r) = &request {
                r.phase.store(phase, Ordering::Release);
            }
        };
        let timed_out = |phase| TransportError::Timeout {
            phase,
            elapsed: started.elapsed(),
        };
        let https = dst.scheme_str() == Some("https");
        let host = dst
            .host()
            .ok_or_else(|| TransportError::Url("no host".into()))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = dst.port_u16().unwrap_or(if https { 443 } else { 80 });

        let (addrs, dns) = match host.parse::<IpAddr>() {
            Ok(ip) => (vec![SocketAddr::new(ip, port)], None),
            Err(_) => {
                set_phase(DNS);
                let begun = Instant::now();
                let addrs = timeout_at(deadline, self.resolver.resolve(&host, port))
                    .await
                    .map_err(|_| timed_out(Phase::Dns))?
                    .map_err(|source| TransportError::Dns {
                        host: host.clone(),
                        source,
                    })?;
                if addrs.is_empty() {
                    return Err(TransportError::NoAddresses { host });
                }
                (addrs, Some(begun.elapsed()))
            }
        };

        set_phase(CONNECT);
        let begun = Instant::now();
        let mut last_err = None;
        let mut tcp = None;
        for addr in &addrs {
            match timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => return Err(timed_out(Phase::Connect)),
                Ok(Ok(stream)) => {
                    tcp = Some((stream, *addr));
                    break;
                }
                Ok(Err(err)) => last_err = Some(err),
            }
        }
        let Some((tcp, remote_addr)) = tcp else {
            return Err(TransportError::Connect {
                addr: format!("{addrs:?}"),
                source: last_err.unwrap_or_else(|| io::Error::other("no address")),
            });
        };
        let connect = begun.elapsed();
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);

        let (io, h2, tls, not_after) = if https {
            set_phase(TLS);
            let name = ServerName::try_from(host.clone()).map_err(|e| TransportError::Tls {
                host: host.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })?;
            let begun = Instant::now();
            let stream = timeout_at(deadline, self.tls.connect(name, tcp))
                .await
                .map_err(|_| timed_out(Phase::Tls))?
                .map_err(|source| TransportError::Tls {
                    host: host.clone(),
                    source,
                })?;
            let tls = begun.elapsed();
            let session = stream.get_ref().1;
            let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
            let not_after = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
                .and_then(|(_, cert)| {
                    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
                    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
                });
            (Stream::Tls(TokioIo::new(stream)), h2, Some(tls), not_after)
        } else {
            (Stream::Plain(TokioIo::new(tcp)), false, None, None)
        };
        set_phase(WAITING);
        let info = ConnInfo(Arc::new(ConnInner {
            opened_by: request.as_ref().map_or(0, |r| r.id),
            dns,
            connect,
            tls,
            remote_addr,
            peer_cert_not_after: not_after,
            ready_at: Instant::now(),
            first_use_claimed: AtomicBool::new(false),
        }));
        Ok(Conn { io, h2, info })
    }
}

// Unboxed, as the prober's connections hold their streams: no extra indirection on every read.
#[allow(clippy::large_enum_variant)]
enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<tokio_rustls::client::TlsStream<TcpStream>>),
}

pub struct Conn {
    io: Stream,
    h2: bool,
    info: ConnInfo,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.info.clone());
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}
