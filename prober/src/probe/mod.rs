//! One probe run of one target: generate a fresh image, push it, pull it back and verify every
//! blob, pull the golden images, then clean up. A registry failure is an outcome, never an `Err`.

mod canary;
mod cleanup;
mod hygiene;
mod mount;
mod propagation;
mod pull;
mod push;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{Propagation, SizeClass, Target, ORIGIN};
use crate::http::transport::{Resolve, SystemResolver, Transport};
use crate::http::{tls, Client, Transcript};
use crate::oci::image::Image;
use crate::outcome::{
    Failure, HttpRecord, MountOutcome, PropagationReport, Reason, RunReport, Step, StepReport,
};

/// Prefix of every tag the prober pushes, so its leftovers can be told from anything else.
pub const TAG_PREFIX: &str = "registry-prober-";

/// Everything needed to probe one target, kept across runs (connections and tokens are reused,
/// canaries and leftovers remembered).
pub struct Prober {
    target: Target,
    /// The origin (where pushes go) first, then every configured pull path.
    endpoints: Vec<Endpoint>,
    canaries: Mutex<canary::Book>,
    /// Upload sessions whose cancel failed: the next sweep tries again.
    leftover_sessions: Mutex<Vec<url::Url>>,
}

/// One endpoint the target is reached through, with its own client (and connection pool).
struct Endpoint {
    name: String,
    client: Client,
    propagation: Option<Propagation>,
}

/// A manifest the run PUT; `stored` once the registry answered 201 (until then a 404 on its
/// DELETE means it never arrived, which is not a cleanup failure).
#[derive(Clone, Debug)]
struct PushedManifest {
    digest: crate::oci::digest::Digest,
    stored: bool,
}

/// An upload session the run opened; cleanup cancels the ones that never completed.
#[derive(Debug)]
struct Session {
    url: url::Url,
    completed: bool,
}

/// The state of one run: the step reports so far and what cleanup must undo.
struct Run<'a> {
    prober: &'a Prober,
    class: &'a SizeClass,
    /// The endpoint the next steps talk to (an index into `Prober::endpoints`).
    endpoint: usize,
    /// Logged with every failed step, so a log line leads to the run's trace.
    trace_id: String,
    deadline: Instant,
    steps: Vec<StepReport>,
    sessions: Vec<Session>,
    /// Blobs this run uploaded (cleanup deletes them).
    uploaded: Vec<crate::oci::digest::Digest>,
    /// Every manifest whose PUT was attempted (cleanup deletes them).
    manifests_pushed: Vec<PushedManifest>,
    /// When the manifest PUT succeeded (propagation delays are measured from here).
    manifest_stored_at: Option<Instant>,
    /// The blob mounted into the mount repository (cleanup deletes the link).
    mounted: Option<crate::oci::digest::Digest>,
    mount: Option<MountOutcome>,
    propagation: Vec<PropagationReport>,
    /// The longest Retry-After of a rate-limited answer; once set, the run sends nothing more
    /// than its cleanup.
    rate_limited: Option<Duration>,
}

impl Prober {
    /// Closes the idle connections of every path (tokens stay cached).
    pub fn close_idle_connections(&self) {
        for endpoint in &self.endpoints {
            endpoint.client.close_idle_connections();
        }
    }

    pub fn new(target: Target) -> Result<Prober, tls::TlsConfigError> {
        Self::with_resolver(target, Arc::new(SystemResolver))
    }

    /// A prober whose DNS lookups go through `resolver` (tests add delay or failures here).
    pub fn with_resolver(
        target: Target,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Prober, tls::TlsConfigError> {
        let origin_tls = tls::client_config(&target.tls)?;
        let origin = Endpoint {
            name: ORIGIN.to_string(),
            client: Client::new(
                Arc::new(Transport::new(origin_tls, resolver.clone())),
                target.registry.clone(),
                &target.repository,
                target.credentials.clone(),
            ),
            propagation: None,
        };
        let mut endpoints = vec![origin];
        for path in &target.paths {
            let tls = tls::client_config(&path.tls)?;
            endpoints.push(Endpoint {
                name: path.name.clone(),
                client: Client::new(
                    Arc::new(Transport::new(tls, resolver.clone())),
                    path.registry.clone(),
                    &path.repository,
                    path.credentials.clone(),
                ),
                propagation: path.propagation,
            });
        }
        Ok(Prober {
            target,
            endpoints,
            canaries: Mutex::new(canary::Book::default()),
            leftover_sessions: Mutex::new(Vec::new()),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs one cycle of the first size class with a fresh random image.
    pub async fn run(&self) -> RunReport {
        self.run_class(0, rand::random()).await
    }

    /// Runs one cycle of the first size class; the image is a pure function of `seed`.
    pub async fn run_with_seed(&self, seed: u64) -> RunReport {
        self.run_class(0, seed).await
    }

    /// Runs one cycle of size class `class` (an index into `target.sizes`): push a fresh
    /// image, mount a blob, pull it back through every path; the first class also checks
    /// golden images and canaries; then clean up.
    pub async fn run_class(&self, class: usize, seed: u64) -> RunReport {
        let index = class.min(self.target.sizes.len() - 1);
        let first_class = index == 0;
        let class = &self.target.sizes[index];
        let started_at = SystemTime::now();
        let started = Instant::now();
        let mut run = Run::new(self, class, started + class.timeout);
        let tag = run_tag(&self.target.instance, seed);
        let sizes = class.layer_sizes.clone();
        let manifest_type = self.target.manifest_type;
        // Hashing a large layer takes a while (1 GiB ~ 0.6 s): off the async workers.
        let image =
            tokio::task::spawn_blocking(move || Image::generate(seed, &sizes, manifest_type))
                .await
                .expect("image generation does not panic");

        let pushed = run.push_image(&image, &tag).await.is_ok();
        if pushed && self.target.mount.is_some() && run.may_continue() {
            let _ = run.mount_blob(&image).await;
        }
        if pushed {
            // Replicated paths first, right after the push, so their delay is measured from it.
            let mut propagated = vec![true; self.endpoints.len()];
            for (endpoint, ok) in propagated.iter_mut().enumerate() {
                run.endpoint = endpoint;
                if run.may_continue() {
                    *ok = run.wait_propagation(&image, &tag).await.is_ok();
                }
            }
            for (endpoint, ok) in propagated.into_iter().enumerate() {
                run.endpoint = endpoint;
                if ok && run.may_continue() {
                    let _ = run.pull_image(&image, &tag).await;
                }
            }
        }
        let mut canaries = None;
        if first_class {
            for endpoint in 0..self.endpoints.len() {
                run.endpoint = endpoint;
                for golden in &self.target.golden_images {
                    if run.may_continue() {
                        let _ = run.pull_golden(golden).await;
                    }
                }
            }
            if let Some(config) = &self.target.canaries {
                canaries = Some(run.check_canaries(config).await);
            }
        }
        run.endpoint = 0;
        if self.target.cleanup.enabled {
            run.cleanup(&image).await;
        } else {
            run.cancel_open_sessions().await;
        }
        run.remember_open_sessions();

        let cleanup_failed = run.steps.iter().any(|s| s.step.is_cleanup() && !s.success);
        let success = run.steps.iter().all(|s| s.success);
        // The registry's Retry-After, or one interval when it named none.
        let retry_after = run
            .rate_limited
            .map(|d| if d.is_zero() { class.interval } else { d });
        RunReport {
            trace_id: run.trace_id,
            target: self.target.name.clone(),
            size_class: class.name.clone(),
            registry: self.target.registry.to_string(),
            repository: self.target.repository.clone(),
            tag: pushed.then_some(tag),
            manifest_digest: run
                .manifests_pushed
                .iter()
                .any(|m| m.digest == image.manifest_digest)
                .then(|| image.manifest_digest.to_string()),
            success,
            cleanup_failed,
            started_at,
            duration_seconds: started.elapsed(),
            steps: run.steps,
            retry_after,
            propagation: run.propagation,
            mount: run.mount,
            canaries,
        }
    }
}

impl<'a> Run<'a> {
    fn new(prober: &'a Prober, class: &'a SizeClass, deadline: Instant) -> Run<'a> {
        Run {
            prober,
            trace_id: RunReport::new_trace_id(),
            class,
            endpoint: 0,
            deadline,
            steps: Vec::new(),
            sessions: Vec::new(),
            uploaded: Vec::new(),
            manifests_pushed: Vec::new(),
            manifest_stored_at: None,
            mounted: None,
            mount: None,
            propagation: Vec::new(),
            rate_limited: None,
        }
    }

    fn target(&self) -> &'a Target {
        &self.prober.target
    }

    /// The client of the endpoint the run is on.
    fn client(&self) -> &'a Client {
        &self.prober.endpoints[self.endpoint].client
    }

    fn endpoint(&self) -> &'a Endpoint {
        &self.prober.endpoints[self.endpoint]
    }

    /// False once the registry rate-limited the run: nothing but cleanup is sent after that.
    fn may_continue(&self) -> bool {
        self.rate_limited.is_none()
    }

    /// Runs one step under its deadline (the step timeout, cut at the run deadline) and records
    /// it with its transcript. Token fetches made on its behalf are recorded before it.
    async fn step<T, F, Fut>(
        &mut self,
        step: Step,
        subject: impl Into<String>,
        f: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(Instant, Transcript) -> Fut,
        Fut: Future<Output = (Result<T, Failure>, Transcript)>,
    {
        let timeout = self.target().step_timeout;
        let deadline = (Instant::now() + timeout).min(self.deadline);
        self.step_until(step, subject, deadline, f).await
    }

    async fn step_until<T, F, Fut>(
        &mut self,
        step: Step,
        subject: impl Into<String>,
        deadline: Instant,
        f: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(Instant, Transcript) -> Fut,
        Fut: Future<Output = (Result<T, Failure>, Transcript)>,
    {
        let subject = subject.into();
        let started = Instant::now();
        let started_at = SystemTime::now();
        let (result, transcript) =
            match tokio::time::timeout_at(deadline, f(deadline, Transcript::default())).await {
                Ok(done) => done,
                // The client checks the deadline at every phase; this outer bound only fires if
                // something awaited without one, so nothing can hang a run.
                Err(_) => (
                    Err(Failure::new(
                        Reason::Timeout,
                        format!(
                            "{step} ({subject}): deadline of {:?} passed",
                            deadline.saturating_duration_since(started)
                        ),
                    )),
                    Transcript::default(),
                ),
            };
        let Transcript {
            requests,
            token_steps,
        } = transcript;
        let path = self.endpoint().name.clone();
        self.steps.extend(token_steps.into_iter().map(|mut t| {
            t.path.clone_from(&path);
            t
        }));
        if let Some(wait) = rate_limit_wait(&requests, result.as_ref().err()) {
            self.rate_limited = Some(self.rate_limited.map_or(wait, |w| w.max(wait)));
        }
        let (sent, received) = requests
            .iter()
            .fold((0, 0), |(s, r), h| (s + h.bytes_sent, r + h.bytes_received));
        let failure = result.as_ref().err();
        if let Some(f) = failure {
            tracing::warn!(
                target_name = %self.target().name,
                path = %path,
                trace_id = %self.trace_id,
                step = step.as_str(),
                subject = %subject,
                reason = f.reason.as_str(),
                status = f.status,
                registry_code = f.registry_code.as_deref(),
                error = %f.message,
                "Step failed"
            );
        }
        self.steps.push(StepReport {
            step,
            path,
            subject,
            success: failure.is_none(),
            started_at,
            duration_seconds: started.elapsed(),
            reason: failure.map(|f| f.reason),
            error: failure.map(|f| f.message.clone()),
            status: failure.and_then(|f| f.status),
            registry_code: failure.and_then(|f| f.registry_code.clone()),
            bytes_sent: sent,
            bytes_received: received,
            requests,
        });
        result
    }
}

/// `registry-prober-<instance>-<unix seconds>-<8 hex of the seed>`: unique per run, sortable
/// by age, and naming the prober instance that pushed it (hygiene sweeps only its own).
fn run_tag(instance: &str, seed: u64) -> String {
    format!("{TAG_PREFIX}{instance}-{}-{:08x}", unix_now(), seed as u32)
}

/// A run tag's parts: (instance, unix seconds). Canary tags and foreign tags are None.
pub fn parse_run_tag(tag: &str) -> Option<(&str, u64)> {
    let rest = tag.strip_prefix(TAG_PREFIX)?;
    let mut parts = rest.split('-');
    let (instance, secs, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((instance, secs.parse().ok()?))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When a step was rate limited (429 or TOOMANYREQUESTS), how long the registry asked us to
/// wait: its Retry-After in seconds, or zero when it named none (the run then waits one
/// interval).
fn rate_limit_wait(requests: &[HttpRecord], failure: Option<&Failure>) -> Option<Duration> {
    let limited = failure.is_some_and(|f| f.reason == Reason::RateLimited)
        || requests.iter().any(|r| r.status == Some(429));
    if !limited {
        return None;
    }
    let asked = requests
        .iter()
        .flat_map(|r| &r.rate_limit)
        .filter(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Some(Duration::from_secs(asked.min(24 * 3600)))
}

/// The deadline of one cleanup step: its own, so cleanup runs even after the run deadline.
fn cleanup_deadline(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_valid_and_carry_the_prefix_and_the_instance() {
        let t = run_tag("eu1", 0xdead_beef_0102_0304);
        assert!(t.starts_with("registry-prober-eu1-"), "{t}");
        assert!(t.ends_with("-01020304"), "{t}");
        assert!(t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let (instance, secs) = parse_run_tag(&t).expect("parses");
        assert_eq!(instance, "eu1");
        assert!(secs > 1_700_000_000);
    }

    #[test]
    fn only_run_tags_parse_as_run_tags() {
        assert_eq!(
            parse_run_tag("registry-prober-default-1700000000-0a0b0c0d"),
            Some(("default", 1_700_000_000))
        );
        for other in [
            "registry-prober-default-canary-1700000000-0011223344556677",
            "registry-prober-1700000000-0a0b0c0d",
            "latest",
            "registry-prober-default-1700000000-xyz",
        ] {
            assert_eq!(parse_run_tag(other), None, "{other}");
        }
    }

    #[test]
    fn a_rate_limited_step_waits_what_retry_after_asks() {
        let record = |status, retry: Option<&str>| HttpRecord {
            status: Some(status),
            rate_limit: retry
                .map(|r| vec![("Retry-After".to_string(), r.to_string())])
                .unwrap_or_default(),
            ..Default::default()
        };
        assert_eq!(rate_limit_wait(&[record(200, None)], None), None);
        assert_eq!(
            rate_limit_wait(&[record(429, Some("7"))], None),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(&[record(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"))], None),
            Some(Duration::ZERO)
        );
    }
}
