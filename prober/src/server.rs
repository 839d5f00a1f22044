//! The HTTP endpoints: /metrics (OpenMetrics), /healthz, /readyz, and the status page at /
//! (`?format=json` for the same data). The server only reads what `report` holds.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::report::health::Health;
use crate::report::metrics;
use crate::report::status::{self, History};

/// What the endpoints read.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<prometheus_client::registry::Registry>,
    pub history: Arc<History>,
    pub health: Arc<Health>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the Prometheus text format;
/// gzipped when the scraper accepts it (Prometheus does). Encoded on a blocking thread: at
/// 1,000 targets the text is ~44 MB and takes a while, which must not hold up the runs.
async fn metrics_text(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let format = if header_values(&headers, header::ACCEPT)
        .any(|v| v.contains("application/openmetrics-text"))
    {
        metrics::Format::OpenMetrics
    } else {
        metrics::Format::Text
    };
    let gzip = accepts_gzip(header_values(&headers, header::ACCEPT_ENCODING));
    let registry = s.registry.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        if gzip {
            metrics::encode_gzip(&registry, format)
        } else {
            metrics::encode_as(&registry, format).into_bytes()
        }
    })
    .await;
    let Ok(body) = encoded else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept, Accept-Encoding"),
        ],
        body,
    )
        .into_response();
    if gzip {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    response
}

fn header_values(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

/// Whether an Accept-Encoding allows gzip: `gzip` or `*` listed without `q=0`.
fn accepts_gzip<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    values.flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.health.check_live() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(stuck) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "scheduler stuck: no run started or finished for {}s (limit {}s)\n",
                stuck.idle.as_secs(),
                stuck.limit.as_secs()
            ),
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first round has not started\n",
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct PageQuery {
    format: Option<String>,
    /// One target's page: its runs, whatever the number of targets.
    target: Option<String>,
}

async fn status_page(State(s): State<AppState>, Query(q): Query<PageQuery>) -> Response {
    let snapshot = match q.target.as_deref() {
        None => s.history.snapshot(),
        Some(name) => match s.history.snapshot_of(name) {
            Some(snapshot) => snapshot,
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no target named {name:?}: the configured targets are listed at /\n"),
                )
                    .into_response()
            }
        },
    };
    match q.format.as_deref() {
        Some("json") => (
            [(header::CONTENT_TYPE, "application/json")],
            status::render_json(&snapshot),
        )
            .into_response(),
        None | Some("html") => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            status::render_html(&snapshot),
        )
            .into_response(),
        Some(other) => (
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?}: use html or json\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_is_used_when_accepted_and_not_refused() {
        let accepts = |v: &str| accepts_gzip(std::iter::once(v));
        // What Prometheus sends.
        assert!(accepts("gzip"));
        assert!(accepts("deflate, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, gzip; q=0.0"));
        assert!(!accepts_gzip(std::iter::empty()));
    }
}
