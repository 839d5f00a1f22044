//! What tar layers cost: the pre-pass of a generated layer (tar, compression and hashing, on
//! every core) per format, and the DiffID check of a pulled layer (inflate, sha256 and the tar
//! check, on one thread) beside the digest check alone, over in-memory bytes. Prints one JSON
//! object per line: wall seconds, process CPU seconds, and bytes of tar and of blob.
//!
//!   layerbench [--size-mib 256] [--iters 3]

use std::time::Instant;

use registry_prober::{Compression, Layer, LayerCheck, LayerFormat, Verifier};

fn main() {
    let mut size_mib: u64 = 256;
    let mut iters: usize = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--size-mib" => size_mib = value.parse().expect("--size-mib takes a number"),
            "--iters" => iters = value.parse().expect("--iters takes a number"),
            other => {
                eprintln!("layerbench: unknown argument {other:?}");
                std::process::exit(64);
            }
        }
    }
    let size = size_mib * 1024 * 1024;
    for (name, compression) in [
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
        ("none", Compression::None),
    ] {
        let format = LayerFormat::Tar(compression);
        let mut layer = None;
        let (walls, cpus) = measure(iters, || layer = Some(Layer::new(7, size, format)));
        let layer = layer.expect("measured at least once");
        report(&format!("prepass_{name}"), size, layer.size, &walls, &cpus);

        let mut blob = Vec::with_capacity(layer.size as usize);
        layer.write_blob(&mut blob).expect("writes to memory");
        let (walls, cpus) = measure(iters, || {
            let mut v = Verifier::new(layer.digest.clone(), layer.size);
            for chunk in blob.chunks(256 * 1024) {
                v.update(chunk).expect("not more than expected");
            }
            v.finish().expect("the blob matches its digest");
        });
        report(&format!("digest_{name}"), size, layer.size, &walls, &cpus);
        let (walls, cpus) = measure(iters, || {
            let mut c = LayerCheck::new(layer.diff_id.clone());
            for chunk in blob.chunks(256 * 1024) {
                c.update(chunk).expect("unpacks");
            }
            c.finish().expect("unpacks to its DiffID");
        });
        report(&format!("diff_id_{name}"), size, layer.size, &walls, &cpus);
    }
}

/// Runs `f` `iters` times: wall and process CPU seconds of each.
fn measure(iters: usize, mut f: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let (c0, t0) = (cpu_seconds(), Instant::now());
        f();
        walls.push(t0.elapsed().as_secs_f64());
        cpus.push(cpu_seconds() - c0);
    }
    (walls, cpus)
}

/// utime + stime of this process, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn report(what: &str, tar: u64, blob: u64, walls: &[f64], cpus: &[f64]) {
    println!(
        "{{\"what\":\"{what}\",\"tar_bytes\":{tar},\"blob_bytes\":{blob},\"median_wall_seconds\":{:.4},\"median_cpu_seconds\":{:.3}}}",
        median(walls),
        median(cpus)
    );
}
