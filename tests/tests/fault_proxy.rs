//! Tests of the fault-injecting proxy against a real registry: pass-through is faithful, and
//! every fault reaches the wire as documented.

#![allow(clippy::unwrap_used)] // tests may unwrap

use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule, APPENDED_BYTE};
use registry_prober_e2e::oci::sha256_digest;
use registry_prober_e2e::{free_port, HttpClient, Registry, TestCa};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const REPO: &str = "e2e/fault";
const BLOB_SIZE: usize = 100_000;

/// A registry, a proxy in front of it and one blob pushed through the proxy.
struct Bed {
    _registry: Registry,
    proxy: FaultProxy,
    blob: Vec<u8>,
    digest: String,
}

impl Bed {
    fn start() -> Bed {
        let registry = Registry::start_default().unwrap();
        let proxy = FaultProxy::start(&registry.url()).unwrap();
        let blob: Vec<u8> = (0..BLOB_SIZE).map(|i| (i * 31 % 251) as u8).collect();
        let digest = push_blob(&proxy.url(), &blob);
        Bed {
            _registry: registry,
            proxy,
            blob,
            digest,
        }
    }

    fn blob_url(&self) -> String {
        format!("{}/v2/{REPO}/blobs/{}", self.proxy.url(), self.digest)
    }
}

/// Monolithic upload: POST, then PUT to the Location with the digest. Asserts that the
/// registry's absolute Location points back at the proxy (the Host header went through).
fn push_blob(base: &str, data: &[u8]) -> String {
    let c = HttpClient::new();
    let r = c
        .request(
            "POST",
            &format!("{base}/v2/{REPO}/blobs/uploads/"),
            &[],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let location = r.header("location").unwrap().to_string();
    assert!(location.starts_with(&format!("{base}/v2/")), "{location}");
    let digest = sha256_digest(data);
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{sep}digest={digest}");
    let r = c
        .request(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream")],
            data,
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    digest
}

/// One response read off a keep-alive connection: status, head text, Content-Length body.
fn read_response(conn: &mut BufReader<TcpStream>) -> (u16, String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed mid-head: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .map_or(0, |v| v.parse::<usize>().unwrap());
    let mut body = vec![0; len];
    conn.read_exact(&mut body).unwrap();
    (status, head, body)
}

#[test]
fn passes_requests_through_with_identical_bytes_and_keeps_uploads_on_the_proxy() {
    let bed = Bed::start();
    let c = HttpClient::new();
    let r = c.get(&bed.blob_url()).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == bed.blob, "pass-through changed the blob");
    assert_eq!(r.header("docker-content-digest"), Some(bed.digest.as_str()));

    let r = c.request("HEAD", &bed.blob_url(), &[], &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(BLOB_SIZE.to_string().as_str())
    );

    // Multi-MiB bodies stream through both ways.
    let big: Vec<u8> = (0..8 << 20).map(|i: usize| (i % 253) as u8).collect();
    let big_digest = push_blob(&bed.proxy.url(), &big);
    let r = c
        .get(&format!("{}/v2/{REPO}/blobs/{big_digest}", bed.proxy.url()))
        .unwrap();
    assert!(r.body == big, "pass-through changed the 8 MiB blob");

    let methods: Vec<String> = bed.proxy.requests().into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        methods,
        ["POST", "PUT", "GET", "HEAD", "POST", "PUT", "GET"]
    );
    let (_, put_target) = &bed.proxy.requests()[1];
    assert!(
        put_target.contains(&format!("digest={}", bed.digest)),
        "{put_target}"
    );
}

#[test]
fn keeps_the_client_connection_alive_and_forwards_chunked_request_bodies() {
    let bed = Bed::start();
    bed.proxy
        .add_rule(Rule::new("first-post-fails", "/blobs/uploads/", Fault::status(503)).times(1));
    let host = bed.proxy.host_port();
    let stream = TcpStream::connect(&host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut conn = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let post = format!(
        "POST /v2/{REPO}/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    );

    w.write_all(post.as_bytes()).unwrap();
    assert_eq!(read_response(&mut conn).0, 503);
    // Same connection: the rule is used up, the registry answers.
    w.write_all(post.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut conn);
    assert_eq!(status, 202, "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap()
        .strip_prefix(&format!("http://{host}"))
        .unwrap()
        .to_string();

    let data = b"chunked upload through the fault proxy";
    let patch = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        std::str::from_utf8(&data[..5]).unwrap(),
        data.len() - 5,
        std::str::from_utf8(&data[5..]).unwrap()
    );
    w.write_all(patch.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut conn);
    assert_eq!(status, 202, "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap()
        .strip_prefix(&format!("http://{host}"))
        .unwrap()
        .to_string();
    let digest = sha256_digest(data);
    let put = format!(
        "PUT {location}&digest={digest} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    );
    w.write_all(put.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut conn);
    assert_eq!(status, 201, "{head}");

    let r = HttpClient::new()
        .get(&format!("{}/v2/{REPO}/blobs/{digest}", bed.proxy.url()))
        .unwrap();
    assert_eq!(r.body, data);
    assert_eq!(bed.proxy.hits("first-post-fails"), 1);
}

#[test]
fn flip_byte_changes_exactly_one_byte_of_the_body() {
    let bed = Bed::start();
    bed.proxy.add_rule(Rule::new(
        "flip",
        "/blobs/sha256:",
        Fault::FlipByte { offset: 70_000 },
    ));
    let r = HttpClient::new().get(&bed.blob_url()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(BLOB_SIZE.to_string().as_str())
    );
    assert_eq!(r.body.len(), BLOB_SIZE);
    let diffs: Vec<usize> = (0..BLOB_SIZE)
        .filter(|&i| r.body[i] != bed.blob[i])
        .collect();
    assert_eq!(diffs, [70_000]);
    assert_eq!(r.body[70_000], !bed.blob[70_000]);
    assert_eq!(bed.proxy.hits("flip"), 1);
}

#[test]
fn truncate_sends_fewer_bytes_than_the_content_length() {
    let bed = Bed::start();
    bed.proxy.add_rule(Rule::new(
        "cut",
        "/blobs/sha256:",
        Fault::Truncate { after: 1000 },
    ));
    // The harness client reads to EOF and keeps what it got.
    let r = HttpClient::new().get(&bed.blob_url()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(BLOB_SIZE.to_string().as_str())
    );
    assert_eq!(r.body, bed.blob[..1000]);
}

#[test]
fn reset_mid_body_resets_the_connection_after_the_first_bytes() {
    let bed = Bed::start();
    bed.proxy.add_rule(Rule::new(
        "reset",
        "/blobs/sha256:",
        Fault::ResetMidBody { after: 500 },
    ));
    let mut stream = TcpStream::connect(bed.proxy.host_port()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let path = format!("/v2/{REPO}/blobs/{}", bed.digest);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
        bed.proxy.host_port()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!("clean EOF instead of a reset after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got[head_end..], bed.blob[..500]);
}

#[test]
fn append_bytes_delivers_more_bytes_than_the_blob() {
    let bed = Bed::start();
    let c = HttpClient::new();
    bed.proxy.add_rule(
        Rule::new(
            "append-chunked",
            "/blobs/sha256:",
            Fault::AppendBytes {
                count: 7,
                keep_content_length: true,
            },
        )
        .times(1),
    );
    let r = c.get(&bed.blob_url()).unwrap();
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), BLOB_SIZE + 7);
    assert_eq!(r.body[..BLOB_SIZE], bed.blob[..]);
    assert!(r.body[BLOB_SIZE..].iter().all(|&b| b == APPENDED_BYTE));

    bed.proxy.add_rule(Rule::new(
        "append-length",
        "/blobs/sha256:",
        Fault::AppendBytes {
            count: 7,
            keep_content_length: false,
        },
    ));
    let r = c.get(&bed.blob_url()).unwrap();
    assert_eq!(
        r.header("content-length"),
        Some((BLOB_SIZE + 7).to_string().as_str())
    );
    assert_eq!(r.body.len(), BLOB_SIZE + 7);
}

#[test]
fn status_fault_answers_503_counts_hits_and_lets_other_paths_through() {
    let bed = Bed::start();
    let c = HttpClient::new();
    bed.proxy.add_rule(
        Rule::new(
            "blob-503",
            "/blobs/sha256:",
            Fault::Status {
                status: 503,
                headers: vec![("Retry-After".into(), "1".into())],
                body: "<html>maintenance</html>".into(),
            },
        )
        .method(http::Method::GET)
        .times(2),
    );
    for _ in 0..2 {
        let r = c.get(&bed.blob_url()).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.text(), "<html>maintenance</html>");
    }
    // Other paths and other methods pass; so does the blob once `times` is used up.
    assert_eq!(
        c.get(&format!("{}/v2/", bed.proxy.url())).unwrap().status,
        200
    );
    assert_eq!(
        c.request("HEAD", &bed.blob_url(), &[], &[]).unwrap().status,
        200
    );
    assert_eq!(c.get(&bed.blob_url()).unwrap().status, 200);
    assert_eq!(bed.proxy.hits("blob-503"), 2);
    assert_eq!(bed.proxy.hits("no-such-rule"), 0);

    bed.proxy
        .add_rule(Rule::new("all-500", "/v2/", Fault::status(500)));
    assert_eq!(
        c.get(&format!("{}/v2/", bed.proxy.url())).unwrap().status,
        500
    );
    bed.proxy.clear_rules();
    assert_eq!(
        c.get(&format!("{}/v2/", bed.proxy.url())).unwrap().status,
        200
    );
    assert_eq!(bed.proxy.hits("all-500"), 1);
}

#[test]
fn a_rule_with_a_chance_acts_on_that_share_of_the_requests_only() {
    let bed = Bed::start();
    let c = HttpClient::new();
    bed.proxy
        .add_rule(Rule::new("some-503", "/v2/", Fault::status(503)).chance(0.25));
    let n = 400;
    let failed = (0..n)
        .filter(|_| c.get(&format!("{}/v2/", bed.proxy.url())).unwrap().status == 503)
        .count();
    // Binomial(400, 0.25): mean 100, sd 8.7; 60..140 is more than 4.5 sd either side.
    assert!((60..=140).contains(&failed), "{failed} of {n} answered 503");
    assert_eq!(bed.proxy.hits("some-503"), failed as u64);
    bed.proxy.clear_rules();
    bed.proxy
        .add_rule(Rule::new("never", "/v2/", Fault::status(503)).chance(0.0));
    assert_eq!(
        c.get(&format!("{}/v2/", bed.proxy.url())).unwrap().status,
        200
    );
    assert_eq!(bed.proxy.hits("never"), 0);
}

#[test]
fn a_rule_with_after_lets_the_first_matching_requests_pass_then_acts() {
    let bed = Bed::start();
    let c = HttpClient::new();
    bed.proxy.add_rule(
        Rule::new("second-get", "/blobs/sha256:", Fault::status(404))
            .method(http::Method::GET)
            .after(1)
            .times(1),
    );
    // A HEAD does not match, so it is not among the requests let through.
    assert_eq!(
        c.request("HEAD", &bed.blob_url(), &[], &[]).unwrap().status,
        200
    );
    let statuses: Vec<u16> = (0..3)
        .map(|_| c.get(&bed.blob_url()).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 404, 200]);
    assert_eq!(bed.proxy.hits("second-get"), 1);
}

#[test]
fn set_header_reaches_the_client_and_a_larger_content_length_leaves_a_short_body() {
    let bed = Bed::start();
    let c = HttpClient::new();
    let wrong = format!("sha256:{}", "0".repeat(64));
    bed.proxy.add_rule(
        Rule::new(
            "digest",
            "/blobs/sha256:",
            Fault::SetHeader {
                name: "Docker-Content-Digest".into(),
                value: wrong.clone(),
            },
        )
        .times(1),
    );
    let r = c.get(&bed.blob_url()).unwrap();
    assert_eq!(r.header("docker-content-digest"), Some(wrong.as_str()));
    assert_eq!(r.body, bed.blob);

    let claimed = BLOB_SIZE + 100;
    bed.proxy.add_rule(Rule::new(
        "length",
        "/blobs/sha256:",
        Fault::SetHeader {
            name: "Content-Length".into(),
            value: claimed.to_string(),
        },
    ));
    let r = c.get(&bed.blob_url()).unwrap();
    assert_eq!(
        r.header("content-length"),
        Some(claimed.to_string().as_str())
    );
    assert_eq!(
        r.body, bed.blob,
        "the original body, and no more, is on the wire"
    );
}

#[test]
fn replace_body_sends_markup_with_an_updated_length() {
    let bed = Bed::start();
    let html = b"<html><body>captive portal</body></html>".to_vec();
    bed.proxy.add_rule(Rule::new(
        "html",
        "/blobs/sha256:",
        Fault::ReplaceBody {
            body: html.clone(),
            content_type: Some("text/html".into()),
        },
    ));
    let r = HttpClient::new().get(&bed.blob_url()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, html);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(
        r.header("content-length"),
        Some(html.len().to_string().as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(bed.digest.as_str()));
}

#[test]
fn delay_headers_holds_the_response_back_for_the_delay() {
    let bed = Bed::start();
    let delay = Duration::from_millis(300);
    bed.proxy.add_rule(Rule::new(
        "slow",
        "/blobs/sha256:",
        Fault::DelayHeaders { delay },
    ));
    let t = Instant::now();
    let r = HttpClient::new().get(&bed.blob_url()).unwrap();
    assert!(t.elapsed() >= delay, "{:?}", t.elapsed());
    assert_eq!(r.body, bed.blob);
}

#[test]
fn drip_sends_the_body_slowly_but_intact() {
    let bed = Bed::start();
    let tick = Duration::from_millis(50);
    bed.proxy.add_rule(Rule::new(
        "drip",
        "/blobs/sha256:",
        Fault::Drip {
            bytes_per_tick: 25_000,
            tick,
        },
    ));
    let t = Instant::now();
    let r = HttpClient::new().get(&bed.blob_url()).unwrap();
    // Four pieces, each followed by a tick.
    assert!(t.elapsed() >= tick * 3, "{:?}", t.elapsed());
    assert_eq!(r.body, bed.blob);
}

#[test]
fn hang_times_out_a_client_and_ends_when_the_proxy_is_dropped() {
    let bed = Bed::start();
    bed.proxy
        .add_rule(Rule::new("hang", "/blobs/sha256:", Fault::Hang));
    let t = Instant::now();
    let err = HttpClient::new()
        .with_timeout(Duration::from_secs(1))
        .get(&bed.blob_url())
        .unwrap_err();
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "{elapsed:?}: {err:#}"
    );
    // The proxy still serves other requests meanwhile.
    let other = HttpClient::new()
        .get(&format!("{}/v2/", bed.proxy.url()))
        .unwrap();
    assert_eq!(other.status, 200, "{}", other.text());

    // A patient client is released when the proxy goes away.
    let url = bed.blob_url();
    let patient = std::thread::spawn(move || {
        let t = Instant::now();
        let result = HttpClient::new()
            .with_timeout(Duration::from_secs(20))
            .get(&url);
        (t.elapsed(), result.is_err())
    });
    std::thread::sleep(Duration::from_millis(200));
    let Bed {
        proxy, _registry, ..
    } = bed;
    let t = Instant::now();
    drop(proxy);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        t.elapsed()
    );
    let (waited, failed) = patient.join().unwrap();
    assert!(failed, "a hung request must not get a response");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn https_proxy_with_an_expired_certificate_fails_a_client_that_trusts_the_ca() {
    let registry = Registry::start_default().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new().unwrap();

    let good = ca.issue_server_cert(dir.path()).unwrap();
    let proxy = FaultProxy::start_tls(&registry.url(), &good).unwrap();
    assert!(proxy.url().starts_with("https://127.0.0.1:"));
    let client = HttpClient::new().with_ca(&good.ca).unwrap();
    let r = client.get(&format!("{}/v2/", proxy.url())).unwrap();
    assert_eq!(
        r.status, 200,
        "a valid certificate works through the TLS proxy"
    );

    let expired = ca.issue_expired_server_cert(dir.path()).unwrap();
    let proxy = FaultProxy::start_tls(&registry.url(), &expired).unwrap();
    let err = client.get(&format!("{}/v2/", proxy.url())).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.to_lowercase().contains("expired"), "{msg}");
}

#[test]
fn answers_502_when_the_upstream_is_down() {
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", free_port())).unwrap();
    let r = HttpClient::new()
        .get(&format!("{}/v2/", proxy.url()))
        .unwrap();
    assert_eq!(r.status, 502);
    assert!(r.text().contains("connecting to upstream"), "{}", r.text());
    assert!(
        FaultProxy::start("https://127.0.0.1:1").is_err(),
        "only plain-HTTP upstreams"
    );
}
