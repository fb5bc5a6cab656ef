//! Transactions after the fact: status by gid, the history, what is in doubt, retrying one
//! gid now, force-resolving one, and running recovery now. Each handler (its route group's
//! layer has authorized the caller) parses, asks the host (the rules are recovery's,
//! `recovery/operator.rs`), and maps the answer to a response or a problem; the server adds
//! what it knows itself (what runs now, its history) and records who force-resolved what,
//! when and why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::history::{
    HistoryFilter, PluginRef, Resolution, TxRecord, next_cursor, now_ms, parse_cursor,
};
use super::problem::{Problem, body_rejection, parse_json};
use super::state::AppState;
use crate::gid::Gid;
use crate::recovery::{
    InDoubtFilter, InDoubtList, OperatorError, RecoveryReport, Requested, TxState,
};
use crate::report::TxReport;

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
    pub response: Option<serde_json::Value>,
    /// What an operator did to it (force-resolve), if anything.
    pub resolution: Option<Resolution>,
}

pub fn parse_gid(text: &str) -> Result<Gid, Problem> {
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
        status.plugin = Some(PluginRef::new(
            running.plugin,
            running.version,
            running.digest,
        ));
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
        status.plugin = (!record.plugin.is_empty()).then(|| {
            PluginRef::new(
                record.plugin.clone(),
                record.version.clone(),
                record.digest.clone(),
            )
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

/// The branches as the transaction's own report gave them (the answer it got carries the
/// report as `transaction`, for a commit and an abort alike).
fn reported_branches(record: &TxRecord) -> Vec<BranchState> {
    let report = record
        .response
        .as_ref()
        .and_then(|r| r.get("transaction"))
        .and_then(|t| serde_json::from_value::<TxReport>(t.clone()).ok());
    report
        .map(|report| {
            report
                .participants
                .into_iter()
                .map(|p| BranchState {
                    participant: p.name,
                    state: serde_json::to_value(p.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    recovery_action: None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The problem for an operator's question or action that got no answer or was refused.
pub fn operator_problem(err: OperatorError) -> Problem {
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

#[utoipa::path(get, path = "/v1/transactions/{gid}", tag = "transactions", operation_id = "transaction_status",
    params(("gid" = String, Path, description = "wtx.<node>.<ulid>", pattern = r"^wtx\.[A-Za-z0-9-]{1,16}\.[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = TxStatus), (status = 400, body = Problem), (status = 404, body = Problem),
              (status = 502, description = "a participant could not be reached or refused", body = Problem), (status = 503, description = "the decision store cannot be read", body = Problem)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(gid): Path<String>,
) -> Result<Json<TxStatus>, Problem> {
    status_of(&state, &gid).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub plugin: Option<String>,
    /// Only transactions in this state.
    pub status: Option<TxState>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^-?[0-9]{1,18}:[!-~]+$")]
    pub cursor: Option<String>,
    /// At most 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub transactions: Vec<TxRecord>,
    /// Give it as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/transactions", tag = "transactions", params(HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 400, body = Problem)))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryPage>, Problem> {
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
        Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
            Problem::bad_request("invalid-query", "cursor is not one this server gave")
        })?),
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
    let next_cursor = next_cursor(&transactions, limit);
    Ok(Json(HistoryPage {
        transactions,
        next_cursor,
    }))
}

/// The largest `older_than_secs` (a hundred years): a deadline plus it stays a time.
const MAX_AGE_SECS: u64 = 3_153_600_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InDoubtQuery {
    /// Only branches on this participant.
    pub participant: Option<String>,
    /// Only transactions whose deadline passed at least this many seconds ago.
    #[param(maximum = 3_153_600_000_u64)]
    pub older_than_secs: Option<u64>,
}

#[utoipa::path(get, path = "/v1/in-doubt", tag = "recovery", params(InDoubtQuery),
    responses((status = 200, body = InDoubtList), (status = 400, body = Problem)))]
pub async fn in_doubt(
    State(state): State<Arc<AppState>>,
    query: Result<Query<InDoubtQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InDoubtList>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    if query
        .older_than_secs
        .is_some_and(|secs| secs > MAX_AGE_SECS)
    {
        return Err(Problem::bad_request(
            "invalid-query",
            format!("older_than_secs must be at most {MAX_AGE_SECS} (a hundred years)"),
        ));
    }
    let filter = InDoubtFilter {
        participant: query.participant,
        older_than: query.older_than_secs.map(Duration::from_secs),
        ..Default::default()
    };
    Ok(Json(state.in_doubt(filter).await))
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
    params(("gid" = String, Path, description = "wtx.<node>.<ulid>", pattern = r"^wtx\.[A-Za-z0-9-]{1,16}\.[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, description = "what recovery did with this gid's branches", body = Object),
              (status = 400, body = Problem), (status = 409, body = Problem),
              (status = 502, description = "a participant could not be reached or refused", body = Problem), (status = 503, description = "the decision store cannot be read", body = Problem)))]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Path(gid): Path<String>,
) -> Result<Json<RecoveryReport>, Problem> {
    retry_now(&state, &gid).await.map(Json)
}

/// Recovery of one gid now, unless it runs here now.
pub async fn retry_now(state: &AppState, gid: &str) -> Result<RecoveryReport, Problem> {
    let parsed = parse_gid(gid)?;
    refuse_if_running(state, gid)?;
    let _serial = state.recovery_lock.lock().await;
    let report = state.host.retry(&parsed).await.map_err(operator_problem)?;
    state.metrics.recovery("manual", &report);
    Ok(report)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub outcome: Requested,
    /// Why: kept with the transaction's record.
    #[schema(min_length = 1, pattern = r"\S")]
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
    pub status: TxState,
    pub heuristic: bool,
    /// What was done on each prepared branch.
    pub branches: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/v1/transactions/{gid}/resolve", tag = "recovery",
    params(("gid" = String, Path, description = "wtx.<node>.<ulid>", pattern = r"^wtx\.[A-Za-z0-9-]{1,16}\.[0-7][0-9A-HJKMNP-TV-Z]{25}$")), request_body = ResolveRequest,
    responses((status = 200, body = ResolveResponse), (status = 400, body = Problem), (status = 409, body = Problem),
              (status = 502, description = "a participant could not be reached or refused", body = Problem), (status = 503, description = "the decision store cannot be read", body = Problem)))]
pub async fn resolve(
    State(state): State<Arc<AppState>>,
    Path(gid_text): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ResolveResponse>, Problem> {
    let body = body.map_err(|r| body_rejection(r, 64 << 10))?;
    let request: ResolveRequest = parse_json(&body)?;
    force_resolve_by(&state, &gid_text, request, &caller)
        .await
        .map(Json)
}

/// Force-resolves one gid as `caller` asks, and records who did it, when and why.
pub async fn force_resolve_by(
    state: &AppState,
    gid_text: &str,
    request: ResolveRequest,
    caller: &Caller,
) -> Result<ResolveResponse, Problem> {
    let gid = parse_gid(gid_text)?;
    if request.reason.trim().is_empty() {
        return Err(Problem::bad_request(
            "reason-required",
            "say why in `reason`; it is kept with the transaction",
        ));
    }
    refuse_if_running(state, gid_text)?;
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
    let resolution = Resolution {
        by: caller.name().to_owned(),
        at: now_ms(),
        asked: request.outcome,
        reason: request.reason.clone(),
        heuristic: resolved.heuristic,
        branches: resolved.branches.clone(),
    };
    let participants: Vec<String> = resolved.branches.keys().cloned().collect();
    let recorded = state
        .history
        .resolve(gid_text, resolved.state, &participants, &resolution)
        .await;
    if let Err(err) = recorded {
        tracing::error!(gid = %gid_text, "cannot record the resolution: {err}");
    }
    tracing::warn!(gid = %gid_text, by = caller.name(), status = %resolved.state, heuristic = resolved.heuristic, reason = %request.reason, "transaction force-resolved");
    Ok(ResolveResponse {
        gid: gid_text.to_owned(),
        status: resolved.state,
        heuristic: resolved.heuristic,
        branches: resolved.branches,
    })
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// Only list what would be done.
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/v1/recovery/run", tag = "recovery",
    request_body(content = Option<RecoveryRequest>, description = "optional: `{\"dry_run\": false}` when absent"),
    responses((status = 200, description = "the same report as `wasmtx recover --json`", body = Object),
              (status = 400, body = Problem)))]
pub async fn run_recovery(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RecoveryReport>, Problem> {
    let body = body.map_err(|r| body_rejection(r, 64 << 10))?;
    // No body, or `null`: the defaults.
    let request: RecoveryRequest = if body.is_empty() {
        RecoveryRequest::default()
    } else {
        parse_json::<Option<RecoveryRequest>>(&body)?.unwrap_or_default()
    };
    let _serial = state.recovery_lock.lock().await;
    let report = state.host.recover(request.dry_run).await;
    if !request.dry_run {
        state.metrics.recovery("manual", &report);
    }
    Ok(Json(report))
}
