//! A finished `RunReport` as OpenTelemetry span data, built after the fact: a root span for the
//! run, a child per step, a grandchild per HTTP exchange, each with the times the run recorded
//! and the run's own trace id. `report::export` hands them to the SDK's OTLP exporter.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, Key, KeyValue};
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;

use crate::outcome::{HttpRecord, RunReport, StepReport};

/// The service's name when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES gives one.
pub(crate) const DEFAULT_SERVICE_NAME: &str = "registry-prober";
/// Name of the root span of every run.
pub(crate) const RUN_SPAN: &str = "registry_prober.run";

/// What the SDK names a service nobody named (`unknown_service:<executable>`).
const UNKNOWN_SERVICE: &str = "unknown_service";

/// The process as the SDK's detectors describe it (OTEL_RESOURCE_ATTRIBUTES, then
/// OTEL_SERVICE_NAME, which wins as the spec asks, and the telemetry.sdk.* attributes), named
/// `registry-prober` when nothing names it, and with our `service.version`.
pub(crate) fn resource() -> Resource {
    // The SDK's own `Resource::builder()` merges OTEL_RESOURCE_ATTRIBUTES last, so a
    // service.name there would beat OTEL_SERVICE_NAME; the service's detector goes last here.
    let detectors: [Box<dyn ResourceDetector>; 3] = [
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
        Box::new(SdkProvidedResourceDetector),
    ];
    let detected = Resource::builder_empty().with_detectors(&detectors).build();
    let named = detected
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with(UNKNOWN_SERVICE));
    let mut builder = Resource::builder_empty().with_attributes(
        detected
            .iter()
            .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
    );
    if !named {
        builder = builder.with_service_name(DEFAULT_SERVICE_NAME);
    }
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The spans of one run: the root first, then each step followed by its HTTP exchanges.
/// Children are placed inside their parent's time (the phases of an exchange are measured
/// separately from its step, so their sum can overshoot by a little).
pub(crate) fn spans(report: &RunReport) -> Vec<SpanData> {
    let trace_id = trace_id(&report.trace_id);
    let scope = InstrumentationScope::builder(DEFAULT_SERVICE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let span = |id: SpanId, parent: SpanId, name: String, kind: SpanKind| SpanData {
        span_context: SpanContext::new(trace_id, id, TraceFlags::SAMPLED, false, TraceState::NONE),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    };

    let run_start = report.started_at;
    let run_end = run_start + report.duration_seconds;
    let root_id = span_id();
    let mut spans = Vec::with_capacity(1 + report.steps.len() * 2);
    let mut root_attrs = vec![
        KeyValue::new("registry_prober.target", report.target.clone()),
        KeyValue::new("registry_prober.registry", report.registry.clone()),
        KeyValue::new("registry_prober.repository", report.repository.clone()),
        KeyValue::new("registry_prober.success", report.success),
        KeyValue::new("registry_prober.cleanup_failed", report.cleanup_failed),
        KeyValue::new("registry_prober.confirmation", report.confirmation),
    ];
    if let Some(tag) = &report.tag {
        root_attrs.push(KeyValue::new("registry_prober.tag", tag.clone()));
    }
    spans.push(SpanData {
        start_time: run_start,
        end_time: run_end,
        attributes: root_attrs,
        status: status(report.first_failure().and_then(StepReport::error_line)),
        ..span(
            root_id,
            SpanId::INVALID,
            RUN_SPAN.to_string(),
            SpanKind::Internal,
        )
    });

    for step in &report.steps {
        let start = step.started_at.clamp(run_start, run_end);
        let end = (start + step.duration_seconds).min(run_end);
        let step_id = span_id();
        spans.push(SpanData {
            start_time: start,
            end_time: end,
            attributes: step_attributes(step),
            status: status(step.error.clone()),
            ..span(
                step_id,
                root_id,
                step.step.as_str().to_string(),
                SpanKind::Internal,
            )
        });
        for record in &step.requests {
            let req_start = record.started_at.unwrap_or(start).clamp(start, end);
            let req_end = (req_start + http_duration(record)).min(end);
            spans.push(SpanData {
                start_time: req_start,
                end_time: req_end,
                attributes: http_attributes(record),
                // A 4xx is often expected (a HEAD before an upload, a 401 challenge): only a
                // transport failure marks the exchange itself as an error.
                status: record.error.clone().map_or(Status::Unset, Status::error),
                ..span(
                    span_id(),
                    step_id,
                    format!("HTTP {}", record.method),
                    SpanKind::Client,
                )
            });
        }
    }
    spans
}

fn step_attributes(step: &StepReport) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("registry_prober.step", step.step.as_str()),
        KeyValue::new("registry_prober.subject", step.subject.clone()),
        KeyValue::new("registry_prober.success", step.success),
        KeyValue::new("registry_prober.bytes_sent", int(step.bytes_sent)),
        KeyValue::new("registry_prober.bytes_received", int(step.bytes_received)),
    ];
    if let Some(reason) = step.reason {
        attrs.push(KeyValue::new("registry_prober.reason", reason.as_str()));
    }
    // A failure records the status that decided it; otherwise the last exchange's answer.
    let status = step
        .status
        .or_else(|| step.requests.iter().rev().find_map(|r| r.status));
    if let Some(status) = status {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(code) = &step.registry_code {
        attrs.push(KeyValue::new("registry_prober.registry_code", code.clone()));
    }
    attrs
}

fn http_attributes(record: &HttpRecord) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("http.request.method", record.method.clone()),
        // Redacted by the client before it was recorded: no query-string credentials.
        KeyValue::new("url.full", record.url.clone()),
        KeyValue::new(
            "registry_prober.reused_connection",
            record.reused_connection,
        ),
        KeyValue::new("registry_prober.bytes_sent", int(record.bytes_sent)),
        KeyValue::new("registry_prober.bytes_received", int(record.bytes_received)),
    ];
    if let Some(status) = record.status {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(version) = record.http_version {
        // Semantic conventions want "1.1" and "2", not "HTTP/1.1".
        let version = version.strip_prefix("HTTP/").unwrap_or(version);
        attrs.push(KeyValue::new("network.protocol.version", version));
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
            attrs.push(KeyValue::new(key, seconds.as_secs_f64()));
        }
    }
    if !record.error_codes.is_empty() {
        attrs.push(KeyValue::new(
            "registry_prober.registry_code",
            record.error_codes.join(","),
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
    error.map_or(Status::Ok, Status::error)
}

/// OTLP integers are signed.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The report's 32-hex-digit trace id; a fresh one if it is not (a hand-built report), since a
/// receiver drops spans with an invalid id.
fn trace_id(hex_id: &str) -> TraceId {
    match TraceId::from_hex(hex_id) {
        Ok(id) if hex_id.len() == 32 && id != TraceId::INVALID => id,
        _ => TraceId::from(rand::random::<u128>().max(1)),
    }
}

/// A random span id, never all zeros.
fn span_id() -> SpanId {
    SpanId::from(rand::random::<u64>().max(1))
}

#[cfg(test)]
mod tests;
