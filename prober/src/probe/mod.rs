//! One probe run of one target: generate a fresh image, push it, pull it back through every
//! path and verify every blob, check old content (golden images, canaries), then clean up. A
//! registry failure is an outcome, never an `Err`: `Prober::run_class` returns a `RunReport`.
//!
//! Every step has one shape (`run.rs`); every check on what a registry sends is a named
//! function (`verify.rs`); push, pull, cleanup, mount, propagation, canaries and the hygiene
//! sweep each have a file of their own.

mod artifact;
mod canary;
mod cleanup;
mod content;
pub(crate) mod cost;
mod hygiene;
mod index;
mod inflate;
mod leftovers;
mod mount;
mod propagation;
mod pull;
mod push;
mod referrers;
mod run;
mod tags;
mod upload;
mod verify;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::Instant;

use crate::config::{CleanupMode, Target, ORIGIN};
use crate::http::transport::{Resolve, SystemResolver, Transport};
use crate::http::Client;
use crate::outcome::{RunReport, Step};
use content::{Content, Tagged};
use referrers::Lookup;
use run::{Endpoint, Run};

pub use watch::Watch;

/// Everything needed to probe one target, kept across runs (connections and tokens are reused,
/// canaries and leftovers remembered).
pub struct Prober {
    target: Target,
    /// The origin (where pushes go) first, then every configured pull path.
    endpoints: Vec<Endpoint>,
    canaries: Mutex<canary::Book>,
    /// Upload sessions whose cancel failed: the next sweep tries again.
    leftover_sessions: Mutex<Vec<url::Url>>,
    /// Per size class, how many runs have started: picks the rotating tag in rotate mode.
    turns: Vec<AtomicU64>,
}

impl Prober {
    pub fn new(target: Target) -> Prober {
        Self::with_resolver(target, Arc::new(SystemResolver))
    }

    /// A prober whose DNS lookups go through `resolver` (tests add delay or failures here).
    pub fn with_resolver(target: Target, resolver: Arc<dyn Resolve>) -> Prober {
        let origin = Endpoint {
            name: ORIGIN.to_string(),
            client: Client::new(
                Arc::new(Transport::new(target.tls.client_config(), resolver.clone())),
                target.registry.clone(),
                &target.repository,
                target.credentials.clone(),
            ),
            propagation: None,
        };
        let mut endpoints = vec![origin];
        for path in &target.paths {
            endpoints.push(Endpoint {
                name: path.name.clone(),
                client: Client::new(
                    Arc::new(Transport::new(path.tls.client_config(), resolver.clone())),
                    path.registry.clone(),
                    &path.repository,
                    path.credentials.clone(),
                ),
                propagation: path.propagation,
            });
        }
        Prober {
            turns: target.sizes.iter().map(|_| AtomicU64::new(0)).collect(),
            target,
            endpoints,
            canaries: Mutex::new(canary::Book::default()),
            leftover_sessions: Mutex::new(Vec::new()),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Closes the idle connections of every path (tokens stay cached).
    pub fn close_idle_connections(&self) {
        for endpoint in &self.endpoints {
            endpoint.client.close_idle_connections();
        }
    }

    /// Runs one cycle of the first size class with a fresh random image.
    pub async fn run(&self) -> RunReport {
        self.run_class(0, rand::random(), &Watch::default()).await
    }

    /// Runs one cycle of size class `class` (an index into `target.sizes`; the image is a pure
    /// function of `seed`): push a fresh image, mount a blob, pull it back through every path;
    /// the first class also checks golden images and canaries; then clean up. `watch` sees the
    /// steps as they happen.
    pub async fn run_class(&self, class: usize, seed: u64, watch: &Watch) -> RunReport {
        let index = class.min(self.target.sizes.len() - 1);
        let first_class = index == 0;
        let class = &self.target.sizes[index];
        let started_at = SystemTime::now();
        let started = Instant::now();
        let mut run = Run::new(self, class, started + class.timeout, watch);
        let tag = self.tag_for(index, seed);
        let sizes = class.layer_sizes.clone();
        let manifest_type = self.target.manifest_type;
        let format = self.target.layer_format;
        let (platforms, artifact) = (self.target.platforms.clone(), self.target.artifact.clone());
        // Hashing (and compressing) a large layer takes a while: off the async workers.
        let content = tokio::task::spawn_blocking(move || {
            Content::generate(
                seed,
                &sizes,
                manifest_type,
                format,
                platforms.as_ref(),
                artifact.as_ref(),
            )
        })
        .await
        .expect("image generation does not panic");

        let origin_up = run.ping_all().await;
        let pushed = origin_up
            && match &content.tagged {
                Tagged::Image(image) => run.push_image(image, &tag).await.is_ok(),
                Tagged::Index(index) => run.push_index(index, &tag).await.is_ok(),
            };
        if pushed && self.target.mount.is_some() && run.may_continue() {
            let _ = run.mount_blob(content.first_image()).await;
        }
        if pushed {
            // Replicated paths first, right after the push, so their delay is measured from it.
            let endpoints = run.endpoints();
            let mut propagated = Vec::with_capacity(endpoints.len());
            for &endpoint in &endpoints {
                propagated.push(
                    !run.may_continue()
                        || run.wait_propagation(endpoint, &content, &tag).await.is_ok(),
                );
            }
            for (endpoint, ok) in endpoints.into_iter().zip(propagated) {
                if ok && run.may_continue() {
                    let _ = match (&content.tagged, &self.target.platforms) {
                        (Tagged::Index(index), Some(p)) => {
                            run.pull_index(endpoint, index, &tag, &p.pull).await
                        }
                        (Tagged::Image(image), _) => run.pull_image(endpoint, image, &tag).await,
                        (Tagged::Index(_), None) => Ok(()),
                    };
                }
            }
        }
        if let (true, Some(artifact)) = (pushed && run.may_continue(), &content.artifact) {
            let filter = self.target.artifact.as_ref().is_some_and(|a| a.filter);
            if let Ok(done) = Box::pin(run.push_artifact(artifact, "")).await {
                let indexed = Some(done.indexed);
                run.artifact = Some(done);
                if run.may_continue() {
                    let lookup = Lookup {
                        artifact,
                        filter,
                        indexed,
                        prefix: String::new(),
                        blob_step: Step::PullBlob,
                    };
                    let _ = Box::pin(run.find_referrer(run.origin(), &lookup)).await;
                }
            }
        }
        let mut canaries = None;
        if first_class {
            for endpoint in run.endpoints() {
                for golden in &self.target.golden_images {
                    if run.may_continue() {
                        let _ = run.pull_golden(endpoint, golden).await;
                    }
                }
            }
            if let Some(config) = self.target.canaries.as_ref().filter(|_| origin_up) {
                // Boxed, as every artifact step: inline, debug builds overflow a worker's
                // stack polling the run.
                canaries = Some(Box::pin(run.check_canaries(config)).await);
            }
        }
        if !origin_up {
            // Nothing was pushed; leftovers of earlier runs are the sweep's.
        } else if self.target.cleanup.enabled {
            run.cleanup(&content).await;
        } else {
            run.cancel_open_sessions().await;
        }
        run.remember_open_sessions();

        let steps = run.take_steps();
        // A registry that refuses DELETE is a known limit (counted as left behind), not a
        // failure of the run or of its cleanup.
        let cleanup_failed = steps
            .iter()
            .any(|s| s.step.is_cleanup() && !s.success && !s.is_refused_cleanup());
        let success = steps.iter().all(|s| s.success || s.is_refused_cleanup());
        // The registry's Retry-After, or one interval when it named none.
        let retry_after = run
            .rate_limited
            .map(|d| if d.is_zero() { class.interval } else { d });
        let top = content.top().0;
        let manifest_pushed = run.manifests_pushed.iter().any(|m| &m.digest == top);
        RunReport {
            trace_id: run.trace_id,
            target: self.target.name.clone(),
            size_class: class.name.clone(),
            upload_mode: class.upload.as_str(),
            registry: self.target.registry.to_string(),
            repository: self.target.repository.clone(),
            tag: pushed.then_some(tag),
            manifest_digest: manifest_pushed.then(|| top.to_string()),
            success,
            cleanup_failed,
            confirmation: false,
            started_at,
            duration_seconds: started.elapsed(),
            steps,
            retry_after,
            propagation: run.propagation,
            mount: run.mount,
            canaries,
            left_behind: run.left_behind,
            referrers: run.referrers,
        }
    }

    /// The tag a run of size class `class` pushes under: its own, or in rotate mode the next of
    /// the class's rotating tags.
    fn tag_for(&self, class: usize, seed: u64) -> String {
        match self.target.cleanup.mode {
            CleanupMode::Rotate { tags } if self.target.cleanup.enabled => {
                let turn = self.turns[class].fetch_add(1, Ordering::Relaxed);
                let name = &self.target.sizes[class].name;
                tags::rotating_tag(&self.target.instance, name, turn % u64::from(tags))
            }
            _ => tags::run_tag(&self.target.instance, seed),
        }
    }

    /// The report of a run cut at its hard limit `limit`: the steps it finished and, failed,
    /// the one it was in. The cut run never reached its cleanup: the upload sessions it had
    /// open are left to the next sweep.
    pub fn cut_report(
        &self,
        class: usize,
        started_at: SystemTime,
        limit: std::time::Duration,
        watch: &Watch,
    ) -> RunReport {
        self.keep_leftovers(watch.take_open_sessions());
        let t = &self.target;
        RunReport {
            trace_id: RunReport::new_trace_id(),
            target: t.name.clone(),
            size_class: t.sizes[class.min(t.sizes.len() - 1)].name.clone(),
            upload_mode: t.sizes[class.min(t.sizes.len() - 1)].upload.as_str(),
            registry: t.registry.to_string(),
            repository: t.repository.clone(),
            tag: None,
            manifest_digest: None,
            success: false,
            cleanup_failed: false,
            confirmation: false,
            started_at,
            duration_seconds: limit,
            steps: watch.cut_steps(limit),
            retry_after: None,
            propagation: Vec::new(),
            mount: None,
            canaries: None,
            left_behind: None,
            referrers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn prober(cleanup: &str) -> Prober {
        probing("t", "https://r.example", "p", &format!("    sizes:\n      - {{class: small, layer_sizes: [4KiB]}}\n      - {{class: big, layer_sizes: [1MiB]}}\n    cleanup: {cleanup}\n"))
    }

    fn probing(name: &str, registry: &str, repository: &str, rest: &str) -> Prober {
        let yaml = format!(
            "targets:\n  - name: {name}\n    registry: {registry}\n    repository: {repository}\n{rest}"
        );
        let config = RawConfig::from_yaml(&yaml)
            .expect("parses")
            .validate()
            .expect("valid");
        Prober::new(config.targets.into_iter().next().expect("a target"))
    }

    #[test]
    fn a_run_cut_at_its_hard_limit_leaves_its_open_sessions_to_the_sweep() {
        let p = prober("{mode: delete}");
        let url = |n: u32| {
            url::Url::parse(&format!(
                "https://r.example/v2/p/blobs/uploads/{n}?_state=x"
            ))
            .expect("url")
        };
        let watch = Watch::default();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut run = run::Run::new(&p, &p.target.sizes[0], deadline, &watch);
        run.sessions.push(run::Session::new(url(1), true));
        run.sessions.push(run::Session::new(url(2), false));
        // The step the run is cut in began with session 2 open; the run never reaches cleanup.
        let origin = run.origin();
        let _call = run.begin(Step::UploadBlob, origin, "layer 1");
        drop(run);
        let report = p.cut_report(
            0,
            SystemTime::now(),
            std::time::Duration::from_secs(75),
            &watch,
        );
        assert!(!report.success);
        assert_eq!(
            p.leftovers(),
            [url(2)],
            "the completed session is not swept"
        );
    }

    #[test]
    fn a_reloaded_target_inherits_the_sessions_left_to_cancel_and_another_does_not() {
        let session = |n: u32| {
            url::Url::parse(&format!(
                "https://r.example/v2/p/blobs/uploads/{n}?_state=x"
            ))
            .expect("url")
        };
        let old = probing("t", "https://r.example", "p", "");
        old.keep_leftovers([session(1), session(2)]);
        // Other settings changed by the reload: still the same target.
        let next = probing("t", "https://r.example", "p", "    image: {layers: 3}\n");
        old.hand_over_leftovers(&next);
        assert_eq!(next.leftovers(), [session(1), session(2)]);
        assert!(old.leftovers().is_empty(), "handed over, not copied");
        for other in [
            probing("u", "https://r.example", "p", ""),
            probing("t", "https://other.example", "p", ""),
            probing("t", "https://r.example", "q", ""),
        ] {
            next.hand_over_leftovers(&other);
            assert!(other.leftovers().is_empty(), "{}", other.target().name);
            assert_eq!(next.leftovers().len(), 2);
        }
    }

    #[test]
    fn rotate_mode_takes_each_classs_tags_in_turn() {
        let p = prober("{mode: rotate, rotate_tags: 2}");
        let small: Vec<String> = (0..3).map(|seed| p.tag_for(0, seed)).collect();
        assert_eq!(
            small,
            [
                "registry-prober-default-small-rotating-0",
                "registry-prober-default-small-rotating-1",
                "registry-prober-default-small-rotating-0"
            ]
        );
        assert_eq!(p.tag_for(1, 0), "registry-prober-default-big-rotating-0");
    }

    #[test]
    fn delete_mode_tags_every_run_uniquely() {
        let p = prober("{mode: delete}");
        assert_ne!(p.tag_for(0, 1), p.tag_for(0, 2));
        assert!(tags::parse_run_tag(&p.tag_for(0, 1)).is_some());
    }
}
