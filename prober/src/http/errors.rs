//! What a failed exchange becomes: the registry's OCI error envelope, rate-limit headers, and
//! the mapping of a status + error code, or of a transport error, to a failure reason with a
//! message that names the request.

use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use super::transport::TransportError;
use crate::outcome::{Failure, Reason};

/// The parsed error envelope `{"errors":[{"code":..,"message":..,"detail":..}]}` of a response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryErrors {
    pub codes: Vec<String>,
    /// The messages joined by "; ", or the start of a body that was not an error envelope.
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Registry text is reported but kept short: an error page can be megabytes of HTML.
const MAX_MESSAGE_CHARS: usize = 300;
/// Codes kept of one envelope, and characters of each: real codes are short identifiers
/// (`MANIFEST_BLOB_UNKNOWN`), but a broken or hostile server may send thousands of any length,
/// and they go into every message and log line of the failure.
const MAX_CODES: usize = 8;
const MAX_CODE_CHARS: usize = 64;

/// Parses an error body. A body that is not an envelope is kept as (truncated) text, because
/// proxies and load balancers in front of registries answer with HTML or plain text.
pub fn parse_error_body(body: &[u8]) -> RegistryErrors {
    if body.is_empty() {
        return RegistryErrors::default();
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
        if !env.errors.is_empty() {
            let codes = env
                .errors
                .iter()
                .filter(|e| !e.code.is_empty())
                .take(MAX_CODES)
                .map(|e| truncate(&e.code, MAX_CODE_CHARS))
                .collect();
            let messages: Vec<&str> = env
                .errors
                .iter()
                .map(|e| e.message.as_str())
                .filter(|m| !m.is_empty())
                .collect();
            let message =
                (!messages.is_empty()).then(|| truncate(&messages.join("; "), MAX_MESSAGE_CHARS));
            return RegistryErrors { codes, message };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    RegistryErrors {
        codes: Vec::new(),
        message: (!text.is_empty()).then(|| truncate(&text, MAX_MESSAGE_CHARS)),
    }
}

/// `s` cut to `max` characters, with '…' when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// Rate-limit headers worth keeping: the IETF draft RateLimit-* family, the common X-RateLimit-*
/// variants (Docker Hub sends `ratelimit-limit: 100;w=21600`), and Retry-After.
pub fn rate_limit_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n == "ratelimit"
                || n.starts_with("ratelimit-")
                || n.starts_with("x-ratelimit-")
                || n == "retry-after"
                || n == "docker-ratelimit-source"
        })
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The failure for an answer a step did not expect. `not_found` is the step's meaning of a bare
/// 404 (a HEAD has no body to carry a code).
pub fn failure_for_status(
    method: &Method,
    url: &str,
    status: StatusCode,
    expected: &[StatusCode],
    errors: &RegistryErrors,
    not_found: Reason,
) -> Failure {
    let reason = errors
        .codes
        .iter()
        .find_map(|c| Reason::from_registry_code(c))
        .unwrap_or_else(|| reason_for_status(status, not_found));
    let expected = expected
        .iter()
        .map(|s| s.as_u16().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    let mut message = format!("{method} {url}: got {status}, expected {expected}");
    match (errors.codes.is_empty(), &errors.message) {
        (false, Some(msg)) => message.push_str(&format!(
            ", registry error {}: {msg}",
            errors.codes.join(",")
        )),
        (false, None) => message.push_str(&format!(", registry error {}", errors.codes.join(","))),
        (true, Some(msg)) => message.push_str(&format!(", body: {msg}")),
        (true, None) => {}
    }
    Failure {
        reason,
        message,
        status: Some(status.as_u16()),
        registry_code: errors.codes.first().cloned(),
    }
}

fn reason_for_status(status: StatusCode, not_found: Reason) -> Reason {
    match status.as_u16() {
        401 | 403 => Reason::Auth,
        404 => not_found,
        405 => Reason::Unsupported,
        429 => Reason::RateLimited,
        400..=499 => Reason::Http4xx,
        500..=599 => Reason::Http5xx,
        _ => Reason::Protocol,
    }
}

pub(super) fn transport_failure(method: &Method, url: &str, err: &TransportError) -> Failure {
    let reason = match err {
        TransportError::Dns { .. } | TransportError::NoAddresses { .. } => Reason::Dns,
        TransportError::Connect { .. } => Reason::Connect,
        TransportError::Tls { .. } => Reason::Tls,
        TransportError::Timeout { .. } => Reason::Timeout,
        // A TLS alert after the handshake (TLS 1.3 client-certificate rejection) arrives as
        // the request's I/O error; it is still a TLS failure.
        TransportError::Http(e) if caused_by_tls(e) => Reason::Tls,
        TransportError::Http(_) => Reason::Io,
        TransportError::Url(_) => Reason::Protocol,
    };
    Failure::new(reason, format!("{method} {url}: {}", error_chain(err)))
}

fn caused_by_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        // On HTTP/1.1 the connection task hands a TLS alert to the waiting request as an I/O
        // error that keeps only rustls's text, not its type.
        if e.to_string().contains("received fatal alert") {
            return true;
        }
        source = e.source();
    }
    false
}

pub(super) fn body_failure(method: &Method, url: &str, got: u64, err: &hyper::Error) -> Failure {
    // hyper reports a body shorter than its Content-Length as an incomplete message: the
    // connection closed early, which is what a truncating proxy or a crashed backend does.
    Failure::new(
        Reason::Io,
        format!(
            "{method} {url}: response body broke off after {got} bytes: {}",
            error_chain(err)
        ),
    )
}

/// `err: cause: cause` — the whole source chain on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_distribution_error_envelope() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let e = parse_error_body(body);
        assert_eq!(e.codes, vec!["MANIFEST_UNKNOWN".to_string()]);
        assert_eq!(e.message.as_deref(), Some("manifest unknown"));
    }

    #[test]
    fn joins_several_errors_of_one_envelope() {
        let body = br#"{"errors":[{"code":"DENIED","message":"a"},{"code":"UNAUTHORIZED","message":"b"}]}"#;
        let e = parse_error_body(body);
        assert_eq!(
            e.codes,
            vec!["DENIED".to_string(), "UNAUTHORIZED".to_string()]
        );
        assert_eq!(e.message.as_deref(), Some("a; b"));
    }

    #[test]
    fn keeps_a_non_json_body_as_short_text() {
        let body = format!(
            "<html>\n<h1>502   Bad Gateway</h1>{}</html>",
            "x".repeat(1000)
        );
        let e = parse_error_body(body.as_bytes());
        assert!(e.codes.is_empty());
        let msg = e.message.expect("text kept");
        assert!(msg.starts_with("<html> <h1>502 Bad Gateway</h1>"), "{msg}");
        assert_eq!(msg.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn an_empty_body_has_no_errors() {
        assert_eq!(parse_error_body(b""), RegistryErrors::default());
    }

    #[test]
    fn a_registry_code_decides_the_reason_over_the_status() {
        let errors = parse_error_body(br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#);
        let f = failure_for_status(
            &Method::PUT,
            "http://127.0.0.1:5000/v2/p/blobs/uploads/x",
            StatusCode::BAD_REQUEST,
            &[StatusCode::CREATED],
            &errors,
            Reason::BlobUnknown,
        );
        assert_eq!(f.reason, Reason::DigestInvalid);
        assert_eq!(f.status, Some(400));
        assert_eq!(f.registry_code.as_deref(), Some("DIGEST_INVALID"));
        assert_eq!(
            f.message,
            "PUT http://127.0.0.1:5000/v2/p/blobs/uploads/x: got 400 Bad Request, expected 201, \
             registry error DIGEST_INVALID: provided digest did not match uploaded content"
        );
    }

    #[test]
    fn a_bare_status_maps_to_its_class() {
        let none = RegistryErrors::default();
        let f = |s: u16| {
            failure_for_status(
                &Method::GET,
                "u",
                StatusCode::from_u16(s).expect("valid"),
                &[StatusCode::OK],
                &none,
                Reason::BlobUnknown,
            )
            .reason
        };
        assert_eq!(f(401), Reason::Auth);
        assert_eq!(f(404), Reason::BlobUnknown);
        assert_eq!(f(405), Reason::Unsupported);
        assert_eq!(f(429), Reason::RateLimited);
        assert_eq!(f(418), Reason::Http4xx);
        assert_eq!(f(503), Reason::Http5xx);
        assert_eq!(f(302), Reason::Protocol);
    }

    #[test]
    fn keeps_rate_limit_headers_only() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", "100;w=21600".parse().expect("valid"));
        h.insert("retry-after", "7".parse().expect("valid"));
        h.insert("content-type", "application/json".parse().expect("valid"));
        let mut kept = rate_limit_headers(&h);
        kept.sort();
        assert_eq!(
            kept,
            vec![
                ("ratelimit-limit".into(), "100;w=21600".into()),
                ("retry-after".into(), "7".into())
            ]
        );
    }
}

#[cfg(test)]
#[path = "errors_properties.rs"]
mod properties;
