//! The end of the pager path in a test: an Alertmanager webhook receiver on a free 127.0.0.1
//! port that records every POST body (the webhook JSON, version 4) with the instant it arrived,
//! so a test can say which alert paged and how long after a fault it did. Stopped on drop.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// Longest request head the receiver accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body the receiver accepts (Alertmanager sends a few KiB per group).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How often idle loops look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// One POST as it arrived.
#[derive(Debug, Clone)]
pub struct Notification {
    /// When the whole request had been read.
    pub at: Instant,
    pub path: String,
    pub body: Vec<u8>,
    /// The body parsed as JSON; `Value::Null` when it is not JSON.
    pub json: Value,
}

/// One alert of a notification (an entry of its `alerts` list).
#[derive(Debug, Clone)]
pub struct ReceivedAlert {
    /// When the notification carrying it arrived.
    pub at: Instant,
    /// `firing` or `resolved`.
    pub status: String,
    /// The `alertname` label.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339, as Alertmanager sent it.
    pub starts_at: String,
}

impl ReceivedAlert {
    /// The label's value, or "" when the alert does not have it.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// Whether the alert has this name and every one of these label values.
    pub fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name && labels.iter().all(|(k, v)| self.label(k) == *v)
    }

    /// `Name{a="1", b="2"}` with every label but `alertname`, for messages and reports.
    pub fn describe(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(", "))
    }
}

struct Shared {
    notifications: Mutex<Vec<Notification>>,
    stop: AtomicBool,
}

impl Shared {
    fn notifications(&self) -> MutexGuard<'_, Vec<Notification>> {
        // A panicking connection thread cannot leave the list half-written: pushes are atomic.
        self.notifications
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running receiver.
pub struct Webhook {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    /// Binds 127.0.0.1:0 and serves until dropped. Every request gets `200 OK`; POST bodies are
    /// recorded.
    pub fn start() -> anyhow::Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the webhook receiver")?;
        listener
            .set_nonblocking(true)
            .context("making the webhook listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("reading the webhook receiver's address")?;
        let shared = Arc::new(Shared {
            notifications: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("webhook-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))
            .context("starting the webhook receiver thread")?;
        Ok(Webhook {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT/alerts`, the URL to give Alertmanager.
    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Every POST received so far, in arrival order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.shared.notifications().clone()
    }

    /// Every alert of every notification so far (firing and resolved), in arrival order.
    pub fn alerts(&self) -> Vec<ReceivedAlert> {
        self.notifications().iter().flat_map(alerts_of).collect()
    }

    /// The firing alerts received so far, in arrival order.
    pub fn firing(&self) -> Vec<ReceivedAlert> {
        self.alerts()
            .into_iter()
            .filter(|a| a.status == "firing")
            .collect()
    }

    /// The first firing alert named `name` with these label values that arrived at or after
    /// `since`, waiting up to `timeout` for it. The error lists every alert received.
    pub fn wait_for_firing(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<ReceivedAlert> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self
                .firing()
                .into_iter()
                .find(|a| a.at >= since && a.matches(name, labels))
            {
                return Ok(a);
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .alerts()
                    .iter()
                    .map(|a| {
                        format!(
                            "  {} {} at +{:.1}s",
                            a.status,
                            a.describe(),
                            a.at.saturating_duration_since(since).as_secs_f64()
                        )
                    })
                    .collect();
                bail!(
                    "no firing {name} with {labels:?} reached the webhook within {timeout:?}; \
                     received:\n{}",
                    if seen.is_empty() {
                        "  (nothing)".to_string()
                    } else {
                        seen.join("\n")
                    }
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `alerts` of one notification.
fn alerts_of(n: &Notification) -> Vec<ReceivedAlert> {
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    n.json["alerts"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    let labels = strings(&a["labels"]);
                    ReceivedAlert {
                        at: n.at,
                        status: a["status"].as_str().unwrap_or_default().to_string(),
                        name: labels.get("alertname").cloned().unwrap_or_default(),
                        annotations: strings(&a["annotations"]),
                        starts_at: a["startsAt"].as_str().unwrap_or_default().to_string(),
                        labels,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut connections = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                if let Ok(t) = std::thread::Builder::new()
                    .name("webhook-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_connection(stream, &shared) {
                            eprintln!("webhook receiver: {e:#}");
                        }
                    })
                {
                    connections.push(t);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                eprintln!("webhook receiver: accept failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
    for t in connections {
        let _ = t.join();
    }
}

/// Serves requests on one keep-alive connection until the client closes it or the receiver
/// stops.
fn serve_connection(mut stream: TcpStream, shared: &Shared) -> anyhow::Result<()> {
    stream
        .set_nonblocking(false)
        .context("making a webhook connection blocking")?;
    stream
        .set_read_timeout(Some(POLL))
        .context("setting the webhook connection's read timeout")?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf, shared)? else {
            return Ok(());
        };
        buf.drain(..head.len);
        let body = if head.chunked {
            read_chunked(&mut stream, &mut buf, shared)?
        } else {
            let n = head.content_length;
            if n > MAX_BODY {
                bail!("request body of {n} bytes is over {MAX_BODY}");
            }
            fill(&mut stream, &mut buf, n, shared)?;
            buf.drain(..n).collect()
        };
        let at = Instant::now();
        if head.method == "POST" {
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            shared.notifications().push(Notification {
                at,
                path: head.path,
                body,
                json,
            });
        }
        if head.close {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .context("answering a webhook request")?;
            return Ok(());
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .context("answering a webhook request")?;
    }
}

/// What the receiver needs of a request head.
struct Head {
    method: String,
    path: String,
    /// Bytes of the head in the buffer.
    len: usize,
    content_length: usize,
    chunked: bool,
    /// `Connection: close`: answer, then close.
    close: bool,
}

/// Reads one request head. None when the client closed the connection between requests or the
/// receiver stops.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    shared: &Shared,
) -> anyhow::Result<Option<Head>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(len) = req.parse(buf).context("parsing a request head")? {
            let mut content_length = 0;
            let mut chunked = false;
            let mut close = false;
            for h in req.headers.iter() {
                let value = String::from_utf8_lossy(h.value);
                if h.name.eq_ignore_ascii_case("content-length") {
                    content_length = value
                        .trim()
                        .parse()
                        .with_context(|| format!("bad Content-Length {value:?}"))?;
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.to_ascii_lowercase().contains("chunked");
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = value.to_ascii_lowercase().contains("close");
                }
            }
            return Ok(Some(Head {
                method: req.method.unwrap_or_default().to_string(),
                path: req.path.unwrap_or_default().to_string(),
                len,
                content_length,
                chunked,
                close,
            }));
        }
        if buf.len() > MAX_HEAD {
            bail!("request head over {MAX_HEAD} bytes");
        }
        if !read_more(stream, buf, shared)? {
            if buf.is_empty() {
                return Ok(None);
            }
            bail!("connection closed in the middle of a request head");
        }
    }
}

/// Reads until `buf` holds at least `n` bytes.
fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    shared: &Shared,
) -> anyhow::Result<()> {
    while buf.len() < n {
        if !read_more(stream, buf, shared)? {
            bail!("connection closed with {} of {n} body bytes", buf.len());
        }
    }
    Ok(())
}

/// A chunked body, de-chunked (trailers are read and dropped).
fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    shared: &Shared,
) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if !read_more(stream, buf, shared)? {
                bail!("connection closed inside a chunked body");
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size line {line:?}"))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                fill(stream, buf, 2, shared)?;
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.drain(..i + 2);
                    if i == 0 {
                        return Ok(body);
                    }
                } else if !read_more(stream, buf, shared)? {
                    bail!("connection closed inside chunked trailers");
                }
            }
        }
        if body.len() + size > MAX_BODY {
            bail!("chunked body over {MAX_BODY} bytes");
        }
        fill(stream, buf, size + 2, shared)?;
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// One read into `buf`; false on EOF or when the receiver stops.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> anyhow::Result<bool> {
    let mut piece = [0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match stream.read(&mut piece) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&piece[..n]);
                return Ok(true);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(e).context("reading from a webhook connection"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpClient;

    #[test]
    fn records_posts_with_their_alerts_and_answers_200() {
        let hook = Webhook::start().expect("receiver starts");
        let before = Instant::now();
        let body = serde_json::json!({
            "version": "4",
            "status": "firing",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "A", "target": "t"},
                 "annotations": {"summary": "s"}, "startsAt": "2024-01-01T00:00:00Z"},
                {"status": "resolved", "labels": {"alertname": "B"}}
            ]
        });
        let r = HttpClient::new()
            .request(
                "POST",
                &hook.url(),
                &[("Content-Type", "application/json")],
                body.to_string().as_bytes(),
            )
            .expect("POST");
        assert_eq!(r.status, 200);
        let alerts = hook.alerts();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].describe(), "A{target=\"t\"}");
        assert_eq!(alerts[0].annotations["summary"], "s");
        assert_eq!(alerts[1].status, "resolved");
        let a = hook
            .wait_for_firing("A", &[("target", "t")], before, Duration::from_secs(1))
            .expect("found");
        assert!(a.at >= before);
        assert_eq!(hook.firing().len(), 1);
        let err = hook
            .wait_for_firing("A", &[("target", "u")], before, Duration::from_millis(50))
            .expect_err("no such alert");
        assert!(
            format!("{err:#}").contains("firing A{target=\"t\"}"),
            "{err:#}"
        );
    }

    #[test]
    fn reads_chunked_bodies_and_several_requests_per_connection() {
        let hook = Webhook::start().expect("receiver starts");
        let mut s = TcpStream::connect(
            hook.url()
                .trim_start_matches("http://")
                .trim_end_matches("/alerts"),
        )
        .expect("connect");
        let one = "POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        let two = "POST /alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\": 1}\r\n0\r\n\r\n";
        s.write_all(format!("{one}{two}").as_bytes())
            .expect("write");
        let mut answers = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut piece = [0u8; 1024];
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        while answers.windows(3).filter(|w| w == b"200").count() < 2 && Instant::now() < deadline {
            if let Ok(n) = s.read(&mut piece) {
                answers.extend_from_slice(&piece[..n]);
            }
        }
        let n = hook.notifications();
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].json, serde_json::json!({}));
        assert_eq!(n[1].json, serde_json::json!({"a": 1}));
        assert_eq!(n[1].path, "/alerts");
    }
}
