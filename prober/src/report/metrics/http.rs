//! HTTP metrics: every exchange by path and whether its connection was new, the duration of
//! each phase, and when the certificates the prober met expire.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;
use strum::IntoEnumIterator as _;

use super::family::{
    closed_label, label_sets, Configured, Families, FloatGauge, Name, Scope, Tracked,
};
use crate::config::{Target, ORIGIN};
use crate::http::ratelimit;
use crate::outcome::{Phase, StepReport};

/// `connection`: whether an HTTP exchange opened a connection or reused a pooled one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub(super) enum Connection {
    New,
    Reused,
}

closed_label!(Connection, Phase);

label_sets! {
    ConnectionLabels { target: Name, path: Name, connection: Connection } [path];
    PhaseLabels { target: Name, path: Name, phase: Phase } [path];
    PathLabels { target: Name, path: Name } [path];
}

#[derive(Clone, Debug)]
pub(super) struct HttpMetrics {
    requests: Tracked<ConnectionLabels, Counter>,
    phase_duration: Tracked<PhaseLabels, Histogram>,
    certificate_expiry: Tracked<PathLabels, FloatGauge>,
    rate_limit: Tracked<PathLabels, Gauge>,
    rate_limit_remaining: Tracked<PathLabels, Gauge>,
    rate_limit_window: Tracked<PathLabels, FloatGauge>,
}

/// 0.1 ms to 26 s: a cached DNS answer to a drip-fed body.
fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl HttpMetrics {
    pub(super) fn register(f: &mut Families) -> HttpMetrics {
        let m = HttpMetrics {
            requests: Tracked::counter(),
            phase_duration: Tracked::new(phase_histogram),
            certificate_expiry: Tracked::float_gauge(),
            rate_limit: Tracked::gauge(),
            rate_limit_remaining: Tracked::gauge(),
            rate_limit_window: Tracked::float_gauge(),
        };
        f.tracked(
            "http_requests",
            "HTTP exchanges (redirect hops and token fetches included) by path and by whether the connection was new or reused",
            None,
            &m.requests,
        );
        f.tracked(
            "http_phase_duration",
            "Duration of a phase of an HTTP exchange: dns, connect, tls, first_byte, transfer",
            Some(Unit::Seconds),
            &m.phase_duration,
        );
        f.tracked(
            "tls_certificate_expiry_timestamp",
            "Unix time at which the earliest-expiring leaf certificate of the latest run that opened a TLS connection on the path expires",
            Some(Unit::Seconds),
            &m.certificate_expiry,
        );
        f.tracked(
            "rate_limit_requests",
            "Requests the registry allows per rate-limit window on the path, as its latest answer carrying RateLimit or X-RateLimit headers said; absent while none did",
            None,
            &m.rate_limit,
        );
        f.tracked(
            "rate_limit_remaining_requests",
            "Requests left in the current rate-limit window on the path, as the registry's latest answer carrying rate-limit headers said",
            None,
            &m.rate_limit_remaining,
        );
        f.tracked(
            "rate_limit_window",
            "The rate-limit window on the path, when the registry names one (RateLimit ;w=)",
            Some(Unit::Seconds),
            &m.rate_limit_window,
        );
        m
    }

    /// Exchanges of every path, new and reused, at zero.
    pub(super) fn init_target(&self, target: &Target) {
        let t = Name::from(target.name.as_str());
        let paths = std::iter::once(ORIGIN).chain(target.paths.iter().map(|p| p.name.as_str()));
        for path in paths {
            let p = Name::from(path);
            for connection in Connection::iter() {
                self.requests.touch(ConnectionLabels {
                    target: t.clone(),
                    path: p.clone(),
                    connection,
                });
            }
        }
    }

    pub(super) fn retain(&self, configured: &Configured) {
        let kept = |l: &dyn Scope| configured.keeps(l);
        self.requests.retain(kept);
        self.phase_duration.retain(kept);
        self.certificate_expiry.retain(kept);
        self.rate_limit.retain(kept);
        self.rate_limit_remaining.retain(kept);
        self.rate_limit_window.retain(kept);
    }

    /// The exchanges of one step: counted by connection, each timed phase observed.
    pub(super) fn observe_step(&self, target: &Name, step: &StepReport) {
        let p = Name::from(step.path.as_str());
        for request in &step.requests {
            let connection = if request.reused_connection {
                Connection::Reused
            } else {
                Connection::New
            };
            self.requests.inc_by(
                ConnectionLabels {
                    target: target.clone(),
                    path: p.clone(),
                    connection,
                },
                1,
            );
            let phases = [
                (Phase::Dns, request.dns_seconds),
                (Phase::Connect, request.connect_seconds),
                (Phase::Tls, request.tls_seconds),
                (Phase::FirstByte, request.first_byte_seconds),
                (Phase::Transfer, request.transfer_seconds),
            ];
            for (phase, seconds) in phases {
                if let Some(seconds) = seconds {
                    self.phase_duration.observe(
                        PhaseLabels {
                            target: target.clone(),
                            path: p.clone(),
                            phase,
                        },
                        seconds.as_secs_f64(),
                    );
                }
            }
        }
    }

    /// Per path, the headroom of the run's last answer that named one.
    pub(super) fn observe_rate_limits(&self, target: &Name, steps: &[StepReport]) {
        let mut latest: BTreeMap<&str, ratelimit::Headroom> = BTreeMap::new();
        for step in steps {
            for request in &step.requests {
                if let Some(headroom) = ratelimit::headroom(&request.rate_limit) {
                    latest.insert(step.path.as_str(), headroom);
                }
            }
        }
        for (path, headroom) in latest {
            let labels = || PathLabels {
                target: target.clone(),
                path: Name::from(path),
            };
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.rate_limit.with(labels(), |g| {
                g.set(count(headroom.limit));
            });
            self.rate_limit_remaining.with(labels(), |g| {
                g.set(count(headroom.remaining));
            });
            if let Some(window) = headroom.window {
                self.rate_limit_window.set(labels(), window.as_secs_f64());
            }
        }
    }

    /// Per path, the earliest expiry is the one to alert on, whichever host (registry, token
    /// service, blob storage behind a redirect) it belongs to. Reused connections carry no
    /// certificate, so a path whose run only reused connections keeps its previous value.
    pub(super) fn observe_certificates(&self, target: &Name, steps: &[StepReport]) {
        let mut earliest: BTreeMap<&str, u64> = BTreeMap::new();
        for step in steps {
            for not_after in step
                .requests
                .iter()
                .filter_map(|r| r.peer_cert_not_after_unix)
            {
                earliest
                    .entry(step.path.as_str())
                    .and_modify(|e| *e = (*e).min(not_after))
                    .or_insert(not_after);
            }
        }
        for (path, not_after) in earliest {
            self.certificate_expiry.set(
                PathLabels {
                    target: target.clone(),
                    path: Name::from(path),
                },
                not_after as f64,
            );
        }
    }
}
