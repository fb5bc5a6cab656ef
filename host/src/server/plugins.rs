//! The registry's routes: publish, list, show, download, alias, withdraw.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::problem::{Problem, body_rejection, parse_json};
use super::state::AppState;
use crate::registry::{PluginDetail, PluginSummary, Published, RegistryError, VersionInfo};

/// A WebAssembly component's bytes, as a request body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct ComponentBytes(Vec<u8>);

/// A registry refusal as a problem with the registry's stable code.
pub fn registry_problem(err: RegistryError) -> Problem {
    let status = match &err {
        RegistryError::PluginNotFound { .. } | RegistryError::VersionNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        RegistryError::Withdrawn { .. } => StatusCode::GONE,
        RegistryError::VersionExists { .. } => StatusCode::CONFLICT,
        RegistryError::Database { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RegistryError::Io { .. }
        | RegistryError::Rejected(crate::script::LoadError::Read { .. }) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    Problem::new(status, err.code(), err.to_string())
}

#[utoipa::path(put, path = "/v1/plugins/{name}/versions/{version}", tag = "plugins",
    params(("name" = String, Path, description = "the plugin's name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"), ("version" = String, Path, description = "semver without build metadata, e.g. 1.2.0", pattern = r"^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})(-(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$")),
    request_body(description = "the component's bytes (the media type is not checked)",
        content((ComponentBytes = "application/wasm"), (ComponentBytes = "application/octet-stream"))),
    responses((status = 201, description = "published", body = VersionInfo),
              (status = 200, description = "the same bytes were published under this version already", body = VersionInfo),
              (status = 400, description = "not a component of this world, or a bad name or version", body = Problem),
              (status = 409, description = "other bytes are published under this version", body = Problem),
              (status = 413, description = "larger than [server] max_upload_bytes", body = Problem)))]
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = body.map_err(|r| body_rejection(r, state.settings.max_upload_bytes))?;
    let published = publish_by(&state, name, version, bytes.to_vec(), &caller).await?;
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(published.info)).into_response())
}

/// Publishes `bytes` as `name@version` for `caller`.
pub async fn publish_by(
    state: &AppState,
    name: String,
    version: String,
    bytes: Vec<u8>,
    caller: &Caller,
) -> Result<Published, Problem> {
    // Checking compiles the component: seconds of CPU for a large one, off the async pool.
    let published = state
        .registry
        .publish(name, version, bytes, Some(caller.name().to_owned()))
        .await
        .map_err(registry_problem)?;
    state.metrics.plugin_published(&published.info.name);
    Ok(published)
}

#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", operation_id = "list_plugins",
    responses((status = 200, body = Vec<PluginSummary>)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<PluginSummary>>, Problem> {
    Ok(Json(state.registry.list().await))
}

#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "plugins", operation_id = "show_plugin", params(("name" = String, Path, description = "the plugin's name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")),
    responses((status = 200, body = PluginDetail), (status = 404, body = Problem)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<PluginDetail>, Problem> {
    state
        .registry
        .show(&name)
        .await
        .map(Json)
        .map_err(registry_problem)
}

#[utoipa::path(get, path = "/v1/plugins/{name}/versions/{version}", tag = "plugins", operation_id = "plugin_version",
    params(("name" = String, Path, description = "the plugin's name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"), ("version" = String, Path, description = "semver without build metadata, e.g. 1.2.0", pattern = r"^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})(-(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$")),
    responses((status = 200, body = VersionInfo), (status = 404, body = Problem)))]
pub async fn version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<VersionInfo>, Problem> {
    state
        .registry
        .version(&name, &version)
        .await
        .map(Json)
        .map_err(registry_problem)
}

#[utoipa::path(get, path = "/v1/plugins/{name}/versions/{version}/wasm", tag = "plugins",
    params(("name" = String, Path, description = "the plugin's name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"), ("version" = String, Path, description = "semver without build metadata, e.g. 1.2.0", pattern = r"^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})(-(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$")),
    responses((status = 200, description = "the component's bytes", content_type = "application/wasm"),
              (status = 404, body = Problem)))]
pub async fn download(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let info = state
        .registry
        .version(&name, &version)
        .await
        .map_err(registry_problem)?;
    let bytes = tokio::fs::read(state.registry.blob_path(&info.digest))
        .await
        .map_err(Problem::internal)?;
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", info.digest)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasRequest {
    /// The version the alias names.
    #[schema(
        pattern = r"^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})(-(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$"
    )]
    pub version: String,
}

#[utoipa::path(put, path = "/v1/plugins/{name}/aliases/{alias}", tag = "plugins",
    params(("name" = String, Path, description = "the plugin's name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"), ("alias" = String, Path, description = "e.g. stable; `latest` is kept by the server", pattern = r"^(?!latest$)[a-z][a-z0-9-]{0,31}$")),
    request_body = AliasRequest,
    responses((status = 200, body = PluginDetail), (status = 400, body = Problem),
              (status = 404, body = Problem), (status = 410, body = Problem)))]
pub async fn set_alias(
    State(state): State<Arc<AppState>>,
    Path((name, alias)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PluginDetail>, Problem> {
    let body = body.map_err(|r| body_rejection(r, 64 << 10))?;
    let request: AliasRequest = parse_json(&body)?;
    state
        .registry
        .set_alias(&name, &alias, &request.version)
        .await
        .map(Json)
        .map_err(registry_problem)
}

#[utoipa::path(delete, path = "/v1/plugins/{name}/versions/{version}", tag = "plugins",
    params(("name" = String, Path, description = "the plugin's name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"), ("version" = String, Path, description = "semver without build metadata, e.g. 1.2.0", pattern = r"^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})(-(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$")),
    responses((status = 200, description = "withdrawn: no new invocations; history keeps its digest", body = VersionInfo),
              (status = 404, body = Problem)))]
pub async fn withdraw(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<VersionInfo>, Problem> {
    state
        .registry
        .withdraw(&name, &version)
        .await
        .map(Json)
        .map_err(registry_problem)
}
