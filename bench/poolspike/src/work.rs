//! The workloads, each run the same way on either side: the prober's hand-written pool
//! (`Transport`) or the hyper-util contender (`HyperTransport`). A child process runs one job
//! and prints one JSON object, so CPU time and peak RSS belong to one side only.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use rand::{Rng as _, SeedableRng as _};
use registry_prober::{ConnTiming, Digest, ReqBody, Resolve, Transport, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::hyperutil::HyperTransport;

/// Every request gets this long; nothing here should come near it.
const DEADLINE: Duration = Duration::from_secs(60);
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Hand,
    Hyper,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hand => "hand",
            Kind::Hyper => "hyper",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// `count` GETs of the big blob, each streamed through the prober's sha256 verifier.
    Blob,
    /// `count` sequential HEADs of the big blob on a warm connection.
    Head,
    /// `count` prober-like runs: push a config and a layer, the manifest, pull them back.
    Seq,
    /// 8 concurrent manifest GETs from cold, then 8 more on the warm pool.
    Burst,
}

/// One child's job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub side: Kind,
    pub workload: Workload,
    /// `http://localhost:PORT` or `https://localhost:PORT` (resolved by [`StaticResolver`]).
    pub base: String,
    pub ca: PathBuf,
    pub repo: String,
    pub blob: String,
    pub blob_len: u64,
    pub count: usize,
}

/// Maps every name to 127.0.0.1, after an optional delay, so both sides run a dns phase.
pub struct StaticResolver {
    pub delay: Duration,
}

impl Resolve for StaticResolver {
    fn resolve(
        &self,
        _host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        })
    }
}

/// Either side behind one `send`. One per process: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Side {
    Hand(Transport),
    Hyper(HyperTransport),
}

impl Side {
    pub fn new(kind: Kind, ca: &Path, resolver: Arc<dyn Resolve>) -> anyhow::Result<Side> {
        let tls = tls_config(ca)?;
        Ok(match kind {
            Kind::Hand => Side::Hand(Transport::new(tls, resolver)),
            Kind::Hyper => Side::Hyper(HyperTransport::new(tls, resolver)),
        })
    }

    pub async fn send(
        &self,
        req: Request<ReqBody>,
    ) -> anyhow::Result<(Response<Incoming>, ConnTiming)> {
        self.send_by(req, Instant::now() + DEADLINE).await
    }

    pub async fn send_by(
        &self,
        req: Request<ReqBody>,
        deadline: Instant,
    ) -> anyhow::Result<(Response<Incoming>, ConnTiming)> {
        Ok(match self {
            Side::Hand(t) => t.send(req, deadline).await?,
            Side::Hyper(t) => t.send(req, deadline).await?,
        })
    }

    /// Connections opened, as the connector counted them (hyper-util only; the hand-written
    /// pool opens one only for the request that reports it, so its count is the `!reused` one).
    pub fn opened(&self) -> Option<u64> {
        match self {
            Side::Hand(_) => None,
            Side::Hyper(t) => Some(t.stats.opened.load(Ordering::Relaxed)),
        }
    }

    pub fn first_use_by_other(&self) -> Option<u64> {
        match self {
            Side::Hand(_) => None,
            Side::Hyper(t) => Some(t.stats.first_use_by_other.load(Ordering::Relaxed)),
        }
    }
}

/// rustls with the test CA as the only root, ALPN h2 then http/1.1 (as the prober's).
pub fn tls_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub fn request(
    method: Method,
    url: &str,
    body: Bytes,
    content_type: Option<&str>,
) -> Request<ReqBody> {
    let len = body.len();
    let body: ReqBody = if body.is_empty() {
        Empty::new().map_err(|e: Infallible| match e {}).boxed()
    } else {
        Full::new(body).map_err(|e: Infallible| match e {}).boxed()
    };
    let mut builder = Request::builder().method(method.clone()).uri(url);
    if len > 0 || matches!(method, Method::PUT | Method::POST | Method::PATCH) {
        builder = builder.header(header::CONTENT_LENGTH, len);
    }
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    builder.body(body).expect("a valid request")
}

pub async fn read_all(resp: Response<Incoming>) -> anyhow::Result<Bytes> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

/// Streams the body through the prober's verifier, as its blob pulls do.
pub async fn stream_verify(resp: Response<Incoming>, digest: &str, len: u64) -> anyhow::Result<()> {
    let mut verifier = Verifier::new(Digest::parse(digest)?, len);
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            verifier.update(&data).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    verifier.finish().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn expect(resp: &Response<Incoming>, want: StatusCode, what: &str) -> anyhow::Result<()> {
    if resp.status() != want {
        bail!("{what}: {} (wanted {want})", resp.status());
    }
    Ok(())
}

/// Pushes a blob the way docker, containerd and skopeo do: POST, one PATCH, PUT ?digest=.
/// Returns the digest; each request's timing goes to `log`.
pub async fn push_blob(
    side: &Side,
    base: &str,
    repo: &str,
    data: Bytes,
    log: &mut Vec<(String, ConnTiming)>,
) -> anyhow::Result<String> {
    let digest = Digest::of(&data).as_str().to_string();
    let url = format!("{base}/v2/{repo}/blobs/{digest}");
    let (resp, t) = side
        .send(request(Method::HEAD, &url, Bytes::new(), None))
        .await?;
    log.push(("HEAD blob".into(), t));
    let exists = resp.status() == StatusCode::OK;
    read_all(resp).await?;
    if exists {
        return Ok(digest);
    }
    let url = format!("{base}/v2/{repo}/blobs/uploads/");
    let (resp, t) = side
        .send(request(Method::POST, &url, Bytes::new(), None))
        .await?;
    log.push(("POST upload".into(), t));
    expect(&resp, StatusCode::ACCEPTED, "POST upload")?;
    let location = location_of(&resp)?;
    read_all(resp).await?;
    let (resp, t) = side
        .send(request(
            Method::PATCH,
            &location,
            data,
            Some("application/octet-stream"),
        ))
        .await?;
    log.push(("PATCH upload".into(), t));
    expect(&resp, StatusCode::ACCEPTED, "PATCH upload")?;
    let location = location_of(&resp)?;
    read_all(resp).await?;
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{sep}digest={digest}");
    let (resp, t) = side
        .send(request(Method::PUT, &url, Bytes::new(), None))
        .await?;
    log.push(("PUT upload".into(), t));
    expect(&resp, StatusCode::CREATED, "PUT upload")?;
    read_all(resp).await?;
    Ok(digest)
}

fn location_of(resp: &Response<Incoming>) -> anyhow::Result<String> {
    // Distribution 2.8 sends absolute upload URLs on 127.0.0.1; keep our host name so the
    // connection (keyed by origin) is the same one.
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .context("no Location")?
        .to_str()?;
    Ok(loc.replace("://127.0.0.1:", "://localhost:"))
}

/// A config and a layer, pushed, with a manifest naming them under `tag`.
pub async fn push_image(
    side: &Side,
    base: &str,
    repo: &str,
    tag: &str,
    layer: Bytes,
    log: &mut Vec<(String, ConnTiming)>,
) -> anyhow::Result<(String, String, usize)> {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}},"tag":"{tag}"}}"#,
        Digest::of(&layer).as_str()
    ));
    let layer_len = layer.len();
    let config_len = config.len();
    let config_digest = push_blob(side, base, repo, config, log).await?;
    let layer_digest = push_blob(side, base, repo, layer, log).await?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_len}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_len}}}]}}"#
    );
    let url = format!("{base}/v2/{repo}/manifests/{tag}");
    let (resp, t) = side
        .send(request(
            Method::PUT,
            &url,
            Bytes::from(manifest),
            Some(OCI_MANIFEST),
        ))
        .await?;
    log.push(("PUT manifest".into(), t));
    expect(&resp, StatusCode::CREATED, "PUT manifest")?;
    read_all(resp).await?;
    Ok((config_digest, layer_digest, layer_len))
}

pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut buf = vec![0u8; len];
    rng.fill(&mut buf[..]);
    Bytes::from(buf)
}

/// CPU time of the whole process (every thread), from the kernel's process clock.
pub fn process_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Peak resident set size (VmHWM) in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run_job(job: &Job) -> anyhow::Result<Value> {
    let resolver: Arc<dyn Resolve> = Arc::new(StaticResolver {
        delay: Duration::ZERO,
    });
    let side = Side::new(job.side, &job.ca, resolver)?;
    let blob_url = format!("{}/v2/{}/blobs/{}", job.base, job.repo, job.blob);
    let mut out = match job.workload {
        // `new_connections` counts every request, the warm-up included.
        Workload::Blob => {
            let mut pulls = Vec::new();
            let mut new_conns = 0;
            let mut cpu = Duration::ZERO;
            // One pull to warm the connection and the page cache, not counted.
            for i in 0..=job.count {
                let cpu0 = process_cpu();
                let started = Instant::now();
                let (resp, t) = side
                    .send(request(Method::GET, &blob_url, Bytes::new(), None))
                    .await?;
                expect(&resp, StatusCode::OK, "GET blob")?;
                stream_verify(resp, &job.blob, job.blob_len).await?;
                new_conns += u64::from(!t.reused);
                if i > 0 {
                    pulls.push(started.elapsed().as_secs_f64());
                    cpu += process_cpu() - cpu0;
                }
            }
            json!({ "pull_s": pulls, "cpu_s_per_pull": cpu.as_secs_f64() / job.count as f64,
                    "new_connections": new_conns })
        }
        Workload::Head => {
            let (resp, t) = side
                .send(request(Method::HEAD, &blob_url, Bytes::new(), None))
                .await?;
            read_all(resp).await?;
            let mut new_conns = u64::from(!t.reused);
            let mut first_byte = Vec::with_capacity(job.count);
            let cpu0 = process_cpu();
            let started = Instant::now();
            for _ in 0..job.count {
                let (resp, t) = side
                    .send(request(Method::HEAD, &blob_url, Bytes::new(), None))
                    .await?;
                expect(&resp, StatusCode::OK, "HEAD blob")?;
                read_all(resp).await?;
                new_conns += u64::from(!t.reused);
                first_byte.push(t.first_byte.as_secs_f64());
            }
            let wall = started.elapsed();
            let cpu = process_cpu() - cpu0;
            first_byte.sort_by(f64::total_cmp);
            json!({ "cpu_us_per_req": cpu.as_secs_f64() * 1e6 / job.count as f64,
                    "wall_us_per_req": wall.as_secs_f64() * 1e6 / job.count as f64,
                    "first_byte_p50_us": first_byte[first_byte.len() / 2] * 1e6,
                    "new_connections": new_conns })
        }
        Workload::Seq => seq(&side, job).await?,
        Workload::Burst => burst(&side, job).await?,
    };
    if let Value::Object(map) = &mut out {
        map.insert("side".into(), json!(job.side.as_str()));
        map.insert("peak_rss_kib".into(), json!(peak_rss_kib()));
        if let Some(opened) = side.opened() {
            // Connections whose DNS, connect and TLS no request reports (see `burst` for the
            // rounds): opened in the background, or shaken hands and then dropped.
            if let Some(new) = map.get("new_connections").and_then(Value::as_u64) {
                map.insert(
                    "opened_unreported".into(),
                    json!(opened.saturating_sub(new)),
                );
            }
            map.insert("connector_opened".into(), json!(opened));
            map.insert(
                "first_use_by_other".into(),
                json!(side.first_use_by_other()),
            );
        }
    }
    Ok(out)
}

/// Prober-like runs, a pause between them as between scheduled runs: each pushes a fresh
/// config and layer and a manifest, then GETs the manifest and streams both blobs back.
async fn seq(side: &Side, job: &Job) -> anyhow::Result<Value> {
    let mut log = Vec::new();
    let seed = u64::from(std::process::id());
    for run in 0..job.count {
        let tag = format!("seq-{seed}-{run}");
        let layer = random_bytes(1024 * 1024, seed * 1000 + run as u64);
        let (config, layer, layer_len) =
            push_image(side, &job.base, &job.repo, &tag, layer, &mut log).await?;
        let url = format!("{}/v2/{}/manifests/{tag}", job.base, job.repo);
        let mut req = request(Method::GET, &url, Bytes::new(), None);
        req.headers_mut().insert(
            header::ACCEPT,
            header::HeaderValue::from_static(OCI_MANIFEST),
        );
        let (resp, t) = side.send(req).await?;
        log.push(("GET manifest".into(), t));
        expect(&resp, StatusCode::OK, "GET manifest")?;
        read_all(resp).await?;
        for (digest, len, what) in [
            (&layer, layer_len as u64, "GET layer"),
            (&config, 0, "GET config"),
        ] {
            let url = format!("{}/v2/{}/blobs/{digest}", job.base, job.repo);
            let (resp, t) = side
                .send(request(Method::GET, &url, Bytes::new(), None))
                .await?;
            log.push((what.into(), t));
            expect(&resp, StatusCode::OK, what)?;
            if len > 0 {
                stream_verify(resp, digest, len).await?;
            } else {
                read_all(resp).await?;
            }
        }
        log.push((
            "-- run end".into(),
            ConnTiming {
                reused: true,
                ..ConnTiming::default()
            },
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = log.iter().filter(|(s, _)| !s.starts_with("--")).count();
    let mut run = 0;
    let mut new_at = Vec::new();
    for (step, t) in &log {
        if step.starts_with("--") {
            run += 1;
        } else if !t.reused {
            new_at.push(format!("run {run}: {step}"));
        }
    }
    Ok(json!({ "requests": requests, "new_connections": new_at.len(), "new_at": new_at }))
}

/// 8 concurrent manifest GETs on a cold pool, then 8 more once those are done.
async fn burst(side: &Side, job: &Job) -> anyhow::Result<Value> {
    let url = format!("{}/v2/{}/manifests/latest", job.base, job.repo);
    let mut rounds = Vec::new();
    for _round in 0..2 {
        let opened0 = side.opened();
        let sends = (0..8).map(|_| {
            let mut req = request(Method::GET, &url, Bytes::new(), None);
            req.headers_mut().insert(
                header::ACCEPT,
                header::HeaderValue::from_static(OCI_MANIFEST),
            );
            async {
                let (resp, t) = side.send(req).await?;
                expect(&resp, StatusCode::OK, "GET manifest")?;
                read_all(resp).await?;
                anyhow::Ok(t)
            }
        });
        let timings = futures_join_all(sends).await?;
        let reported_new = timings.iter().filter(|t| !t.reused).count() as u64;
        let opened = side.opened().zip(opened0).map(|(a, b)| a - b);
        // A request that reports reuse but waited out a connect or a handshake shows it here.
        let reused_first_byte_ms_max = timings
            .iter()
            .filter(|t| t.reused)
            .map(|t| t.first_byte.as_secs_f64() * 1e3)
            .fold(0.0, f64::max);
        rounds.push(json!({
            "reported_new": reported_new,
            "reused_first_byte_ms_max": reused_first_byte_ms_max,
            "opened_unreported": opened.map(|o| o.saturating_sub(reported_new)),
            "versions": timings.iter().map(|t| t.http_version).collect::<Vec<_>>(),
            "connector_opened": opened,
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(json!({ "cold": rounds[0], "warm": rounds[1] }))
}

/// Runs the futures concurrently on this task (as the prober's steps run their requests).
async fn futures_join_all<F, T>(futs: impl Iterator<Item = F>) -> anyhow::Result<Vec<T>>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut results: Vec<Option<anyhow::Result<T>>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, slot) in set.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *slot = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future finished"))
        .collect()
}
