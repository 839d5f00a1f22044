//! Rate-limit headroom from the headers a registry sends: the IETF draft's `RateLimit-Limit` /
//! `RateLimit-Remaining` (with a `;w=<seconds>` window, as Docker Hub sends
//! `ratelimit-limit: 100;w=21600`), its newer single `RateLimit: limit=.., remaining=..` field
//! with `RateLimit-Policy: <limit>;w=<seconds>`, and the common `X-RateLimit-*` variants.

use std::time::Duration;

/// What a registry says is left of its rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headroom {
    /// Requests allowed per window.
    pub limit: u64,
    /// Requests left in the current window.
    pub remaining: u64,
    /// The window, when the registry names it.
    pub window: Option<Duration>,
}

/// The headroom named by `headers` (name, value pairs as recorded, names in any case); None
/// when they do not give both a limit and what remains.
pub fn headroom(headers: &[(String, String)]) -> Option<Headroom> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    // `100;w=21600` -> (100, Some(21600 s)); a bare number has no window.
    let quota = |value: &str| -> Option<(u64, Option<Duration>)> {
        let mut parts = value.split(';');
        let n = parts.next()?.trim().parse().ok()?;
        let window = parts
            .filter_map(|p| p.trim().strip_prefix("w="))
            .find_map(|w| w.trim().parse().ok())
            .map(Duration::from_secs);
        Some((n, window))
    };
    if let (Some(limit), Some(remaining)) = (get("ratelimit-limit"), get("ratelimit-remaining")) {
        let (limit, window) = quota(limit)?;
        let (remaining, remaining_window) = quota(remaining)?;
        return Some(Headroom {
            limit,
            remaining,
            window: window.or(remaining_window),
        });
    }
    if let Some(field) = get("ratelimit") {
        let param = |key: &str| {
            field
                .split([',', ';'])
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.trim().trim_matches('"').parse::<u64>().ok())
        };
        let policy = get("ratelimit-policy").and_then(quota);
        let limit = param("limit").or(policy.map(|(n, _)| n))?;
        return Some(Headroom {
            limit,
            remaining: param("remaining")?,
            window: policy.and_then(|(_, w)| w),
        });
    }
    let limit = get("x-ratelimit-limit").and_then(quota)?;
    let remaining = get("x-ratelimit-remaining").and_then(quota)?;
    Some(Headroom {
        limit: limit.0,
        remaining: remaining.0,
        window: limit.1.or(remaining.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_docker_hubs_headers_with_their_window() {
        assert_eq!(
            headroom(&h(&[
                ("ratelimit-limit", "100;w=21600"),
                ("ratelimit-remaining", "76;w=21600"),
                ("docker-ratelimit-source", "203.0.113.7"),
            ])),
            Some(Headroom {
                limit: 100,
                remaining: 76,
                window: Some(Duration::from_secs(21600))
            })
        );
    }

    #[test]
    fn reads_the_single_field_draft_and_the_x_variants() {
        assert_eq!(
            headroom(&h(&[
                ("RateLimit", "limit=60, remaining=3, reset=40"),
                ("RateLimit-Policy", "60;w=3600"),
            ])),
            Some(Headroom {
                limit: 60,
                remaining: 3,
                window: Some(Duration::from_secs(3600))
            })
        );
        assert_eq!(
            headroom(&h(&[
                ("X-RateLimit-Limit", "5000"),
                ("X-RateLimit-Remaining", "4999")
            ])),
            Some(Headroom {
                limit: 5000,
                remaining: 4999,
                window: None
            })
        );
    }

    #[test]
    fn says_nothing_without_both_numbers_or_with_garbage() {
        assert_eq!(headroom(&h(&[("ratelimit-limit", "100;w=21600")])), None);
        assert_eq!(headroom(&h(&[("Retry-After", "7")])), None);
        assert_eq!(
            headroom(&h(&[
                ("ratelimit-limit", "lots"),
                ("ratelimit-remaining", "1")
            ])),
            None
        );
    }
}

#[cfg(test)]
#[path = "ratelimit_properties.rs"]
mod properties;
