//! Durations: the raw structs read them with humantime-serde ("30s", "2m"), so a malformed one
//! is a parse error naming its key and line; here the defaults, the rules (none is zero, a
//! deadline fits its interval), and `duration` for sections that still hold text (`otlp`).

use std::time::Duration;

use super::{invalid, ConfigError};

/// A configured duration, or `default` without one; zero is refused.
pub(super) fn positive(
    field: &str,
    value: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(d) => nonzero(field, d, &humantime::format_duration(d).to_string()),
    }
}

/// `what` (a deadline) must fit in `limit` (an interval or a longer deadline), both quoted.
pub(super) fn not_longer(
    what: &str,
    d: Duration,
    limit_name: &str,
    limit: Duration,
) -> Result<(), ConfigError> {
    if d > limit {
        return Err(invalid(format!(
            "{what} ({}) must not be longer than {limit_name} ({})",
            humantime::format_duration(d),
            humantime::format_duration(limit)
        )));
    }
    Ok(())
}

/// A duration written as text ("30s", "2m"), or `default` without one; zero is refused.
pub(super) fn duration(
    field: &str,
    value: Option<&String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(format!(
            "{field}: invalid duration {text:?}: {e} (expected e.g. \"30s\", \"2m\")"
        ))
    })?;
    nonzero(field, d, text)
}

/// A zero interval or deadline would spin or fail every step: refused, quoting the value.
fn nonzero(field: &str, d: Duration, shown: &str) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(invalid(format!(
            "{field}: duration {shown:?} must be greater than zero"
        )));
    }
    Ok(d)
}
