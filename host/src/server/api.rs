//! Every route, declared once: the router and the OpenAPI document served at
//! `/v1/openapi.json` are both built from the handlers' `#[utoipa::path]` declarations
//! (utoipa-axum's `routes!`). Routes are grouped by the scope they need; a group's scope is
//! enforced by one layer ([`auth::require`]) and written into the document from the same
//! value, with the 401 and 403 answers it brings.

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::routing::MethodRouter;
use utoipa::PartialSchema;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, Ref, RefOr, Response};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::problem::{PROBLEM_JSON, Problem};
use super::state::AppState;
use super::{auth, invoke, ops, plugins, transactions};
use crate::config::Scope;

/// The body limits of the routes that take large bodies; every other body is small.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub upload: usize,
    pub input: usize,
}

/// The routes and their document. `limits` only shape the router.
pub fn api(limits: BodyLimits) -> OpenApiRouter<Arc<AppState>> {
    let open = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(document));
    let read = OpenApiRouter::new()
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::show))
        .routes(routes!(plugins::version))
        .routes(routes!(transactions::history))
        .routes(routes!(transactions::status))
        .routes(routes!(transactions::in_doubt))
        .routes(routes!(ops::version))
        .routes(routes!(ops::nodes));
    let invoke = OpenApiRouter::new().routes(limited(routes!(invoke::invoke), limits.input));
    let admin = OpenApiRouter::new()
        .routes(limited(routes!(plugins::publish), limits.upload))
        .routes(routes!(plugins::withdraw))
        .routes(routes!(plugins::download))
        .routes(routes!(plugins::set_alias))
        .routes(routes!(transactions::retry))
        .routes(routes!(transactions::resolve))
        .routes(routes!(transactions::run_recovery));
    let mut api = OpenApiRouter::with_openapi(base())
        .merge(open)
        .merge(secured(read, Scope::Read))
        .merge(secured(invoke, Scope::Invoke))
        .merge(secured(admin, Scope::Admin));
    declare_problems(api.get_openapi_mut());
    api
}

/// The OpenAPI document of every route.
pub fn openapi() -> OpenApi {
    let limits = BodyLimits {
        upload: 0,
        input: 0,
    };
    api(limits).into_openapi()
}

/// The document as this server serves it.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "this document", content_type = "application/json")))]
pub async fn document() -> Json<OpenApi> {
    Json(openapi())
}

/// A route whose body may be up to `limit` bytes.
fn limited(
    (schemas, paths, method_router): UtoipaMethodRouter<Arc<AppState>>,
    limit: usize,
) -> UtoipaMethodRouter<Arc<AppState>> {
    let method_router: MethodRouter<Arc<AppState>> =
        method_router.layer(DefaultBodyLimit::max(limit));
    (schemas, paths, method_router)
}

/// `group`, each of its routes needing a bearer token with `scope` — in the router and in
/// the document alike.
fn secured(mut group: OpenApiRouter<Arc<AppState>>, scope: Scope) -> OpenApiRouter<Arc<AppState>> {
    let requirement = SecurityRequirement::new("bearer", [scope.to_string()]);
    for item in group.get_openapi_mut().paths.paths.values_mut() {
        for operation in operations(item) {
            operation.security = Some(vec![requirement.clone()]);
            for (status, what) in [
                ("401", "no bearer token, or one this server does not know"),
                ("403", "the token lacks the scope this route needs"),
            ] {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem_response(what));
            }
        }
    }
    group.route_layer(axum::middleware::from_fn(
        move |request: Request, next: Next| auth::require(scope, request, next),
    ))
}

/// The document's frame: title, description, the bearer scheme, the problem schema.
fn base() -> OpenApi {
    let mut doc = OpenApi::new(
        InfoBuilder::new()
            .title("wasmtx")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Distributed transactions whose prepare logic is a sandboxed WebAssembly component. Errors are application/problem+json (RFC 9457) with a stable `code`.",
            ))
            .build(),
        utoipa::openapi::Paths::new(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components
        .schemas
        .insert("Problem".to_owned(), Problem::schema());
    doc
}

/// Every error answer is `application/problem+json`; a 401 also says how to authenticate.
/// An operation that takes parameters or a body may be refused as malformed (400), and a
/// body as too large (413).
fn declare_problems(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            let responses = &mut operation.responses.responses;
            if operation.parameters.as_ref().is_some_and(|p| !p.is_empty())
                || operation.request_body.is_some()
            {
                responses
                    .entry("400".to_owned())
                    .or_insert_with(|| problem_response("a malformed parameter or body"));
            }
            if operation.request_body.is_some() {
                responses
                    .entry("413".to_owned())
                    .or_insert_with(|| problem_response("the body is larger than allowed"));
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                if let Some(content) = response.content.shift_remove("application/json") {
                    response.content.insert(PROBLEM_JSON.to_owned(), content);
                }
                if status == "401" {
                    response.headers.insert(
                        "WWW-Authenticate".to_owned(),
                        HeaderBuilder::new()
                            .description(Some("`Bearer`"))
                            .schema(String::schema())
                            .build(),
                    );
                }
            }
        }
    }
}

/// A problem+json answer described by `what`.
fn problem_response(what: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(what)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(method, path, scope)` of every route in README's route table.
    fn readme_routes() -> BTreeSet<(String, String, String)> {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let table = readme
            .split_once("| route | scope | what |")
            .expect("README has the route table")
            .1;
        table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let route = cells[1].trim_matches('`');
                let (method, path) = route.split_once(' ').expect("METHOD /path");
                let path = path.split('?').next().unwrap_or(path);
                (method.to_owned(), path.to_owned(), cells[2].to_owned())
            })
            .collect()
    }

    /// `(method, path, scope)` of every operation in the document.
    fn document_routes() -> BTreeSet<(String, String, String)> {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let scope = operation["security"][0]["bearer"][0]
                    .as_str()
                    .unwrap_or("none");
                routes.insert((method.to_uppercase(), path.clone(), scope.to_owned()));
            }
        }
        routes
    }

    #[test]
    fn readme_route_table_is_the_document() {
        assert_eq!(readme_routes(), document_routes());
    }

    #[test]
    fn operation_ids_are_unique_and_every_secured_route_declares_401_and_403() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "operationId {id} twice");
                if operation.get("security").is_some() {
                    for status in ["401", "403"] {
                        let response = &operation["responses"][status];
                        assert!(
                            response["content"][PROBLEM_JSON].is_object(),
                            "{id}: {status}"
                        );
                    }
                }
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            response["content"].get("application/json").is_none(),
                            "{id}: {status} is declared application/json"
                        );
                    }
                }
            }
        }
    }
}
