//! What a soak samples of a process from outside, as an operator would: its resident memory
//! (split into anonymous memory, the heap and stacks, and file pages, the binary's code and data
//! the kernel pages in as they are first run and may drop again) and open file descriptors from
//! /proc/PID, and the machine's load average (the machine is shared:
//! a failure under a load of 6 on 2 cores is starvation, not the prober). And the summary of a
//! series: does it stay flat after the warm-up?
//!
//! The anonymous memory is split further by who holds it, from /proc/PID/smaps: the brk heap
//! (the main malloc arena), glibc's per-thread malloc arenas and the rest (thread stacks, big
//! blocks mapped on their own, musl's allocations). glibc gives a thread that finds every arena
//! busy a new one, up to 8 per core, and keeps each for the life of the process with the free
//! memory it does not trim: a step in anonymous memory that comes with a new arena is the
//! allocator's, not live data.

use std::time::Duration;

use anyhow::Context as _;

/// One look at a process and the machine.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Since the soak started.
    pub at: Duration,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// RssAnon, KiB: the heap, stacks and other private memory.
    pub anon_kib: u64,
    /// RssFile, KiB: resident pages of mapped files, the binary's above all.
    pub file_kib: u64,
    /// Anonymous memory of the brk heap (`[heap]`), KiB.
    pub heap_kib: u64,
    /// glibc's per-thread malloc arenas (each a 64 MiB-aligned reservation of 64 MiB): how many.
    pub arenas: u64,
    /// Their anonymous memory, KiB.
    pub arena_kib: u64,
    /// Threads of the process.
    pub threads: u64,
    /// Entries of /proc/PID/fd.
    pub fds: u64,
    /// The 1-minute load average.
    pub load1: f64,
}

/// Samples `pid` now.
pub fn sample(pid: u32, at: Duration) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (has the process exited?)"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("reading /proc/{pid}/smaps"))?;
    let holders = anonymous_holders(&smaps);
    Ok(Sample {
        at,
        rss_kib: field("VmRSS")?,
        anon_kib: field("RssAnon")?,
        file_kib: field("RssFile")?,
        heap_kib: holders.heap_kib,
        arenas: holders.arenas,
        arena_kib: holders.arena_kib,
        threads: field("Threads")?,
        fds,
        load1: load_average()?,
    })
}

/// The size and alignment of a glibc malloc heap for a thread arena on 64-bit (HEAP_MAX_SIZE:
/// twice the largest mmap threshold, 32 MiB).
const ARENA_HEAP: u64 = 64 * 1024 * 1024;

/// Who holds the anonymous memory of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Holders {
    heap_kib: u64,
    arenas: u64,
    arena_kib: u64,
}

/// One mapping of /proc/PID/smaps: where, its permissions, its path (empty when anonymous) and
/// its `Anonymous:` KiB.
struct Mapping<'a> {
    start: u64,
    end: u64,
    perms: &'a str,
    path: &'a str,
    anon_kib: u64,
}

/// Splits the text of /proc/PID/smaps into the brk heap and the glibc thread arenas: a
/// read-write anonymous mapping at a 64 MiB boundary whose reservation (it and the
/// inaccessible anonymous mapping right after it, not yet grown into) spans exactly 64 MiB.
fn anonymous_holders(smaps: &str) -> Holders {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let (Some(first), Some(second)) = (words.next(), words.next()) else {
            continue;
        };
        if first == "Anonymous:" {
            if let Some(m) = maps.last_mut() {
                m.anon_kib = second.parse().unwrap_or(0);
            }
            continue;
        }
        let Some((start, end)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        // offset, device, inode, then the path if any.
        let path = words.nth(3).unwrap_or("");
        maps.push(Mapping {
            start,
            end,
            perms: second,
            path,
            anon_kib: 0,
        });
    }
    let mut holders = Holders::default();
    for (i, m) in maps.iter().enumerate() {
        if m.path == "[heap]" {
            holders.heap_kib += m.anon_kib;
            continue;
        }
        if !m.path.is_empty() || !m.perms.starts_with("rw") || m.start % ARENA_HEAP != 0 {
            continue;
        }
        let reserved_end = match maps.get(i + 1) {
            Some(n) if n.start == m.end && n.perms.starts_with("---") && n.path.is_empty() => n.end,
            _ => m.end,
        };
        if reserved_end - m.start == ARENA_HEAP {
            holders.arenas += 1;
            holders.arena_kib += m.anon_kib;
        }
    }
    holders
}

/// The 1-minute load average (/proc/loadavg).
pub fn load_average() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("/proc/loadavg is {text:?}"))
}

/// Minimum, median and maximum of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub count: usize,
}

impl Spread {
    /// None for no values.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
            count: n,
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.1} / median {:.1} / max {:.1} ({} samples)",
            self.min, self.median, self.max, self.count
        )
    }
}

/// A series after its warm-up: the first and the last `window` of it, and the growth of the
/// median from one to the other.
#[derive(Debug, Clone, Copy)]
pub struct Flatness {
    pub first: Spread,
    pub last: Spread,
    /// (last median - first median) / first median, in percent.
    pub growth_percent: f64,
}

/// How `value` of the samples after `warm_up` grew from its first `window` to its last one.
/// None when the samples after the warm-up do not cover two windows.
pub fn flatness(
    samples: &[Sample],
    warm_up: Duration,
    window: Duration,
    value: impl Fn(&Sample) -> f64,
) -> Option<Flatness> {
    let end = samples.last()?.at;
    if end < warm_up + window * 2 {
        return None;
    }
    let first = Spread::of(
        samples
            .iter()
            .filter(|s| s.at >= warm_up && s.at < warm_up + window)
            .map(&value),
    )?;
    let last = Spread::of(samples.iter().filter(|s| s.at > end - window).map(&value))?;
    let growth_percent = if first.median > 0.0 {
        (last.median - first.median) / first.median * 100.0
    } else {
        0.0
    };
    Some(Flatness {
        first,
        last,
        growth_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, rss_kib: u64) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            rss_kib,
            anon_kib: rss_kib,
            file_kib: 0,
            heap_kib: 0,
            arenas: 0,
            arena_kib: 0,
            threads: 5,
            fds: 10,
            load1: 1.0,
        }
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id(), Duration::ZERO).expect("a sample");
        assert!(s.rss_kib > 0 && s.fds >= 3, "{s:?}");
        // VmRSS is RssAnon + RssFile + RssShmem.
        assert!(s.anon_kib > 0 && s.file_kib > 0, "{s:?}");
        assert!(s.anon_kib + s.file_kib <= s.rss_kib, "{s:?}");
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn finds_the_arena_of_a_thread_that_allocates() {
        let (ready, wait) = std::sync::mpsc::channel();
        let (done, stop) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let block = vec![7u8; 64 * 1024];
            ready.send(()).expect("the test waits");
            let _ = stop.recv();
            block.len()
        });
        wait.recv().expect("the worker allocated");
        let s = sample(std::process::id(), Duration::ZERO).expect("a sample");
        drop(done);
        assert_eq!(worker.join().expect("the worker ends"), 64 * 1024);
        assert!(s.arenas >= 1 && s.arena_kib >= 64, "{s:?}");
        assert!(s.threads >= 2, "{s:?}");
        assert!(s.heap_kib + s.arena_kib <= s.anon_kib, "{s:?}");
    }

    #[test]
    fn tells_arenas_from_stacks_and_the_brk_heap() {
        let smaps = "\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Rss:                 132 kB
Anonymous:           128 kB
7f3a24000000-7f3a24100000 rw-p 00000000 00:00 0 
Rss:                1024 kB
Anonymous:          1000 kB
7f3a24100000-7f3a28000000 ---p 00000000 00:00 0 
Anonymous:             0 kB
7f3a2c000000-7f3a2c021000 rw-p 00000000 00:00 0 
Anonymous:             8 kB
7f3a2c021000-7f3a30000000 ---p 00000000 00:00 0 
Anonymous:             0 kB
7f3a30000000-7f3a30001000 ---p 00000000 00:00 0 
Anonymous:             0 kB
7f3a30001000-7f3a30201000 rw-p 00000000 00:00 0 
Anonymous:            16 kB
7f3a34000000-7f3a34400000 rw-p 00000000 00:00 0 
Anonymous:           512 kB
7f3a40000000-7f3a40010000 rw-p 00000000 08:01 1234                       /usr/lib/libc.so.6
Anonymous:             4 kB
";
        // Two arenas (one barely used); a thread stack behind its guard page, a 4 MiB block
        // mapped on its own at a 64 MiB boundary and a file's copied page are not arenas.
        assert_eq!(
            anonymous_holders(smaps),
            Holders {
                heap_kib: 128,
                arenas: 2,
                arena_kib: 1008,
            }
        );
    }

    #[test]
    fn spread_has_the_median_of_odd_and_even_counts() {
        assert_eq!(Spread::of([3.0, 1.0, 2.0]).map(|s| s.median), Some(2.0));
        assert_eq!(
            Spread::of([4.0, 1.0, 2.0, 3.0]).map(|s| s.median),
            Some(2.5)
        );
        assert_eq!(Spread::of([]), None);
    }

    #[test]
    fn flatness_compares_the_first_window_after_the_warm_up_with_the_last() {
        // Warm-up 0-9 s grows fast (ignored), then 100 -> 110 KiB.
        let mut samples: Vec<Sample> = (0..10).map(|s| at(s, s * 10)).collect();
        samples.extend((10..40).map(|s| at(s, if s < 20 { 100 } else { 110 })));
        let f = flatness(
            &samples,
            Duration::from_secs(10),
            Duration::from_secs(10),
            |s| s.rss_kib as f64,
        )
        .expect("two windows");
        assert_eq!(f.first.median, 100.0);
        assert_eq!(f.last.median, 110.0);
        assert!((f.growth_percent - 10.0).abs() < 1e-9);
        assert!(flatness(
            &samples,
            Duration::from_secs(30),
            Duration::from_secs(10),
            |s| s.rss_kib as f64
        )
        .is_none());
    }
}
