//! Transactions after the fact: status by gid, the history, what is in doubt, retrying one
//! gid now, force-resolving one, and running recovery now. Each handler authorizes, parses,
//! asks the host (the rules are recovery's, `recovery/operator.rs`), and maps the answer to
//! a response or a problem; the server adds what it knows itself (what runs now, its history)
//! and records who force-resolved what, when and why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::history::{HistoryFilter, TxRecord, now_ms};
use super::invoke::PluginRef;
use super::problem::{Problem, body_rejection, parse_json};
use super::state::AppState;
use crate::config::Scope;
use crate::gid::Gid;
use crate::recovery::{
    InDoubtFilter, InDoubtList, OperatorError, RecoveryReport, Requested, TxState,
};

/// One participant's part, as far as this server can see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BranchState {
    pub participant: String,
    /// `committed`, `rolled-back`, `pending`, `not-started` (from the transaction's report),
    /// or `prepared` (found prepared on the database now).
    pub state: String,
    /// For a prepared branch: what recovery will do (`would-commit`, `would-roll-back`,
    /// `left-in-doubt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_action: Option<String>,
}

/// `GET /v1/transactions/{gid}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TxStatus {
    pub gid: String,
    pub node: String,
    /// `running`, `committed`, `committing` (COMMIT recorded, some branch still prepared),
    /// `in-doubt` (prepared, undecided, deadline not passed), `aborting` (prepared,
    /// undecided, past its deadline: recovery rolls it back), `aborted`, or after a
    /// force-resolve `heuristic-commit` / `heuristic-rollback`.
    #[schema(value_type = String)]
    pub status: TxState,
    /// RFC 3339.
    pub deadline: String,
    pub plugin: Option<PluginRef>,
    /// Whether a COMMIT decision is recorded (`commit`) or not (`none`), when it was looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    pub participants: Vec<BranchState>,
    /// Unix ms.
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The answer the invoke got.
    #[schema(value_type = Object)]
    pub response: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub resolution: Option<serde_json::Value>,
}

fn parse_gid(text: &str) -> Result<Gid, Problem> {
    Gid::parse(text).map_err(|_| {
        Problem::bad_request(
            "invalid-gid",
            format!("`{text}` is not a transaction id (wtx.<node>.<ulid>)"),
        )
    })
}

/// What this server knows about `gid`: what it runs now and its history, else what the
/// participants' prepared lists and the decision sources say.
pub async fn status_of(state: &AppState, text: &str) -> Result<TxStatus, Problem> {
    let gid = parse_gid(text)?;
    let node = text.split('.').nth(1).unwrap_or_default().to_owned();
    let mut status = TxStatus {
        gid: gid.to_string(),
        node,
        status: TxState::Unknown,
        deadline: gid.deadline_rfc3339(),
        plugin: None,
        decision: None,
        participants: Vec::new(),
        started_at: None,
        finished_at: None,
        response: None,
        resolution: None,
    };
    if let Some(running) = state.running.lock().unwrap().get(text).cloned() {
        status.status = TxState::Running;
        status.plugin = Some(PluginRef {
            name: running.plugin,
            version: running.version,
            digest: running.digest,
        });
        status.started_at = Some(running.started_at);
        status.participants = running
            .participants
            .into_iter()
            .map(|participant| BranchState {
                participant,
                state: "running".into(),
                recovery_action: None,
            })
            .collect();
        return Ok(status);
    }
    let record = state.history.get(text).await.map_err(Problem::internal)?;
    if let Some(record) = &record {
        // A row of a transaction this server did not run (force-resolved here) has no plugin.
        status.plugin = (!record.plugin.is_empty()).then(|| PluginRef {
            name: record.plugin.clone(),
            version: record.version.clone(),
            digest: record.digest.clone(),
        });
        status.started_at = Some(record.started_at);
        status.finished_at = record.finished_at;
        status.response = record.response.clone();
        status.resolution = record.resolution.clone();
        status.participants = reported_branches(record);
        status.status = record.status;
        if record.status.is_final() {
            return Ok(status);
        }
    }
    // Unfinished as far as the history knows: ask the databases and the decision sources.
    let mut examined = state.host.examine(&gid).await.map_err(operator_problem)?;
    // A row that says COMMIT was decided stays so after recovery let go of the decision.
    if record
        .as_ref()
        .is_some_and(|r| r.status == TxState::Committing)
    {
        examined.committed = true;
    }
    status.decision = Some(if examined.committed { "commit" } else { "none" }.into());
    if !examined.branches.is_empty() {
        status.participants = examined
            .branches
            .iter()
            .map(|b| BranchState {
                participant: b.participant.clone(),
                state: "prepared".into(),
                recovery_action: Some(b.action.name().into()),
            })
            .collect();
    }
    status.status = examined.state(SystemTime::now(), record.is_some());
    if status.status == TxState::Unknown {
        return Err(Problem::not_found(
            "transaction-not-found",
            format!(
                "this server has no record of {text}, no decision for it, and no branch of it is prepared"
            ),
        ));
    }
    Ok(status)
}

/// The branches as the transaction's own report gave them.
fn reported_branches(record: &TxRecord) -> Vec<BranchState> {
    let participants = record
        .response
        .as_ref()
        .and_then(|r| r.get("transaction"))
        .and_then(|t| t.get("participants"))
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    participants
        .iter()
        .filter_map(|p| {
            Some(BranchState {
                participant: p.get("name")?.as_str()?.to_owned(),
                state: p.get("outcome")?.as_str()?.to_owned(),
                recovery_action: None,
            })
        })
        .collect()
}

/// The problem for an operator's question or action that got no answer or was refused.
fn operator_problem(err: OperatorError) -> Problem {
    let detail = err.to_string();
    match err {
        OperatorError::NoDecisions(_) | OperatorError::Store(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "decision-store-unavailable",
            detail,
        ),
        OperatorError::Scan { report, .. } => {
            Problem::new(StatusCode::BAD_GATEWAY, "participant-unavailable", detail)
                .with("recovery", &report)
        }
        OperatorError::NothingPrepared(_) => Problem::conflict("nothing-prepared", detail),
        OperatorError::Undecided { .. } => Problem::conflict("undecided", detail),
        OperatorError::DecisionExists => Problem::conflict("decision-exists", detail),
        OperatorError::WouldCommitAnAbort => Problem::conflict("would-commit-an-abort", detail),
        OperatorError::BranchesFailed { branches, .. } => {
            Problem::new(StatusCode::BAD_GATEWAY, "participant-failed", detail)
                .with("branches", &branches)
        }
    }
}

#[utoipa::path(get, path = "/v1/transactions/{gid}", tag = "transactions",
    params(("gid" = String, Path)),
    responses((status = 200, body = TxStatus), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["read"])))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(gid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<TxStatus>, Problem> {
    state.auth.check(&headers, Scope::Read)?;
    status_of(&state, &gid).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub plugin: Option<String>,
    /// `committed`, `aborted`, `committing`, `running`, …
    pub status: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most 500; 50 by default.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub transactions: Vec<TxRecord>,
    /// Give it as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/transactions", tag = "transactions", params(HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 400, body = Problem)),
    security(("bearer" = ["read"])))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryPage>, Problem> {
    state.auth.check(&headers, Scope::Read)?;
    let Query(query) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Problem::bad_request(
            "invalid-query",
            "limit must be 1 to 500",
        ));
    }
    let after = match &query.cursor {
        None => None,
        Some(cursor) => {
            let parsed = cursor
                .split_once(':')
                .and_then(|(time, gid)| Some((time.parse::<i64>().ok()?, gid.to_owned())));
            Some(parsed.ok_or_else(|| {
                Problem::bad_request("invalid-query", "cursor is not one this server gave")
            })?)
        }
    };
    let filter = HistoryFilter {
        plugin: query.plugin,
        status: query.status,
        since: query.since,
        until: query.until,
        after,
        limit,
    };
    let transactions = state
        .history
        .list(&filter)
        .await
        .map_err(Problem::internal)?;
    let next_cursor = (transactions.len() == limit as usize)
        .then(|| {
            transactions
                .last()
                .map(|t| format!("{}:{}", t.started_at, t.gid))
        })
        .flatten();
    Ok(Json(HistoryPage {
        transactions,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InDoubtQuery {
    /// Only branches on this participant.
    pub participant: Option<String>,
    /// Only transactions whose deadline passed at least this many seconds ago.
    pub older_than_secs: Option<u64>,
}

#[utoipa::path(get, path = "/v1/in-doubt", tag = "recovery", params(InDoubtQuery),
    responses((status = 200, body = InDoubtList)), security(("bearer" = ["read"])))]
pub async fn in_doubt(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<InDoubtQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InDoubtList>, Problem> {
    state.auth.check(&headers, Scope::Read)?;
    let Query(query) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let filter = InDoubtFilter {
        participant: query.participant,
        older_than: query.older_than_secs.map(Duration::from_secs),
        running: state.running.lock().unwrap().keys().cloned().collect(),
    };
    Ok(Json(state.host.in_doubt(&filter).await))
}

fn refuse_if_running(state: &AppState, gid: &str) -> Result<(), Problem> {
    if state.running.lock().unwrap().contains_key(gid) {
        return Err(Problem::conflict(
            "still-running",
            format!("{gid} is running on this server now; it finishes by its deadline"),
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/transactions/{gid}/retry", tag = "recovery",
    params(("gid" = String, Path)),
    responses((status = 200, description = "what recovery did with this gid's branches", body = Object),
              (status = 409, body = Problem)),
    security(("bearer" = ["admin"])))]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Path(gid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RecoveryReport>, Problem> {
    state.auth.check(&headers, Scope::Admin)?;
    let parsed = parse_gid(&gid)?;
    refuse_if_running(&state, &gid)?;
    let _serial = state.recovery_lock.lock().await;
    let report = state.host.retry(&parsed).await.map_err(operator_problem)?;
    state.metrics.recovery("manual", &report);
    Ok(Json(report))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub outcome: Requested,
    /// Why: kept with the transaction's record.
    pub reason: String,
    /// Allows overriding a recorded COMMIT or a presumed abort. The result is recorded as a
    /// heuristic decision.
    #[serde(default)]
    pub allow_heuristic: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolveResponse {
    pub gid: String,
    /// `committed`, `aborted`, `heuristic-commit` or `heuristic-rollback`.
    #[schema(value_type = String)]
    pub status: TxState,
    pub heuristic: bool,
    /// What was done on each prepared branch.
    pub branches: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/v1/transactions/{gid}/resolve", tag = "recovery",
    params(("gid" = String, Path)), request_body = ResolveRequest,
    responses((status = 200, body = ResolveResponse), (status = 400, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = ["admin"])))]
pub async fn resolve(
    State(state): State<Arc<AppState>>,
    Path(gid_text): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ResolveResponse>, Problem> {
    let caller = state.auth.check(&headers, Scope::Admin)?;
    let gid = parse_gid(&gid_text)?;
    let body = body.map_err(|r| body_rejection(r, 64 << 10))?;
    let request: ResolveRequest = parse_json(&body)?;
    if request.reason.trim().is_empty() {
        return Err(Problem::bad_request(
            "reason-required",
            "say why in `reason`; it is kept with the transaction",
        ));
    }
    refuse_if_running(&state, &gid_text)?;
    let _serial = state.recovery_lock.lock().await;
    let resolved = state
        .host
        .force_resolve(&gid, request.outcome, request.allow_heuristic)
        .await
        .map_err(|err| {
            if let OperatorError::BranchesFailed { report, .. } = &err {
                state.metrics.recovery("manual", report);
            }
            operator_problem(err)
        })?;
    if let Some(report) = &resolved.report {
        state.metrics.recovery("manual", report);
    }
    let resolution = serde_json::json!({
        "by": caller.name(),
        "at": now_ms(),
        "asked": request.outcome,
        "reason": request.reason,
        "heuristic": resolved.heuristic,
        "branches": resolved.branches,
    });
    let participants: Vec<String> = resolved.branches.keys().cloned().collect();
    let recorded = state
        .history
        .resolve(&gid_text, resolved.state, &participants, &resolution)
        .await;
    if let Err(err) = recorded {
        tracing::error!(gid = %gid_text, "cannot record the resolution: {err}");
    }
    tracing::warn!(gid = %gid_text, by = caller.name(), status = %resolved.state, heuristic = resolved.heuristic, reason = %request.reason, "transaction force-resolved");
    Ok(Json(ResolveResponse {
        gid: gid_text,
        status: resolved.state,
        heuristic: resolved.heuristic,
        branches: resolved.branches,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// Only list what would be done.
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/v1/recovery/run", tag = "recovery", request_body = RecoveryRequest,
    responses((status = 200, description = "the same report as `wasmtx recover --json`", body = Object)),
    security(("bearer" = ["admin"])))]
pub async fn run_recovery(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RecoveryReport>, Problem> {
    state.auth.check(&headers, Scope::Admin)?;
    let body = body.map_err(|r| body_rejection(r, 64 << 10))?;
    let request: RecoveryRequest = if body.is_empty() {
        RecoveryRequest::default()
    } else {
        parse_json(&body)?
    };
    let _serial = state.recovery_lock.lock().await;
    let report = state.host.recover(request.dry_run).await;
    if !request.dry_run {
        state.metrics.recovery("manual", &report);
    }
    Ok(Json(report))
}
