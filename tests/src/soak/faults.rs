//! The faults soaks put on the wire through the fault proxy: the transient ones a healthy
//! registry has now and then (a connection reset, a 503, a slow drip), each for one request of
//! one run, and the whole catalogue of the proxy for a chaos soak, on random requests.

use std::time::Duration;

use http::Method;
use rand::seq::IndexedRandom as _;
use rand::{Rng, RngCore};

use crate::fault_proxy::{Fault, Rule};

/// A transient fault of a healthy registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transient {
    /// The connection is reset in the middle of a response body.
    Reset,
    /// The registry answers 503 Service Unavailable.
    Unavailable,
    /// A response body comes a few bytes at a time.
    Drip,
}

impl Transient {
    pub const ALL: [Transient; 3] = [Transient::Reset, Transient::Unavailable, Transient::Drip];

    pub fn name(self) -> &'static str {
        match self {
            Transient::Reset => "reset",
            Transient::Unavailable => "503",
            Transient::Drip => "drip",
        }
    }
}

/// A one-shot rule of `kind` for the next run of the target pushing to `repo`, on one of the
/// requests such a run makes (chosen by `rng`), and what it does in words. A drip either stays
/// well inside the run's `timeout` (a slow run that succeeds) or outlasts it (a run that times
/// out).
pub fn transient(
    kind: Transient,
    repo: &str,
    timeout: Duration,
    rng: &mut dyn RngCore,
    name: &str,
) -> (Rule, String) {
    let blobs = format!("/v2/{repo}/blobs/sha256:");
    let manifests = format!("/v2/{repo}/manifests/");
    let by_digest = format!("/v2/{repo}/manifests/sha256:");
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    let (rule, what) = match kind {
        Transient::Reset => {
            if rng.random_bool(0.5) {
                let rule = Rule::new(name, &blobs, Fault::ResetMidBody { after: 64 });
                (
                    rule.method(Method::GET),
                    "reset after 64 bytes of a blob GET",
                )
            } else {
                let rule = Rule::new(name, &manifests, Fault::ResetMidBody { after: 16 });
                (
                    rule.method(Method::GET),
                    "reset after 16 bytes of a manifest GET",
                )
            }
        }
        Transient::Unavailable => {
            if rng.random_bool(0.5) {
                let rule = Rule::new(name, &uploads, Fault::status(503));
                (
                    rule.method(Method::POST),
                    "503 to the POST opening an upload",
                )
            } else {
                let rule = Rule::new(name, &manifests, Fault::status(503));
                (rule.method(Method::PUT), "503 to the manifest PUT")
            }
        }
        Transient::Drip => {
            // Manifests are a few hundred bytes: 32 bytes a tick is ~20 ticks.
            let (tick, what) = if rng.random_bool(0.5) {
                (
                    timeout / 200,
                    "a manifest GET dripping 32 bytes every timeout/200 (slow, in time)",
                )
            } else {
                (
                    timeout / 8,
                    "a manifest GET dripping 32 bytes every timeout/8 (past the run's timeout)",
                )
            };
            let rule = Rule::new(
                name,
                &by_digest,
                Fault::Drip {
                    bytes_per_tick: 32,
                    tick,
                },
            );
            (rule.method(Method::GET), what)
        }
    };
    (rule.times(1), what.to_string())
}

/// A random fault of the proxy's whole catalogue on a random kind of request to one of `repos`
/// (or the ping), acting `1..=3` times: its catalogue name and the rule. `timeout` is the runs'
/// timeout, so delays fall on both sides of it.
pub fn chaos(
    rng: &mut dyn RngCore,
    repos: &[&str],
    timeout: Duration,
    name: &str,
) -> (&'static str, Rule) {
    let repo = repos.choose(rng).copied().unwrap_or("x");
    let requests: [(Method, String); 12] = [
        (Method::GET, "/v2/".to_string()),
        (Method::HEAD, format!("/v2/{repo}/blobs/sha256:")),
        (Method::POST, format!("/v2/{repo}/blobs/uploads/")),
        (Method::PATCH, format!("/v2/{repo}/blobs/uploads/")),
        (Method::PUT, format!("/v2/{repo}/blobs/uploads/")),
        (Method::PUT, format!("/v2/{repo}/manifests/")),
        (Method::GET, format!("/v2/{repo}/manifests/")),
        (Method::GET, format!("/v2/{repo}/blobs/sha256:")),
        (Method::GET, format!("/v2/{repo}/tags/list")),
        (Method::DELETE, format!("/v2/{repo}/manifests/")),
        (Method::DELETE, format!("/v2/{repo}/blobs/sha256:")),
        (Method::DELETE, format!("/v2/{repo}/blobs/uploads/")),
    ];
    let (method, path) = requests
        .choose(rng)
        .cloned()
        .unwrap_or((Method::GET, "/v2/".into()));
    let delay = if rng.random_bool(0.5) {
        timeout / 4
    } else {
        timeout * 2
    };
    let (kind, fault) = match rng.random_range(0..16) {
        0 => (
            "status_5xx",
            Fault::status(*[500, 502, 503, 504].choose(rng).unwrap_or(&500)),
        ),
        1 => (
            "status_429",
            Fault::Status {
                status: 429,
                headers: vec![("Retry-After".into(), rng.random_range(1..=3).to_string())],
                body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.into(),
            },
        ),
        2 => (
            "status_4xx",
            Fault::Status {
                status: *[400, 401, 403, 404].choose(rng).unwrap_or(&404),
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"chaos"}]}"#.into(),
            },
        ),
        3 => (
            "reset_mid_body",
            Fault::ResetMidBody {
                after: rng.random_range(0..512),
            },
        ),
        4 => (
            "truncate",
            Fault::Truncate {
                after: rng.random_range(0..512),
            },
        ),
        5 => (
            "flip_byte",
            Fault::FlipByte {
                offset: rng.random_range(0..256),
            },
        ),
        6 => (
            "append_bytes",
            Fault::AppendBytes {
                count: rng.random_range(1..16),
                keep_content_length: rng.random_bool(0.5),
            },
        ),
        7 => (
            "set_header",
            match rng.random_range(0..3) {
                0 => Fault::SetHeader {
                    name: "Docker-Content-Digest".into(),
                    value: format!("sha256:{}", "0".repeat(64)),
                },
                1 => Fault::SetHeader {
                    name: "Location".into(),
                    value: "/v2/elsewhere/blobs/uploads/nope".into(),
                },
                _ => Fault::SetHeader {
                    name: "Content-Length".into(),
                    value: rng.random_range(0..100_000).to_string(),
                },
            },
        ),
        8 => (
            "remove_header",
            Fault::RemoveHeader {
                name: (*["Location", "Docker-Content-Digest", "Range", "Content-Type"]
                    .choose(rng)
                    .unwrap_or(&"Location"))
                .into(),
            },
        ),
        9 => (
            "set_status",
            Fault::SetStatus {
                status: *[200, 201, 202, 204, 302, 500].choose(rng).unwrap_or(&500),
            },
        ),
        10 => (
            "replace_body",
            Fault::ReplaceBody {
                body: match rng.random_range(0..3) {
                    0 => b"<html>502 Bad Gateway</html>".to_vec(),
                    1 => b"{\"tags\": 7}".to_vec(),
                    _ => b"{}".to_vec(),
                },
                content_type: Some(
                    (*["text/html", "application/json"]
                        .choose(rng)
                        .unwrap_or(&"text/html"))
                    .into(),
                ),
            },
        ),
        11 => ("delay_headers", Fault::DelayHeaders { delay }),
        12 => (
            "drip",
            Fault::Drip {
                bytes_per_tick: rng.random_range(1..64),
                tick: delay / 64,
            },
        ),
        13 => ("hang", Fault::Hang),
        14 => ("status_5xx", Fault::status(503)),
        _ => ("reset_mid_body", Fault::ResetMidBody { after: 0 }),
    };
    let rule = Rule::new(name, &path, fault)
        .method(method)
        .times(rng.random_range(1..=3));
    (kind, rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn transient_rules_act_once_on_the_repository_of_the_run() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for kind in Transient::ALL {
            for _ in 0..8 {
                let (rule, what) =
                    transient(kind, "soak/a", Duration::from_secs(25), &mut rng, "f");
                assert_eq!(rule.times, Some(1), "{what}");
                assert!(rule.path_contains.starts_with("/v2/soak/a/"), "{what}");
                assert!(rule.method.is_some(), "{what}");
            }
        }
    }

    #[test]
    fn the_chaos_catalogue_covers_every_kind_of_fault() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut kinds = std::collections::BTreeSet::new();
        for i in 0..500 {
            let (kind, rule) = chaos(
                &mut rng,
                &["c/a", "c/b"],
                Duration::from_secs(2),
                &format!("r{i}"),
            );
            assert!(rule.times.is_some_and(|n| (1..=3).contains(&n)));
            kinds.insert(kind);
        }
        assert_eq!(kinds.len(), 14, "{kinds:?}");
    }
}
