//! The `otlp` section: where traces go (one OTLP/HTTP endpoint, optional headers, a timeout).
//! Without it the standard OTEL_EXPORTER_OTLP_* variables configure the OpenTelemetry exporter,
//! which reads them itself; `OtlpSource::from_env` reads only what the SDK leaves to us.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{duration, invalid, ConfigError};

/// The OpenTelemetry default for OTEL_EXPORTER_OTLP_TIMEOUT, and ours for `otlp.timeout`.
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
    /// blank lines and lines starting with '#' are skipped. They win over
    /// OTEL_EXPORTER_OTLP_HEADERS of the same name. Values are never logged.
    pub headers_file: Option<PathBuf>,
    /// Deadline of one export, retries included, e.g. "10s" (default 10s).
    pub timeout: Option<String>,
}

/// The config file's `otlp` section, validated.
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

/// Where the trace exporter takes its settings from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OtlpSource {
    /// The config file's `otlp` section: its endpoint, headers and timeout win over the
    /// environment's.
    File(OtlpConfig),
    /// The OTEL_EXPORTER_OTLP_* variables, read by the exporter itself; only the timeout is
    /// read here (see `from_env`).
    Env { timeout: Duration },
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

impl OtlpSource {
    /// The config file's section if there is one, else the environment's (`from_env`).
    pub(crate) fn resolve(
        file: Option<OtlpConfig>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpSource>, ConfigError> {
        match file {
            Some(config) => Ok(Some(OtlpSource::File(config))),
            None => OtlpSource::from_env(var),
        }
    }

    /// Traces go where the OTEL_* variables say when one of them names an endpoint. What the
    /// OpenTelemetry Rust SDK does not do is done here, and only that: OTEL_SDK_DISABLED=true
    /// and OTEL_TRACES_EXPORTER=none turn exporting off (opentelemetry-rust#1936); no endpoint
    /// means no exporting (the exporter would try localhost:4318); a protocol other than
    /// http/protobuf is refused (the exporter would warn and send http/protobuf anyway); and the
    /// TIMEOUT variables (milliseconds) are read because the exporter leaves the deadline to its
    /// HTTP client, which is ours. The signal-specific TRACES_ variable wins over the general one.
    /// `var` looks a variable up (`std::env::var` outside tests).
    pub(crate) fn from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpSource>, ConfigError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let disabled = set("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
        let either = |name: &str| {
            [
                format!("OTEL_EXPORTER_OTLP_TRACES_{name}"),
                format!("OTEL_EXPORTER_OTLP_{name}"),
            ]
            .into_iter()
            .find_map(|key| set(&key).map(|value| (key, value)))
        };
        if disabled || either("ENDPOINT").is_none() {
            return Ok(None);
        }
        if let Some((key, protocol)) = either("PROTOCOL") {
            if protocol.trim() != "http/protobuf" {
                return Err(invalid(format!(
                    "{key}: protocol {protocol:?} is not supported (only \"http/protobuf\")"
                )));
            }
        }
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
        Ok(Some(OtlpSource::Env { timeout }))
    }

    /// The deadline of one export, retries included.
    pub(crate) fn timeout(&self) -> Duration {
        match self {
            OtlpSource::File(config) => config.timeout,
            OtlpSource::Env { timeout } => *timeout,
        }
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
        let at = format!("{field}: {} line {}", path.display(), i + 1);
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("{at}: expected \"name: value\"")))?;
        let name = http::HeaderName::try_from(name.trim())
            .map_err(|_| invalid(format!("{at}: {name:?} is not a valid header name")))?;
        // The value is secret and stays out of the message.
        let mut value = http::HeaderValue::try_from(value.trim()).map_err(|_| {
            invalid(format!(
                "{at}: the value of header {name} is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    Ok(OtlpHeaders(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment of these variables only.
    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");

    #[test]
    fn an_otel_endpoint_turns_exporting_on_with_the_timeout_of_the_environment() {
        assert_eq!(OtlpSource::from_env(env(&[])).expect("valid"), None);
        assert_eq!(
            OtlpSource::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).expect("valid"),
            None,
            "an empty variable counts as unset"
        );
        let on = |vars: &[(&str, &str)]| OtlpSource::from_env(env(vars)).expect("valid");
        assert_eq!(
            on(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]),
            Some(OtlpSource::Env {
                timeout: DEFAULT_OTLP_TIMEOUT
            })
        );
        assert_eq!(
            on(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:9999/in"
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ]),
            Some(OtlpSource::Env {
                timeout: Duration::from_millis(700)
            }),
            "the signal-specific variable wins"
        );
    }

    #[test]
    fn the_switches_turn_exporting_off_and_a_file_section_wins() {
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                OtlpSource::from_env(env(&[ENDPOINT, off])).expect("valid"),
                None,
                "{off:?}"
            );
        }
        let file = OtlpConfig {
            traces_url: "http://a:4318/v1/traces".parse().expect("url"),
            headers: OtlpHeaders::default(),
            timeout: Duration::from_secs(3),
        };
        let source = OtlpSource::resolve(
            Some(file.clone()),
            env(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
        )
        .expect("valid");
        assert_eq!(source, Some(OtlpSource::File(file)));
        assert_eq!(source.map(|s| s.timeout()), Some(Duration::from_secs(3)));
    }

    #[test]
    fn an_unsupported_protocol_or_a_bad_timeout_is_refused_naming_the_variable() {
        let err = |vars: &[(&str, &str)]| {
            OtlpSource::from_env(env(vars))
                .expect_err("invalid")
                .to_string()
        };
        assert_eq!(
            err(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            "OTEL_EXPORTER_OTLP_PROTOCOL: protocol \"grpc\" is not supported (only \"http/protobuf\")"
        );
        assert_eq!(
            err(&[
                ENDPOINT,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ]),
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol \"http/json\" is not supported (only \"http/protobuf\")"
        );
        assert_eq!(
            err(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]),
            "OTEL_EXPORTER_OTLP_TIMEOUT: \"10s\" is not a positive number of milliseconds"
        );
    }
}
