//! Opening a connection: DNS (through the pluggable resolver), TCP connect to the first address
//! that accepts, TLS with the leaf certificate's expiry noted, and the HTTP/1.1 or HTTP/2
//! handshake ALPN chose, each phase timed and bounded by the deadline.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::pool::Pooled;
use super::{
    timed_out, ConnTiming, Origin, Phase, ReqBody, Sender, Transport, TransportError,
    MAX_READ_BUFFER,
};

impl Transport {
    /// Resolves, connects and (for https) shakes hands, timing each phase.
    pub(super) async fn connect(
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
