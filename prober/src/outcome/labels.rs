//! The closed sets of what a run reports: the steps, the reasons a step fails, the phases of
//! an HTTP exchange and the deviations a registry makes. Their snake_case names (strum) are the
//! one source of label values, span names and log fields.

use std::fmt;

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
    /// PUT /v2/<repo>/manifests/<tag> of the image index over the platform manifests (with
    /// `image.platforms`; each platform's manifest is a `push_manifest` by digest before it).
    PushIndex,
    /// Polls a replicated path for the pushed manifest until it appears.
    WaitPropagation,
    /// GET /v2/<repo>/manifests/<tag>.
    PullManifestByTag,
    /// GET /v2/<repo>/manifests/<digest>.
    PullManifestByDigest,
    /// GET of the platform manifest an index names, picked as containerd picks it.
    PullPlatformManifest,
    /// GET /v2/<repo>/blobs/<digest>, streamed through sha256.
    PullBlob,
    /// HEAD of a blob of old content, compared with what its GET serves.
    HeadBlob,
    /// PUT /v2/<repo>/manifests/<digest> of an OCI 1.1 artifact whose subject is the run's
    /// image (or a canary); the answer's OCI-Subject says whether the registry indexed it.
    PushArtifact,
    /// The referrers tag schema, where a registry has no referrers API: GET the index under
    /// the tag `sha256-<hex of the subject>`, add (or remove) the artifact's entry, PUT it back.
    UpdateReferrersTag,
    /// GET /v2/<repo>/referrers/<digest> (optionally ?artifactType=): the referrers API.
    ListReferrers,
    /// GET /v2/<repo>/manifests/sha256-<hex>: the referrers tag, where the registry has no
    /// referrers API.
    PullReferrersTag,
    /// GET of an artifact's manifest found among the referrers of its subject.
    PullArtifact,
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
                | Step::PushIndex
                | Step::PushArtifact
                | Step::UpdateReferrersTag
        )
    }

    /// Steps that run against every path (origin and pull paths).
    pub fn is_pull(self) -> bool {
        matches!(
            self,
            Step::PullManifestByTag
                | Step::PullManifestByDigest
                | Step::PullPlatformManifest
                | Step::PullBlob
                | Step::HeadBlob
                | Step::PullGoldenManifest
                | Step::PullGoldenBlob
                | Step::PullCanaryManifest
                | Step::PullCanaryBlob
                | Step::ListReferrers
                | Step::PullReferrersTag
                | Step::PullArtifact
        )
    }

    /// Steps of multi-platform images (`image.platforms`).
    pub fn is_index(self) -> bool {
        matches!(self, Step::PushIndex | Step::PullPlatformManifest)
    }

    /// Steps of artifacts and their referrers (`artifact`, `canaries.artifact`).
    pub fn is_referrers(self) -> bool {
        matches!(
            self,
            Step::PushArtifact
                | Step::UpdateReferrersTag
                | Step::ListReferrers
                | Step::PullReferrersTag
                | Step::PullArtifact
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
    /// An index does not list a platform the prober pushed in it or the target asks for.
    PlatformMissing,
    /// The referrers of a subject (the referrers API or the referrers tag) do not list an
    /// artifact pushed for it.
    ReferrerMissing,
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
    /// A Range that does not cover what was sent (e.g. the bytes of the last chunk only): the
    /// closing PUT's digest, and the pull, say whether the registry holds the right bytes.
    RangeMismatch,
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

/// How a registry serves the referrers of a manifest (the `mode` label of `referrers_info`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ReferrersMode {
    /// The OCI 1.1 referrers API: `GET /v2/<repo>/referrers/<digest>` answers an index.
    Api,
    /// No referrers API (404): clients keep the referrers in the index under the tag
    /// `sha256-<hex of the subject>`.
    TagSchema,
}

impl ReferrersMode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
