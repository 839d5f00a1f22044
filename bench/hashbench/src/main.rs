//! Hashing throughput of the verification path: `verify::Verifier` (sha256 + length check, the
//! code every pulled blob streams through) over an in-memory buffer fed in fixed-size chunks,
//! the one-shot `Digest::of`, and ring's SHA-256 beside it. Prints one JSON object per line.
//!
//!   hashbench [--size-mib 256] [--chunks 16384,262144] [--iters 5]

use std::time::Instant;

use registry_prober::{Digest, Verifier};

fn main() {
    let mut size_mib: usize = 256;
    let mut chunks: Vec<usize> = vec![16 * 1024, 256 * 1024];
    let mut iters: usize = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--size-mib" => size_mib = value.parse().expect("--size-mib takes a number"),
            "--chunks" => {
                chunks = value
                    .split(',')
                    .map(|c| c.parse().expect("--chunks takes numbers"))
                    .collect()
            }
            "--iters" => iters = value.parse().expect("--iters takes a number"),
            other => {
                eprintln!("hashbench: unknown argument {other:?}");
                std::process::exit(64);
            }
        }
    }
    let buf = random_bytes(size_mib * 1024 * 1024);
    let len = buf.len() as u64;
    // Warms the page tables and the CPU frequency, and gives the digest every run must match.
    let digest = Digest::of(&buf);

    let mut oneshot = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        let got = Digest::of(&buf);
        oneshot.push(len as f64 / started.elapsed().as_secs_f64());
        assert_eq!(got, digest, "one-shot digest is stable");
    }
    report("digest_of", 0, len, &oneshot);

    for &chunk in &chunks {
        let mut rates = Vec::with_capacity(iters);
        for _ in 0..iters {
            let started = Instant::now();
            let mut verifier = Verifier::new(digest.clone(), len);
            for part in buf.chunks(chunk) {
                verifier.update(part).expect("never more bytes than expected");
            }
            let verified = verifier.finish().expect("the buffer matches its own digest");
            rates.push(len as f64 / started.elapsed().as_secs_f64());
            assert_eq!(verified, len);
        }
        report("verifier", chunk, len, &rates);

        // The same chunks through ring's SHA-256 (BoringSSL's assembly), for comparison.
        let mut rates = Vec::with_capacity(iters);
        for _ in 0..iters {
            let started = Instant::now();
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for part in buf.chunks(chunk) {
                ctx.update(part);
            }
            let hash = ctx.finish();
            rates.push(len as f64 / started.elapsed().as_secs_f64());
            let mut raw = [0u8; 32];
            raw.copy_from_slice(hash.as_ref());
            assert_eq!(Digest::from_sha256(raw), digest, "ring agrees with sha2");
        }
        report("ring", chunk, len, &rates);
    }
}

/// Median and max of the rates (bytes/s), as one JSON line.
fn report(what: &str, chunk: usize, len: u64, rates: &[f64]) {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    let min = sorted[0];
    println!(
        "{{\"what\":\"{what}\",\"chunk\":{chunk},\"bytes\":{len},\"median_bytes_per_second\":{median:.0},\"min_bytes_per_second\":{min:.0},\"max_bytes_per_second\":{max:.0}}}"
    );
}

/// xorshift64*: incompressible enough for a hash, and fast to make.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
