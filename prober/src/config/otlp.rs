//! The `otlp` section: where traces go (one OTLP/HTTP endpoint, optional headers, a timeout),
//! from the config file or, without the section, the standard OTEL_* environment variables.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{duration, invalid, ConfigError};

const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP trace exporter: one endpoint, optional headers, a timeout per export.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// Base URL of an OTLP/HTTP receiver, e.g. "http://otel-collector:4318"; "v1/traces" is
    /// appended (as with OTEL_EXPORTER_OTLP_ENDPOINT).
    pub endpoint: Option<String>,
    /// Full URL traces are POSTed to, used as is, e.g. "http://otel-collector:4318/v1/traces"
    /// (as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Set this or endpoint.
    pub traces_endpoint: Option<String>,
    /// File of headers sent with every export, one "name: value" a line (e.g. an API key);
    /// blank lines and lines starting with '#' are skipped. Values are never logged.
    pub headers_file: Option<PathBuf>,
    /// Deadline of one export request, e.g. "10s" (default 10s).
    pub timeout: Option<String>,
}

/// Where and how traces are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The URL traces are POSTed to.
    pub traces_url: Url,
    pub headers: OtlpHeaders,
    pub timeout: Duration,
}

/// Headers sent with every export. They often carry an API key: `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OtlpHeaders(pub Vec<(http::HeaderName, http::HeaderValue)>);

impl fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}: <redacted>")))
            .finish()
    }
}

impl RawOtlp {
    pub(super) fn validate(self) -> Result<OtlpConfig, ConfigError> {
        let traces_url = match (&self.endpoint, &self.traces_endpoint) {
            (Some(base), None) => otlp_url("otlp.endpoint", base, true)?,
            (None, Some(full)) => otlp_url("otlp.traces_endpoint", full, false)?,
            (Some(_), Some(_)) => {
                return Err(invalid("otlp: set endpoint or traces_endpoint, not both"))
            }
            (None, None) => return Err(invalid("otlp: endpoint or traces_endpoint is required")),
        };
        let headers = match &self.headers_file {
            Some(path) => read_headers_file(path)?,
            None => OtlpHeaders::default(),
        };
        let timeout = duration("otlp.timeout", self.timeout.as_ref(), DEFAULT_OTLP_TIMEOUT)?;
        Ok(OtlpConfig {
            traces_url,
            headers,
            timeout,
        })
    }
}

impl OtlpConfig {
    /// The exporter as the OpenTelemetry environment variables configure it, for a config file
    /// without an `otlp` section: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
    /// OTEL_EXPORTER_OTLP_ENDPOINT (+ "v1/traces"), and the plain or TRACES_ variants of
    /// _HEADERS (name=value,... URL-encoded), _TIMEOUT (milliseconds) and _PROTOCOL (only
    /// "http/protobuf"). None without an endpoint, or when OTEL_SDK_DISABLED=true or
    /// OTEL_TRACES_EXPORTER=none. `var` looks a variable up (`std::env::var` outside tests).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let disabled = var("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
        if disabled {
            return Ok(None);
        }
        // The signal-specific variable wins over the general one; an empty one counts as unset.
        let either = |name: &str| {
            let specific = format!("OTEL_EXPORTER_OTLP_TRACES_{name}");
            let general = format!("OTEL_EXPORTER_OTLP_{name}");
            [specific, general]
                .into_iter()
                .find_map(|key| var(&key).filter(|v| !v.trim().is_empty()).map(|v| (key, v)))
        };
        if let Some((key, protocol)) = either("PROTOCOL") {
            if protocol.trim() != "http/protobuf" {
                return Err(invalid(format!(
                    "{key}: protocol {protocol:?} is not supported (only \"http/protobuf\")"
                )));
            }
        }
        let Some((key, endpoint)) = either("ENDPOINT") else {
            return Ok(None);
        };
        // The signal-specific endpoint is the full URL; the general one a base.
        let traces_url = otlp_url(&key, endpoint.trim(), !key.contains("_TRACES_"))?;
        let headers = match either("HEADERS") {
            Some((key, list)) => {
                let pairs = parse_key_values(&list).map_err(|e| invalid(format!("{key}: {e}")))?;
                let mut headers = Vec::with_capacity(pairs.len());
                for (name, value) in pairs {
                    headers.push(header(&key, &name, &value)?);
                }
                OtlpHeaders(headers)
            }
            None => OtlpHeaders::default(),
        };
        let timeout = match either("TIMEOUT") {
            Some((key, ms)) => match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(invalid(format!(
                        "{key}: {ms:?} is not a positive number of milliseconds"
                    )))
                }
            },
            None => DEFAULT_OTLP_TIMEOUT,
        };
        Ok(Some(OtlpConfig {
            traces_url,
            headers,
            timeout,
        }))
    }
}

/// An OTLP/HTTP URL: http(s), a host, no credentials. A base URL gets "v1/traces" appended to
/// its path, as the OpenTelemetry spec says for OTEL_EXPORTER_OTLP_ENDPOINT.
fn otlp_url(field: &str, text: &str, base: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| {
        invalid(format!(
            "{field}: invalid URL {text:?}: {e} (expected e.g. http://otel-collector:4318)"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "{field}: URL {text:?} has scheme {:?}; expected http or https (e.g. http://otel-collector:4318)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{field}: URL {text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!(
            "{field}: URL {:?} must not carry credentials; use headers",
            url.origin().ascii_serialization()
        )));
    }
    if !base {
        return Ok(url);
    }
    let mut url = url;
    let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// Reads "name: value" lines; a bad line is named by its number, never by its value.
fn read_headers_file(path: &Path) -> Result<OtlpHeaders, ConfigError> {
    let field = "otlp.headers_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("{field}: cannot read {}: {e}", path.display())))?;
    let mut headers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            invalid(format!(
                "{field}: {} line {}: expected \"name: value\"",
                path.display(),
                i + 1
            ))
        })?;
        let at = format!("{field}: {} line {}", path.display(), i + 1);
        headers.push(header(&at, name.trim(), value.trim())?);
    }
    Ok(OtlpHeaders(headers))
}

/// One export header, checked; the value is secret and stays out of the message.
fn header(
    field: &str,
    name: &str,
    value: &str,
) -> Result<(http::HeaderName, http::HeaderValue), ConfigError> {
    let name = http::HeaderName::try_from(name)
        .map_err(|_| invalid(format!("{field}: {name:?} is not a valid header name")))?;
    let mut value = http::HeaderValue::try_from(value).map_err(|_| {
        invalid(format!(
            "{field}: the value of header {name} is not a valid header value"
        ))
    })?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Parses the OpenTelemetry "key=value,key=value" list (OTEL_EXPORTER_OTLP_HEADERS,
/// OTEL_RESOURCE_ATTRIBUTES): keys and values trimmed, values percent-decoded. Errors name the
/// entry's position only, since values may be secrets.
pub fn parse_key_values(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (i, entry) in list.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| format!("entry {} {why}", i + 1);
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| bad("is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad("has an empty key"));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| bad("has a value that is not UTF-8 once percent-decoded"))?;
        pairs.push((key.to_string(), value.into_owned()));
    }
    Ok(pairs)
}
