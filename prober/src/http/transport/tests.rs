use super::*;
use std::convert::Infallible;
use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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

async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, heads: Arc<Mutex<Vec<String>>>) {
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
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
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

// The push path's single POST relies on it: hyper closes such a connection after the exchange
// and the pool never hands it out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_asks_connection_close_leaves_its_connection_out_of_the_pool() {
    let server = RawServer::start(None).await;
    let transport = plain_transport();
    let url = format!("http://127.0.0.1:{}/v2/", server.addr.port());

    let mut closing = get(&url);
    closing.headers_mut().insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, Close"),
    );
    let (resp, first) = transport.send(closing, soon(5000)).await.expect("first");
    assert_eq!(body_of(resp).await, "hello");
    assert!(!first.reused);

    let (resp, second) = transport.send(get(&url), soon(5000)).await.expect("second");
    assert_eq!(body_of(resp).await, "hello");
    assert!(
        !second.reused,
        "went out on the connection that asked to close"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
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
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
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
