//! The registry: plugins with their versions, aliases, digests and withdrawn versions, which
//! run warm; publishing an uploaded `.wasm`, setting an alias and withdrawing a version
//! (each an admin action); and what `wasmtx inspect` says of a published component.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Signed;
use super::page::{csrf_field, digest, layout, problem_page, table, time_text};
use crate::config::Scope;
use crate::registry::VersionInfo;
use crate::script::Inspection;
use crate::server::plugins::{publish_by, registry_problem};
use crate::server::problem::Problem;
use crate::server::state::AppState;

pub async fn list(State(state): State<Arc<AppState>>, signed: Signed) -> Response {
    let plugins = state.registry.list().await;
    let body = html! {
        @if plugins.is_empty() {
            p { "No plugin is published yet." }
        } @else {
            (table("", None, &["Plugin", "Latest", "Versions", "Aliases", "Instances"], html! { @for p in &plugins {
                            tr {
                                td { a href={ "/console/plugins/" (p.name) } { (p.name) } }
                                td { (p.latest.as_deref().unwrap_or("— (all withdrawn)")) }
                                td { (p.versions) }
                                td { @for (alias, version) in &p.aliases { code { (alias) } "→" (version) " " } }
                                td { (instances(&state, &p.name)) }
                            }
                        } }))
        }
        @if signed.session.can(Scope::Admin) {
            section.action aria-labelledby="publish-heading" {
                h2 id="publish-heading" { "Publish a version" }
                p { "The component is checked (a component of this world that compiles within the limits) and compiled into the cache before it is accepted; the same bytes under the same version again change nothing." }
                form method="post" action="/console/plugins/publish" enctype="multipart/form-data" {
                    (csrf_field(&signed.session))
                    div.field { label for="name" { "Name" } input id="name" name="name" required pattern="[a-z0-9][a-z0-9._-]{0,63}" spellcheck="false"; }
                    div.field { label for="version" { "Version (semver)" } input id="version" name="version" required placeholder="1.0.0" spellcheck="false"; }
                    div.field { label for="wasm" { "Component (.wasm)" } input id="wasm" name="wasm" type="file" accept=".wasm,application/wasm" required; }
                    button type="submit" { "Publish" }
                }
            }
        }
    };
    layout("Plugins", "/console/plugins", Some(&signed.session), body).into_response()
}

/// How the plugin's transactions get instances: fresh each (the default), or warm.
fn instances(state: &AppState, plugin: &str) -> Markup {
    html! {
        @match state.settings.warm.get(plugin) {
            Some(warm) => span.badge.warn title="an instance serves several transactions of one version: the plugin may carry data from one of its transactions to the next" {
                "warm: up to " (warm.max_uses) " uses, " (warm.idle_secs) " s idle"
            },
            None => "fresh per transaction",
        }
    }
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(name): Path<String>,
) -> Response {
    let plugin = match state.registry.show(&name).await {
        Ok(plugin) => plugin,
        Err(err) => return problem_page(&registry_problem(err), Some(&signed.session)),
    };
    let live: Vec<&VersionInfo> = plugin
        .versions
        .iter()
        .filter(|v| v.withdrawn_at.is_none())
        .collect();
    let body = html! {
        p { "Instances: " (instances(&state, &name)) }
        h2 { "Versions" }
        (table("", None, &["Version", "Digest", "Size", "Published", "By", "Withdrawn"], html! { @for v in plugin.versions.iter().rev() {
                        tr {
                            td { a href={ "/console/plugins/" (name) "/versions/" (v.version) } { (v.version) } }
                            td { (digest(&v.digest)) }
                            td { (v.size) " B" }
                            td { (time_text(&v.published_at)) }
                            td { (v.published_by.as_deref().unwrap_or("—")) }
                            td { @if let Some(at) = &v.withdrawn_at { (time_text(at)) } @else { "—" } }
                        }
                    } }))
        h2 { "Aliases" }
        ul { @for (alias, version) in &plugin.aliases { li { code { (alias) } " → " (version) } } }
        @if signed.session.can(Scope::Admin) && !live.is_empty() {
            section.action aria-labelledby="alias-heading" {
                h2 id="alias-heading" { "Set an alias" }
                form method="post" action={ "/console/plugins/" (name) "/alias" } {
                    (csrf_field(&signed.session))
                    div.field { label for="alias" { "Alias" } input id="alias" name="alias" required placeholder="stable" pattern="[a-z][a-z0-9-]{0,31}" spellcheck="false"; }
                    div.field {
                        label for="alias-version" { "Version" }
                        select id="alias-version" name="version" {
                            @for v in live.iter().rev() { option value=(v.version) { (v.version) } }
                        }
                    }
                    button type="submit" { "Set alias" }
                }
            }
        }
    };
    layout(
        &format!("Plugin {name}"),
        "/console/plugins",
        Some(&signed.session),
        body,
    )
    .into_response()
}

pub async fn version(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let info = match state.registry.version(&name, &version).await {
        Ok(info) => info,
        Err(err) => return problem_page(&registry_problem(err), Some(&signed.session)),
    };
    let inspection = inspect(&state, &info).await;
    let body = html! {
        (version_facts(&info))
        h2 { "What inspect says" }
        (inspection_facts(&inspection))
        @if signed.session.can(Scope::Admin) && info.withdrawn_at.is_none() {
            section.action aria-labelledby="withdraw-heading" {
                h2 id="withdraw-heading" { "Withdraw this version" }
                p { "No new transaction may run " (name) "@" (version) " (invokes naming it are refused with 410); the history keeps its digest, and it cannot be published again with other bytes." }
                form method="post" action={ "/console/plugins/" (name) "/versions/" (version) "/withdraw" } {
                    (csrf_field(&signed.session))
                    div.check {
                        input id="withdraw-confirm" type="checkbox" name="confirm" value="true" required;
                        label for="withdraw-confirm" { "Withdraw " (name) "@" (version) }
                    }
                    button.danger type="submit" { "Withdraw" }
                }
            }
        }
    };
    layout(
        &format!("{name}@{version}"),
        "/console/plugins",
        Some(&signed.session),
        body,
    )
    .into_response()
}

fn version_facts(info: &VersionInfo) -> Markup {
    html! {
        dl.facts {
            dt { "Plugin" } dd { a href={ "/console/plugins/" (info.name) } { (info.name) } }
            dt { "Version" } dd { (info.version) }
            dt { "Digest" } dd { code.wrap { (info.digest) } }
            dt { "Size" } dd { (info.size) " bytes" }
            dt { "Published" } dd { (time_text(&info.published_at)) " by " (info.published_by.as_deref().unwrap_or("—")) }
            dt { "Withdrawn" } dd { @if let Some(at) = &info.withdrawn_at { (time_text(at)) } @else { "no" } }
        }
    }
}

/// `wasmtx inspect` of a published component (compiling it takes a while the first time:
/// off the async threads).
async fn inspect(state: &Arc<AppState>, info: &VersionInfo) -> Result<Inspection, String> {
    let state = state.clone();
    let path = state.registry.blob_path(&info.digest);
    tokio::task::spawn_blocking(move || state.host.inspect(&path).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

fn inspection_facts(inspection: &Result<Inspection, String>) -> Markup {
    html! {
        @match inspection {
            Err(err) => p.notice.bad { "Cannot inspect it: " (err) },
            Ok(i) => dl.facts {
                dt { "World" } dd { code { (i.world) } @if i.implements_world { " — implemented" } @else { " — not implemented" } }
                dt { "This host can run it" } dd { @match &i.problem { None => "yes", Some(p) => { "no: " (p) } } }
                dt { "Imports" } dd { ul.plain { @for name in &i.imports { li { code { (name) } } } } }
                dt { "Exports" } dd { ul.plain { @for name in &i.exports { li { code { (name) } } } } }
                dt { "One instance needs" } dd { (i.needs.core_instances) " core instances, " (i.needs.memories) " memories, " (i.needs.tables) " tables, " (i.needs.initial_memory_bytes / 1024) " KiB of initial memory" }
            },
        }
    }
}

pub async fn publish(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let mut fields = PublishFields::default();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let bytes = match field.bytes().await {
                    Ok(bytes) => bytes,
                    Err(err) => return upload_problem(&signed, err.body_text(), err.status()),
                };
                let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
                match name.as_str() {
                    "csrf" => fields.csrf = text(),
                    "name" => fields.name = text(),
                    "version" => fields.version = text(),
                    "wasm" => fields.wasm = bytes.to_vec(),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(err) => return upload_problem(&signed, err.body_text(), err.status()),
        }
    }
    if let Some(refused) = signed.refusal(Scope::Admin, &headers, &fields.csrf) {
        return refused;
    }
    if fields.wasm.is_empty() {
        return upload_problem(
            &signed,
            "choose the component's .wasm file".into(),
            StatusCode::BAD_REQUEST,
        );
    }
    let published = match publish_by(
        &state,
        fields.name,
        fields.version,
        fields.wasm,
        &signed.session.caller,
    )
    .await
    {
        Ok(published) => published,
        Err(problem) => return problem_page(&problem, Some(&signed.session)),
    };
    let inspection = inspect(&state, &published.info).await;
    let body = html! {
        p.notice.ok {
            @if published.created { "Published " } @else { "Already published with these bytes: " }
            a href={ "/console/plugins/" (published.info.name) "/versions/" (published.info.version) } { (published.info.name) "@" (published.info.version) } "."
        }
        (version_facts(&published.info))
        h2 { "What inspect says" }
        (inspection_facts(&inspection))
    };
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        layout("Published", "/console/plugins", Some(&signed.session), body),
    )
        .into_response()
}

#[derive(Default)]
struct PublishFields {
    csrf: String,
    name: String,
    version: String,
    wasm: Vec<u8>,
}

fn upload_problem(signed: &Signed, detail: String, status: StatusCode) -> Response {
    problem_page(
        &Problem::new(status, "bad-upload", detail),
        Some(&signed.session),
    )
}

#[derive(Deserialize)]
pub struct AliasForm {
    csrf: String,
    alias: String,
    version: String,
}

pub async fn set_alias(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AliasForm>,
) -> Response {
    if let Some(refused) = signed.refusal(Scope::Admin, &headers, &form.csrf) {
        return refused;
    }
    match state
        .registry
        .set_alias(&name, form.alias.trim(), &form.version)
        .await
    {
        Ok(_) => Redirect::to(&format!("/console/plugins/{name}")).into_response(),
        Err(err) => problem_page(&registry_problem(err), Some(&signed.session)),
    }
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    csrf: String,
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn withdraw(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<WithdrawForm>,
) -> Response {
    if let Some(refused) = signed.refusal(Scope::Admin, &headers, &form.csrf) {
        return refused;
    }
    if form.confirm.as_deref() != Some("true") {
        return problem_page(
            &Problem::bad_request(
                "not-confirmed",
                "tick the box that names the version to withdraw it",
            ),
            Some(&signed.session),
        );
    }
    match state.registry.withdraw(&name, &version).await {
        Ok(_) => {
            Redirect::to(&format!("/console/plugins/{name}/versions/{version}")).into_response()
        }
        Err(err) => problem_page(&registry_problem(err), Some(&signed.session)),
    }
}
