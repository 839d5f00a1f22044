//! A finished `RunReport` as an OpenTelemetry trace, built after the fact: a root span for the
//! run, a child per step, a grandchild per HTTP exchange, encoded as an OTLP
//! ExportTraceServiceRequest (protobuf). `report::export` sends it.

use std::time::{Duration, SystemTime};

use prost::Message as _;

use crate::outcome::{HttpRecord, RunReport, StepReport};

/// The subset of the OTLP protobuf messages a trace export needs, with the field numbers of
/// opentelemetry-proto (`collector/trace/v1`, `trace/v1`, `common/v1`, `resource/v1`).
/// Fields left out are never sent; a receiver reads them as their defaults.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportTracePartialSuccess>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTracePartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_spans: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    /// google.rpc.Status: the body of an OTLP/HTTP error answer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        /// 16 bytes.
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        /// 8 bytes.
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        /// Empty for a root span.
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(enumeration = "SpanKind", tag = "6")]
        pub kind: i32,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum SpanKind {
        Unspecified = 0,
        Internal = 1,
        Server = 2,
        Client = 3,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(enumeration = "StatusCode", tag = "3")]
        pub code: i32,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum StatusCode {
        Unset = 0,
        Ok = 1,
        Error = 2,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
        pub value: Option<Value>,
    }

    // The OTLP proto's own names (AnyValue's oneof), kept so the messages read like the spec.
    #[allow(clippy::enum_variant_names)]
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
    }
}

use proto::{KeyValue, Span, SpanKind, Status, StatusCode, Value};

/// The service's name when OTEL_SERVICE_NAME does not give one.
pub const DEFAULT_SERVICE_NAME: &str = "registry-prober";
/// Name of the root span of every run.
pub const RUN_SPAN: &str = "registry_prober.run";

/// Attributes describing the process: `service.name`, `service.version` and whatever
/// OTEL_RESOURCE_ATTRIBUTES adds.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource(Vec<(String, String)>);

impl Resource {
    /// From OTEL_SERVICE_NAME (wins) and OTEL_RESOURCE_ATTRIBUTES (`key=value,...`,
    /// URL-encoded); `var` looks a variable up. A malformed OTEL_RESOURCE_ATTRIBUTES is
    /// ignored with a warning, as the OpenTelemetry spec asks.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Resource {
        let mut attrs: Vec<(String, String)> = Vec::new();
        if let Some(list) = var("OTEL_RESOURCE_ATTRIBUTES") {
            match crate::config::parse_key_values(&list) {
                Ok(pairs) => attrs = pairs,
                Err(e) => tracing::warn!(error = %e, "Ignoring OTEL_RESOURCE_ATTRIBUTES"),
            }
        }
        let service_name = var("OTEL_SERVICE_NAME")
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().to_string())
            .or_else(|| {
                attrs
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
        attrs.retain(|(k, _)| k != "service.name" && k != "service.version");
        let mut all = vec![
            ("service.name".to_string(), service_name),
            (
                "service.version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ];
        all.extend(attrs);
        Resource(all)
    }

    pub fn attributes(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The spans of one run: the root first, then each step followed by its HTTP exchanges.
/// Children are placed inside their parent's time (the phases of an exchange are measured
/// separately from its step, so their sum can overshoot by a little).
pub fn spans(report: &RunReport) -> Vec<Span> {
    let trace_id = trace_id_bytes(&report.trace_id);
    let run_start = nanos(report.started_at);
    let run_end = run_start.saturating_add(duration_nanos(report.duration_seconds));
    let root_id = span_id();
    let mut spans = Vec::with_capacity(1 + report.steps.len() * 2);

    let mut root_attrs = vec![
        string("registry_prober.target", &report.target),
        string("registry_prober.registry", &report.registry),
        string("registry_prober.repository", &report.repository),
        boolean("registry_prober.success", report.success),
        boolean("registry_prober.cleanup_failed", report.cleanup_failed),
    ];
    if let Some(tag) = &report.tag {
        root_attrs.push(string("registry_prober.tag", tag));
    }
    spans.push(Span {
        trace_id: trace_id.clone(),
        span_id: root_id.clone(),
        parent_span_id: Vec::new(),
        name: RUN_SPAN.to_string(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: run_start,
        end_time_unix_nano: run_end,
        attributes: root_attrs,
        status: Some(status(
            report.first_failure().and_then(StepReport::error_line),
        )),
    });

    for step in &report.steps {
        let start = nanos(step.started_at).clamp(run_start, run_end);
        let end = start
            .saturating_add(duration_nanos(step.duration_seconds))
            .min(run_end);
        let step_id = span_id();
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: step_id.clone(),
            parent_span_id: root_id.clone(),
            name: step.step.as_str().to_string(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: step_attributes(step),
            status: Some(status(step.error.clone())),
        });
        for record in &step.requests {
            let req_start = record
                .started_at
                .map(nanos)
                .unwrap_or(start)
                .clamp(start, end);
            let req_end = req_start
                .saturating_add(duration_nanos(http_duration(record)))
                .min(end);
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: span_id(),
                parent_span_id: step_id.clone(),
                name: format!("HTTP {}", record.method),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: req_start,
                end_time_unix_nano: req_end,
                attributes: http_attributes(record),
                // A 4xx is often expected (a HEAD before an upload, a 401 challenge): only a
                // transport failure marks the exchange itself as an error.
                status: record.error.as_ref().map(|e| Status {
                    message: e.clone(),
                    code: StatusCode::Error as i32,
                }),
            });
        }
    }
    spans
}

/// One protobuf ExportTraceServiceRequest holding the spans of several runs.
pub fn encode(resource: &Resource, spans: Vec<Span>) -> Vec<u8> {
    let request = proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(proto::Resource {
                attributes: resource
                    .attributes()
                    .iter()
                    .map(|(k, v)| string(k, v))
                    .collect(),
            }),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(proto::InstrumentationScope {
                    name: DEFAULT_SERVICE_NAME.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                }),
                spans,
            }],
        }],
    };
    request.encode_to_vec()
}

fn step_attributes(step: &StepReport) -> Vec<KeyValue> {
    let mut attrs = vec![
        string("registry_prober.step", step.step.as_str()),
        string("registry_prober.subject", &step.subject),
        boolean("registry_prober.success", step.success),
        int("registry_prober.bytes_sent", step.bytes_sent),
        int("registry_prober.bytes_received", step.bytes_received),
    ];
    if let Some(reason) = step.reason {
        attrs.push(string("registry_prober.reason", reason.as_str()));
    }
    // A failure records the status that decided it; otherwise the last exchange's answer.
    let status = step
        .status
        .or_else(|| step.requests.iter().rev().find_map(|r| r.status));
    if let Some(status) = status {
        attrs.push(int("http.response.status_code", u64::from(status)));
    }
    if let Some(code) = &step.registry_code {
        attrs.push(string("registry_prober.registry_code", code));
    }
    attrs
}

fn http_attributes(record: &HttpRecord) -> Vec<KeyValue> {
    let mut attrs = vec![
        string("http.request.method", &record.method),
        // Redacted by the client before it was recorded: no query-string credentials.
        string("url.full", &record.url),
        boolean(
            "registry_prober.reused_connection",
            record.reused_connection,
        ),
        int("registry_prober.bytes_sent", record.bytes_sent),
        int("registry_prober.bytes_received", record.bytes_received),
    ];
    if let Some(status) = record.status {
        attrs.push(int("http.response.status_code", u64::from(status)));
    }
    if let Some(version) = record.http_version {
        // Semantic conventions want "1.1" and "2", not "HTTP/1.1".
        let version = version.strip_prefix("HTTP/").unwrap_or(version);
        attrs.push(string("network.protocol.version", version));
    }
    let phases = [
        ("registry_prober.dns_seconds", record.dns_seconds),
        ("registry_prober.connect_seconds", record.connect_seconds),
        ("registry_prober.tls_seconds", record.tls_seconds),
        (
            "registry_prober.first_byte_seconds",
            record.first_byte_seconds,
        ),
        ("registry_prober.transfer_seconds", record.transfer_seconds),
    ];
    for (key, seconds) in phases {
        if let Some(seconds) = seconds {
            attrs.push(double(key, seconds.as_secs_f64()));
        }
    }
    if !record.error_codes.is_empty() {
        attrs.push(string(
            "registry_prober.registry_code",
            &record.error_codes.join(","),
        ));
    }
    attrs
}

/// The exchange's own duration: its phases added up (the body may still have been streaming
/// into the verifier; transfer covers that).
fn http_duration(record: &HttpRecord) -> Duration {
    [
        record.dns_seconds,
        record.connect_seconds,
        record.tls_seconds,
        record.first_byte_seconds,
        record.transfer_seconds,
    ]
    .into_iter()
    .flatten()
    .sum()
}

fn status(error: Option<String>) -> Status {
    match error {
        Some(message) => Status {
            message,
            code: StatusCode::Error as i32,
        },
        None => Status {
            message: String::new(),
            code: StatusCode::Ok as i32,
        },
    }
}

/// The report's 32-hex-digit trace id as 16 bytes; a fresh one if it is not (a hand-built
/// report), since a receiver drops spans with an invalid id.
fn trace_id_bytes(hex_id: &str) -> Vec<u8> {
    match hex::decode(hex_id) {
        Ok(bytes) if bytes.len() == 16 && bytes.iter().any(|b| *b != 0) => bytes,
        _ => rand::random::<u128>().max(1).to_be_bytes().to_vec(),
    }
}

/// A random span id: 8 bytes, never all zeros.
fn span_id() -> Vec<u8> {
    rand::random::<u64>().max(1).to_be_bytes().to_vec()
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(duration_nanos)
        .unwrap_or(0)
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(proto::AnyValue { value: Some(value) }),
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.to_string()))
}

fn boolean(key: &str, value: bool) -> KeyValue {
    kv(key, Value::BoolValue(value))
}

fn int(key: &str, value: u64) -> KeyValue {
    kv(
        key,
        Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
    )
}

fn double(key: &str, value: f64) -> KeyValue {
    kv(key, Value::DoubleValue(value))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message as _;

    use super::*;
    use crate::outcome::{Reason, Step};

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn exchange(method: &str, start: u64, status: u16) -> HttpRecord {
        HttpRecord {
            started_at: Some(at(start)),
            method: method.to_string(),
            url: "http://127.0.0.1:5000/v2/probe/blobs/uploads/?_state=REDACTED".to_string(),
            status: Some(status),
            http_version: Some("HTTP/1.1"),
            connect_seconds: Some(ms(1)),
            first_byte_seconds: Some(ms(5)),
            transfer_seconds: Some(ms(2)),
            bytes_sent: 10,
            bytes_received: 20,
            ..HttpRecord::default()
        }
    }

    fn step(step: Step, start: u64, duration: u64, requests: Vec<HttpRecord>) -> StepReport {
        StepReport {
            step,
            path: "origin".into(),
            subject: "layer 1".to_string(),
            success: true,
            started_at: at(start),
            duration_seconds: ms(duration),
            reason: None,
            error: None,
            status: None,
            registry_code: None,
            bytes_sent: requests.iter().map(|r| r.bytes_sent).sum(),
            bytes_received: requests.iter().map(|r| r.bytes_received).sum(),
            requests,
        }
    }

    fn report() -> RunReport {
        let mut failed = step(Step::PullBlob, 40, 30, vec![exchange("GET", 41, 200)]);
        failed.success = false;
        failed.reason = Some(Reason::DigestMismatch);
        failed.error = Some("expected sha256:aa, got sha256:bb".to_string());
        RunReport {
            trace_id: TRACE_ID.to_string(),
            size_class: "default".into(),
            retry_after: None,
            propagation: Vec::new(),
            mount: None,
            canaries: None,
            target: "local".to_string(),
            registry: "http://127.0.0.1:5000/".to_string(),
            repository: "probe/x".to_string(),
            tag: Some("registry-prober-1-00000000".to_string()),
            manifest_digest: None,
            success: false,
            cleanup_failed: false,
            started_at: at(0),
            duration_seconds: ms(100),
            steps: vec![
                step(
                    Step::StartUpload,
                    0,
                    20,
                    vec![exchange("HEAD", 1, 404), exchange("POST", 9, 202)],
                ),
                // An exchange whose phases add up to more than its step lasted.
                step(Step::UploadBlob, 20, 5, vec![exchange("PUT", 21, 201)]),
                failed,
            ],
        }
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_run_is_a_root_span_with_a_child_per_step_and_a_grandchild_per_exchange() {
        let spans = spans(&report());
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                RUN_SPAN,
                "start_upload",
                "HTTP HEAD",
                "HTTP POST",
                "upload_blob",
                "HTTP PUT",
                "pull_blob",
                "HTTP GET"
            ]
        );
        let by_id: HashMap<&[u8], &Span> =
            spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
        assert_eq!(by_id.len(), spans.len(), "span ids are unique");
        let root = &spans[0];
        assert!(root.parent_span_id.is_empty());
        for span in &spans {
            assert_eq!(hex::encode(&span.trace_id), TRACE_ID);
            assert_eq!(span.span_id.len(), 8);
            if span.name == RUN_SPAN {
                continue;
            }
            let parent = by_id[span.parent_span_id.as_slice()];
            if span.name.starts_with("HTTP ") {
                assert!(
                    <Step as strum::IntoEnumIterator>::iter().any(|s| s.as_str() == parent.name)
                );
            } else {
                assert_eq!(parent.name, RUN_SPAN);
            }
            assert!(
                parent.start_time_unix_nano <= span.start_time_unix_nano
                    && span.end_time_unix_nano <= parent.end_time_unix_nano,
                "{} lies outside {}",
                span.name,
                parent.name
            );
        }
        assert_eq!(
            by_id[spans[5].parent_span_id.as_slice()].name,
            "upload_blob"
        );
        // 8 ms of phases inside a 5 ms step: cut at the step's end.
        assert_eq!(
            spans[5].end_time_unix_nano - spans[5].start_time_unix_nano,
            4_000_000
        );
        assert_eq!(
            root.end_time_unix_nano - root.start_time_unix_nano,
            100_000_000
        );
    }

    #[test]
    fn steps_carry_their_outcome_and_the_run_its_first_failure() {
        let spans = spans(&report());
        let root = &spans[0];
        let root_status = root.status.as_ref().expect("status");
        assert_eq!(root_status.code, StatusCode::Error as i32);
        assert_eq!(
            root_status.message,
            "pull_blob (layer 1): expected sha256:aa, got sha256:bb"
        );
        assert_eq!(
            attr(root, "registry_prober.success"),
            Some(&Value::BoolValue(false))
        );
        assert_eq!(
            attr(root, "registry_prober.target"),
            Some(&Value::StringValue("local".into()))
        );

        let failed = &spans[6];
        assert_eq!(
            attr(failed, "registry_prober.reason"),
            Some(&Value::StringValue("digest_mismatch".into()))
        );
        assert_eq!(
            failed.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
        let upload = &spans[1];
        assert_eq!(
            upload.status.as_ref().map(|s| s.code),
            Some(StatusCode::Ok as i32)
        );
        assert_eq!(attr(upload, "registry_prober.reason"), None);
        assert_eq!(
            attr(upload, "http.response.status_code"),
            Some(&Value::IntValue(202))
        );
        assert_eq!(
            attr(upload, "registry_prober.bytes_received"),
            Some(&Value::IntValue(40))
        );

        let head = &spans[2];
        assert_eq!(head.kind, SpanKind::Client as i32);
        assert_eq!(head.status, None, "an expected 404 is no error");
        assert_eq!(
            attr(head, "network.protocol.version"),
            Some(&Value::StringValue("1.1".into()))
        );
        assert_eq!(
            attr(head, "registry_prober.first_byte_seconds"),
            Some(&Value::DoubleValue(0.005))
        );
        assert_eq!(attr(head, "registry_prober.dns_seconds"), None);
    }

    #[test]
    fn the_encoding_decodes_back_to_the_same_request() {
        let resource = Resource::from_env(|_| None);
        let spans = spans(&report());
        let bytes = encode(&resource, spans.clone());
        let decoded = proto::ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let rs = &decoded.resource_spans[0];
        assert_eq!(rs.scope_spans[0].spans, spans);
        let attrs = &rs.resource.as_ref().expect("resource").attributes;
        assert_eq!(attrs[0], string("service.name", "registry-prober"));
        assert_eq!(
            attrs[1],
            string("service.version", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn the_resource_takes_the_service_name_and_attributes_from_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let r = Resource::from_env(env(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, team=registry%20ops,service.name=ignored",
            ),
            ("OTEL_SERVICE_NAME", "prober-eu"),
        ]));
        assert_eq!(
            r.attributes(),
            [
                ("service.name".to_string(), "prober-eu".to_string()),
                (
                    "service.version".to_string(),
                    env!("CARGO_PKG_VERSION").to_string()
                ),
                ("deployment.environment".to_string(), "prod".to_string()),
                ("team".to_string(), "registry ops".to_string()),
            ]
        );
        let r = Resource::from_env(env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=eu")]));
        assert_eq!(r.attributes()[0].1, "eu");
        let r = Resource::from_env(env(&[("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign")]));
        assert_eq!(r.attributes().len(), 2, "a malformed list is ignored");
    }

    #[test]
    fn a_report_without_a_valid_trace_id_still_gets_one() {
        let mut r = report();
        r.trace_id = String::new();
        let spans = spans(&r);
        assert_eq!(spans[0].trace_id.len(), 16);
        assert!(spans.iter().all(|s| s.trace_id == spans[0].trace_id));
    }
}
