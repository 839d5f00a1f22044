//! The schedule: every target runs on its own interval, its first run spread across the
//! interval so targets never fire together, and never two runs of one target at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::Config;
use crate::probe::outcome::RunReport;
use crate::probe::Prober;

/// Runs every target until `shutdown` turns true, handing each finished run to `sink`.
pub async fn run_all(
    config: &Config,
    sink: Arc<dyn Fn(&RunReport) + Send + Sync>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), crate::client::tls::TlsConfigError> {
    let mut tasks = tokio::task::JoinSet::new();
    let count = config.targets.len() as u32;
    for (i, target) in config.targets.iter().enumerate() {
        let prober = Prober::new(target.clone())?;
        // Spread first runs evenly across the interval, plus a little jitter.
        let spread = target.interval.mul_f64(i as f64 / count.max(1) as f64);
        let jitter = Duration::from_millis(rand::random::<u64>() % 250);
        let sink = sink.clone();
        let mut shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval_at(
                Instant::now() + spread + jitter,
                prober.target().interval,
            );
            // A run longer than the interval delays the next one; runs are never queued.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                let report = prober.run().await;
                sink(&report);
                if *shutdown.borrow() {
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
