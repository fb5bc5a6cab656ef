//! Transactions after the fact: status by gid, the history, what is in doubt, retrying one
//! gid now, force-resolving one, and running recovery now.
//!
//! Force-resolve acts on the participants and keeps recovery's rules unless told the
//! decision is heuristic:
//!
//! | recorded decision | asked | result |
//! |---|---|---|
//! | COMMIT | commit | phase 2 now (as retry) |
//! | COMMIT | rollback | 409 `decision-exists`; with `allow_heuristic`: roll back what is still prepared, recorded as `heuristic-rollback` |
//! | none, deadline passed | rollback | roll back (what recovery would do) |
//! | none, deadline passed | commit | 409 `would-commit-an-abort` (presumed abort); with `allow_heuristic`: commit what is prepared, recorded as `heuristic-commit` |
//! | none, deadline not passed | either | 409 `undecided`: the coordinator may still decide |

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
use super::settings::Scope;
use super::state::AppState;
use crate::gid::{Gid, NodeId};
use crate::participant::Resolution;
use crate::recovery::{
    Action, BranchReport, Decision, PRESUMED_ABORT_MARGIN, RecoveryReport, ScanFailure,
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
    pub status: String,
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

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What this server knows about `gid`: its memory, its history, the participants' prepared
/// lists and the decision sources.
pub async fn status_of(state: &AppState, text: &str) -> Result<TxStatus, Problem> {
    let gid = parse_gid(text)?;
    let node = text.split('.').nth(1).unwrap_or_default().to_owned();
    let mut status = TxStatus {
        gid: gid.to_string(),
        node,
        status: "unknown".into(),
        deadline: rfc3339(gid.deadline()),
        plugin: None,
        decision: None,
        participants: Vec::new(),
        started_at: None,
        finished_at: None,
        response: None,
        resolution: None,
    };
    if let Some(running) = state.running.lock().unwrap().get(text).cloned() {
        status.status = "running".into();
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
        status.plugin = Some(PluginRef {
            name: record.plugin.clone(),
            version: record.version.clone(),
            digest: record.digest.clone(),
        });
        status.started_at = Some(record.started_at);
        status.finished_at = record.finished_at;
        status.response = record.response.clone();
        status.resolution = record.resolution.clone();
        status.participants = reported_branches(record);
        status.status = record.status.clone();
        if matches!(record.status.as_str(), "committed" | "aborted")
            || record.status.starts_with("heuristic")
        {
            return Ok(status);
        }
    }
    // Unfinished as far as the history knows: ask the databases and the decision sources.
    let report = recover_one(state, &gid, true).await?;
    let prepared: Vec<&BranchReport> = report.branches.iter().collect();
    let committed = match prepared.first() {
        Some(_) => prepared.iter().any(|b| b.decision == Decision::Commit),
        None => decided_commit(state, &gid).await?,
    };
    status.decision = Some(if committed { "commit" } else { "none" }.into());
    let expired = gid.expired(PRESUMED_ABORT_MARGIN, SystemTime::now());
    if !prepared.is_empty() {
        status.participants = prepared
            .iter()
            .map(|b| BranchState {
                participant: b.participant.clone(),
                state: "prepared".into(),
                recovery_action: Some(action_name(&b.action).into()),
            })
            .collect();
    }
    status.status = match (prepared.is_empty(), committed, expired) {
        (false, true, _) => "committing",
        (false, false, false) => "in-doubt",
        (false, false, true) => "aborting",
        (true, true, _) => "committed",
        (true, false, true) => "aborted",
        (true, false, false) if record.is_some() => "in-doubt",
        (true, false, false) => "unknown",
    }
    .into();
    if status.status == "unknown" && record.is_none() {
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

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Committed => "committed",
        Action::RolledBack => "rolled-back",
        Action::AlreadyResolved => "already-resolved",
        Action::LeftInDoubt => "left-in-doubt",
        Action::WouldCommit => "would-commit",
        Action::WouldRollBack => "would-roll-back",
        Action::Failed(_) => "failed",
    }
}

/// Whether a decision source has COMMIT for `gid` (for a gid with no prepared branch).
async fn decided_commit(state: &AppState, gid: &Gid) -> Result<bool, Problem> {
    let Some(store) = state.host.coordinator().decision_store() else {
        return Ok(false);
    };
    store.is_committed(gid).await.map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "decision-store-unavailable",
            e.to_string(),
        )
    })
}

/// Recovery (or a dry run) of one gid's branches.
async fn recover_one(
    state: &AppState,
    gid: &Gid,
    dry_run: bool,
) -> Result<RecoveryReport, Problem> {
    let recovery = state.host.recovery_for(&gid.node()).await.map_err(|f| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "decision-store-unavailable",
            f.message,
        )
    })?;
    let wanted = gid.clone();
    let report = recovery
        .only(Arc::new(move |g: &Gid| *g == wanted))
        .run(dry_run)
        .await;
    if let Some(failure) = report.failures.first() {
        return Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "participant-unavailable",
            format!(
                "cannot list {}'s prepared branches: {}",
                failure.participant, failure.message
            ),
        )
        .with("recovery", &report));
    }
    Ok(report)
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

/// One thing that is not finished.
#[derive(Debug, Serialize, ToSchema)]
pub struct InDoubtEntry {
    pub gid: String,
    pub participant: Option<String>,
    /// `prepared` (a branch on a database) or `commit-pending` (COMMIT recorded, and a
    /// participant that could not be scanned may still hold a branch of it).
    pub kind: String,
    pub decision: String,
    /// What recovery would do now.
    pub action: String,
    /// RFC 3339.
    pub deadline: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InDoubtList {
    pub entries: Vec<InDoubtEntry>,
    /// Participants that could not be listed: their branches are unknown.
    #[schema(value_type = Object)]
    pub failures: Vec<crate::recovery::ScanFailure>,
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
    let report = cluster_wide_dry_run(&state).await;
    let now = SystemTime::now();
    let overdue = |gid: &Gid| match query.older_than_secs {
        None => true,
        Some(secs) => gid.deadline() + Duration::from_secs(secs) <= now,
    };
    let running: Vec<String> = state.running.lock().unwrap().keys().cloned().collect();
    let mut entries: Vec<InDoubtEntry> = Vec::new();
    for branch in &report.branches {
        let Ok(gid) = Gid::parse(&branch.gid) else {
            continue;
        };
        if running.contains(&branch.gid)
            || !overdue(&gid)
            || query
                .participant
                .as_ref()
                .is_some_and(|p| !p.eq_ignore_ascii_case(&branch.participant))
        {
            continue;
        }
        entries.push(InDoubtEntry {
            gid: branch.gid.clone(),
            participant: Some(branch.participant.clone()),
            kind: "prepared".into(),
            decision: match branch.decision {
                Decision::Commit => "commit",
                Decision::None => "none",
            }
            .into(),
            action: action_name(&branch.action).into(),
            deadline: rfc3339(gid.deadline()),
        });
    }
    // A COMMIT whose branches the scan found none of prepared is finished (recovery records
    // its DONE); only while some participant could not be scanned is it unknown.
    if query.participant.is_none()
        && !report.failures.is_empty()
        && let Some(store) = state.host.coordinator().decision_store()
        && let Ok(snapshot) = store.snapshot().await
    {
        for gid in snapshot.pending {
            let listed = entries.iter().any(|e| e.gid == gid.as_str());
            if !listed && !running.contains(&gid.to_string()) && overdue(&gid) {
                entries.push(InDoubtEntry {
                    gid: gid.to_string(),
                    participant: None,
                    kind: "commit-pending".into(),
                    decision: "commit".into(),
                    action: "would-commit".into(),
                    deadline: rfc3339(gid.deadline()),
                });
            }
        }
    }
    Ok(Json(InDoubtList {
        entries,
        failures: report.failures,
    }))
}

/// What recovery would do with this node's branches and, in a cluster, every other node's
/// (their branches on the shared participants; a dead node's local files are out of reach).
async fn cluster_wide_dry_run(state: &AppState) -> RecoveryReport {
    let mut report = state.host.recover(true).await;
    let Some(cluster) = state.host.cluster() else {
        return report;
    };
    match cluster.nodes().await {
        Ok(nodes) => {
            for row in nodes.iter().filter(|n| n.node != cluster.node().as_str()) {
                let Ok(node) = NodeId::new(&row.node) else {
                    continue;
                };
                if let Some(recovery) = state.host.recovery_of(&node) {
                    let theirs = recovery.run(true).await;
                    report.branches.extend(theirs.branches);
                    report.failures.extend(theirs.failures);
                }
            }
        }
        Err(err) => report.failures.push(ScanFailure {
            participant: "decision log".into(),
            message: format!("cannot list the cluster's nodes: {err}"),
        }),
    }
    report
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
    let report = recover_one(&state, &parsed, false).await?;
    state.metrics.recovery("manual", &report);
    Ok(Json(report))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Requested {
    Commit,
    Rollback,
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
    pub status: String,
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
    let found = recover_one(&state, &gid, true).await?;
    if found.branches.is_empty() {
        return Err(Problem::conflict(
            "nothing-prepared",
            format!(
                "no branch of {gid_text} is prepared on any participant: there is nothing to resolve"
            ),
        ));
    }
    let committed = found
        .branches
        .iter()
        .any(|b| b.decision == Decision::Commit);
    let expired = gid.expired(PRESUMED_ABORT_MARGIN, SystemTime::now());
    let heuristic = match (committed, request.outcome, expired) {
        (true, Requested::Commit, _) | (false, Requested::Rollback, true) => false,
        (false, _, false) => {
            return Err(Problem::conflict(
                "undecided",
                format!(
                    "{gid_text} has no decision and its deadline ({}) has not passed by recovery's margin: its coordinator may still decide it; try again later",
                    rfc3339(gid.deadline())
                ),
            ));
        }
        (true, Requested::Rollback, _) if !request.allow_heuristic => {
            return Err(Problem::conflict(
                "decision-exists",
                "a COMMIT decision is recorded: rolling back would leave the transaction partly committed. Give allow_heuristic: true to do it anyway, recorded as a heuristic decision",
            ));
        }
        (false, Requested::Commit, true) if !request.allow_heuristic => {
            return Err(Problem::conflict(
                "would-commit-an-abort",
                "no COMMIT was recorded before the deadline, so the transaction is aborted (its other branches may be rolled back already). Give allow_heuristic: true to commit what is still prepared, recorded as a heuristic decision",
            ));
        }
        _ => true,
    };
    let mut branches = BTreeMap::new();
    let status = if heuristic {
        act_on_prepared(&state, &gid, request.outcome, &mut branches).await?;
        match request.outcome {
            Requested::Commit => "heuristic-commit",
            Requested::Rollback => "heuristic-rollback",
        }
    } else {
        let report = recover_one(&state, &gid, false).await?;
        state.metrics.recovery("manual", &report);
        for branch in &report.branches {
            branches.insert(
                branch.participant.clone(),
                action_name(&branch.action).to_owned(),
            );
        }
        if report
            .branches
            .iter()
            .any(|b| matches!(b.action, Action::Failed(_)))
        {
            return Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "participant-failed",
                "some branch could not be resolved now; it stays prepared (retry later)",
            )
            .with("branches", &branches));
        }
        if committed { "committed" } else { "aborted" }
    };
    let resolution = serde_json::json!({
        "by": caller.name(),
        "at": now_ms(),
        "asked": request.outcome,
        "reason": request.reason,
        "heuristic": heuristic,
        "branches": branches,
    });
    if let Err(err) = state.history.resolve(&gid_text, status, &resolution).await {
        tracing::error!(gid = %gid_text, "cannot record the resolution: {err}");
    }
    tracing::warn!(gid = %gid_text, by = caller.name(), status, heuristic, reason = %request.reason, "transaction force-resolved");
    Ok(Json(ResolveResponse {
        gid: gid_text,
        status: status.into(),
        heuristic,
        branches,
    }))
}

/// A heuristic decision: commit or roll back every branch of `gid` still prepared.
async fn act_on_prepared(
    state: &AppState,
    gid: &Gid,
    outcome: Requested,
    done: &mut BTreeMap<String, String>,
) -> Result<(), Problem> {
    let prefix = state.host.config().node.gid_prefix();
    for participant in state.host.coordinator().server_participants() {
        let branches = participant.prepared_branches(&prefix).await.map_err(|e| {
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "participant-unavailable",
                e.to_string(),
            )
        })?;
        for branch in branches.into_iter().filter(|b| b.gid == *gid) {
            let result = match outcome {
                Requested::Commit => participant.commit_prepared(&branch).await,
                Requested::Rollback => participant.rollback_prepared(&branch).await,
            };
            let what = match (result, outcome) {
                (Ok(Resolution::Done), Requested::Commit) => "committed".to_owned(),
                (Ok(Resolution::Done), Requested::Rollback) => "rolled-back".to_owned(),
                (Ok(Resolution::AlreadyResolved), _) => "already-resolved".to_owned(),
                (Err(err), _) => format!("failed: {err}"),
            };
            done.insert(participant.name().to_owned(), what);
        }
    }
    if let Some(store) = state.host.coordinator().decision_store()
        && outcome == Requested::Rollback
        && done.values().all(|v| !v.starts_with("failed"))
        && let Err(err) = store.record_done(gid).await
    {
        tracing::warn!(%gid, "cannot record DONE: {err}");
    }
    Ok(())
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
