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

/// OpenMetrics when the scraper asks for it (Prometheus does), else the Prometheus text format.
async fn metrics_text(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            metrics::encode(&s.registry),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, metrics::TEXT_CONTENT_TYPE)],
            metrics::encode_text_format(&s.registry),
        )
            .into_response()
    }
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
}

async fn status_page(State(s): State<AppState>, Query(q): Query<PageQuery>) -> Response {
    let snapshot = s.history.snapshot();
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
