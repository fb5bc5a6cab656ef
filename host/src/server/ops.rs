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
use crate::cluster::NodeRow;

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
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.sample_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// What this server runs: the software's version, its node and participants.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerInfo {
    pub version: String,
    pub node: String,
    /// This node's incarnation in the cluster (absent without `[decision_log] url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<i64>,
    pub participants: Vec<String>,
}

#[utoipa::path(get, path = "/v1/version", tag = "operations", operation_id = "server_version",
    responses((status = 200, description = "this server's version, node and participants", body = ServerInfo)))]
pub async fn version(State(state): State<Arc<AppState>>) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        node: state.host.config().node.to_string(),
        incarnation: state.host.cluster().map(|c| c.lease().incarnation()),
        participants: state.host.participant_names(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// The node answering.
    pub node: String,
    pub nodes: Vec<NodeRow>,
}

#[utoipa::path(get, path = "/v1/nodes", tag = "operations",
    responses((status = 200, description = "every node of the cluster, its lease and who adopts it", body = NodeList),
              (status = 404, description = "this server is not part of a cluster", body = Problem),
              (status = 503, description = "the decision log cannot be read", body = Problem)))]
pub async fn nodes(State(state): State<Arc<AppState>>) -> Result<Json<NodeList>, Problem> {
    let Some(cluster) = state.host.cluster() else {
        return Err(Problem::not_found(
            "not-a-cluster",
            "this server keeps its decisions in a local file: it is a single node; set [decision_log] url to run a cluster",
        ));
    };
    let nodes = cluster.nodes().await.map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "decision-log-unavailable",
            format!(
                "cannot read the node table of the {}: {e}",
                cluster.describe()
            ),
        )
    })?;
    Ok(Json(NodeList {
        node: cluster.node().to_string(),
        nodes,
    }))
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
