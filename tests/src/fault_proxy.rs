//! A fault-injecting HTTP/1.1 reverse proxy for end-to-end tests: it sits between the prober and
//! a real registry, forwards every request unchanged (Host included) and, for requests matching
//! a [`Rule`], puts a [`Fault`] on the wire that the real registry will not produce on demand.
//!
//! The client side is a small hand-written HTTP/1.1 server (httparse for heads) rather than
//! hyper, because faults such as a wrong Content-Length must reach the wire as they are and
//! hyper enforces consistent framing. Bodies stream in pieces both ways. Each request goes to
//! the upstream on a fresh connection (`Connection: close`), so a registry restarted behind the
//! proxy is picked up at once; the client side keeps its connection alive between requests.

use crate::background::{accept_each, Background};
use crate::certs::TlsFiles;
use anyhow::{bail, Context as _};
use bytes::{Bytes, BytesMut};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// Longest request or response head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest piece of body read from one side and written to the other at once.
const PIECE: usize = 64 * 1024;
/// How long dropping the proxy waits for its connection tasks before abandoning them.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(500);
/// TLS handshake deadline for clients of an HTTPS proxy.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The byte [`Fault::AppendBytes`] appends.
pub const APPENDED_BYTE: u8 = b'X';

/// Which requests get a fault: those whose method matches (any method if `None`) and whose
/// request target (`path?query`, as sent) contains `path_contains`. A rule lets the first
/// `after` matching requests pass, then acts at most `times` times (always if `None`), and with
/// a `chance`, on that share of its matching requests only (each drawn at random). Rules are
/// tried in the order they were added; the first one that matches, has not used up its
/// `times`, is not still letting requests pass and wins its draw acts.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Key for [`FaultProxy::hits`]; rules may share a name, their hits then add up.
    pub name: String,
    pub method: Option<http::Method>,
    pub path_contains: String,
    pub after: u64,
    pub times: Option<u64>,
    /// The probability (0 to 1) that the rule acts on a matching request; always if `None`.
    pub chance: Option<f64>,
    pub fault: Fault,
}

impl Rule {
    /// A rule for any method that acts on every matching request.
    pub fn new(name: &str, path_contains: &str, fault: Fault) -> Rule {
        Rule {
            name: name.to_string(),
            method: None,
            path_contains: path_contains.to_string(),
            after: 0,
            times: None,
            chance: None,
            fault,
        }
    }

    /// Acts on each matching request with probability `p` (an intermittent fault), e.g. 0.05
    /// for 5% of them.
    pub fn chance(mut self, p: f64) -> Rule {
        self.chance = Some(p);
        self
    }

    /// Lets the first `n` matching requests pass untouched (e.g. a manifest GET by digest
    /// that comes before the one the fault is for).
    pub fn after(mut self, n: u64) -> Rule {
        self.after = n;
        self
    }

    /// Only requests with this method match.
    pub fn method(mut self, method: http::Method) -> Rule {
        self.method = Some(method);
        self
    }

    /// Acts on at most `n` requests, then lets the rest pass.
    pub fn times(mut self, n: u64) -> Rule {
        self.times = Some(n);
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m.as_str() == method)
            && target.contains(&self.path_contains)
    }
}

/// What the proxy does to a matching request. "Body" is the response body as the upstream
/// meant it (de-chunked); faults that keep the upstream's framing re-chunk it if it was chunked.
/// On a HEAD (or 204/304) response, which has no body, body faults only edit the head.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answers itself without asking the upstream (the request body is read and discarded):
    /// this status, these headers, this body, plus `Content-Length` unless `headers` has one
    /// (then the body is sent as is under that header and the connection closed after it).
    /// E.g. 500/503, 429 with `Retry-After`, or an HTML error page.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Sends the upstream's head and the first `after` body bytes, then resets the TCP
    /// connection (SO_LINGER 0, so the client gets RST instead of FIN). A body no longer than
    /// `after` goes out whole (a chunked one without its last chunk) before the reset.
    ResetMidBody { after: usize },
    /// Sends the upstream's head (original `Content-Length`) and the first `after` body bytes,
    /// then closes the connection cleanly (close_notify + FIN): a short body. A body no longer
    /// than `after` goes out whole (a chunked one without its last chunk) before the close.
    Truncate { after: usize },
    /// Flips (XOR 0xFF) the body byte at `offset`; same length and headers. No-op if the body
    /// is shorter.
    FlipByte { offset: usize },
    /// Sends the body followed by `count` extra [`APPENDED_BYTE`]s. With
    /// `keep_content_length: false`, `Content-Length` is raised by `count` (a chunked response
    /// stays chunked). With `keep_content_length: true`, `Content-Length` is dropped and the
    /// body goes chunked: the client is not told the new length but still receives every byte.
    AppendBytes {
        count: usize,
        keep_content_length: bool,
    },
    /// Replaces every header `name` with `name: value` (or adds it), e.g. a wrong
    /// `Docker-Content-Digest`. Setting `Content-Length` sends the original body unchunked
    /// under the new header and then closes the connection: with a larger value the client
    /// sees a short body, with a smaller one it stops early and the rest is never read.
    SetHeader { name: String, value: String },
    /// Removes every header `name` from the upstream's answer (e.g. `Docker-Content-Digest`, or
    /// `WWW-Authenticate` as registries that send no challenge do).
    RemoveHeader { name: String },
    /// Forwards the request and the upstream's answer with another status (e.g. 200 where the
    /// registry said 201), headers and body unchanged.
    SetStatus { status: u16 },
    /// Replaces the body (`Content-Length` updated, `Transfer-Encoding` dropped) and, if given,
    /// the `Content-Type`. Other headers such as `Docker-Content-Digest` stay the upstream's.
    ReplaceBody {
        body: Vec<u8>,
        content_type: Option<String>,
    },
    /// Waits this long after the upstream's head arrived before sending it on.
    DelayHeaders { delay: Duration },
    /// Sends the body `bytes_per_tick` bytes (at least 1) at a time, one piece every `tick`.
    Drip {
        bytes_per_tick: usize,
        tick: Duration,
    },
    /// Reads the request and never answers, until the client closes the connection or the
    /// proxy is dropped (the client then sees the connection close).
    Hang,
    /// Re-compresses a gzip body as a transcoding cache would: gunzipped and gzipped again at
    /// `level`, then padded to the original length with a second, empty gzip member whose
    /// comment field fills the difference. Same length and headers, the same bytes once
    /// unpacked, another digest. When the body is not gzip or does not get shorter, the proxy
    /// drops the connection instead.
    Recompress { level: u32 },
    /// Answers itself with `status` (e.g. 307) and `Location: <to><path?query as sent>`, with
    /// `query` appended to that query: a registry sending blob GETs to its object store with
    /// a signed URL, as registries on S3 or GCS do.
    Redirect {
        status: u16,
        to: String,
        query: String,
    },
}

impl Fault {
    /// [`Fault::Status`] with no extra headers and an empty body.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
}

/// A running proxy on 127.0.0.1; stopped on drop (listener, runtime and every connection).
pub struct FaultProxy {
    server: Background,
    tls: bool,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a plain-HTTP proxy in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> anyhow::Result<FaultProxy> {
        Self::start_inner(upstream, None)
    }

    /// Starts an HTTPS proxy in front of `upstream` (`http://host:port`) that presents
    /// `tls.cert` with `tls.key` (e.g. an expired or untrusted one from
    /// [`TestCa`](crate::TestCa)). Clients failing the handshake are simply dropped.
    pub fn start_tls(upstream: &str, tls: &TlsFiles) -> anyhow::Result<FaultProxy> {
        let acceptor = tls_acceptor(tls)?;
        Self::start_inner(upstream, Some(acceptor))
    }

    fn start_inner(upstream: &str, tls: Option<TlsAcceptor>) -> anyhow::Result<FaultProxy> {
        let authority = upstream
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .with_context(|| format!("upstream {upstream:?} must be a plain http://host:port URL"))?
            .to_string();
        let shared = Arc::new(Shared {
            upstream: authority,
            rules: Mutex::new(Vec::new()),
            hits: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            faulted: Mutex::new(Vec::new()),
        });
        let is_tls = tls.is_some();
        let server = {
            let shared = shared.clone();
            // The shutdown drops every connection task (hanging ones included) at its next await.
            Background::start("fault-proxy", 2, SHUTDOWN_TIMEOUT, move |listener, stop| {
                accept_loop(listener, tls, shared, stop)
            })?
        };
        Ok(FaultProxy {
            server,
            tls: is_tls,
            shared,
        })
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.server.addr())
    }

    /// `127.0.0.1:PORT`, e.g. for `docker://127.0.0.1:PORT/repo:tag`.
    pub fn host_port(&self) -> String {
        self.server.addr().to_string()
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Adds a rule after the existing ones; it applies to requests whose head arrives from now on.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(LiveRule {
            rule,
            passed: 0,
            acted: 0,
        });
    }

    /// Removes every rule: from now on all requests pass through. Hit counts are kept.
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// How many requests rules named `rule_name` have acted on so far.
    pub fn hits(&self, rule_name: &str) -> u64 {
        lock(&self.shared.hits).get(rule_name).copied().unwrap_or(0)
    }

    /// `(method, path?query)` of every request the proxy has read, in arrival order.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.shared.requests).clone()
    }

    /// Every request a rule acted on, in arrival order: when, which rule, what was asked.
    pub fn faulted(&self) -> Vec<Faulted> {
        lock(&self.shared.faulted).clone()
    }
}

/// A request a rule acted on.
#[derive(Debug, Clone)]
pub struct Faulted {
    /// When its head arrived.
    pub at: std::time::Instant,
    pub rule: String,
    pub method: String,
    /// `path?query`, as sent.
    pub target: String,
}

/// State shared by the handle and the connection tasks.
struct Shared {
    /// `host:port` of the upstream.
    upstream: String,
    rules: Mutex<Vec<LiveRule>>,
    hits: Mutex<HashMap<String, u64>>,
    requests: Mutex<Vec<(String, String)>>,
    faulted: Mutex<Vec<Faulted>>,
}

struct LiveRule {
    rule: Rule,
    /// Matching requests let through before acting (at most `rule.after`).
    passed: u64,
    acted: u64,
}

impl Shared {
    /// Logs the request and returns the fault of the first live matching rule, counting its hit.
    fn on_request(&self, method: &str, target: &str) -> Option<Fault> {
        lock(&self.requests).push((method.to_string(), target.to_string()));
        let mut rules = lock(&self.rules);
        let mut acting = None;
        for r in rules.iter_mut() {
            if r.rule.times.is_some_and(|n| r.acted >= n) || !r.rule.matches(method, target) {
                continue;
            }
            if r.passed < r.rule.after {
                r.passed += 1;
                continue;
            }
            if r.rule.chance.is_some_and(|p| rand::random::<f64>() >= p) {
                continue;
            }
            acting = Some(r);
            break;
        }
        let live = acting?;
        live.acted += 1;
        *lock(&self.hits).entry(live.rule.name.clone()).or_insert(0) += 1;
        lock(&self.faulted).push(Faulted {
            at: std::time::Instant::now(),
            rule: live.rule.name.clone(),
            method: method.to_string(),
            target: target.to_string(),
        });
        Some(live.rule.fault.clone())
    }
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not break the proxy.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tls_acceptor(tls: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .with_context(|| format!("reading {}", tls.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("reading private key {}", tls.key.display()))?;
    // Explicit provider: the workspace may enable more than one rustls backend.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions for the fault proxy")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| format!("loading {} into the fault proxy", tls.cert.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    accept_each(listener, stop, move |tcp| {
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        // An error ends only this connection; the client sees it closed.
        async move {
            match tls {
                None => {
                    let _ = serve(tcp, &shared).await;
                }
                Some(acceptor) => {
                    // A failed handshake is what TLS fault tests want: nothing more to do.
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        let _ = serve(stream, &shared).await;
                    }
                }
            }
        }
    })
    .await
}

/// A client connection, plain or TLS; `tcp()` reaches the socket to reset it.
trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
}

impl ClientIo for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// What becomes of the client connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    /// Clean close: TLS close_notify, then FIN.
    Close,
    /// Abortive close: RST.
    Reset,
}

/// Serves requests on one client connection until it closes or a fault ends it.
async fn serve<S: ClientIo>(io: S, shared: &Shared) -> anyhow::Result<()> {
    let mut client = Reader::new(io);
    loop {
        let Some(raw) = client.head().await.context("reading a request head")? else {
            return Ok(());
        };
        let after = match parse_request(&raw) {
            Ok(req) => {
                let fault = shared.on_request(&req.method, &req.target);
                exchange(&mut client, &req, fault, shared).await?
            }
            Err(e) => {
                let msg = format!("fault proxy: bad request: {e:#}");
                client.io.write_all(&simple_response(400, &msg)).await?;
                After::Close
            }
        };
        match after {
            After::KeepAlive => continue,
            After::Close => {
                client.io.flush().await?;
                let _ = client.io.shutdown().await;
                return Ok(());
            }
            After::Reset => {
                client
                    .io
                    .tcp()
                    .set_zero_linger()
                    .context("setting SO_LINGER 0")?;
                return Ok(()); // dropping the socket now sends RST
            }
        }
    }
}

/// Handles one request: answers it per `fault` or forwards it to the upstream and relays the
/// response with the fault applied.
async fn exchange<S: ClientIo>(
    client: &mut Reader<S>,
    req: &Request,
    fault: Option<Fault>,
    shared: &Shared,
) -> anyhow::Result<After> {
    let req_framing = request_framing(&req.headers)?;
    // The client's own wish to close, honoured after any response.
    let close = req.close;
    let keep = |after: After| {
        if close && after == After::KeepAlive {
            After::Close
        } else {
            after
        }
    };
    if req.expects_continue {
        // The Expect header is not forwarded (each side's 1xx is its own business): say go.
        client
            .io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
        client.io.flush().await?;
    }

    let fault = match fault {
        Some(Fault::Redirect { status, to, query }) => {
            let sep = if req.target.contains('?') { '&' } else { '?' };
            Some(Fault::Status {
                status,
                headers: vec![(
                    "Location".to_string(),
                    format!("{to}{}{sep}{query}", req.target),
                )],
                body: String::new(),
            })
        }
        other => other,
    };
    match fault {
        Some(Fault::Hang) => {
            // Never answer; return when the client gives up so the task does not linger.
            while client.fill().await? > 0 {
                client.buf.clear();
            }
            return Ok(After::Close);
        }
        Some(Fault::Status {
            status,
            headers,
            body,
        }) => {
            discard_body(client, req_framing).await?;
            let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (n, v) in &headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            let own_length = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
            if !own_length {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            if close || own_length {
                head.push_str("Connection: close\r\n");
            }
            head.push_str("\r\n");
            client.io.write_all(head.as_bytes()).await?;
            if req.method != "HEAD" {
                client.io.write_all(body.as_bytes()).await?;
            }
            client.io.flush().await?;
            // A length of the caller's may disagree with the body: nothing may follow it.
            return Ok(if own_length {
                After::Close
            } else {
                keep(After::KeepAlive)
            });
        }
        _ => {}
    }

    let mut upstream = match TcpStream::connect(&shared.upstream).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!(
                "fault proxy: connecting to upstream {}: {e}",
                shared.upstream
            );
            client.io.write_all(&simple_response(502, &msg)).await?;
            return Ok(After::Close);
        }
    };
    let _ = upstream.set_nodelay(true);
    let (up_read, mut up_write) = upstream.split();
    let mut up = Reader::new(up_read);
    // Send the request body while waiting for the head: the upstream may answer early (e.g.
    // 401 to a PUT) and stop reading. A client gone mid-upload ends the exchange instead, or
    // the upstream would wait for the rest of the body for ever.
    let (sent, head) = {
        let send = async {
            up_write
                .write_all(&request_head(req))
                .await
                .map_err(|e| SendError::Upstream(e.into()))?;
            copy_body(client, req_framing, &mut up_write).await?;
            up_write
                .flush()
                .await
                .map_err(|e| SendError::Upstream(e.into()))
        };
        let head = read_response_head(&mut up);
        tokio::pin!(send, head);
        tokio::select! {
            sent = &mut send => match sent {
                Err(SendError::Client(e)) => return Err(e),
                sent => (sent, head.await),
            },
            head = &mut head => (send.await, head),
        }
    };
    let request_read = sent.is_ok();
    let mut resp = match head {
        Ok(resp) => resp,
        Err(e) => {
            let mut msg = format!("fault proxy: upstream {}: {e:#}", shared.upstream);
            if let Err(SendError::Upstream(send_err) | SendError::Client(send_err)) = &sent {
                msg.push_str(&format!(
                    " (after sending the request failed: {send_err:#})"
                ));
            }
            client.io.write_all(&simple_response(502, &msg)).await?;
            return Ok(After::Close);
        }
    };
    let framing = response_framing(&req.method, resp.status, &resp.headers)?;
    let plan = Plan::new(fault, &mut resp, framing);
    if let Some(delay) = plan.delay {
        tokio::time::sleep(delay).await;
    }
    let close_client = close || !request_read || plan.after != After::KeepAlive;
    client
        .io
        .write_all(&response_head(&resp, close_client))
        .await?;
    send_body(&mut client.io, &mut up, framing, plan.body).await?;
    client.io.flush().await?;
    Ok(if request_read {
        keep(plan.after)
    } else {
        After::Close
    })
}

/// A fault turned into edits of the response: the head is edited in [`Plan::new`], the rest
/// is done while sending.
struct Plan {
    delay: Option<Duration>,
    body: BodyPlan,
    after: After,
}

struct BodyPlan {
    /// Send the body in these pieces (re-chunked if chunked).
    encoding: Encoding,
    /// Send at most this many body bytes and no end marker (the connection ends after).
    limit: Option<usize>,
    flip_at: Option<usize>,
    append: usize,
    drip: Option<(usize, Duration)>,
    /// Send this instead of the upstream's body.
    replace: Option<Bytes>,
    /// Re-compress the whole body at this gzip level (see [`Fault::Recompress`]).
    recompress: Option<u32>,
}

impl Plan {
    fn new(fault: Option<Fault>, resp: &mut Response, framing: Framing) -> Plan {
        let mut plan = Plan {
            delay: None,
            body: BodyPlan {
                encoding: if framing == Framing::Chunked {
                    Encoding::Chunked
                } else {
                    Encoding::Raw
                },
                limit: None,
                flip_at: None,
                append: 0,
                drip: None,
                replace: None,
                recompress: None,
            },
            // A close-delimited body can only end with the connection.
            after: if framing == Framing::UntilClose {
                After::Close
            } else {
                After::KeepAlive
            },
        };
        let has_body = framing != Framing::None;
        let Some(fault) = fault else { return plan };
        match fault {
            // Handled before asking the upstream.
            Fault::Status { .. } | Fault::Hang | Fault::Redirect { .. } => {}
            Fault::DelayHeaders { delay } => plan.delay = Some(delay),
            Fault::Drip {
                bytes_per_tick,
                tick,
            } => plan.body.drip = Some((bytes_per_tick.max(1), tick)),
            Fault::FlipByte { offset } => plan.body.flip_at = Some(offset),
            Fault::Truncate { after } => {
                plan.body.limit = Some(after);
                plan.after = After::Close;
            }
            Fault::ResetMidBody { after } => {
                plan.body.limit = Some(after);
                plan.after = After::Reset;
            }
            Fault::AppendBytes {
                count,
                keep_content_length,
            } if has_body => {
                plan.body.append = count;
                if keep_content_length {
                    resp.remove_header("content-length");
                    resp.remove_header("transfer-encoding");
                    resp.headers
                        .push(("Transfer-Encoding".into(), "chunked".into()));
                    plan.body.encoding = Encoding::Chunked;
                } else if let Framing::Length(n) = framing {
                    resp.set_header("Content-Length", &(n + count as u64).to_string());
                }
            }
            Fault::AppendBytes { .. } => {}
            Fault::SetHeader { name, value } => {
                if name.eq_ignore_ascii_case("content-length") {
                    resp.remove_header("transfer-encoding");
                    plan.body.encoding = Encoding::Raw;
                    plan.after = After::Close;
                }
                resp.set_header(&name, &value);
            }
            Fault::RemoveHeader { name } => resp.remove_header(&name),
            Fault::SetStatus { status } => {
                resp.status = status;
                resp.reason = reason(status).to_string();
            }
            Fault::Recompress { level } => plan.body.recompress = Some(level),
            Fault::ReplaceBody { body, content_type } => {
                resp.remove_header("transfer-encoding");
                resp.set_header("Content-Length", &body.len().to_string());
                if let Some(ct) = content_type {
                    resp.set_header("Content-Type", &ct);
                }
                plan.body.encoding = Encoding::Raw;
                plan.body.replace = Some(Bytes::from(body));
            }
        }
        plan
    }
}

/// Streams the response body from the upstream to the client as `plan` says.
async fn send_body<W: AsyncWrite + Unpin, R: AsyncRead + Unpin>(
    client: &mut W,
    up: &mut Reader<R>,
    framing: Framing,
    mut plan: BodyPlan,
) -> anyhow::Result<()> {
    if framing == Framing::None {
        return Ok(());
    }
    let mut decoder = BodyDecoder::new(framing);
    if let Some(level) = plan.recompress {
        let mut whole = Vec::new();
        while let Some(piece) = decoder
            .next(up)
            .await
            .context("reading the upstream's body")?
        {
            whole.extend_from_slice(&piece);
        }
        let same_length = recompress(&whole, level)?;
        write_piece(client, plan.encoding, &same_length, None).await?;
        if plan.encoding == Encoding::Chunked {
            client
                .write_all(b"0\r\n\r\n")
                .await
                .context("writing to the client")?;
        }
        return Ok(());
    }
    let mut sent = 0usize;
    loop {
        let piece = match plan.replace.take() {
            Some(body) => {
                decoder = BodyDecoder::new(Framing::None); // the upstream's body is not read
                body
            }
            None => match decoder
                .next(up)
                .await
                .context("reading the upstream's body")?
            {
                Some(piece) => piece,
                None => break,
            },
        };
        let mut piece = match plan.flip_at {
            Some(at) if at >= sent && at < sent + piece.len() => {
                let mut flipped = BytesMut::from(&piece[..]);
                flipped[at - sent] ^= 0xff;
                flipped.freeze()
            }
            _ => piece,
        };
        if let Some(limit) = plan.limit {
            let room = limit.saturating_sub(sent);
            if piece.len() >= room {
                piece.truncate(room);
                write_piece(client, plan.encoding, &piece, plan.drip).await?;
                return client.flush().await.context("writing to the client");
            }
        }
        write_piece(client, plan.encoding, &piece, plan.drip).await?;
        sent += piece.len();
    }
    if plan.append > 0 {
        let extra = vec![APPENDED_BYTE; plan.append];
        write_piece(client, plan.encoding, &extra, plan.drip).await?;
    }
    if plan.encoding == Encoding::Chunked && plan.limit.is_none() {
        client
            .write_all(b"0\r\n\r\n")
            .await
            .context("writing to the client")?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Raw,
    Chunked,
}

/// Writes body bytes as they are or as one chunk; with `drip`, in small flushed pieces.
async fn write_piece<W: AsyncWrite + Unpin>(
    w: &mut W,
    encoding: Encoding,
    data: &[u8],
    drip: Option<(usize, Duration)>,
) -> anyhow::Result<()> {
    let (size, tick) = match drip {
        Some((size, tick)) => (size, Some(tick)),
        None => (data.len().max(1), None),
    };
    for part in data.chunks(size) {
        if encoding == Encoding::Chunked {
            w.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                .await?;
            w.write_all(part).await?;
            w.write_all(b"\r\n").await?;
        } else {
            w.write_all(part).await.context("writing to the client")?;
        }
        if let Some(tick) = tick {
            w.flush().await?;
            tokio::time::sleep(tick).await;
        }
    }
    Ok(())
}

/// Copies a request body from the client to the upstream, keeping its framing.
async fn copy_body<S: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    client: &mut Reader<S>,
    framing: Framing,
    up: &mut W,
) -> Result<(), SendError> {
    let mut decoder = BodyDecoder::new(framing);
    let encoding = if framing == Framing::Chunked {
        Encoding::Chunked
    } else {
        Encoding::Raw
    };
    loop {
        let piece = decoder
            .next(client)
            .await
            .context("reading the request body");
        match piece.map_err(SendError::Client)? {
            Some(piece) => write_piece(up, encoding, &piece, None)
                .await
                .map_err(SendError::Upstream)?,
            None => break,
        }
    }
    if encoding == Encoding::Chunked {
        up.write_all(b"0\r\n\r\n")
            .await
            .map_err(|e| SendError::Upstream(e.into()))?;
    }
    Ok(())
}

/// Where forwarding a request failed.
enum SendError {
    /// Reading from the client: the exchange is over.
    Client(anyhow::Error),
    /// Writing to the upstream: it may still have answered.
    Upstream(anyhow::Error),
}

/// Reads and drops a request body, so the connection can carry the next request.
async fn discard_body<S: AsyncRead + Unpin>(
    client: &mut Reader<S>,
    framing: Framing,
) -> anyhow::Result<()> {
    let mut decoder = BodyDecoder::new(framing);
    while decoder
        .next(client)
        .await
        .context("reading the request body")?
        .is_some()
    {}
    Ok(())
}

/// Reads the upstream's final response head, skipping any 1xx.
async fn read_response_head<R: AsyncRead + Unpin>(up: &mut Reader<R>) -> anyhow::Result<Response> {
    loop {
        let raw = up
            .head()
            .await?
            .context("the upstream closed the connection without answering")?;
        let resp = parse_response(&raw)?;
        if !(100..200).contains(&resp.status) || resp.status == 101 {
            return Ok(resp);
        }
    }
}

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn request_framing(headers: &[(String, String)]) -> anyhow::Result<Framing> {
    Ok(body_framing(headers)?.unwrap_or(Framing::None))
}

fn response_framing(
    method: &str,
    status: u16,
    headers: &[(String, String)],
) -> anyhow::Result<Framing> {
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    Ok(body_framing(headers)?.unwrap_or(Framing::UntilClose))
}

/// Framing from Transfer-Encoding / Content-Length, `None` if neither is present.
fn body_framing(headers: &[(String, String)]) -> anyhow::Result<Option<Framing>> {
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        return Ok(Some(Framing::Chunked));
    }
    match header(headers, "content-length") {
        Some(v) => {
            let n = v
                .trim()
                .parse::<u64>()
                .with_context(|| format!("bad Content-Length {v:?}"))?;
            Ok(Some(if n == 0 {
                Framing::None
            } else {
                Framing::Length(n)
            }))
        }
        None => Ok(None),
    }
}

/// Yields a body's bytes (de-chunked) in pieces of at most [`PIECE`].
struct BodyDecoder {
    framing: Framing,
    /// Bytes left in the body (Length) or in the current chunk (Chunked).
    left: u64,
    done: bool,
}

impl BodyDecoder {
    fn new(framing: Framing) -> BodyDecoder {
        let left = if let Framing::Length(n) = framing {
            n
        } else {
            0
        };
        let done = matches!(framing, Framing::None | Framing::Length(0));
        BodyDecoder {
            framing,
            left,
            done,
        }
    }

    async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut Reader<R>,
    ) -> anyhow::Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        match self.framing {
            Framing::None => Ok(None),
            Framing::UntilClose => {
                let piece = r.piece_or_eof(PIECE).await?;
                self.done = piece.is_none();
                Ok(piece)
            }
            Framing::Length(_) => {
                let piece = r.piece(self.max_piece()).await?;
                self.left -= piece.len() as u64;
                self.done = self.left == 0;
                Ok(Some(piece))
            }
            Framing::Chunked => {
                if self.left == 0 {
                    let line = r.line().await?;
                    self.left = parse_chunk_size(&line)?;
                    if self.left == 0 {
                        // Last chunk: skip trailers up to the blank line.
                        while !r.line().await?.is_empty() {}
                        self.done = true;
                        return Ok(None);
                    }
                }
                let piece = r.piece(self.max_piece()).await?;
                self.left -= piece.len() as u64;
                if self.left == 0 && !r.line().await?.is_empty() {
                    bail!("chunk data not followed by CRLF");
                }
                Ok(Some(piece))
            }
        }
    }

    fn max_piece(&self) -> usize {
        usize::try_from(self.left).unwrap_or(PIECE).min(PIECE)
    }
}

fn parse_chunk_size(line: &[u8]) -> anyhow::Result<u64> {
    let text = std::str::from_utf8(line).context("chunk size line is not UTF-8")?;
    let size = text.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(size, 16).with_context(|| format!("bad chunk size line {text:?}"))
}

/// Buffered reading of one side of a connection: heads, lines and body pieces.
struct Reader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R) -> Reader<R> {
        Reader {
            io,
            buf: BytesMut::with_capacity(PIECE),
        }
    }

    /// Reads more bytes into the buffer; 0 at EOF.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(PIECE);
        self.io.read_buf(&mut self.buf).await
    }

    /// One head including its blank line; `None` if the peer closed before sending a byte.
    async fn head(&mut self) -> anyhow::Result<Option<Bytes>> {
        let mut searched = 0;
        loop {
            if let Some(i) = find(&self.buf[searched..], b"\r\n\r\n") {
                return Ok(Some(self.buf.split_to(searched + i + 4).freeze()));
            }
            searched = self.buf.len().saturating_sub(3);
            if self.buf.len() > MAX_HEAD {
                bail!("head longer than {MAX_HEAD} bytes");
            }
            if self.fill().await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!(
                    "connection closed in the middle of a head ({} bytes)",
                    self.buf.len()
                );
            }
        }
    }

    /// One line without its CRLF.
    async fn line(&mut self) -> anyhow::Result<Bytes> {
        let mut searched = 0;
        loop {
            if let Some(i) = find(&self.buf[searched..], b"\r\n") {
                let line = self.buf.split_to(searched + i + 2).freeze();
                return Ok(line.slice(..line.len() - 2));
            }
            searched = self.buf.len().saturating_sub(1);
            if self.buf.len() > MAX_HEAD {
                bail!("line longer than {MAX_HEAD} bytes");
            }
            if self.fill().await? == 0 {
                bail!("connection closed in the middle of a line");
            }
        }
    }

    /// Between 1 and `max` bytes; an error at EOF.
    async fn piece(&mut self, max: usize) -> anyhow::Result<Bytes> {
        match self.piece_or_eof(max).await? {
            Some(piece) => Ok(piece),
            None => bail!("connection closed in the middle of a body"),
        }
    }

    /// Between 1 and `max` bytes, or `None` at EOF.
    async fn piece_or_eof(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        if self.buf.is_empty() && self.fill().await? == 0 {
            return Ok(None);
        }
        let n = max.min(self.buf.len());
        Ok(Some(self.buf.split_to(n).freeze()))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Request {
    method: String,
    /// `path?query` as sent.
    target: String,
    headers: Vec<(String, String)>,
    /// HTTP/1.0, or `Connection: close`.
    close: bool,
    expects_continue: bool,
}

struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

impl Response {
    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.to_string()));
    }
}

fn parse_request(raw: &[u8]) -> anyhow::Result<Request> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(raw).context("parsing the request head")? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => bail!("incomplete request head"),
    }
    let headers = owned_headers(req.headers);
    let connection = header(&headers, "connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let close = (req.version == Some(0) && !connection.contains("keep-alive"))
        || connection.contains("close");
    let expects_continue =
        header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    Ok(Request {
        method: req.method.context("request without a method")?.to_string(),
        target: req.path.context("request without a target")?.to_string(),
        headers,
        close,
        expects_continue,
    })
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    match resp
        .parse(raw)
        .context("parsing the upstream's response head")?
    {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => bail!("incomplete response head"),
    }
    Ok(Response {
        status: resp.code.context("response without a status")?,
        reason: resp.reason.unwrap_or_default().to_string(),
        headers: owned_headers(resp.headers),
    })
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers that describe one connection, not the message: never forwarded.
fn is_hop_by_hop(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// The request head for the upstream: as received (Host included), one request per connection.
fn request_head(req: &Request) -> Vec<u8> {
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (n, v) in &req.headers {
        let dropped = is_hop_by_hop(n) || req.expects_continue && n.eq_ignore_ascii_case("expect");
        if !dropped {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

fn response_head(resp: &Response, close: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
    for (n, v) in &resp.headers {
        if !is_hop_by_hop(n) {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A complete text/plain response that closes the connection (400, 502 from the proxy itself).
fn simple_response(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )
    .into_bytes()
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Injected Fault")
}

/// `gzip` gunzipped and gzipped again at `level`, padded to its length with an empty gzip member
/// whose comment fills the difference (see [`Fault::Recompress`]).
fn recompress(gzip: &[u8], level: u32) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read as _, Write as _};
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(gzip)
        .read_to_end(&mut plain)
        .context("the body to re-compress is not gzip")?;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(&plain).context("gzip in memory")?;
    let mut out = e.finish().context("gzip in memory")?;
    // An empty member: header with FCOMMENT, the comment, its NUL, an empty final stored block,
    // CRC-32 and ISIZE of nothing: 10 + n + 1 + 5 + 8 bytes.
    let fixed = 10 + 1 + 5 + 8;
    let Some(room) = gzip.len().checked_sub(out.len() + fixed) else {
        bail!(
            "re-compressed at level {level}, {} bytes became {}: too long to pad",
            gzip.len(),
            out.len()
        );
    };
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0x10, 0, 0, 0, 0, 0, 0xff]);
    out.extend(std::iter::repeat_n(b'p', room));
    out.push(0);
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    out.extend_from_slice(&[0u8; 8]);
    debug_assert_eq!(out.len(), gzip.len());
    Ok(out)
}
