//! What one probe run produced: a closed set of steps and failure reasons (the one source of
//! label values, span names and log fields), and the per-step reports with their HTTP transcripts.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// A step of the probe cycle. Steps repeat per blob; `StepReport::subject` says which.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Step {
    /// GET /v2/ before an endpoint's first request, as docker does: learns how the registry
    /// wants to be authenticated (200: not at all; 401: its challenge, or none).
    Ping,
    /// A bearer token fetched from the registry's token service.
    Token,
    /// HEAD /v2/<repo>/blobs/<digest> before an upload.
    CheckBlob,
    /// POST /v2/<repo>/blobs/uploads/: opens an upload session.
    StartUpload,
    /// PUT (monolithic) or PATCH... + PUT (chunked) of one blob.
    UploadBlob,
    /// POST /v2/<other repo>/blobs/uploads/?mount=<digest>&from=<repo>: cross-repository mount.
    MountBlob,
    /// PUT /v2/<repo>/manifests/<tag>.
    PushManifest,
    /// Polls a replicated path for the pushed manifest until it appears.
    WaitPropagation,
    /// GET /v2/<repo>/manifests/<tag>.
    PullManifestByTag,
    /// GET /v2/<repo>/manifests/<digest>.
    PullManifestByDigest,
    /// GET /v2/<repo>/blobs/<digest>, streamed through sha256.
    PullBlob,
    /// HEAD of a blob of old content, compared with what its GET serves.
    HeadBlob,
    /// GET of a golden image's manifest (pinned content the prober never pushed).
    PullGoldenManifest,
    /// GET of a golden image's blob, streamed through sha256.
    PullGoldenBlob,
    /// GET /v2/<repo>/tags/list: finds canaries and leftovers.
    ListTags,
    /// GET of an aged canary's manifest (pushed by the prober earlier and kept).
    PullCanaryManifest,
    /// GET of an aged canary's blob, streamed through sha256.
    PullCanaryBlob,
    /// DELETE /v2/<repo>/manifests/<digest>.
    DeleteManifest,
    /// DELETE /v2/<repo>/blobs/<digest>.
    DeleteBlob,
    /// DELETE <upload session URL> of an upload that did not complete.
    CancelUpload,
}

impl Step {
    /// The label value, span name and log field of the step.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Steps that only push (they run on the origin path alone).
    pub fn is_push(self) -> bool {
        matches!(
            self,
            Step::CheckBlob
                | Step::StartUpload
                | Step::UploadBlob
                | Step::MountBlob
                | Step::PushManifest
        )
    }

    /// Steps that run against every path (origin and pull paths).
    pub fn is_pull(self) -> bool {
        matches!(
            self,
            Step::PullManifestByTag
                | Step::PullManifestByDigest
                | Step::PullBlob
                | Step::HeadBlob
                | Step::PullGoldenManifest
                | Step::PullGoldenBlob
                | Step::PullCanaryManifest
                | Step::PullCanaryBlob
        )
    }

    /// Cleanup steps: their failures are reported as cleanup failures (something was left behind).
    pub fn is_cleanup(self) -> bool {
        matches!(
            self,
            Step::DeleteManifest | Step::DeleteBlob | Step::CancelUpload
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step failed: a closed set, so it can be a metric label.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Reason {
    /// The registry's host name did not resolve.
    Dns,
    /// The TCP connection was refused or unreachable.
    Connect,
    /// The TLS handshake failed (untrusted, expired or wrong-host certificate, protocol).
    Tls,
    /// A step's deadline passed.
    Timeout,
    /// The connection broke while a request or response was in flight (reset, truncated body).
    Io,
    /// 401/403, DENIED/UNAUTHORIZED, or the token service refused us.
    Auth,
    /// 429 or TOOMANYREQUESTS.
    RateLimited,
    BlobUnknown,
    BlobUploadUnknown,
    BlobUploadInvalid,
    ManifestUnknown,
    ManifestInvalid,
    ManifestBlobUnknown,
    NameUnknown,
    NameInvalid,
    TagInvalid,
    DigestInvalid,
    SizeInvalid,
    /// The registry does not support the operation (e.g. DELETE disabled: 405 UNSUPPORTED).
    Unsupported,
    /// Bytes we pulled do not hash to the digest we pushed (or the registry's Docker-Content-Digest disagrees).
    DigestMismatch,
    /// Bytes we pulled are fewer or more than pushed, or Content-Length disagrees with the descriptor.
    SizeMismatch,
    /// A pull path did not serve the pushed image before its propagation deadline.
    PropagationTimeout,
    /// An aged canary's manifest is not the one the prober pushed (content replaced).
    ContentChanged,
    /// Another 4xx answer without a known registry error code.
    #[serde(rename = "http_4xx")]
    #[strum(serialize = "http_4xx")]
    Http4xx,
    /// A 5xx answer.
    #[serde(rename = "http_5xx")]
    #[strum(serialize = "http_5xx")]
    Http5xx,
    /// The registry answered something a Distribution API client cannot use: a missing Location,
    /// a manifest that is not JSON, an unexpected status.
    Protocol,
}

impl Reason {
    /// The label value and log field of the reason.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The reason for an OCI/Distribution error code, when it names one we keep apart.
    pub fn from_registry_code(code: &str) -> Option<Reason> {
        Some(match code {
            "BLOB_UNKNOWN" => Reason::BlobUnknown,
            "BLOB_UPLOAD_UNKNOWN" => Reason::BlobUploadUnknown,
            "BLOB_UPLOAD_INVALID" => Reason::BlobUploadInvalid,
            "MANIFEST_UNKNOWN" => Reason::ManifestUnknown,
            "MANIFEST_INVALID" | "MANIFEST_UNVERIFIED" => Reason::ManifestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => Reason::ManifestBlobUnknown,
            "NAME_UNKNOWN" => Reason::NameUnknown,
            "NAME_INVALID" => Reason::NameInvalid,
            "TAG_INVALID" => Reason::TagInvalid,
            "DIGEST_INVALID" => Reason::DigestInvalid,
            "SIZE_INVALID" => Reason::SizeInvalid,
            "UNSUPPORTED" => Reason::Unsupported,
            "UNAUTHORIZED" | "DENIED" => Reason::Auth,
            "TOOMANYREQUESTS" => Reason::RateLimited,
            _ => return None,
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase of an HTTP exchange, as `HttpRecord` times them (the `phase` label, and the phase a
/// transport timeout names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    FirstByte,
    Transfer,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A way a registry departs from the distribution spec that real clients (docker, containerd,
/// skopeo) tolerate: counted and shown, failing a step only on a `strict` target (the `kind`
/// label of `protocol_deviations`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeviationKind {
    /// An upload session reports `Range: 0-<bytes held>` instead of `0-<last byte index>`.
    RangeOffByOne,
    /// A Range value in another form than `0-<end>` (e.g. `bytes=0-<end>`).
    RangeFormat,
    /// A HEAD answered 200 without the Docker-Content-Digest header.
    MissingDigestHeader,
    /// A success status other than the one the spec gives (200 where 201 or 202 is specified).
    UnexpectedStatus,
    /// The tag list is not implemented (404 without NAME_UNKNOWN, or 405): canaries and
    /// leftovers cannot be listed.
    TagListUnsupported,
    /// A 401 without a WWW-Authenticate challenge.
    MissingAuthChallenge,
}

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

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator as _;

    use super::*;

    #[test]
    fn every_reason_has_a_distinct_snake_case_label() {
        let mut labels: Vec<&str> = Reason::iter().map(Reason::as_str).collect();
        assert!(labels.iter().all(|l| l
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::iter().count());
    }

    #[test]
    fn serde_names_match_the_label_values() {
        for r in Reason::iter() {
            assert_eq!(
                serde_json::to_value(r).expect("serializes"),
                serde_json::json!(r.as_str())
            );
        }
        for s in Step::iter() {
            assert_eq!(
                serde_json::to_value(s).expect("serializes"),
                serde_json::json!(s.as_str())
            );
        }
    }

    #[test]
    fn trace_ids_are_32_lowercase_hex_digits_and_differ() {
        let a = RunReport::new_trace_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{a}");
        assert_ne!(a, RunReport::new_trace_id());
    }

    #[test]
    fn maps_registry_error_codes_to_reasons() {
        assert_eq!(
            Reason::from_registry_code("BLOB_UNKNOWN"),
            Some(Reason::BlobUnknown)
        );
        assert_eq!(Reason::from_registry_code("DENIED"), Some(Reason::Auth));
        assert_eq!(
            Reason::from_registry_code("TOOMANYREQUESTS"),
            Some(Reason::RateLimited)
        );
        assert_eq!(Reason::from_registry_code("SOMETHING_NEW"), None);
    }
}
