//! The client against a small local server that answers like the registries it must handle:
//! 401 with a challenge, 401 without one, and the precise message when it stays unauthorized.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::http::auth::Credentials;
use crate::http::tls::{client_config, TlsOptions};
use crate::http::transport::SystemResolver;

/// How the test registry asks for credentials.
#[derive(Clone, Copy)]
enum Dialect {
    /// A `Basic` challenge on every 401.
    Challenge,
    /// A 401 without a challenge everywhere, /v2/ included.
    Bare,
    /// A `Basic` challenge on /v2/ only, a bare 401 everywhere else (as some registries do).
    ChallengeOnPingOnly,
}

const GOOD: &str = "Basic dTpw"; // base64("u:p")

/// Serves 200 to requests carrying `Authorization: Basic u:p`, 401 in the dialect otherwise.
async fn registry(dialect: Dialect) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let authorized = req
                            .headers()
                            .get(header::AUTHORIZATION)
                            .is_some_and(|v| v == GOOD);
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        if !authorized {
                            *resp.status_mut() = StatusCode::UNAUTHORIZED;
                            let challenge = match dialect {
                                Dialect::Challenge => true,
                                Dialect::Bare => false,
                                Dialect::ChallengeOnPingOnly => req.uri().path() == "/v2/",
                            };
                            if challenge {
                                resp.headers_mut().insert(
                                    header::WWW_AUTHENTICATE,
                                    http::HeaderValue::from_static("Basic realm=\"test\""),
                                );
                            }
                        }
                        Ok::<_, Infallible>(resp)
                    },
                );
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

fn client(addr: SocketAddr, credentials: Option<(&str, &str)>) -> Client {
    let transport = Transport::new(
        client_config(&TlsOptions::default()).expect("tls config"),
        std::sync::Arc::new(SystemResolver),
    );
    Client::new(
        std::sync::Arc::new(transport),
        Url::parse(&format!("http://{addr}/")).expect("url"),
        "p",
        credentials.map(|(u, p)| Arc::new(CredentialSource::fixed(Credentials::new(u, p)))),
    )
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

async fn get_manifest(c: &Client) -> (Result<StatusCode, Failure>, Transcript) {
    let mut tr = Transcript::default();
    let url = c.repo_url("p", "manifests/t").expect("url");
    let result = c
        .send(&Request::new(Method::GET, url), soon(), &mut tr)
        .await
        .map(|r| r.status);
    (result, tr)
}

#[tokio::test]
async fn a_bare_401_is_answered_with_the_configured_credentials_as_basic() {
    for dialect in [
        Dialect::Bare,
        Dialect::ChallengeOnPingOnly,
        Dialect::Challenge,
    ] {
        let c = client(registry(dialect).await, Some(("u", "p")));
        let (result, tr) = get_manifest(&c).await;
        assert_eq!(result.expect("authorized"), StatusCode::OK);
        let statuses: Vec<Option<u16>> = tr.requests.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Some(401), Some(200)], "one 401, then basic auth");
    }
}

#[tokio::test]
async fn after_a_ping_every_request_authenticates_up_front() {
    for dialect in [
        Dialect::Bare,
        Dialect::ChallengeOnPingOnly,
        Dialect::Challenge,
    ] {
        let c = client(registry(dialect).await, Some(("u", "p")));
        let mut tr = Transcript::default();
        c.ping(soon(), &mut tr).await.expect("a 401 answers a ping");
        let (result, tr) = get_manifest(&c).await;
        assert_eq!(result.expect("authorized"), StatusCode::OK);
        assert_eq!(tr.requests.len(), 1, "no 401 after the ping");
    }
}

#[tokio::test]
async fn a_bare_401_without_credentials_says_so_and_not_that_credentials_were_rejected() {
    let addr = registry(Dialect::Bare).await;
    let (result, _) = get_manifest(&client(addr, None)).await;
    let f = result.expect_err("unauthorized");
    assert_eq!(f.reason, Reason::Auth);
    assert_eq!(
        f.message,
        format!("GET http://{addr}/v2/p/manifests/t: 401 Unauthorized, 401 without a WWW-Authenticate challenge and no credentials configured")
    );
}

#[tokio::test]
async fn rejected_credentials_name_the_user_that_was_sent() {
    let addr = registry(Dialect::ChallengeOnPingOnly).await;
    let (result, tr) = get_manifest(&client(addr, Some(("u", "wrong")))).await;
    let f = result.expect_err("unauthorized");
    assert_eq!(
        f.message,
        format!("GET http://{addr}/v2/p/manifests/t: 401 Unauthorized, basic credentials of user \"u\" were sent and rejected")
    );
    assert_eq!(
        tr.requests.len(),
        2,
        "one retry with the credentials, not more"
    );
}

#[tokio::test]
async fn a_challenge_for_basic_without_credentials_says_none_are_configured() {
    let addr = registry(Dialect::Challenge).await;
    let (result, _) = get_manifest(&client(addr, None)).await;
    assert_eq!(
        result.expect_err("unauthorized").message,
        format!("GET http://{addr}/v2/p/manifests/t: 401 Unauthorized, the registry asks for basic credentials and none are configured (challenge: Basic realm=\"test\")")
    );
}

#[tokio::test]
async fn a_ping_that_finds_no_registry_fails_naming_the_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    let mut resp =
                        hyper::Response::new(Full::new(Bytes::from("<html>nope</html>")));
                    *resp.status_mut() = StatusCode::NOT_FOUND;
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let mut tr = Transcript::default();
    let f = client(addr, None)
        .ping(soon(), &mut tr)
        .await
        .expect_err("a 404 is no registry");
    assert_eq!(f.reason, Reason::Protocol);
    assert_eq!(
        f.message,
        format!("GET http://{addr}/v2/: got 404 Not Found, expected 200, body: <html>nope</html>")
    );
}

#[tokio::test]
async fn rejected_basic_credentials_are_read_again_for_the_one_retry() {
    let addr = registry(Dialect::Challenge).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("password");
    std::fs::write(&path, "old\n").expect("write");
    let source = CredentialSource::password_file("u".into(), path.clone(), Default::default())
        .expect("readable");
    let c = Client::new(
        client(addr, None).transport.clone(),
        Url::parse(&format!("http://{addr}/")).expect("url"),
        "p",
        Some(Arc::new(source)),
    );
    let mut tr = Transcript::default();
    c.ping(soon(), &mut tr).await.expect("a 401 answers a ping");
    // Rotated on disk while the old one is still fresh in the cache.
    std::fs::write(&path, "p\n").expect("write");
    let (result, tr) = get_manifest(&c).await;
    assert_eq!(result.expect("authorized"), StatusCode::OK);
    let statuses: Vec<Option<u16>> = tr.requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Some(401), Some(200)],
        "the old one, then the new one"
    );
}

#[tokio::test]
async fn an_identity_token_cannot_answer_a_basic_challenge_and_the_ping_says_so_first() {
    let addr = registry(Dialect::Challenge).await;
    let c = Client::new(
        client(addr, None).transport.clone(),
        Url::parse(&format!("http://{addr}/")).expect("url"),
        "p",
        Some(Arc::new(CredentialSource::fixed(
            Credentials::identity_token("<token>", "rt"),
        ))),
    );
    let mut tr = Transcript::default();
    let f = c
        .ping(soon(), &mut tr)
        .await
        .expect_err("no basic credentials");
    assert_eq!(f.reason, Reason::Auth);
    assert_eq!(
        f.message,
        format!("GET http://{addr}/v2/: the registry asks for basic credentials, and the configured ones are an identity token, which only a token service takes")
    );
    let (result, _) = get_manifest(&c).await;
    let f = result.expect_err("no basic credentials");
    assert_eq!(
        f.message,
        format!("GET http://{addr}/v2/p/manifests/t: the registry asks for basic credentials, and the configured ones are an identity token, which only a token service takes")
    );
}

#[tokio::test]
async fn a_token_response_over_its_bound_fails_naming_the_limit_and_the_token_url() {
    use crate::http::response::tests::{serve, Answer, CHUNK, ENDLESS};
    use crate::http::response::TOKEN_BODY;
    let realm = Arc::new(std::sync::OnceLock::<String>::new());
    let challenge = realm.clone();
    let (addr, _) = serve(move |target| {
        if target.starts_with("/token") {
            return Answer {
                status: 200,
                headers: Vec::new(),
                body: ENDLESS,
            };
        }
        let realm = challenge.get().expect("set before the first request");
        Answer {
            status: 401,
            headers: vec![(
                "www-authenticate",
                format!(r#"Bearer realm="{realm}",service="s""#),
            )],
            body: 0,
        }
    })
    .await;
    realm.set(format!("http://{addr}/token")).expect("set once");
    let c = client(addr, None);
    let (result, tr) = get_manifest(&c).await;
    let f = result.expect_err("no token");
    assert_eq!(f.reason, Reason::Protocol);
    assert_eq!(
        f.message,
        format!(
            "GET http://{addr}/token?service=s&scope=repository%3Ap%3Apull: token response over \
             its limit of 1048576 bytes, not read further"
        )
    );
    let fetch = tr.token_fetches.first().expect("a token fetch");
    let received = fetch
        .requests
        .last()
        .expect("the token request")
        .bytes_received;
    assert!(
        received > TOKEN_BODY.bytes as u64 && received <= (TOKEN_BODY.bytes + CHUNK) as u64,
        "read {received} bytes"
    );
}
