//! Health, readiness, metrics, version, and the answers for unknown routes and panics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::Problem;
use super::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or for readiness `not-ready`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the process is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "start-up recovery finished; invokes are accepted", body = Health),
              (status = 503, description = "not yet (or no longer) ready, and why", body = Health)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness() {
        Ok(()) => Json(Health {
            status: "ok".into(),
            reason: None,
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "not-ready".into(),
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.sample(&state);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: String,
    pub node: String,
    pub participants: Vec<String>,
}

#[utoipa::path(get, path = "/v1/version", tag = "operations", responses((status = 200, body = VersionInfo)))]
pub async fn version(State(state): State<Arc<AppState>>) -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        node: state.host.config().node.to_string(),
        participants: state.host.coordinator().participant_names(),
    })
}

pub async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(
        "no-such-route",
        format!(
            "{} is not a route of this server; GET /v1/openapi.json lists them",
            uri.path()
        ),
    )
}

/// A handler that panicked: 500, and the server keeps serving.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Problem::internal("the server failed while handling this request; it keeps serving")
        .into_response()
}
