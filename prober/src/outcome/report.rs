//! What one run produced: each step's report with its HTTP transcript, the run's report, and
//! a hygiene sweep's.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::labels::{DeviationKind, Reason, ReferrersMode, Step};

/// One deviation a step met: its kind, and what was sent and what came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deviation {
    pub kind: DeviationKind,
    pub detail: String,
}

/// One HTTP exchange (one hop of a request), as recorded in a step's transcript.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpRecord {
    /// When the request was sent (wall clock; traces place their spans with it).
    #[serde(
        serialize_with = "ser_opt_unix",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<SystemTime>,
    pub method: String,
    /// The URL with any query-string credentials (object-store signatures) redacted.
    pub url: String,
    pub status: Option<u16>,
    pub reused_connection: bool,
    pub http_version: Option<&'static str>,
    #[serde(serialize_with = "ser_opt_secs")]
    pub dns_seconds: Option<Duration>,
    #[serde(serialize_with = "ser_opt_secs")]
    pub connect_seconds: Option<Duration>,
    #[serde(serialize_with = "ser_opt_secs")]
    pub tls_seconds: Option<Duration>,
    #[serde(serialize_with = "ser_opt_secs")]
    pub first_byte_seconds: Option<Duration>,
    #[serde(serialize_with = "ser_opt_secs")]
    pub transfer_seconds: Option<Duration>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Registry error codes from the response body's error envelope.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<String>,
    /// The registry's error message(s), or the start of a non-JSON error body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Rate-limit headers as the registry sent them (RateLimit-*, X-RateLimit-*, Retry-After).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limit: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_cert_not_after_unix: Option<u64>,
    /// A transport failure on this hop (no response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A failed step: the precise reason and a message that names what failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub reason: Reason,
    /// `<METHOD> <URL>: <status>, registry error <CODE>: <message>` or expected vs actual.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_code: Option<String>,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
            status: None,
            registry_code: None,
        }
    }
}

/// One executed step.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub step: Step,
    /// The endpoint the step talked to: "origin" (the target's own) or a pull path's name.
    pub path: String,
    /// What the step acted on: "config", "layer 2", a tag, an upload session.
    pub subject: String,
    pub success: bool,
    /// When the step started (wall clock).
    #[serde(serialize_with = "ser_unix")]
    pub started_at: SystemTime,
    #[serde(serialize_with = "ser_secs")]
    pub duration_seconds: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_code: Option<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub requests: Vec<HttpRecord>,
    /// What the registry did that real clients tolerate, against the spec.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deviations: Vec<Deviation>,
}

impl StepReport {
    /// A step that ran from `started_at` for `duration` and passed, or failed with a failure.
    pub fn new(
        step: Step,
        path: String,
        subject: String,
        started_at: SystemTime,
        duration: Duration,
        result: Result<(), &Failure>,
        requests: Vec<HttpRecord>,
    ) -> StepReport {
        let (bytes_sent, bytes_received) = requests
            .iter()
            .fold((0, 0), |(s, r), h| (s + h.bytes_sent, r + h.bytes_received));
        let failure = result.err();
        StepReport {
            step,
            path,
            subject,
            success: failure.is_none(),
            started_at,
            duration_seconds: duration,
            reason: failure.map(|f| f.reason),
            error: failure.map(|f| f.message.clone()),
            status: failure.and_then(|f| f.status),
            registry_code: failure.and_then(|f| f.registry_code.clone()),
            bytes_sent,
            bytes_received,
            requests,
            deviations: Vec::new(),
        }
    }

    /// A cleanup step the registry refused (it does not allow DELETE): a known limit of the
    /// registry, reported and counted as left behind, which fails neither the run nor cleanup.
    pub fn is_refused_cleanup(&self) -> bool {
        !self.success && self.step.is_cleanup() && self.reason == Some(Reason::Unsupported)
    }

    /// The one-line error as an on-call engineer reads it: step, subject, then the failure.
    pub fn error_line(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|e| format!("{} ({}): {}", self.step, self.subject, e))
    }
}

/// The report of one probe run of one target.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// W3C trace id of the run (32 lowercase hex digits): its trace when traces are exported,
    /// and a field of its log lines, so a log line leads to the trace.
    pub trace_id: String,
    pub target: String,
    /// The size class the run pushed ("default" when the target has no size classes).
    pub size_class: String,
    /// How the run uploaded blobs: streamed, monolithic, chunked or post.
    pub upload_mode: &'static str,
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub manifest_digest: Option<String>,
    pub success: bool,
    /// True when every step other than cleanup passed but cleanup left something behind.
    pub cleanup_failed: bool,
    /// A confirmation run: started by the schedule after a failed run, to confirm the failure or
    /// clear it, rather than on the interval.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub confirmation: bool,
    #[serde(serialize_with = "ser_unix")]
    pub started_at: SystemTime,
    #[serde(serialize_with = "ser_secs")]
    pub duration_seconds: Duration,
    pub steps: Vec<StepReport>,
    /// Set when the registry rate-limited the run: how long the schedule waits before the next
    /// run (the longest Retry-After, or one interval when the registry named none).
    #[serde(
        serialize_with = "ser_opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<Duration>,
    /// How each replicated pull path's propagation wait ended (paths with a
    /// propagation_timeout only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub propagation: Vec<PropagationReport>,
    /// The cross-repository mount, when enabled and attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountOutcome>,
    /// The canaries kept, when canaries are enabled (runs of the first size class).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canaries: Option<CanarySummary>,
    /// What the run left on the registry knowingly, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_behind: Option<LeftBehind>,
    /// How each path served the referrers the run looked up (with artifacts only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<ReferrersReport>,
}

/// How a path served referrers: through the referrers API or the referrers tag schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReferrersReport {
    pub path: String,
    pub mode: ReferrersMode,
}

/// How long a replicated path took to serve a pushed image.
#[derive(Clone, Debug, Serialize)]
pub struct PropagationReport {
    pub path: String,
    /// Time from the manifest PUT until the path served the manifest; None: the deadline passed.
    #[serde(serialize_with = "ser_opt_secs")]
    pub delay_seconds: Option<Duration>,
}

/// What the registry did with a cross-repository mount request (the `outcome` label of
/// `blob_mounts`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum MountOutcome {
    /// 201 Created: the blob was linked without an upload.
    Mounted,
    /// 202 Accepted: the registry opened an upload session instead; the prober uploaded.
    Fallback,
}

impl MountOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a run left on the registry knowingly: in rotate mode its image (for the registry's
/// lifecycle policy), or what a registry that refuses DELETE kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LeftBehind {
    pub manifests: u32,
    /// The bytes of the blobs the run uploaded and did not delete.
    pub bytes: u64,
}

/// The aged canaries a target keeps.
#[derive(Clone, Debug, Serialize)]
pub struct CanarySummary {
    /// Canaries known to exist (pushed, or found in the tag list), vanished ones included.
    pub count: u32,
    /// Push time of the oldest one.
    #[serde(
        serialize_with = "ser_opt_unix",
        skip_serializing_if = "Option::is_none"
    )]
    pub oldest_pushed_at: Option<SystemTime>,
}

/// One hygiene sweep of a target: the prober's own leftovers it found and removed.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub target: String,
    /// Tags of earlier runs (a crash, a failed cleanup) deleted, with their manifests.
    pub tags_deleted: u32,
    /// Upload sessions whose cancel had failed, cancelled now.
    pub sessions_cancelled: u32,
    /// What could not be swept (the steps that failed), for the log.
    pub errors: Vec<String>,
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// A fresh random trace id: 16 bytes as 32 lowercase hex digits, never all zeros (which
    /// W3C trace context reserves as invalid).
    pub fn new_trace_id() -> String {
        format!("{:032x}", rand::random::<u128>().max(1))
    }

    /// The first failed step, which is what stopped the run.
    pub fn first_failure(&self) -> Option<&StepReport> {
        self.steps
            .iter()
            .find(|s| !s.success && !s.is_refused_cleanup())
    }
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn ser_opt_unix<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_unix(t, s),
        None => s.serialize_none(),
    }
}

fn ser_unix<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    s.serialize_f64(secs)
}
