//! A stand-in for the object store a registry redirects blob GETs to (S3, GCS, Azure Blob), as
//! registries with cloud storage do: a separate origin on 127.0.0.1 that serves a blob's bytes
//! straight from a Distribution registry's filesystem storage for
//! `GET|HEAD /<anything>/blobs/sha256:<hex>?...X-Amz-Signature=<signature>...`, with no registry
//! auth. Like S3 it refuses a request that also carries an `Authorization` header (400,
//! `InvalidArgument`, "Only one auth mechanism allowed"), and a missing or wrong signature (403).
//! Every request is recorded, with whether it carried `Authorization`. Stopped on drop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::background::{accept_each, Background};

/// One request as the store saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// `path?query` as sent.
    pub target: String,
    pub had_authorization: bool,
    pub status: u16,
}

struct Shared {
    /// `<storage root>/docker/registry/v2/blobs/sha256`.
    blobs: PathBuf,
    signature: String,
    seen: Mutex<Vec<Seen>>,
}

/// A running object store; stopped on drop.
pub struct ObjectStore {
    server: Background,
    shared: Arc<Shared>,
}

impl ObjectStore {
    /// Serves the blobs of the registry whose filesystem storage root is `storage_root` to
    /// requests signed with `signature`.
    pub fn start(storage_root: &Path, signature: &str) -> anyhow::Result<ObjectStore> {
        let shared = Arc::new(Shared {
            blobs: storage_root.join("docker/registry/v2/blobs/sha256"),
            signature: signature.to_string(),
            seen: Mutex::new(Vec::new()),
        });
        let server = {
            let shared = shared.clone();
            Background::start(
                "object-store",
                1,
                Duration::from_secs(1),
                move |listener, stop| accept_loop(listener, shared, stop),
            )?
        };
        Ok(ObjectStore { server, shared })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    accept_each(listener, stop, move |tcp| {
        let shared = shared.clone();
        async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&shared, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        }
    })
    .await
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let had_authorization = req.headers().contains_key(header::AUTHORIZATION);
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    let (status, body) = respond(shared, req, had_authorization);
    shared
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Seen {
            method: req.method().to_string(),
            target,
            had_authorization,
            status: status.as_u16(),
        });
    let len = body.len();
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .body(Full::new(body))
        .expect("a valid response head")
}

fn s3_error(code: &str, message: &str) -> Bytes {
    Bytes::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ))
}

fn respond(shared: &Shared, req: &Request<Incoming>, authorization: bool) -> (StatusCode, Bytes) {
    if authorization {
        return (
            StatusCode::BAD_REQUEST,
            s3_error(
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
            ),
        );
    }
    let signed = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == format!("X-Amz-Signature={}", shared.signature))
    });
    if !signed {
        return (
            StatusCode::FORBIDDEN,
            s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            ),
        );
    }
    let hex = req
        .uri()
        .path()
        .rsplit_once("/blobs/sha256:")
        .map(|(_, hex)| hex)
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(hex) = hex else {
        return (
            StatusCode::NOT_FOUND,
            s3_error("NoSuchKey", "The specified key does not exist."),
        );
    };
    match std::fs::read(shared.blobs.join(&hex[..2]).join(hex).join("data")) {
        Ok(bytes) => (StatusCode::OK, Bytes::from(bytes)),
        Err(_) => (
            StatusCode::NOT_FOUND,
            s3_error("NoSuchKey", "The specified key does not exist."),
        ),
    }
}
