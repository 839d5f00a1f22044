//! The service's life: the schedule of one config at a time, replaced on SIGHUP or when the
//! config file changes (a Kubernetes ConfigMap update swaps a symlink), the old one kept when
//! the new one is bad, and a drain within the grace period on shutdown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::schedule::Generation;
use super::sinks::Sinks;
use crate::config::Config;

/// What made the service reload or stop.
enum Event {
    Reload(&'static str),
    Shutdown,
}

/// Runs the schedule until `shutdown`: reloads the config on SIGHUP and when the file changes
/// (a Kubernetes ConfigMap update swaps a symlink), keeping the old config when the new one is
/// bad; on shutdown drains running cycles within the grace period.
pub async fn serve(
    path: PathBuf,
    config: Config,
    sinks: Sinks,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut generation = Generation::start(&config, &sinks, &[]);
    let mut current = config;
    let mut seen = fingerprint(&path);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => Event::Shutdown,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Event::Reload("SIGHUP"),
            _ = poll.tick() => {
                if fingerprint(&path) == seen {
                    continue;
                }
                Event::Reload("file change")
            }
        };
        match event {
            Event::Shutdown => break,
            Event::Reload(why) => {
                // What is loaded now is seen, so a SIGHUP after a rewrite reloads once and not
                // again at the next poll; taken before the load, so a swap in between is
                // loaded at the next poll.
                seen = fingerprint(&path);
                match Config::load(&path) {
                    Ok(new) => {
                        let retired = generation.drain(current.shutdown_grace).await;
                        generation = Generation::start(&new, &sinks, &retired);
                        sinks.metrics.config_reload(true);
                        tracing::info!(
                            trigger = why,
                            targets = new.targets.len(),
                            "Config reloaded"
                        );
                        current = new;
                    }
                    Err(e) => {
                        sinks.metrics.config_reload(false);
                        tracing::error!(trigger = why, error = %e, "Config reload failed, keeping the old config");
                    }
                }
            }
        }
    }
    let grace = current.shutdown_grace;
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        "Shutting down, letting running cycles finish"
    );
    generation.drain(grace).await;
}

/// The config file's content as seen through any symlinks; changes when a ConfigMap swaps it.
fn fingerprint(path: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}
