//! The OpenAPI document of every route, served at `/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{invoke, ops, plugins, problem, transactions};

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmtx", description = "Distributed transactions whose prepare logic is a sandboxed WebAssembly component. Errors are application/problem+json (RFC 9457) with a stable `code`."),
    paths(
        plugins::publish, plugins::list, plugins::show, plugins::version, plugins::download,
        plugins::set_alias, plugins::withdraw,
        invoke::invoke,
        transactions::status, transactions::history, transactions::in_doubt, transactions::retry,
        transactions::resolve, transactions::run_recovery,
        ops::healthz, ops::readyz, ops::metrics, ops::version, ops::nodes,
    ),
    components(schemas(problem::Problem)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as a value (also for tests and `wasmtx serve --openapi`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "this document", content_type = "application/json")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
