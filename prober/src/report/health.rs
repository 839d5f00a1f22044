//! The prober's own health: ready once config is loaded and the first round has started;
//! live unless the scheduler is stuck (no run started or finished for several intervals while
//! targets exist). A registry being down never makes the prober unhealthy.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by the scheduler (the writer) and the HTTP server (the reader).
pub struct Health {
    started: Instant,
    /// Milliseconds since `started` of the last run start or finish (or schedule start).
    last_progress_ms: AtomicU64,
    targets: AtomicUsize,
    ready: AtomicBool,
    /// How long without progress counts as stuck, derived from the targets' schedules.
    stuck_after: Mutex<Duration>,
}

/// Why the prober is not live.
#[derive(Debug, PartialEq, Eq)]
pub struct Stuck {
    pub idle: Duration,
    pub limit: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            targets: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            stuck_after: Mutex::new(Duration::from_secs(300)),
        }
    }
}

impl Health {
    /// A new schedule started with `targets` targets; `max_interval` and `max_timeout` are the
    /// longest of any target. Stuck means three intervals plus a run's timeout without progress.
    pub fn schedule_started(&self, targets: usize, max_interval: Duration, max_timeout: Duration) {
        if let Ok(mut s) = self.stuck_after.lock() {
            *s = max_interval * 3 + max_timeout;
        }
        self.targets.store(targets, Ordering::SeqCst);
        self.progress();
        self.ready.store(true, Ordering::SeqCst);
    }

    /// A run started or finished.
    pub fn progress(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_progress_ms.store(ms, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Ok while the scheduler makes progress (or has nothing to do).
    pub fn check_live(&self) -> Result<(), Stuck> {
        if self.targets.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let now = self.started.elapsed();
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::SeqCst));
        let idle = now.saturating_sub(last);
        let limit = self
            .stuck_after
            .lock()
            .map(|s| *s)
            .unwrap_or(Duration::from_secs(300));
        if idle > limit {
            return Err(Stuck { idle, limit });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_not_ready_before_the_first_round_and_live_without_targets() {
        let h = Health::default();
        assert!(!h.is_ready());
        assert_eq!(h.check_live(), Ok(()));
    }

    #[test]
    fn turns_unhealthy_only_when_no_progress_for_longer_than_the_limit() {
        let h = Health::default();
        h.schedule_started(2, Duration::from_millis(10), Duration::from_millis(10));
        assert!(h.is_ready());
        assert_eq!(h.check_live(), Ok(()));
        std::thread::sleep(Duration::from_millis(60));
        let stuck = h.check_live().expect_err("stuck after 40ms limit");
        assert_eq!(stuck.limit, Duration::from_millis(40));
        h.progress();
        assert_eq!(h.check_live(), Ok(()));
    }
}
