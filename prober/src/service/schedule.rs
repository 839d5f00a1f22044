//! The schedule of one config: every target on its own interval, first runs spread across the
//! interval with jitter, never two runs of one target at once (an overrun is a counted skip, not
//! queued), confirmation runs after a failed run (`confirm`), a global bound on concurrent runs
//! and bytes in flight, and a drain when it stops.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::confirm::{Confirmer, Next};
use super::sinks::{log_sweep, Sinks};
use crate::config::Config;
use crate::probe::{Prober, Watch};
use crate::report::metrics::SkipCause;

/// The global bounds every run waits for: a run slot, and room for its image's bytes.
struct Limits {
    runs: Arc<Semaphore>,
    /// One permit per KiB of layer bytes in flight.
    kib: Arc<Semaphore>,
    max_kib: u32,
}

impl Limits {
    fn new(config: &Config) -> Limits {
        let max_kib = u32::try_from(config.max_in_flight_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        Limits {
            runs: Arc::new(Semaphore::new(config.max_concurrent_runs)),
            kib: Arc::new(Semaphore::new(max_kib as usize)),
            max_kib,
        }
    }

    /// Room for `bytes` in flight; an image larger than the whole bound waits for all of it.
    async fn bytes(
        &self,
        bytes: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1))
            .unwrap_or(u32::MAX)
            .min(self.max_kib);
        self.kib.clone().acquire_many_owned(kib).await
    }
}

/// One set of target loops started from one config; stopped on reload or shutdown.
pub(super) struct Generation {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    probers: Vec<Arc<Prober>>,
}

impl Generation {
    /// Starts every target's loops. `retired`: the probers of the generation this one replaces,
    /// whose upload sessions still to cancel go to the prober of the same target.
    pub(super) fn start(config: &Config, sinks: &Sinks, retired: &[Arc<Prober>]) -> Generation {
        let (stop, stop_rx) = watch::channel(false);
        let limit = Arc::new(Limits::new(config));
        let mut probers = Vec::with_capacity(config.targets.len());
        for target in &config.targets {
            let prober = Arc::new(Prober::new(target.clone()));
            for old in retired {
                old.hand_over_leftovers(&prober);
            }
            probers.push(prober);
        }
        let names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
        sinks.history.set_targets(&names);
        sinks.metrics.set_targets(names.len());
        sinks.metrics.retain_targets(&config.targets);
        for target in &config.targets {
            sinks.metrics.init_target(target);
        }
        let max_interval = config
            .targets
            .iter()
            .flat_map(|t| t.sizes.iter().map(|c| c.interval))
            .max()
            .unwrap_or_default();
        let max_timeout = config
            .targets
            .iter()
            .map(|t| t.max_run_time())
            .max()
            .unwrap_or_default();
        sinks
            .health
            .schedule_started(names.len(), max_interval, max_timeout);

        let mut tasks = JoinSet::new();
        let loops: Vec<(Arc<Prober>, usize)> = probers
            .iter()
            .flat_map(|p| (0..p.target().sizes.len()).map(move |c| (p.clone(), c)))
            .collect();
        let count = loops.len().max(1) as f64;
        for (i, (prober, class)) in loops.into_iter().enumerate() {
            let interval = prober.target().sizes[class].interval;
            // Spread first runs evenly across the interval, plus jitter of up to 10% of a slot,
            // so many targets never fire together.
            let slot = interval.div_f64(count);
            let jitter = slot.mul_f64(rand::random::<f64>() * 0.1);
            let first = Instant::now() + interval.mul_f64(i as f64 / count) + jitter;
            tasks.spawn(class_loop(
                prober,
                class,
                first,
                sinks.clone(),
                limit.clone(),
                stop_rx.clone(),
            ));
        }
        for prober in &probers {
            tasks.spawn(hygiene_loop(
                prober.clone(),
                sinks.clone(),
                limit.clone(),
                stop_rx.clone(),
            ));
        }
        Generation {
            stop,
            tasks,
            probers,
        }
    }

    /// Stops scheduling and waits for running cycles (and their cleanup) at most `grace`;
    /// returns the probers, for the next generation to take their leftovers over.
    pub(super) async fn drain(mut self, grace: Duration) -> Vec<Arc<Prober>> {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "Runs still going after the grace period, abandoning them"
            );
            self.tasks.abort_all();
        }
        self.probers
    }
}

/// What woke a size class's loop.
enum Event {
    /// A scheduled run is due.
    Due(Instant),
    /// The run in flight ended (None: it did not run, or its task panicked).
    Ended(Option<RunEnd>),
    /// A confirmation run is due.
    Confirm(Instant),
    Stop,
}

/// One size class of one target: tick, start a run unless the previous one is still going
/// (an overrun) or the registry asked us to wait (rate limited); after a failed run, a
/// confirmation run when `Confirmer` says so.
async fn class_loop(
    prober: Arc<Prober>,
    class: usize,
    first: Instant,
    sinks: Sinks,
    limit: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) {
    let name = prober.target().name.clone();
    let class_name = prober.target().sizes[class].name.clone();
    let interval = prober.target().sizes[class].interval;
    let mut ticker = tokio::time::interval_at(first, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut confirmer = Confirmer::new(prober.target().confirmation);
    let mut current: Option<JoinHandle<Option<RunEnd>>> = None;
    let mut not_before: Option<Instant> = None;
    let mut last_due: Option<Instant> = None;
    let mut confirm_at: Option<Instant> = None;
    let mut next_scheduled = first;
    let mut freshness = Freshness::new(Instant::now());
    loop {
        // Built from the select's value, so the branches' borrows end before it is handled;
        // biased: a run that ended is seen before the tick that comes with it.
        let event = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Event::Stop,
            end = ended(&mut current) => Event::Ended(end),
            due = ticker.tick() => Event::Due(due),
            at = at(confirm_at) => Event::Confirm(at),
        };
        let start = |due: Instant, kind: RunKind| {
            tokio::spawn(run_one(
                prober.clone(),
                class,
                due,
                kind,
                sinks.clone(),
                limit.clone(),
            ))
        };
        match event {
            Event::Stop => break,
            Event::Ended(end) => {
                current = None;
                let Some(end) = end else { continue };
                if end.retry_until.is_some() {
                    not_before = end.retry_until;
                }
                let rate_limited = end.retry_until.is_some();
                match confirmer.ended(end.success, rate_limited, end.at, end.took, next_scheduled) {
                    Next::Wait => {}
                    Next::ConfirmAt(at) => confirm_at = Some(at),
                    Next::Skip(cause) => {
                        sinks
                            .metrics
                            .confirmation_skipped(&name, &class_name, cause);
                        tracing::info!(target_name = %name, size_class = %class_name, cause = <&str>::from(cause), "Confirmation run not run");
                    }
                }
            }
            Event::Confirm(at) => {
                confirm_at = None;
                // Only a run that ended schedules a confirmation, and a due scheduled run
                // cancels it: nothing is in flight here.
                if current.is_none() {
                    freshness.renewed(Instant::now());
                    current = Some(start(at, RunKind::Confirmation));
                }
            }
            Event::Due(due) => {
                // Every tick is accounted for: due, then started (and counted when it ends) or
                // skipped.
                let missed = last_due.map_or(0, |last| missed_ticks(last, due, interval));
                if missed > 0 {
                    sinks.metrics.runs_missed(&name, &class_name, missed);
                    tracing::warn!(target_name = %name, size_class = %class_name, missed, "The schedule fell whole intervals behind, runs missed");
                }
                last_due = Some(due);
                sinks.metrics.run_due(&name, &class_name);
                next_scheduled = due + interval;
                confirmer.scheduled();
                // The scheduled run confirms instead.
                confirm_at = None;
                if current.is_some() {
                    sinks
                        .metrics
                        .run_skipped(&name, &class_name, SkipCause::Overrun);
                    tracing::warn!(target_name = %name, size_class = %class_name, "Previous run still going, skipping this one");
                    continue;
                }
                if not_before.is_some_and(|t| Instant::now() < t) {
                    sinks
                        .metrics
                        .run_skipped(&name, &class_name, SkipCause::RateLimited);
                    tracing::warn!(target_name = %name, size_class = %class_name, "Rate limited by the registry, waiting before the next run");
                    continue;
                }
                let kind = freshness.scheduled(Instant::now());
                current = Some(start(due, kind));
            }
        }
    }
    // Stopping: a run in flight finishes (cleanup included) before the loop ends.
    if let Some(run) = current {
        let _ = run.await;
    }
}

/// Ticks that passed unseen between two ticks the schedule saw (`last` and `due`): a ticker
/// that skips missed ticks delivers the next one on the period's grid after a stall, so the gap
/// is a whole number of periods.
fn missed_ticks(last: Instant, due: Instant, period: Duration) -> u64 {
    let period = period.as_nanos().max(1);
    let gap = due.saturating_duration_since(last).as_nanos();
    let periods = (gap + period / 2) / period;
    u64::try_from(periods.saturating_sub(1)).unwrap_or(u64::MAX)
}

/// The end of the run in flight (None if it did not run or its task panicked); never without
/// one.
async fn ended(current: &mut Option<JoinHandle<Option<RunEnd>>>) -> Option<RunEnd> {
    match current {
        Some(run) => run.await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// `at`, once it comes; never without one.
async fn at(at: Option<Instant>) -> Instant {
    match at {
        Some(at) => {
            tokio::time::sleep_until(at).await;
            at
        }
        None => std::future::pending().await,
    }
}

/// Why a run starts, and on which connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    /// On the interval, reusing the connections kept from earlier runs.
    Scheduled,
    /// On the interval, on new connections (see [`CONNECTION_MAX_AGE`]).
    Fresh,
    /// After a failed run, on new connections: a kept connection that broke must not fail both
    /// the run and the run that confirms it.
    Confirmation,
}

/// When a class last started a run on new connections, and so whether its next scheduled run
/// must: once kept connections have served for [`CONNECTION_MAX_AGE`].
struct Freshness {
    since: Instant,
}

impl Freshness {
    /// The class starts on new connections (the service's first runs open them).
    fn new(now: Instant) -> Freshness {
        Freshness { since: now }
    }

    /// A run on new connections (a confirmation) starts at `now`.
    fn renewed(&mut self, now: Instant) {
        self.since = now;
    }

    /// The kind of the scheduled run starting at `now`.
    fn scheduled(&mut self, now: Instant) -> RunKind {
        if now.saturating_duration_since(self.since) >= CONNECTION_MAX_AGE {
            self.since = now;
            RunKind::Fresh
        } else {
            RunKind::Scheduled
        }
    }
}

/// How a run ended, for the schedule.
struct RunEnd {
    success: bool,
    /// Until when the registry asked the schedule to wait, counted from the end of the
    /// rate-limited run.
    retry_until: Option<Instant>,
    at: Instant,
    took: Duration,
}

/// Connections are kept from one run to the next only when the next run is due sooner than
/// this. Servers and load balancers close keep-alive connections idle for about a minute
/// (nginx 75 s, cloud load balancers 60 s), and an idle connection per target and path costs
/// a file descriptor and ~25 KiB: 1,000 targets at a 60 s interval held 1,000 of each. A run
/// on a long interval opens a new connection, and so measures DNS, connect and TLS every time.
const KEEP_CONNECTIONS_BELOW: Duration = Duration::from_secs(30);

/// Kept connections are closed before a run once they have served runs this long: a registry
/// that keeps idle connections open (Distribution does) would otherwise be reached over one
/// connection forever, its name never looked up again, so a DNS failure (or a move to other
/// addresses) would never show at a short interval. Clients resolve the name anew; so does
/// the prober, at least once a minute.
const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60);

/// One run under the global concurrency bound, reported to every sink: a scheduled run, or a
/// confirmation run after a failed one. None when it did not run (the bounds were closed: the
/// service is stopping).
async fn run_one(
    prober: Arc<Prober>,
    class: usize,
    due: Instant,
    kind: RunKind,
    sinks: Sinks,
    limit: Arc<Limits>,
) -> Option<RunEnd> {
    let target = prober.target();
    let class_name = &target.sizes[class].name;
    // Back-pressure: wait for room for the image's bytes, then for a run slot, rather than
    // queueing without bound; the wait is part of the schedule lag, not of the run.
    let Ok(_bytes) = limit.bytes(target.sizes[class].image_bytes()).await else {
        return None;
    };
    let Ok(_permit) = limit.runs.clone().acquire_owned().await else {
        return None;
    };
    if kind != RunKind::Scheduled {
        // From scratch: DNS, connect and TLS.
        prober.close_idle_connections();
    }
    sinks.metrics.schedule_lag(due.elapsed());
    sinks.metrics.run_started(&target.name, class_name);
    sinks.health.progress();
    // Each step honours its own deadline and cleanup has its own; this outer bound only
    // fires if something awaited without one, so a run can never wedge its target.
    let hard_limit =
        target.sizes[class].timeout + target.cleanup_timeout * 4 + Duration::from_secs(5);
    let started_at = SystemTime::now();
    let started = Instant::now();
    let watch = Watch::default();
    // Boxed: the loop keeps this task's JoinHandle until its next tick, and with it the task's
    // allocation, which would otherwise hold the whole run's state (~13 KiB) while idle.
    let run = Box::pin(prober.run_class(class, rand::random(), &watch));
    let mut report = match tokio::time::timeout(hard_limit, run).await {
        Ok(report) => report,
        Err(_) => prober.cut_report(class, started_at, hard_limit, &watch),
    };
    report.confirmation = kind == RunKind::Confirmation;
    if target.sizes[class].interval >= KEEP_CONNECTIONS_BELOW {
        prober.close_idle_connections();
    }
    sinks.record(&report);
    sinks.metrics.run_finished(&target.name, class_name);
    sinks.health.progress();
    Some(RunEnd {
        success: report.success,
        retry_until: report.retry_after.map(|wait| Instant::now() + wait),
        at: Instant::now(),
        took: started.elapsed(),
    })
}

/// Sweeps the target's leftovers at start and then every hygiene interval.
async fn hygiene_loop(
    prober: Arc<Prober>,
    sinks: Sinks,
    limit: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(prober.target().hygiene_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let Ok(_permit) = limit.runs.clone().acquire_owned().await else {
            break;
        };
        // Boxed: inline, the sweep's state made every idle hygiene task ~14 KiB (14 MiB for
        // 1,000 targets); boxed it exists only while a sweep runs.
        let sweep = Box::pin(prober.sweep()).await;
        sinks.metrics.observe_sweep(&sweep);
        log_sweep(&sweep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn limits(yaml: &str) -> Limits {
        let raw = RawConfig::from_yaml(yaml).expect("yaml");
        Limits::new(&raw.validate().expect("valid"))
    }

    const TARGET: &str =
        "targets:\n  - name: t\n    registry: http://127.0.0.1:5000\n    repository: p/x\n";

    #[test]
    fn missed_ticks_are_the_whole_periods_between_two_seen_ticks() {
        let t0 = Instant::now();
        let p = Duration::from_secs(2);
        assert_eq!(missed_ticks(t0, t0 + p, p), 0, "the next tick: none missed");
        assert_eq!(missed_ticks(t0, t0 + p * 4, p), 3);
        // Off the grid (it never is: deadlines are), the nearest whole number of periods.
        assert_eq!(
            missed_ticks(t0, t0 + p * 2 + Duration::from_millis(900), p),
            1
        );
        assert_eq!(missed_ticks(t0, t0 + Duration::from_millis(900), p), 0);
        assert_eq!(missed_ticks(t0, t0, p), 0);
        assert_eq!(missed_ticks(t0 + p, t0, p), 0, "never negative");
    }

    #[tokio::test]
    async fn a_stalled_ticker_delivers_the_next_tick_on_its_grid() {
        // What missed_ticks relies on: with MissedTickBehavior::Skip, after the runtime was
        // blocked for 3.5 periods the overdue tick comes at once with its own deadline, and
        // the next one on the grid, whole periods later.
        let p = Duration::from_millis(50);
        let mut ticker = tokio::time::interval_at(Instant::now(), p);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let first = ticker.tick().await;
        std::thread::sleep(p.mul_f64(3.5));
        let late = ticker.tick().await;
        let next = ticker.tick().await;
        assert_eq!(late - first, p, "the overdue tick keeps its own deadline");
        let periods = (next - first).as_nanos() / p.as_nanos();
        assert_eq!(next - first, p * periods as u32, "on the grid");
        assert!(periods >= 4, "{periods}");
        // Ticks at 2p .. (periods - 1)p were never delivered.
        assert_eq!(missed_ticks(late, next, p), periods as u64 - 2);
    }

    #[test]
    fn a_scheduled_run_opens_new_connections_once_kept_ones_have_served_their_age() {
        let start = Instant::now();
        let mut f = Freshness::new(start);
        let interval = Duration::from_secs(15);
        // 15 s apart: the runs at 15, 30 and 45 s reuse; the one at 60 s renews; then 75 s
        // reuses again until 120 s.
        let kinds: Vec<RunKind> = (1..=8).map(|n| f.scheduled(start + interval * n)).collect();
        use RunKind::{Fresh, Scheduled};
        assert_eq!(
            kinds,
            [Scheduled, Scheduled, Scheduled, Fresh, Scheduled, Scheduled, Scheduled, Fresh]
        );
    }

    #[test]
    fn a_confirmation_renews_the_connections_age() {
        let start = Instant::now();
        let mut f = Freshness::new(start);
        f.renewed(start + Duration::from_secs(50));
        assert_eq!(
            f.scheduled(start + Duration::from_secs(60)),
            RunKind::Scheduled,
            "10 s after a confirmation's new connections"
        );
        assert_eq!(
            f.scheduled(start + Duration::from_secs(110)),
            RunKind::Fresh
        );
    }

    #[tokio::test]
    async fn images_wait_for_room_in_the_in_flight_byte_bound() {
        let l = limits(&format!("max_in_flight_bytes: 8MiB\n{TARGET}"));
        let first = l.bytes(6 << 20).await.expect("room for the first");
        let second = l.bytes(6 << 20);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err(),
            "6 MiB + 6 MiB must not fit in 8 MiB"
        );
        // First come, first served: a small image queues behind the waiting big one, so big
        // size classes are never starved by a stream of small runs.
        let small = tokio::time::timeout(Duration::from_millis(50), l.bytes(1 << 20)).await;
        assert!(small.is_err(), "1 MiB waits behind the queued 6 MiB");
        drop(first);
        let _room = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("room once the first is done")
            .expect("permit");
    }

    #[tokio::test]
    async fn an_image_larger_than_the_bound_runs_alone_instead_of_never() {
        let l = limits(&format!("max_in_flight_bytes: 1MiB\n{TARGET}"));
        let big = tokio::time::timeout(Duration::from_millis(50), l.bytes(512 << 20)).await;
        assert!(big.is_ok(), "a 512 MiB image takes the whole 1 MiB bound");
        let other = tokio::time::timeout(Duration::from_millis(50), l.bytes(1)).await;
        assert!(other.is_err(), "nothing else runs beside it");
    }
}
