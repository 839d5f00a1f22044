//! The connection-pool spike (docs/http-pool-spike.md): the prober's hand-written pool against
//! hyper-util's legacy pooled Client behind a timing connector, on real Distribution registries
//! (plain HTTP, TLS with HTTP/2, TLS with HTTP/1.1). Every measure runs each side in its own child
//! process, A/B order alternating per pair, and prints medians with min-max.
//!
//!   poolspike [--reps 7] [--only blob,head,seq,burst,cold,timing] [--blob-mib 64] [--heads 2000]
//!             [--json samples.jsonl]

mod hyperutil;
mod work;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::Method;
use registry_prober::Resolve;
use registry_prober_e2e::{Registry, RegistryOptions, TestCa};
use serde_json::{json, Value};
use tokio::time::Instant;

use work::{Job, Kind, Side, StaticResolver, Workload};

const REPO: &str = "spike/blob";

struct Args {
    reps: usize,
    only: Vec<String>,
    blob_mib: usize,
    heads: usize,
    json: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1);
    let mut args = Args {
        reps: 7,
        only: ["blob", "head", "seq", "burst", "cold", "timing"]
            .map(String::from)
            .to_vec(),
        blob_mib: 64,
        heads: 2000,
        json: None,
    };
    while let Some(arg) = argv.next() {
        let mut value = || argv.next().with_context(|| format!("{arg} takes a value"));
        match arg.as_str() {
            "child" => return child(&value()?),
            "--reps" => args.reps = value()?.parse()?,
            "--only" => args.only = value()?.split(',').map(String::from).collect(),
            "--blob-mib" => args.blob_mib = value()?.parse()?,
            "--heads" => args.heads = value()?.parse()?,
            "--json" => args.json = Some(value()?.into()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    parent(&args)
}

fn runtime() -> tokio::runtime::Runtime {
    // As the prober's: multi-threaded, one worker per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

fn child(job: &str) -> anyhow::Result<()> {
    let job: Job = serde_json::from_str(job)?;
    let out = runtime().block_on(work::run_job(&job))?;
    println!("{out}");
    Ok(())
}

/// The three registries share one storage root, so one push serves all of them.
struct Bed {
    plain: Registry,
    tls_h2: Registry,
    tls_h1: Registry,
    ca: std::path::PathBuf,
    blob: String,
    blob_len: u64,
    /// Certificates and the shared storage; dropped last, after the registries are killed.
    _dir: tempfile::TempDir,
}

impl Bed {
    fn base(&self, scheme: &str) -> String {
        match scheme {
            "http-h1" => format!("http://localhost:{}", self.plain.port()),
            "tls-h2" => format!("https://localhost:{}", self.tls_h2.port()),
            _ => format!("https://localhost:{}", self.tls_h1.port()),
        }
    }
}

fn start_bed(rt: &tokio::runtime::Runtime, blob_mib: usize) -> anyhow::Result<Bed> {
    let dir = tempfile::Builder::new().prefix("poolspike-").tempdir()?;
    let ca = TestCa::new()?;
    let files = ca.issue_server_cert(dir.path())?;
    let storage = dir.path().join("storage");
    let plain = Registry::start(RegistryOptions {
        storage: Some(storage.clone()),
        ..RegistryOptions::default()
    })?;
    let tls_h2 = Registry::start(RegistryOptions {
        storage: Some(storage.clone()),
        tls: Some(files.clone()),
        ..RegistryOptions::default()
    })?;
    let tls_h1 = Registry::start(RegistryOptions {
        storage: Some(storage),
        tls: Some(files.clone()),
        env: vec![("REGISTRY_HTTP_HTTP2_DISABLED".into(), "true".into())],
        ..RegistryOptions::default()
    })?;
    let mut bed = Bed {
        plain,
        tls_h2,
        tls_h1,
        ca: files.ca.clone(),
        blob: String::new(),
        blob_len: 0,
        _dir: dir,
    };
    let data = work::random_bytes(blob_mib * 1024 * 1024, 64);
    let base = bed.base("http-h1");
    let (blob, len) = rt.block_on(async {
        let side = Side::new(Kind::Hand, &bed.ca, no_delay())?;
        let mut log = Vec::new();
        let len = data.len() as u64;
        let blob = work::push_blob(&side, &base, REPO, data, &mut log).await?;
        // A manifest `latest` for the burst measure.
        work::push_image(
            &side,
            &base,
            REPO,
            "latest",
            work::random_bytes(4096, 1),
            &mut log,
        )
        .await?;
        anyhow::Ok((blob, len))
    })?;
    bed.blob = blob;
    bed.blob_len = len;
    Ok(bed)
}

fn no_delay() -> Arc<dyn Resolve> {
    Arc::new(StaticResolver {
        delay: Duration::ZERO,
    })
}

fn parent(args: &Args) -> anyhow::Result<()> {
    let rt = runtime();
    let mut bed = start_bed(&rt, args.blob_mib)?;
    eprintln!(
        "registries up: {} {} {}; blob {} ({} MiB)",
        bed.base("http-h1"),
        bed.base("tls-h2"),
        bed.base("tls-h1"),
        bed.blob,
        args.blob_mib
    );
    let mut samples = match &args.json {
        Some(path) => Some(std::fs::File::create(path)?),
        None => None,
    };
    let measures: &[(&str, Workload, &[&str], usize)] = &[
        ("blob", Workload::Blob, &["http-h1", "tls-h2"], 5),
        ("head", Workload::Head, &["http-h1", "tls-h2"], args.heads),
        ("seq", Workload::Seq, &["http-h1", "tls-h2", "tls-h1"], 10),
        ("burst", Workload::Burst, &["http-h1", "tls-h2"], 1),
    ];
    for (name, workload, schemes, count) in measures {
        if !args.only.iter().any(|o| o == name) {
            continue;
        }
        for scheme in *schemes {
            let mut results: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
            for rep in 0..args.reps {
                let order = if rep % 2 == 0 {
                    [Kind::Hand, Kind::Hyper]
                } else {
                    [Kind::Hyper, Kind::Hand]
                };
                for side in order {
                    let job = Job {
                        side,
                        workload: *workload,
                        base: bed.base(scheme),
                        ca: bed.ca.clone(),
                        repo: REPO.into(),
                        blob: bed.blob.clone(),
                        blob_len: bed.blob_len,
                        count: *count,
                    };
                    let out = run_child(&job)?;
                    if let Some(f) = samples.as_mut() {
                        writeln!(
                            f,
                            "{}",
                            json!({"measure": name, "scheme": scheme, "rep": rep, "result": out})
                        )?;
                    }
                    results.entry(side.as_str()).or_default().push(out);
                }
            }
            summarize(name, scheme, &results);
        }
    }
    if args.only.iter().any(|o| o == "cold") {
        rt.block_on(cold(&bed, args.reps))?;
    }
    if args.only.iter().any(|o| o == "timing") {
        rt.block_on(timing(&mut bed))?;
    }
    Ok(())
}

fn run_child(job: &Job) -> anyhow::Result<Value> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .arg("child")
        .arg(serde_json::to_string(job)?)
        .output()?;
    if !out.status.success() {
        bail!(
            "child {job:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

fn median_of(values: &[f64]) -> f64 {
    stats(values.to_vec()).0
}

/// The numeric figures of each child (an array counts as one sample: its median), by name.
fn figures(outs: &[Value]) -> BTreeMap<String, Vec<f64>> {
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for out in outs {
        let Value::Object(map) = out else { continue };
        for (key, value) in map {
            match value {
                Value::Number(n) => figures
                    .entry(key.clone())
                    .or_default()
                    .push(n.as_f64().unwrap_or(0.0)),
                Value::Array(a) if a.iter().all(Value::is_number) && !a.is_empty() => {
                    let v: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
                    figures
                        .entry(format!("{key} (median per child)"))
                        .or_default()
                        .push(median_of(&v));
                }
                // One level down: the burst's rounds.
                Value::Object(inner) => {
                    for (name, v) in inner {
                        if let Some(v) = v.as_f64() {
                            figures.entry(format!("{key}.{name}")).or_default().push(v);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    figures
}

/// One line per side and figure: median [min-max] over the repetitions; then, for the
/// figures that decide, the ratio hyper/hand within each alternated pair.
fn summarize(name: &str, scheme: &str, results: &BTreeMap<&str, Vec<Value>>) {
    println!("== {name} {scheme}");
    if let (Some(hand), Some(hyper)) = (results.get("hand"), results.get("hyper")) {
        let (hand, hyper) = (figures(hand), figures(hyper));
        for (key, a) in &hand {
            let Some(b) = hyper.get(key) else { continue };
            if !(key.starts_with("cpu") || key.starts_with("pull") || key.starts_with("wall")) {
                continue;
            }
            let ratios: Vec<f64> = a
                .iter()
                .zip(b)
                .filter(|(a, _)| **a > 0.0)
                .map(|(a, b)| b / a)
                .collect();
            if !ratios.is_empty() {
                let (m, lo, hi) = stats(ratios);
                println!("  hyper/hand {key:31} {m:>12.4} [{lo:.4} - {hi:.4}] (paired)");
            }
        }
    }
    for (side, outs) in results {
        for (key, v) in figures(outs) {
            let (m, lo, hi) = stats(v);
            println!("  {side:5} {key:36} {m:>12.4} [{lo:.4} - {hi:.4}]");
        }
        // Lists of names (where new connections happened, versions): how many children had each.
        let mut tally: BTreeMap<String, usize> = BTreeMap::new();
        for out in outs {
            let Value::Object(map) = out else { continue };
            for (key, value) in map {
                let lists = match value {
                    Value::Array(a) => vec![(key.clone(), a)],
                    Value::Object(inner) => inner
                        .iter()
                        .filter_map(|(k, v)| v.as_array().map(|a| (format!("{key}.{k}"), a)))
                        .collect(),
                    _ => Vec::new(),
                };
                for (key, list) in lists {
                    let mut names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
                    names.dedup();
                    for name in names {
                        *tally.entry(format!("{key}: {name}")).or_default() += 1;
                    }
                }
            }
        }
        for (entry, children) in tally {
            println!(
                "  {side:5} {entry} (in {children} of {} children)",
                outs.len()
            );
        }
    }
}

/// Correctness of the per-request figures, in this process, once per side.
async fn timing(bed: &mut Bed) -> anyhow::Result<()> {
    println!("== timing (per-request figures)");
    for kind in [Kind::Hand, Kind::Hyper] {
        let side = |delay| {
            Side::new(
                kind,
                &bed.ca,
                Arc::new(StaticResolver { delay }) as Arc<dyn Resolve>,
            )
        };
        let get =
            |base: &str| work::request(Method::GET, &format!("{base}/v2/"), Bytes::new(), None);

        // A 40 ms resolver: the dns phase shows it, first byte does not.
        let s = side(Duration::from_millis(40))?;
        let base = bed.base("tls-h2");
        for i in 0..2 {
            let (resp, t) = s.send(get(&base)).await?;
            work::read_all(resp).await?;
            println!(
                "  {:5} tls-h2 request {i}: reused={} dns={:?} connect={:?} tls={:?} first_byte={:?} {} cert_not_after={}",
                kind.as_str(), t.reused, t.dns, t.connect, t.tls, t.first_byte, t.http_version,
                t.peer_cert_not_after.is_some()
            );
        }

        // A resolver slower than the deadline: which phase the timeout names.
        let s = side(Duration::from_millis(300))?;
        let deadline = Instant::now() + Duration::from_millis(100);
        match s.send_by(get(&base), deadline).await {
            Ok(_) => println!("  {:5} dns timeout: no error?", kind.as_str()),
            Err(e) => println!("  {:5} dns timeout: {e:#}", kind.as_str()),
        }

        // The server goes away between two requests (it closes the idle connection) and comes
        // back on the same port.
        for scheme in ["http-h1", "tls-h2"] {
            let s = side(Duration::ZERO)?;
            let base = bed.base(scheme);
            let (resp, _) = s.send(get(&base)).await?;
            work::read_all(resp).await?;
            let registry = if scheme == "http-h1" {
                &mut bed.plain
            } else {
                &mut bed.tls_h2
            };
            registry.restart()?;
            let result = s.send(get(&base)).await;
            match result {
                Ok((resp, t)) => {
                    work::read_all(resp).await?;
                    println!(
                        "  {:5} {scheme} after the server closed the idle connection: reused={} connect={:?} opened={:?}",
                        kind.as_str(), t.reused, t.connect, s.opened()
                    );
                }
                Err(e) => println!(
                    "  {:5} {scheme} after server close: error {e:#}",
                    kind.as_str()
                ),
            }
        }
    }
    Ok(())
}

/// The first request on a fresh client (it opens the connection) and the second (it reuses it):
/// the phases each side reports, and the wall time they must add up to.
async fn cold(bed: &Bed, reps: usize) -> anyhow::Result<()> {
    for scheme in ["http-h1", "tls-h2"] {
        let base = bed.base(scheme);
        let mut figures: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
        for rep in 0..reps {
            let order = if rep % 2 == 0 {
                [Kind::Hand, Kind::Hyper]
            } else {
                [Kind::Hyper, Kind::Hand]
            };
            for kind in order {
                let side = Side::new(kind, &bed.ca, no_delay())?;
                for i in 0..2 {
                    let url = format!("{base}/v2/{}/blobs/{}", REPO, bed.blob);
                    let started = Instant::now();
                    let (resp, t) = side
                        .send(work::request(Method::HEAD, &url, Bytes::new(), None))
                        .await?;
                    let total = started.elapsed();
                    work::read_all(resp).await?;
                    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
                    let mut put = |what: &'static str, v: f64| {
                        figures.entry((kind.as_str(), what)).or_default().push(v);
                    };
                    if i == 0 {
                        put("first: wall ms", ms(Some(total)));
                        put("first: connect ms", ms(t.connect));
                        put("first: tls ms", ms(t.tls));
                        put("first: first_byte ms", ms(Some(t.first_byte)));
                        put(
                            "first: reported new (1=yes)",
                            f64::from(u8::from(!t.reused)),
                        );
                        // What no phase accounts for: pool bookkeeping, the HTTP/2 handshake.
                        let phases = ms(t.dns) + ms(t.connect) + ms(t.tls) + ms(Some(t.first_byte));
                        put("first: wall - phases ms", ms(Some(total)) - phases);
                    } else {
                        put("second: wall ms", ms(Some(total)));
                        put("second: first_byte ms", ms(Some(t.first_byte)));
                        put(
                            "second: reported new (1=yes)",
                            f64::from(u8::from(!t.reused)),
                        );
                    }
                }
            }
        }
        println!("== cold {scheme}");
        for ((side, what), v) in figures {
            let (m, lo, hi) = stats(v);
            println!("  {side:5} {what:36} {m:>12.4} [{lo:.4} - {hi:.4}]");
        }
    }
    Ok(())
}
