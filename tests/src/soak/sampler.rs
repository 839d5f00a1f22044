//! What a soak samples of a process from outside, as an operator would: its resident memory
//! (split into anonymous memory, the heap and stacks, and file pages, the binary's code and data
//! the kernel pages in as they are first run and may drop again) and open file descriptors from
//! /proc/PID, and the machine's load average (the machine is shared:
//! a failure under a load of 6 on 2 cores is starvation, not the prober). And the summary of a
//! series: does it stay flat after the warm-up?

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
    Ok(Sample {
        at,
        rss_kib: field("VmRSS")?,
        anon_kib: field("RssAnon")?,
        file_kib: field("RssFile")?,
        fds,
        load1: load_average()?,
    })
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
