//! One probe run of one target: generate a fresh image, push it, pull it back and verify every
//! blob, pull the golden images, then clean up. A registry failure is an outcome, never an `Err`.

pub mod image;
pub mod outcome;

mod cleanup;
mod pull;
mod push;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::client::transport::{Resolve, SystemResolver, Transport};
use crate::client::{tls, Client, Transcript};
use crate::config::Target;
use image::Image;
use outcome::{Failure, Reason, RunReport, Step, StepReport};

/// Prefix of every tag the prober pushes, so its leftovers can be told from anything else.
pub const TAG_PREFIX: &str = "registry-prober-";

/// Everything needed to probe one target, kept across runs (connections and tokens are reused).
pub struct Prober {
    target: Target,
    client: Client,
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
    /// Logged with every failed step, so a log line leads to the run's trace.
    trace_id: String,
    deadline: Instant,
    steps: Vec<StepReport>,
    sessions: Vec<Session>,
    /// Blobs this run uploaded (cleanup deletes them).
    uploaded: Vec<crate::verify::Digest>,
    /// The manifest digest, once a manifest PUT was attempted (cleanup deletes it).
    manifest_pushed: Option<crate::verify::Digest>,
}

impl Prober {
    pub fn new(target: Target) -> Result<Prober, tls::TlsConfigError> {
        Self::with_resolver(target, Arc::new(SystemResolver))
    }

    /// A prober whose DNS lookups go through `resolver` (tests add delay or failures here).
    pub fn with_resolver(
        target: Target,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Prober, tls::TlsConfigError> {
        let tls = tls::client_config(&target.tls)?;
        let transport = Arc::new(Transport::new(tls, resolver));
        let client = Client::new(
            transport,
            target.registry.clone(),
            &target.repository,
            target.credentials.clone(),
        );
        Ok(Prober { target, client })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs one cycle with a fresh random image.
    pub async fn run(&self) -> RunReport {
        self.run_with_seed(rand::random()).await
    }

    /// Runs one cycle; the image is a pure function of `seed`.
    pub async fn run_with_seed(&self, seed: u64) -> RunReport {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let mut run = Run {
            prober: self,
            trace_id: RunReport::new_trace_id(),
            deadline: started + self.target.timeout,
            steps: Vec::new(),
            sessions: Vec::new(),
            uploaded: Vec::new(),
            manifest_pushed: None,
        };
        let tag = unique_tag(seed);
        let sizes = self.target.layer_sizes.clone();
        let manifest_type = self.target.manifest_type;
        // Hashing a large layer takes a while (1 GiB ~ 0.6 s): off the async workers.
        let image =
            tokio::task::spawn_blocking(move || Image::generate(seed, &sizes, manifest_type))
                .await
                .expect("image generation does not panic");

        let pushed = run.push_image(&image, &tag).await.is_ok();
        if pushed {
            let _ = run.pull_image(&image, &tag).await;
        }
        for golden in &self.target.golden_images {
            let _ = run.pull_golden(golden).await;
        }
        if self.target.cleanup.enabled {
            run.cleanup(&image).await;
        } else {
            run.cancel_open_sessions().await;
        }

        let cleanup_failed = run.steps.iter().any(|s| s.step.is_cleanup() && !s.success);
        let success = run.steps.iter().all(|s| s.success);
        RunReport {
            trace_id: run.trace_id,
            target: self.target.name.clone(),
            registry: self.target.registry.to_string(),
            repository: self.target.repository.clone(),
            tag: pushed.then_some(tag),
            manifest_digest: run.manifest_pushed.as_ref().map(|d| d.to_string()),
            success,
            cleanup_failed,
            started_at,
            duration_seconds: started.elapsed(),
            steps: run.steps,
        }
    }
}

impl Run<'_> {
    fn target(&self) -> &Target {
        &self.prober.target
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
        self.steps.extend(token_steps);
        let (sent, received) = requests
            .iter()
            .fold((0, 0), |(s, r), h| (s + h.bytes_sent, r + h.bytes_received));
        let failure = result.as_ref().err();
        if let Some(f) = failure {
            tracing::warn!(
                target_name = %self.target().name,
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

/// `registry-prober-<unix seconds>-<8 hex of the seed>`: unique per run, sortable by age.
fn unique_tag(seed: u64) -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{TAG_PREFIX}{secs}-{:08x}", seed as u32)
}

/// The deadline of one cleanup step: its own, so cleanup runs even after the run deadline.
fn cleanup_deadline(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_valid_and_carry_the_prefix() {
        let t = unique_tag(0xdead_beef_0102_0304);
        assert!(t.starts_with(TAG_PREFIX));
        assert!(t.ends_with("-01020304"), "{t}");
        assert!(t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
