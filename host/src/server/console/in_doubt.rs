//! What is in doubt, across participants and (in a cluster) nodes, with what recovery would
//! do and when; and for one transaction the two actions, each behind a confirmation that
//! names the branches it acts on. Retry now applies recovery's own rules. Force-resolve
//! shows, per outcome, the rule's verdict now ([`crate::recovery::Examined::preview`], the
//! rule the action itself applies): refused, recovery's rule, or a heuristic decision
//! that may leave the transaction partly committed — which needs a ticked acknowledgement.
//! A reason is required and recorded with the transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{csrf_field, layout, problem_page, table, time_text};
use super::{CsrfForm, Signed};
use crate::config::Scope;
use crate::recovery::{
    Action, Examined, ForcePreview, InDoubtEntry, InDoubtFilter, PRESUMED_ABORT_MARGIN, Requested,
};
use crate::server::state::AppState;
use crate::server::transactions::{
    ResolveRequest, force_resolve_by, operator_problem, parse_gid, retry_now,
};

pub async fn list(State(state): State<Arc<AppState>>, signed: Signed) -> Response {
    let list = state.in_doubt(InDoubtFilter::default()).await;
    let mut by_gid: BTreeMap<&str, Vec<&InDoubtEntry>> = BTreeMap::new();
    for entry in &list.entries {
        by_gid.entry(&entry.gid).or_default().push(entry);
    }
    let interval = state.settings.recovery_interval_ms as f64 / 1000.0;
    let body = html! {
        p { "Recovery runs every " (interval) " s. It commits the branches of a transaction whose COMMIT is recorded, rolls back those with no decision once their deadline has passed by " (PRESUMED_ABORT_MARGIN.as_secs()) " s, and leaves the rest alone until then." }
        @for failure in &list.failures {
            div.notice.bad role="alert" { p { "Cannot list the prepared branches on " strong { (failure.participant) } ": " (failure.message) ". Its branches are unknown; nothing on it is shown." } }
        }
        @if by_gid.is_empty() {
            p.notice.ok { "Nothing is in doubt." }
        } @else {
            (table("in-doubt", Some("Transactions in doubt"), &["Transaction", "Deadline", "Decision", "Branches", "Recovery will", "Act"], html! { @for (gid, entries) in &by_gid {
                            tr {
                                td { a href={ "/console/transactions/" (gid) } { code { (gid) } } }
                                td { (time_text(&entries[0].deadline)) }
                                td { (entries[0].decision) }
                                td {
                                    ul.plain { @for e in entries { li { (e.participant.as_deref().unwrap_or("(unlisted participant)")) ": " (e.kind) } } }
                                }
                                td { (when(entries, interval)) }
                                td {
                                    @if signed.session.can(Scope::Admin) {
                                        a.button href={ "/console/in-doubt/" (gid) } { "Retry or force-resolve…" }
                                    } @else {
                                        a href={ "/console/in-doubt/" (gid) } { "Details" }
                                    }
                                }
                            }
                        } }))
        }
    };
    layout("In doubt", "/console/in-doubt", Some(&signed.session), body).into_response()
}

/// What recovery will do with a transaction's branches, and when.
fn when(entries: &[&InDoubtEntry], interval: f64) -> Markup {
    let action = entries[0].action.as_str();
    html! {
        @match action {
            "would-commit" => { "commit, at its next run (within " (interval) " s)" },
            "would-roll-back" => { "roll back, at its next run (within " (interval) " s)" },
            "left-in-doubt" => { "nothing yet: undecided, its deadline has not passed by the margin" },
            other => (other),
        }
    }
}

/// The confirmation page: the branches, and each action with exactly what it would do.
pub async fn confirm(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(gid_text): Path<String>,
) -> Response {
    let gid = match parse_gid(&gid_text) {
        Ok(gid) => gid,
        Err(problem) => return problem_page(&problem, Some(&signed.session)),
    };
    let examined = match state.host.examine(&gid).await {
        Ok(examined) => examined,
        Err(err) => return problem_page(&operator_problem(err), Some(&signed.session)),
    };
    let now = SystemTime::now();
    let admin = signed.session.can(Scope::Admin);
    let databases = databases(&state);
    let body = html! {
        p { "Transaction " a href={ "/console/transactions/" (gid_text) } { code { (gid_text) } } ", deadline " (time_text(&gid.deadline_rfc3339())) ". A COMMIT decision is " @if examined.committed { strong { "recorded" } } @else { strong { "not recorded" } } "." }
        h2 { "Prepared branches" }
        @if examined.branches.is_empty() {
            p { "No branch of it is prepared on any participant: there is nothing to act on." }
        } @else {
            (table("", None, &["Participant", "Database", "Recovery would"], html! { @for b in &examined.branches {
                            tr { td { (b.participant) } td { (databases.get(&b.participant).map(String::as_str).unwrap_or("?")) } td { (b.action.name()) } }
                        } }))
        }
        @if !admin {
            p.notice { "The token you signed in with has no " code { "admin" } " scope: it can see this page but not act." }
        } @else if !examined.branches.is_empty() {
            section.action aria-labelledby="retry-heading" {
                h2 id="retry-heading" { "Retry now" }
                p { "Runs recovery for this transaction now, by its own rules: " (retry_summary(&examined, &databases)) }
                form method="post" action={ "/console/in-doubt/" (gid_text) "/retry" } {
                    (csrf_field(&signed.session))
                    button type="submit" { "Retry now" }
                }
            }
            @for asked in [Requested::Commit, Requested::Rollback] {
                (force_form(&gid_text, &examined.preview(asked, now), &examined, &databases, &signed))
            }
        }
    };
    layout(
        "Resolve a transaction",
        "/console/in-doubt",
        Some(&signed.session),
        body,
    )
    .into_response()
}

/// Participant → its database's kind, for the confirmations.
fn databases(state: &AppState) -> BTreeMap<String, String> {
    state
        .host
        .participants()
        .iter()
        .map(|p| (p.name().to_owned(), p.dialect().server_name().to_owned()))
        .collect()
}

fn branch_list(participants: &[String], databases: &BTreeMap<String, String>) -> String {
    let named: Vec<String> = participants
        .iter()
        .map(|p| match databases.get(p) {
            Some(db) => format!("{p} ({db})"),
            None => p.clone(),
        })
        .collect();
    named.join(", ")
}

fn retry_summary(examined: &Examined, databases: &BTreeMap<String, String>) -> String {
    let by_action = |action: Action| -> Vec<String> {
        examined
            .branches
            .iter()
            .filter(|b| b.action == action)
            .map(|b| b.participant.clone())
            .collect()
    };
    let mut parts = Vec::new();
    for (action, verb) in [
        (Action::WouldCommit, "commit the branches on"),
        (Action::WouldRollBack, "roll back the branches on"),
        (
            Action::LeftInDoubt,
            "leave alone (undecided, deadline not passed) the branches on",
        ),
    ] {
        let on = by_action(action);
        if !on.is_empty() {
            parts.push(format!("{verb} {}", branch_list(&on, databases)));
        }
    }
    format!("{}.", parts.join("; "))
}

/// One outcome's confirmation: refused, or the form naming the branches it acts on, with
/// the heuristic warning and acknowledgement when it is one.
fn force_form(
    gid: &str,
    preview: &ForcePreview,
    examined: &Examined,
    databases: &BTreeMap<String, String>,
    signed: &Signed,
) -> Markup {
    let (title, verb, id) = match preview.asked {
        Requested::Commit => ("Force-resolve: commit", "COMMIT", "commit"),
        Requested::Rollback => ("Force-resolve: roll back", "ROLL BACK", "rollback"),
    };
    let branches = branch_list(&preview.participants, databases);
    html! {
        section.action aria-labelledby={ (id) "-heading" } {
            h2 id={ (id) "-heading" } { (title) }
            @match &preview.rule {
                Err(err) => p.notice { "Refused now: " (err) },
                Ok(heuristic) => {
                    p { "Will " strong { (verb) } " the prepared branches of " code { (gid) } " on: " strong { (branches) } "." }
                    @if *heuristic {
                        div.notice.bad role="note" {
                            p { strong { "This is a heuristic decision." } " "
                                @if examined.committed {
                                    "A COMMIT is recorded: other branches of this transaction may be committed already, so rolling these back may leave the transaction partly committed."
                                } @else {
                                    "No COMMIT was recorded before the deadline, so the transaction counts as aborted and its other branches may be rolled back already: committing these may leave the transaction partly committed."
                                }
                                " It is recorded as " code { @if preview.asked == Requested::Commit { "heuristic-commit" } @else { "heuristic-rollback" } } "."
                            }
                        }
                    }
                    form method="post" action={ "/console/in-doubt/" (gid) "/resolve" } {
                        (csrf_field(&signed.session))
                        input type="hidden" name="outcome" value=(id);
                        label for={ (id) "-reason" } { "Reason (kept with the transaction)" }
                        textarea id={ (id) "-reason" } name="reason" required rows="2" {}
                        @if *heuristic {
                            div.check {
                                input id={ (id) "-heuristic" } type="checkbox" name="allow_heuristic" value="true" required;
                                label for={ (id) "-heuristic" } { "I understand this may leave the transaction partly committed." }
                            }
                        }
                        button.danger type="submit" { (verb) " on " (branches) }
                    }
                }
            }
        }
    }
}

pub async fn retry(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(gid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = signed.refusal(Scope::Admin, &headers, &form.csrf) {
        return refused;
    }
    let report = match retry_now(&state, &gid).await {
        Ok(report) => report,
        Err(problem) => return problem_page(&problem, Some(&signed.session)),
    };
    let body = html! {
        p { "Recovery ran for " a href={ "/console/transactions/" (gid) } { code { (gid) } } "." }
        @if report.branches.is_empty() {
            p { "It found no prepared branch: nothing was done." }
        } @else {
            (table("", None, &["Participant", "Done"], html! { @for b in &report.branches { tr { td { (b.participant) } td { (b.action.name()) @if let Action::Failed(why) = &b.action { ": " (why) } } } } }))
        }
        p { a href="/console/in-doubt" { "Back to what is in doubt" } }
    };
    layout("Retried", "/console/in-doubt", Some(&signed.session), body).into_response()
}

#[derive(Deserialize)]
pub struct ResolveForm {
    csrf: String,
    outcome: Requested,
    reason: String,
    #[serde(default)]
    allow_heuristic: Option<String>,
}

pub async fn resolve(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(gid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ResolveForm>,
) -> Response {
    if let Some(refused) = signed.refusal(Scope::Admin, &headers, &form.csrf) {
        return refused;
    }
    let request = ResolveRequest {
        outcome: form.outcome,
        reason: form.reason,
        allow_heuristic: form.allow_heuristic.as_deref() == Some("true"),
    };
    let resolved = match force_resolve_by(&state, &gid, request, &signed.session.caller).await {
        Ok(resolved) => resolved,
        Err(problem) => return problem_page(&problem, Some(&signed.session)),
    };
    let body = html! {
        p.notice.ok { "Transaction " a href={ "/console/transactions/" (gid) } { code { (gid) } } " is now " strong { (resolved.status.as_str()) } @if resolved.heuristic { " (a heuristic decision)" } "." }
        (table("", None, &["Participant", "Done"], html! { @for (participant, what) in &resolved.branches { tr { td { (participant) } td { (what) } } } }))
        p { a href="/console/in-doubt" { "Back to what is in doubt" } }
    };
    layout(
        "Force-resolved",
        "/console/in-doubt",
        Some(&signed.session),
        body,
    )
    .into_response()
}
