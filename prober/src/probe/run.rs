//! A run in progress and the one shape every step has:
//! `step!(run, Step::X, endpoint, subject, |call| async { ... })`. The step owns the deadline
//! (the step timeout cut at the run's, cleanup's own, or the path's propagation timeout), the
//! transcript of the step's exchanges and the token fetches made for it; its body only sends
//! and checks, through `call`.
//!
//! A macro rather than a method taking an async closure: a closure whose future borrows its
//! `&mut Call` argument makes the run's future fail rustc's `Send` check (a higher-ranked
//! lifetime the compiler cannot prove general enough), and runs are spawned on the runtime.

/// Runs one step of `run` against `endpoint` under the step's deadline, the body an async block
/// that talks through `call`; evaluates to the body's `Result`, after the step was recorded
/// with its transcript (and the token fetches made for it, as `token` steps before it).
macro_rules! step {
    ($run:expr, $step:expr, $endpoint:expr, $subject:expr, |$call:ident| $body:expr) => {{
        let mut call = $run.begin($step, $endpoint, $subject);
        let bound = call.bound();
        let result = {
            let $call = &mut call;
            bound.wait($body).await
        };
        $run.finish(call, result)
    }};
}
pub(super) use step;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use tokio::time::Instant;
use url::Url;

use super::artifact::PushedArtifact;
use super::verify;
use super::watch::Watch;
use super::{inflate, Prober};
use crate::config::{Propagation, SizeClass, Target};
use crate::http::{BodyLimit, Client, Request, Response, TokenFetch, Transcript};
use crate::oci::digest::{Digest, Verifier};
use crate::oci::unpack::LayerCheck;
use crate::outcome::{
    DeviationKind, Failure, HttpRecord, LeftBehind, MountOutcome, PropagationReport, Reason,
    ReferrersReport, RunReport, Step, StepReport,
};

/// One endpoint a target is reached through, with its own client (and connection pool).
pub(super) struct Endpoint {
    pub(super) name: String,
    pub(super) client: Client,
    pub(super) propagation: Option<Propagation>,
}

/// An upload session the run opened; cleanup cancels the ones that never completed.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) url: Url,
    pub(super) completed: bool,
    /// The registry refuses this URL as stale (it holds bytes the URL's state does not account
    /// for): no cancel through it can work, so no sweep retries it.
    pub(super) unreachable: bool,
}

impl Session {
    pub(super) fn new(url: Url, completed: bool) -> Session {
        Session {
            url,
            completed,
            unreachable: false,
        }
    }
}

/// A manifest the run PUT; `stored` once the registry answered 201 (until then a 404 on its
/// DELETE means it never arrived, which is not a cleanup failure).
#[derive(Clone, Debug)]
pub(super) struct PushedManifest {
    pub(super) digest: Digest,
    pub(super) stored: bool,
    /// What cleanup calls it: "manifest" (the tagged image), "index", "linux/arm64 manifest",
    /// "artifact".
    pub(super) label: String,
}

/// What a step body talks through: its endpoint's client, its deadline, its transcript.
pub(super) struct Call<'a> {
    endpoint: &'a Endpoint,
    deadline: Instant,
    tr: Transcript,
    step: Step,
    subject: String,
    started: Instant,
    started_at: SystemTime,
}

/// A step's outer bound: past the step's deadline its body fails as a timeout. Every exchange
/// checks the deadline at every phase; this bound only fires if something awaited without one,
/// so nothing can hang a run.
pub(super) struct Bound {
    deadline: Instant,
    started: Instant,
    step: Step,
    subject: String,
}

impl Bound {
    pub(super) async fn wait<T>(
        self,
        body: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout_at(self.deadline, body).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!(
                    "{} ({}): deadline of {:?} passed",
                    self.step,
                    self.subject,
                    self.deadline.saturating_duration_since(self.started)
                ),
            )),
        }
    }
}

impl<'a> Call<'a> {
    /// The step's outer bound, taken before its body borrows the call.
    pub(super) fn bound(&self) -> Bound {
        Bound {
            deadline: self.deadline,
            started: self.started,
            step: self.step,
            subject: self.subject.clone(),
        }
    }

    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Ends every exchange from now on at `deadline` (earlier than the step's).
    pub(super) fn narrow(&mut self, deadline: Instant) {
        self.deadline = self.deadline.min(deadline);
    }

    /// `<endpoint>/v2/<its repository>/<rest>`.
    pub(super) fn url(&self, rest: &str) -> Result<Url, Failure> {
        let client = &self.endpoint.client;
        client.repo_url(client.repository(), rest)
    }

    /// `<endpoint>/v2/<repository>/<rest>`, for another repository of the same registry.
    pub(super) fn repo_url(&self, repository: &str, rest: &str) -> Result<Url, Failure> {
        self.endpoint.client.repo_url(repository, rest)
    }

    /// Notes a deviation from the spec that real clients tolerate (a strict target fails the
    /// step for it when the step ends).
    pub(super) fn deviate(&mut self, kind: DeviationKind, detail: impl Into<String>) {
        self.tr.deviate(kind, detail);
    }

    /// GET /v2/ on the endpoint, learning how it wants to be authenticated.
    pub(super) async fn ping(&mut self) -> Result<(), Failure> {
        self.endpoint.client.ping(self.deadline, &mut self.tr).await
    }

    pub(super) async fn send(&mut self, req: &Request) -> Result<Response, Failure> {
        self.endpoint
            .client
            .send(req, self.deadline, &mut self.tr)
            .await
    }

    /// The response, unless its status is not one of `expected` (`not_found`: what a bare 404
    /// means here).
    pub(super) async fn expect(
        &mut self,
        resp: Response,
        expected: &[StatusCode],
        not_found: Reason,
    ) -> Result<Response, Failure> {
        resp.expect(expected, not_found, self.deadline, &mut self.tr)
            .await
    }

    /// `send`, then `expect` the status the spec gives, tolerating `tolerated` (e.g. 200 where
    /// 201 is specified) as a deviation.
    pub(super) async fn fetch_spec(
        &mut self,
        req: &Request,
        specified: StatusCode,
        tolerated: &[StatusCode],
        not_found: Reason,
    ) -> Result<Response, Failure> {
        let resp = self.send(req).await?;
        if tolerated.contains(&resp.status) {
            self.deviate(
                DeviationKind::UnexpectedStatus,
                format!(
                    "{} {}: {} where the spec gives {specified}",
                    resp.method, resp.url, resp.status
                ),
            );
            return Ok(resp);
        }
        // A failure names what the spec gives, not what is tolerated.
        self.expect(resp, &[specified], not_found).await
    }

    /// Notes what `check` found tolerable.
    pub(super) fn tolerate(&mut self, found: Option<verify::Tolerated>) {
        if let Some((kind, detail)) = found {
            self.deviate(kind, detail);
        }
    }

    /// `send`, then `expect`.
    pub(super) async fn fetch(
        &mut self,
        req: &Request,
        expected: &[StatusCode],
        not_found: Reason,
    ) -> Result<Response, Failure> {
        let resp = self.send(req).await?;
        self.expect(resp, expected, not_found).await
    }

    pub(super) async fn discard(&mut self, resp: Response) -> Result<(), Failure> {
        resp.discard(self.deadline, &mut self.tr).await
    }

    pub(super) async fn read_body(
        &mut self,
        resp: Response,
        limit: BodyLimit,
    ) -> Result<Bytes, Failure> {
        resp.read_body(limit, self.deadline, &mut self.tr).await
    }

    /// Streams the body through `verifier` (sha256 and length) and, for a layer checked
    /// against its DiffID, `layer`, without buffering it; stops reading at the first byte more
    /// than expected.
    pub(super) async fn verify_body(
        &mut self,
        resp: Response,
        verifier: Verifier,
        layer: Option<LayerCheck>,
        expected_len: u64,
    ) -> Result<u64, Failure> {
        inflate::verify_stream(
            resp,
            self.deadline,
            &mut self.tr,
            verifier,
            layer,
            expected_len,
        )
        .await
    }

    /// Streams a small blob through `verifier`, keeping its bytes when at most `keep`.
    pub(super) async fn verify_keep(
        &mut self,
        resp: Response,
        verifier: Verifier,
        keep: usize,
    ) -> Result<Option<Bytes>, Failure> {
        inflate::verify_keep(resp, self.deadline, &mut self.tr, verifier, keep).await
    }
}

/// The state of one run: what it pushed and must undo, and where its steps go.
pub(super) struct Run<'a> {
    pub(super) prober: &'a Prober,
    pub(super) class: &'a SizeClass,
    /// Logged with every failed step, so a log line leads to the run's trace.
    pub(super) trace_id: String,
    pub(super) deadline: Instant,
    watch: &'a Watch,
    pub(super) sessions: Vec<Session>,
    /// Blobs this run uploaded (cleanup deletes them).
    pub(super) uploaded: Vec<Digest>,
    /// Every manifest whose PUT was attempted (cleanup deletes them).
    pub(super) manifests_pushed: Vec<PushedManifest>,
    /// When the manifest PUT succeeded (propagation delays are measured from here).
    pub(super) manifest_stored_at: Option<Instant>,
    /// The blob mounted into the mount repository (cleanup deletes the link).
    pub(super) mounted: Option<Digest>,
    pub(super) mount: Option<MountOutcome>,
    pub(super) propagation: Vec<PropagationReport>,
    /// What the run leaves on the registry knowingly (rotate mode, or DELETE refused).
    pub(super) left_behind: Option<LeftBehind>,
    /// Per endpoint (in the prober's order), whether its ping failed: its steps are skipped.
    down: Vec<bool>,
    /// The longest Retry-After of a rate-limited answer; once set, the run sends nothing more
    /// than its cleanup.
    pub(super) rate_limited: Option<Duration>,
    /// The artifact this run pushed about its image (cleanup takes it out of the referrers).
    pub(super) artifact: Option<PushedArtifact>,
    /// How each path served the referrers looked up.
    pub(super) referrers: Vec<ReferrersReport>,
    /// Set once cleanup starts: every step from then on has the cleanup deadline.
    pub(super) cleaning: bool,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        prober: &'a Prober,
        class: &'a SizeClass,
        deadline: Instant,
        watch: &'a Watch,
    ) -> Run<'a> {
        Run {
            prober,
            class,
            trace_id: RunReport::new_trace_id(),
            deadline,
            watch,
            sessions: Vec::new(),
            uploaded: Vec::new(),
            manifests_pushed: Vec::new(),
            manifest_stored_at: None,
            mounted: None,
            mount: None,
            propagation: Vec::new(),
            left_behind: None,
            down: vec![false; prober.endpoints.len()],
            rate_limited: None,
            artifact: None,
            referrers: Vec::new(),
            cleaning: false,
        }
    }

    pub(super) fn target(&self) -> &'a Target {
        &self.prober.target
    }

    /// The target's own endpoint, where pushes and cleanup go.
    pub(super) fn origin(&self) -> &'a Endpoint {
        &self.prober.endpoints[0]
    }

    /// The origin, then every configured pull path, but for those whose ping failed.
    pub(super) fn endpoints(&self) -> Vec<&'a Endpoint> {
        let all: &'a [Endpoint] = &self.prober.endpoints;
        all.iter()
            .zip(&self.down)
            .filter(|(_, down)| !**down)
            .map(|(endpoint, _)| endpoint)
            .collect()
    }

    /// Pings every endpoint, as docker does before its first request to a registry; one that
    /// does not answer as a registry is left out of the rest of the run. False when the origin
    /// is down.
    pub(super) async fn ping_all(&mut self) -> bool {
        let all: &'a [Endpoint] = &self.prober.endpoints;
        for (i, endpoint) in all.iter().enumerate() {
            let up = step!(self, Step::Ping, endpoint, "/v2/", |call| async {
                call.ping().await
            });
            self.down[i] = up.is_err();
        }
        !self.down[0]
    }

    /// False once the registry rate-limited the run: nothing but cleanup is sent after that.
    pub(super) fn may_continue(&self) -> bool {
        self.rate_limited.is_none()
    }

    /// The steps, taken at the end of the run.
    pub(super) fn take_steps(&mut self) -> Vec<StepReport> {
        self.watch.take_steps()
    }

    /// When a step must end: cleanup steps (and every step once cleanup started, such as
    /// taking an artifact out of a referrers tag) have their own deadline, so they still run
    /// after the run's; a replicated path's wait has the path's propagation timeout; every
    /// other step has the step timeout. All but cleanup are cut at the run's deadline.
    fn deadline_of(&self, step: Step, endpoint: &Endpoint) -> Instant {
        let now = Instant::now();
        if step.is_cleanup() || self.cleaning {
            return now + self.target().cleanup_timeout;
        }
        let timeout = match (step, endpoint.propagation) {
            (Step::WaitPropagation, Some(p)) => p.timeout,
            _ => self.target().step_timeout,
        };
        (now + timeout).min(self.deadline)
    }

    /// Starts a step against `endpoint` (see `step!`): its deadline, and the watch told.
    pub(super) fn begin(
        &mut self,
        step: Step,
        endpoint: &'a Endpoint,
        subject: impl Into<String>,
    ) -> Call<'a> {
        let subject = subject.into();
        let started_at = SystemTime::now();
        let open = self.open_session_urls();
        self.watch
            .started(step, &endpoint.name, &subject, started_at, open);
        Call {
            endpoint,
            deadline: self.deadline_of(step, endpoint),
            tr: Transcript::default(),
            step,
            subject,
            started: Instant::now(),
            started_at,
        }
    }

    /// Ends a step (see `step!`): records it with its transcript, the token fetches made for it
    /// first, notes a rate limit, logs a failure, and hands the result back.
    pub(super) fn finish<T>(
        &mut self,
        call: Call<'a>,
        result: Result<T, Failure>,
    ) -> Result<T, Failure> {
        let Call {
            endpoint,
            tr,
            step,
            subject,
            started,
            started_at,
            ..
        } = call;
        let Transcript {
            requests,
            token_fetches,
            deviations,
        } = tr;
        // On a strict target a tolerated deviation fails the step that met it.
        let result = match (result, deviations.first()) {
            (Ok(_), Some(d)) if self.target().strict => Err(Failure::new(
                Reason::Protocol,
                format!(
                    "{} (a deviation from the distribution spec; the target is strict)",
                    d.detail
                ),
            )),
            (result, _) => result,
        };
        if let Some(wait) = rate_limit_wait(&requests, result.as_ref().err()) {
            self.rate_limited = Some(self.rate_limited.map_or(wait, |w| w.max(wait)));
        }
        if let Err(f) = &result {
            tracing::warn!(
                target_name = %self.target().name,
                path = %endpoint.name,
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
        let mut report = StepReport::new(
            step,
            endpoint.name.clone(),
            subject,
            started_at,
            started.elapsed(),
            result.as_ref().map(|_| ()),
            requests,
        );
        report.deviations = deviations;
        let tokens = token_fetches
            .into_iter()
            .map(|fetch| token_step(fetch, &endpoint.name));
        self.watch.finished(tokens, report);
        result
    }

    /// A failure found between steps (a manifest that names an invalid digest): it belongs to
    /// the step that produced the manifest, which is the last one recorded.
    pub(super) fn note_failure(&mut self, f: Failure) -> Failure {
        match self.watch.step_count().checked_sub(1) {
            Some(index) => self.note_failure_at(index, f),
            None => f,
        }
    }

    /// The index the next recorded step will have (one past the last: for `note_failure_at`).
    pub(super) fn next_step_index(&self) -> usize {
        self.watch.step_count()
    }

    /// A failure found later about what step `index` produced (a canary's manifest, known to
    /// be replaced only once its config was read).
    pub(super) fn note_failure_at(&mut self, index: usize, f: Failure) -> Failure {
        self.watch.fail_step(index, &f);
        f
    }
}

/// A token fetch as the `token` step it is reported as.
fn token_step(fetch: TokenFetch, path: &str) -> StepReport {
    StepReport::new(
        Step::Token,
        path.to_string(),
        fetch.scope,
        fetch.started_at,
        fetch.duration,
        fetch.result.as_ref().map(|_| ()),
        fetch.requests,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

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
