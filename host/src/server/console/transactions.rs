//! The history with its filters (status, plugin, time range, gid) and keyset paging, and a
//! transaction's page: each participant's state, the phases as a timeline, the output or
//! the error with its hint, the plugin's version and digest, and any resolution.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDateTime;
use maud::{Markup, html};
use serde::Deserialize;

use super::Signed;
use super::page::{digest, layout, problem_page, status_badge, table, time};
use crate::config::Scope;
use crate::gid::Gid;
use crate::recovery::TxState;
use crate::report::TxReport;
use crate::server::history::{HistoryFilter, TxRecord, next_cursor, parse_cursor};
use crate::server::problem::Problem;
use crate::server::state::AppState;
use crate::server::transactions::{TxStatus, status_of};

/// Rows per page.
const PAGE: u32 = 50;

/// The states the status filter offers.
const STATES: &[TxState] = &[
    TxState::Committed,
    TxState::Aborted,
    TxState::Running,
    TxState::Committing,
    TxState::InDoubt,
    TxState::Aborting,
    TxState::HeuristicCommit,
    TxState::HeuristicRollback,
];

/// The filter form's fields. Times are the browser's local `datetime-local` values;
/// `tz` is the browser's offset from UTC in minutes (`Date.getTimezoneOffset`, set by
/// `console.js`; UTC without it).
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    tz: String,
    #[serde(default)]
    gid: String,
    #[serde(default)]
    cursor: String,
}

impl ListQuery {
    /// The history filter, or what is wrong with the form.
    fn filter(&self) -> Result<HistoryFilter, String> {
        let offset_min: i64 = match self.tz.trim() {
            "" => 0,
            tz => tz
                .parse()
                .ok()
                .filter(|m: &i64| m.abs() <= 24 * 60)
                .ok_or("the time zone offset is not a number of minutes")?,
        };
        let time = |text: &str, what: &str| -> Result<Option<i64>, String> {
            if text.trim().is_empty() {
                return Ok(None);
            }
            let local = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M")
                .or_else(|_| NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S"))
                .map_err(|_| format!("{what} is not a date and time (YYYY-MM-DDTHH:MM)"))?;
            Ok(Some(
                local.and_utc().timestamp_millis() + offset_min * 60_000,
            ))
        };
        let status = match self.status.as_str() {
            "" => None,
            word => Some(
                STATES
                    .iter()
                    .copied()
                    .find(|s| s.as_str() == word)
                    .ok_or_else(|| format!("`{word}` is not a transaction state"))?,
            ),
        };
        let after = match self.cursor.as_str() {
            "" => None,
            cursor => {
                Some(parse_cursor(cursor).ok_or("the page cursor is not one this console gave")?)
            }
        };
        Ok(HistoryFilter {
            plugin: (!self.plugin.is_empty()).then(|| self.plugin.clone()),
            status,
            since: time(&self.since, "From")?,
            until: time(&self.until, "To")?,
            after,
            limit: PAGE,
        })
    }

    /// This query's link with another cursor (`None`: the first page).
    fn with_cursor(&self, cursor: Option<&str>) -> String {
        let pairs = [
            ("status", self.status.as_str()),
            ("plugin", &self.plugin),
            ("since", &self.since),
            ("until", &self.until),
            ("tz", &self.tz),
            ("cursor", cursor.unwrap_or("")),
        ];
        let query: Vec<String> = pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect();
        format!("/console/transactions?{}", query.join("&"))
    }
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            let problem = Problem::bad_request("invalid-query", rejection.body_text());
            return problem_page(&problem, Some(&signed.session));
        }
    };
    let gid = query.gid.trim();
    if !gid.is_empty() {
        if Gid::parse(gid).is_ok() {
            return Redirect::to(&format!("/console/transactions/{gid}")).into_response();
        }
        return problem_page(
            &Problem::bad_request(
                "invalid-gid",
                format!("`{gid}` is not a transaction id (wtx.<node>.<ulid>)"),
            ),
            Some(&signed.session),
        );
    }
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(detail) => {
            return problem_page(
                &Problem::bad_request("invalid-query", detail),
                Some(&signed.session),
            );
        }
    };
    let rows = match state.history.list(&filter).await {
        Ok(rows) => rows,
        Err(err) => return problem_page(&Problem::internal(err), Some(&signed.session)),
    };
    let plugins = state.registry.list().await;
    let next = next_cursor(&rows, PAGE);
    let body = html! {
        form.filters method="get" action="/console/transactions" {
            div.field {
                label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" { "any" }
                    @for s in STATES {
                        option value=(s.as_str()) selected[query.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div.field {
                label for="plugin" { "Plugin" }
                select id="plugin" name="plugin" {
                    option value="" { "any" }
                    @for p in &plugins {
                        option value=(p.name) selected[query.plugin == p.name] { (p.name) }
                    }
                }
            }
            div.field {
                label for="since" { "From" }
                input id="since" name="since" type="datetime-local" value=(query.since);
            }
            div.field {
                label for="until" { "To" }
                input id="until" name="until" type="datetime-local" value=(query.until);
            }
            input type="hidden" name="tz" value=(query.tz) data-tz;
            div.field {
                label for="gid" { "Transaction id" }
                input id="gid" name="gid" type="search" placeholder="wtx.<node>.<ulid>" spellcheck="false";
            }
            button type="submit" { "Filter" }
            " " a href="/console/transactions" { "Clear" }
        }
        @if rows.is_empty() {
            p { "No transaction matches." }
        } @else {
            (table("history", Some("Transactions, newest first"), &["Started", "Transaction", "Plugin", "Status", "Took", "Participants"], html! { @for row in &rows { (history_row(row)) } }))
        }
        nav.pager aria-label="Pages" {
            @if !query.cursor.is_empty() {
                a href=(query.with_cursor(None)) { "← Newest" }
            }
            @if let Some(next) = &next {
                a href=(query.with_cursor(Some(next))) rel="next" { "Older →" }
            }
        }
    };
    layout(
        "Transactions",
        "/console/transactions",
        Some(&signed.session),
        body,
    )
    .into_response()
}

fn history_row(row: &TxRecord) -> Markup {
    html! {
        tr {
            td { (time(row.started_at)) }
            td { a href={ "/console/transactions/" (row.gid) } { code { (row.gid) } } }
            td { @if row.plugin.is_empty() { "—" } @else { (row.plugin) "@" (row.version) } }
            td { (status_badge(row.status)) }
            td { @if let Some(end) = row.finished_at { (end - row.started_at) " ms" } @else { "—" } }
            td { (row.participants.join(", ")) }
        }
    }
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(gid): Path<String>,
) -> Response {
    let status = match status_of(&state, &gid).await {
        Ok(status) => status,
        Err(problem) => return problem_page(&problem, Some(&signed.session)),
    };
    let report: Option<TxReport> = status
        .response
        .as_ref()
        .and_then(|r| r.get("transaction"))
        .and_then(|t| serde_json::from_value(t.clone()).ok());
    let unfinished = !status.status.is_final() && status.status != TxState::Running;
    let body = html! {
        dl.facts {
            dt { "Transaction" } dd { code { (status.gid) } }
            dt { "Status" } dd { (status_badge(status.status)) }
            dt { "Node" } dd { (status.node) }
            @if let Some(plugin) = &status.plugin {
                dt { "Plugin" } dd { a href={ "/console/plugins/" (plugin.name) "/versions/" (plugin.version) } { (plugin.name) "@" (plugin.version) } " " (digest(&plugin.digest)) }
            }
            dt { "Started" } dd { @if let Some(at) = status.started_at { (time(at)) } @else { "—" } }
            dt { "Finished" } dd { @if let Some(at) = status.finished_at { (time(at)) } @else { "—" } }
            dt { "Deadline" } dd { (super::page::time_text(&status.deadline)) }
            @if let Some(decision) = &status.decision {
                dt { "Decision recorded" } dd { (decision) }
            }
        }
        @if unfinished && signed.session.can(Scope::Admin) {
            p { a.button href={ "/console/in-doubt/" (status.gid) } { "Retry or force-resolve…" } }
        }
        h2 { "Participants" }
        (participants(&status))
        @if let Some(report) = &report {
            h2 { "Phases" }
            (timeline(report))
            @if let Some(error) = &report.error {
                h2 { "Error" }
                div.notice.bad {
                    p { strong { (error.kind.as_str()) } ": " (error.message) }
                    @if let Some(hint) = &error.hint { p { "Hint: " (hint) } }
                }
            }
            @if let Some(output) = &report.output {
                h2 { "Output" }
                pre.output { (output) }
            }
        }
        @if let Some(resolution) = &status.resolution {
            h2 { "Resolution" }
            dl.facts {
                dt { "By" } dd { (resolution.by) }
                dt { "At" } dd { (time(resolution.at)) }
                dt { "Asked" } dd { (serde_json::to_value(resolution.asked).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                dt { "Heuristic" } dd { @if resolution.heuristic { "yes: against the recorded decision or the presumed abort" } @else { "no: recovery's own rule" } }
                dt { "Reason" } dd { (resolution.reason) }
                @for (participant, what) in &resolution.branches {
                    dt { "Branch on " (participant) } dd { (what) }
                }
            }
        }
    };
    layout(
        "Transaction",
        "/console/transactions",
        Some(&signed.session),
        body,
    )
    .into_response()
}

fn participants(status: &TxStatus) -> Markup {
    html! {
        @if status.participants.is_empty() {
            p { "No participant's part is known." }
        } @else {
            (table("", None, &["Participant", "State", "Recovery would"], html! { @for branch in &status.participants {
                            tr { td { (branch.participant) } td { (branch.state) } td { (branch.recovery_action.as_deref().unwrap_or("—")) } }
                        } }))
        }
    }
}

/// The phases one after the other, each as wide as it took (SVG: no inline style), and the
/// same figures as a list.
fn timeline(report: &TxReport) -> Markup {
    let total: f64 = report.phases_ms.values().sum::<f64>().max(0.001);
    let width = 600.0;
    // (x, width, phase, ms) of each bar, one after the other.
    let mut bars = Vec::new();
    let mut x = 0.0;
    for (phase, ms) in &report.phases_ms {
        let w = (ms / total * width).max(1.0);
        bars.push((x, w, phase.as_str(), *ms));
        x += w;
    }
    html! {
        svg.timeline viewBox={ "0 0 " (width) " 24" } preserveAspectRatio="none" role="img" aria-label={ "Phases, " (format!("{:.2}", report.elapsed_ms)) " ms in all" } {
            @for (i, (x, w, phase, ms)) in bars.iter().enumerate() {
                rect class={ "phase-" (i % 4) } x=(x) y="0" width=(w) height="24" {
                    title { (phase) ": " (format!("{ms:.2} ms")) }
                }
            }
        }
        ol.phases {
            @for (phase, ms) in &report.phases_ms {
                li { span class="phase" { (phase.as_str()) } " " (format!("{ms:.2} ms")) }
            }
        }
        p { "In all " (format!("{:.2}", report.elapsed_ms)) " ms." }
    }
}
