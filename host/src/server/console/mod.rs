//! The operator console at `/console/`: pages rendered by the server (maud templates, checked
//! at compile time and escaped by default), one stylesheet and one small script embedded in
//! the binary — no bundle to build, no CDN, works offline, same origin as the API. The pages
//! are thin: they call what the API's handlers call (history, status, in-doubt, retry,
//! force-resolve, the registry) and show the answers.
//!
//! - `session.rs`: signing in with a bearer token, the session cookie, CSRF;
//! - `page.rs`: the layout and shared pieces;
//! - `overview.rs`, `transactions.rs`, `in_doubt.rs`, `plugins.rs`, `nodes.rs`: the pages.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from this
//! origin only, nothing inline, no framing) and is not cached. A page needs a session whose
//! token has the `read` scope; an action (retry, force-resolve, publish, alias, withdraw)
//! needs `admin`, a form from this origin and the session's CSRF token — a read-only session
//! sees no action and the server refuses one anyway.

mod in_doubt;
mod nodes;
mod overview;
mod page;
mod plugins;
pub mod session;
mod transactions;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use serde::Deserialize;

use super::problem::Problem;
use super::state::AppState;
use crate::config::Scope;
use crate::server::auth::{Auth, Caller};
use page::{layout, problem_page};
use session::{Session, Sessions};

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes; `upload_limit` bounds a published component.
pub fn router(upload_limit: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview::page))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/transactions", get(transactions::list))
        .route("/console/transactions/{gid}", get(transactions::detail))
        .route("/console/in-doubt", get(in_doubt::list))
        .route("/console/in-doubt/{gid}", get(in_doubt::confirm))
        .route("/console/in-doubt/{gid}/retry", post(in_doubt::retry))
        .route("/console/in-doubt/{gid}/resolve", post(in_doubt::resolve))
        .route("/console/plugins", get(plugins::list))
        .route(
            "/console/plugins/publish",
            post(plugins::publish)
                .layer(DefaultBodyLimit::max(upload_limit.saturating_add(64 << 10))),
        )
        .route("/console/plugins/{name}", get(plugins::detail))
        .route("/console/plugins/{name}/alias", post(plugins::set_alias))
        .route(
            "/console/plugins/{name}/versions/{version}",
            get(plugins::version),
        )
        .route(
            "/console/plugins/{name}/versions/{version}/withdraw",
            post(plugins::withdraw),
        )
        .route("/console/nodes", get(nodes::page))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        .layer(axum::middleware::map_response(secure_headers))
        .layer(Extension(Arc::new(Sessions::default())))
}

/// The headers of every console answer.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// A request from a signed-in browser: its session and cookie id.
pub struct Signed {
    pub session: Session,
    pub id: String,
}

impl Signed {
    /// The refusal (403) of an action, unless the session's token has `scope`, the form
    /// carries the session's CSRF token and the request comes from this origin.
    pub fn refusal(&self, scope: Scope, headers: &HeaderMap, csrf: &str) -> Option<Response> {
        let refused = |detail: &str| {
            Some(problem_page(
                &Problem::new(StatusCode::FORBIDDEN, "forbidden", detail),
                Some(&self.session),
            ))
        };
        if !session::same_origin(headers) || !self.session.check_form(csrf) {
            return refused(
                "this form did not come from this console's page (or the page is from an earlier session): reload the page and try again",
            );
        }
        if !self.session.can(scope) {
            return refused(&format!(
                "the token `{}` signed in with lacks the `{scope}` scope this action needs",
                self.session.caller.name()
            ));
        }
        None
    }
}

impl FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let sessions = sessions(parts);
        let signed = session::cookie_id(&parts.headers)
            .and_then(|id| Some((sessions.get(&id)?, id)))
            .map(|(session, id)| Signed { session, id });
        match signed {
            Some(signed) if signed.session.can(Scope::Read) => Ok(signed),
            _ => Err(Redirect::to("/console/sign-in").into_response()),
        }
    }
}

impl axum::extract::OptionalFromRequestParts<Arc<AppState>> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Signed as FromRequestParts<_>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

fn sessions(parts: &Parts) -> Arc<Sessions> {
    parts
        .extensions
        .get::<Arc<Sessions>>()
        .cloned()
        .expect("the console router carries its sessions")
}

/// The sign-in form; without tokens configured, a button to enter as the loopback caller.
async fn sign_in_page(State(state): State<Arc<AppState>>) -> Response {
    sign_in_form(&state.auth, None, StatusCode::OK)
}

fn sign_in_form(auth: &Auth, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        @if let Some(error) = error {
            div.notice.bad role="alert" { p { (error) } }
        }
        form.signin method="post" action="/console/sign-in" {
            @if auth.enabled() {
                p { "Sign in with a bearer token of this server's configuration (" code { "[[server.tokens]]" } "). The console acts with that token's scopes only; the token is not kept in the browser." }
                label for="token" { "Token" }
                input id="token" name="token" type="password" autocomplete="off" required autofocus;
            } @else {
                p { "This server has no tokens configured: it listens on loopback only, and anyone on this machine may do everything. Configure " code { "[[server.tokens]]" } " to require a token." }
                input type="hidden" name="token" value="";
            }
            button type="submit" { "Sign in" }
        }
    };
    (status, layout("Sign in", "", None, body)).into_response()
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

async fn sign_in(
    State(state): State<Arc<AppState>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !session::same_origin(&headers) {
        return sign_in_form(
            &state.auth,
            Some("this sign-in did not come from this console's page"),
            StatusCode::FORBIDDEN,
        );
    }
    let (caller, scopes) = if state.auth.enabled() {
        match state.auth.identify(form.token.trim()) {
            Some((name, scopes)) => (Caller::Token(name.to_owned()), scopes.to_vec()),
            None => {
                return sign_in_form(
                    &state.auth,
                    Some("that token is not one this server knows"),
                    StatusCode::UNAUTHORIZED,
                );
            }
        }
    } else {
        (
            Caller::Loopback,
            vec![Scope::Admin, Scope::Invoke, Scope::Read],
        )
    };
    if !scopes.contains(&Scope::Read) {
        return sign_in_form(
            &state.auth,
            Some(&format!(
                "the token `{}` lacks the `read` scope the console needs to show anything",
                caller.name()
            )),
            StatusCode::FORBIDDEN,
        );
    }
    let Ok(id) = sessions.start(caller, scopes) else {
        return problem_page(
            &Problem::internal("the operating system gave no random bytes for a session"),
            None,
        );
    };
    redirect_setting(
        "/console/",
        session::set_cookie(&id, state.settings.tls_files().is_some()),
    )
}

/// A redirect to `to` that sets `cookie`.
fn redirect_setting(to: &str, cookie: HeaderValue) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// A form that carries nothing but the session's CSRF token (sign-out, retry).
#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<Arc<AppState>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    // Reading is all a session can do: any session may end itself.
    if let Some(refused) = signed.refusal(Scope::Read, &headers, &form.csrf) {
        return refused;
    }
    sessions.end(&signed.id);
    redirect_setting(
        "/console/sign-in",
        session::clear_cookie(state.settings.tls_files().is_some()),
    )
}
