//! Every body read is bounded: against a local server that sends a body without end, each
//! bound stops the read at its limit (never holding more), and the failure names the request
//! and the limit. The server is shared with the tests of the bounds' other call sites (token
//! answers, tag lists).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, StatusCode};
use http_body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::http::tls::{client_config, TlsOptions};
use crate::http::transport::{SystemResolver, Transport};
use crate::http::{Client, Request};

/// What the server sends per frame of a body without end.
pub(crate) const CHUNK: usize = 16 * 1024;
static FILL: [u8; CHUNK] = [b'x'; CHUNK];

/// How the test server answers one request.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// A body of this many 'x' (chunked), [`ENDLESS`] for a body without end.
    pub body: u64,
}

pub(crate) const ENDLESS: u64 = u64::MAX;

/// A body of `CHUNK`-sized frames of 'x' until `left` is 0 (for as long as the client reads,
/// when it is [`ENDLESS`]), counting what went out.
struct TestBody {
    left: u64,
    sent: Arc<AtomicU64>,
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let n = self.left.min(CHUNK as u64);
        if n == 0 {
            return Poll::Ready(None);
        }
        let this = self.get_mut();
        if this.left != ENDLESS {
            this.left -= n;
        }
        this.sent.fetch_add(n, Ordering::Relaxed);
        let frame = Bytes::from_static(&FILL[..n as usize]);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

/// A server on 127.0.0.1 answering each request as `answer` says for its path and query; the
/// counter is the body bytes it has sent. It stops with the test's runtime.
pub(crate) async fn serve(
    answer: impl Fn(&str) -> Answer + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent = Arc::new(AtomicU64::new(0));
    let answer = Arc::new(answer);
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (answer, sent) = (answer.clone(), counter.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let target = req.uri().to_string();
                    let a = answer(&target);
                    let mut resp = hyper::Response::new(TestBody {
                        left: a.body,
                        sent: sent.clone(),
                    });
                    *resp.status_mut() = StatusCode::from_u16(a.status).expect("a status");
                    for (name, value) in a.headers {
                        resp.headers_mut()
                            .insert(name, value.parse().expect("a header value"));
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, sent)
}

pub(crate) fn client(addr: SocketAddr) -> Client {
    let transport = Transport::new(
        client_config(&TlsOptions::default()).expect("tls config"),
        Arc::new(SystemResolver),
    );
    let base = Url::parse(&format!("http://{addr}/")).expect("url");
    Client::new(Arc::new(transport), base, "p", None)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// GET /v2/p/manifests/t from a server answering `status` with a body without end: the
/// response with its body unread.
async fn endless(status: u16) -> (Response, Transcript, String) {
    let (addr, _) = serve(move |_| Answer {
        status,
        headers: Vec::new(),
        body: ENDLESS,
    })
    .await;
    let c = client(addr);
    let url = c.repo_url("p", "manifests/t").expect("url");
    let mut tr = Transcript::default();
    let resp = c
        .send(&Request::new(Method::GET, url.clone()), soon(), &mut tr)
        .await
        .expect("an answer");
    (resp, tr, url.to_string())
}

/// The read stopped at the frame that went past the limit.
fn assert_stopped_at(tr: &Transcript, limit: BodyLimit) {
    let received = tr.requests.last().expect("a request").bytes_received;
    assert!(
        received > limit.bytes as u64 && received <= (limit.bytes + CHUNK) as u64,
        "read {received} bytes for a limit of {}",
        limit.bytes
    );
}

#[tokio::test]
async fn an_error_body_over_its_bound_is_cut_and_the_failure_says_so() {
    let (resp, mut tr, url) = endless(500).await;
    let Err(f) = resp
        .expect(&[StatusCode::OK], Reason::ManifestUnknown, soon(), &mut tr)
        .await
    else {
        panic!("500 is not 200");
    };
    assert_eq!(
        f.message,
        format!(
            "GET {url}: got 500 Internal Server Error, expected 200, body: {}… (the error body \
             is over its limit of 65536 bytes, the rest was not read)",
            "x".repeat(300)
        )
    );
    assert_eq!(f.reason, Reason::Http5xx);
    assert_stopped_at(&tr, ERROR_BODY);
}

#[tokio::test]
async fn a_manifest_over_its_bound_fails_naming_the_limit() {
    let (resp, mut tr, url) = endless(200).await;
    let f = resp
        .read_body(MANIFEST_BODY, soon(), &mut tr)
        .await
        .expect_err("over the bound");
    assert_eq!(f.reason, Reason::Protocol);
    assert_eq!(
        f.message,
        format!("GET {url}: manifest over its limit of 4194304 bytes, not read further")
    );
    assert_stopped_at(&tr, MANIFEST_BODY);
}

#[tokio::test]
async fn a_referrers_answer_over_its_bound_fails_naming_the_limit() {
    let (resp, mut tr, url) = endless(200).await;
    let f = resp
        .read_body(REFERRERS_BODY, soon(), &mut tr)
        .await
        .expect_err("over the bound");
    assert_eq!(f.reason, Reason::Protocol);
    assert_eq!(
        f.message,
        format!("GET {url}: referrers answer over its limit of 4194304 bytes, not read further")
    );
    assert_stopped_at(&tr, REFERRERS_BODY);
}

#[tokio::test]
async fn an_unused_body_over_its_bound_fails_naming_the_limit() {
    let (resp, mut tr, url) = endless(202).await;
    let f = resp
        .discard(soon(), &mut tr)
        .await
        .expect_err("over the bound");
    assert_eq!(
        f.message,
        format!("GET {url}: unused body over its limit of 4194304 bytes, not read further")
    );
    assert_stopped_at(&tr, UNUSED_BODY);
}

#[tokio::test]
async fn a_body_at_its_bound_is_read_whole() {
    let limit = BodyLimit::new("test body", 3 * CHUNK);
    let (addr, _) = serve(|_| Answer {
        status: 200,
        headers: Vec::new(),
        body: 3 * CHUNK as u64,
    })
    .await;
    let c = client(addr);
    let mut tr = Transcript::default();
    let url = c.repo_url("p", "manifests/t").expect("url");
    let resp = c
        .send(&Request::new(Method::GET, url), soon(), &mut tr)
        .await
        .expect("an answer");
    let body = resp.read_body(limit, soon(), &mut tr).await.expect("fits");
    assert_eq!(body.len(), 3 * CHUNK);
}

mod properties {
    //! A Location, any bytes a header can hold, is resolved or refused without a panic; one
    //! accepted denotes the URL it says: a path on the registry that sent it, or the absolute
    //! URL given.

    use proptest::prelude::*;

    use super::*;
    use crate::proptests::cases;

    const SHOWN: &str = "http://127.0.0.1:5000/v2/p/blobs/uploads/";

    fn base() -> Url {
        Url::parse(SHOWN).expect("a URL")
    }

    fn resolve(value: &HeaderValue) -> Result<Url, Failure> {
        resolve_location(
            &Method::POST,
            SHOWN,
            StatusCode::ACCEPTED,
            &base(),
            Some(value),
        )
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn any_location_is_resolved_or_refused_without_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..100)
                .prop_map(|v| v.into_iter().map(|b| if b < 32 || b == 127 { b'\t' } else { b }).collect::<Vec<u8>>()),
        ) {
            let value = HeaderValue::from_bytes(&bytes).expect("header bytes");
            if let Err(f) = resolve(&value) {
                prop_assert_eq!(f.reason, Reason::Protocol);
                prop_assert!(f.message.starts_with(&format!("POST {SHOWN}: ")), "{}", f.message);
            }
        }

        #[test]
        fn a_path_location_stays_on_the_registry_that_sent_it(
            path in "(/[a-zA-Z0-9._~-]{1,12}){1,5}",
            query in proptest::option::of("_state=[a-zA-Z0-9_=-]{0,40}(&[a-z]{1,5}=[a-z0-9]{0,5}){0,2}"),
        ) {
            let loc = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let url = resolve(&HeaderValue::from_str(&loc).expect("ASCII")).expect("a path resolves");
            prop_assert_eq!(url.origin(), base().origin());
            prop_assert_eq!(url.query(), query.as_deref());
            // Dot segments are removed, as the URL standard says.
            let want = Url::parse(&format!("http://h{path}")).expect("a path");
            prop_assert_eq!(url.path(), want.path());
        }

        #[test]
        fn an_absolute_location_is_the_url_given(
            loc in "https?://[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,3})?(:[1-9][0-9]{0,3})?/[a-zA-Z0-9/._-]{0,20}(\\?[a-zA-Z0-9=&%_-]{0,30})?",
        ) {
            let resolved = resolve(&HeaderValue::from_str(&loc).expect("ASCII"));
            match Url::parse(&loc) {
                Ok(want) => prop_assert_eq!(resolved.expect("a URL resolves"), want),
                // A host such as `xn--` or `xn--kh` is not a valid international domain name:
                // refused, saying so.
                Err(e) => {
                    let f = resolved.expect_err("an invalid URL is refused");
                    prop_assert!(
                        f.message.contains("invalid Location") && f.message.contains(&e.to_string()),
                        "{}", f.message
                    );
                }
            }
        }
    }
}
