//! The console's frame and the pieces every page uses: the layout with its navigation and
//! sign-out form, times (UTC in the HTML, the browser's zone once `console.js` ran, UTC on
//! hover), status badges, error pages and hidden CSRF fields.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;
use crate::recovery::TxState;
use crate::server::problem::Problem;

/// The navigation's entries: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/console/", "Overview"),
    ("/console/transactions", "Transactions"),
    ("/console/in-doubt", "In doubt"),
    ("/console/plugins", "Plugins"),
    ("/console/nodes", "Nodes"),
];

/// A whole page: `title`, the navigation with `current` marked, who is signed in.
pub fn layout(title: &str, current: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wasmtx" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "wasmtx" }
                    @if let Some(session) = session {
                        nav aria-label="Console" {
                            ul {
                                @for (path, label) in NAV {
                                    li {
                                        @if *path == current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/console/sign-out" {
                            span.who { "Signed in as " strong { (session.caller.name()) } " (" (scopes(session)) ")" }
                            (csrf_field(session))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn scopes(session: &Session) -> String {
    let words: Vec<String> = session.scopes.iter().map(|s| s.to_string()).collect();
    words.join(", ")
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// Unix milliseconds as a `<time>`: UTC in the HTML; `console.js` shows it in the browser's
/// time zone and keeps UTC in the title (shown on hover).
pub fn time(ms: i64) -> Markup {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(at) => rfc3339_time(&at),
        None => html! { "—" },
    }
}

/// An RFC 3339 text as a `<time>` (see [`time`]); shown as it is when it does not parse.
pub fn time_text(text: &str) -> Markup {
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => rfc3339_time(&at.with_timezone(&Utc)),
        Err(_) => html! { (text) },
    }
}

fn rfc3339_time(at: &DateTime<Utc>) -> Markup {
    let utc = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) title=(utc) data-local { (utc) }
    }
}

/// A transaction state as a badge whose colour says how it ended.
pub fn status_badge(state: TxState) -> Markup {
    let class = match state {
        TxState::Committed => "ok",
        TxState::Aborted => "bad",
        TxState::Running => "neutral",
        _ => "warn",
    };
    html! { span class={ "badge " (class) } { (state.as_str()) } }
}

/// A page saying what went wrong, with the problem's code.
pub fn problem_page(problem: &Problem, session: Option<&Session>) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = html! {
        div.notice.bad role="alert" {
            p { strong { (problem.title) } " (" code { (problem.code) } ")" }
            p { (problem.detail) }
        }
        p { a href="/console/" { "Back to the overview" } }
    };
    (status, layout(&problem.title, "", session, body)).into_response()
}

/// A table of `class` with `columns` and `rows` (`<tr>`s), in a wrapper that scrolls
/// sideways on a narrow screen (and takes keyboard focus, so that arrows scroll it);
/// `caption` for screen readers.
pub fn table(class: &str, caption: Option<&str>, columns: &[&str], rows: Markup) -> Markup {
    html! {
        div.scroll tabindex="0" {
            table class=[(!class.is_empty()).then_some(class)] {
                @if let Some(caption) = caption {
                    caption.visually-hidden { (caption) }
                }
                thead { tr { @for column in columns { th scope="col" { (column) } } } }
                tbody { (rows) }
            }
        }
    }
}

/// A short form of a `sha256:<hex>` digest, the whole of it on hover.
pub fn digest(text: &str) -> Markup {
    let short: String = text.chars().take(19).collect();
    html! { code title=(text) { (short) "…" } }
}
