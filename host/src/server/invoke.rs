//! `POST /v1/plugins/{name}/invoke`: one transaction of a published plugin.
//!
//! Order of checks (each refusal changes nothing): token, readiness, body and key header,
//! plugin and version, participants, timeout; then a slot (429 after the queue timeout);
//! then, with an `Idempotency-Key`, the key (answered from the first run, or 409 for another
//! body). The
//! transaction runs on its own task, which also records how it ended: a client that
//! disconnects changes nothing. A key's record is written while the transaction runs and is
//! on disk before the transaction can commit ([`KeyedLogic`]) and before it is answered.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::history::{PluginRef, TxRecord, now_ms};
use super::plugins::registry_problem;
use super::problem::{Problem, body_rejection, parse_json};
use super::state::{AppState, KeyTurn, Running};
use crate::coordinator::PrepareLogic;
use crate::host::{RunOptions, RunOptionsError};
use crate::recovery::TxState;
use crate::report::{ErrorKind, Outcome, TxError, TxReport};
use crate::script::ScriptLogic;
use crate::transaction::OpenTransaction;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// The idempotency header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The body of an invoke, as the server reads it and `wasmtx invoke` and `wasmtx bench
/// --compare http` send it.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// The script's input (any JSON; `{}` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// A version, an alias or `sha256:<hex>`; `latest` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Some of the configured participants, by name; all when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub participants: Option<Vec<String>>,
    /// The transaction's deadline; the configured `limits.timeout_secs` when absent, at
    /// most `[server] max_timeout_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
}

/// A transaction's answer: 200 committed, 202 committing (COMMIT recorded, a branch not yet
/// confirmed) or in-doubt (whether the COMMIT was recorded is unknown); see `Location`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvokeResponse {
    pub gid: String,
    /// `committed`, `committing` or `in-doubt`.
    pub status: TxState,
    pub plugin: PluginRef,
    /// The script's output: its JSON, or a string when it is not JSON.
    pub output: Option<serde_json::Value>,
    /// The full report, as `wasmtx run --json` prints it.
    #[schema(value_type = Object)]
    pub transaction: TxReport,
}

#[utoipa::path(post, path = "/v1/plugins/{name}/invoke", tag = "transactions",
    params(("name" = String, Path, description = "the plugin's name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"),
           ("Idempotency-Key" = Option<String>, Header, description = "runs once per key and body",
            min_length = 1, max_length = 255, pattern = r"^[!-~]+$")),
    request_body = InvokeRequest,
    responses((status = 200, description = "committed", body = InvokeResponse),
              (status = 202, description = "COMMIT decided, phase 2 still running; see Location", body = InvokeResponse),
              (status = 400, description = "bad request", body = Problem),
              (status = 404, description = "unknown plugin or version", body = Problem),
              (status = 409, description = "idempotency key reused with another body", body = Problem),
              (status = 410, description = "version withdrawn", body = Problem),
              (status = 413, description = "input too large", body = Problem),
              (status = 422, description = "aborted by the script or a statement", body = Problem),
              (status = 429, description = "overloaded", body = Problem),
              (status = 502, description = "a participant failed; aborted", body = Problem),
              (status = 503, description = "not ready", body = Problem),
              (status = 504, description = "deadline passed; aborted", body = Problem)))]
pub async fn invoke(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    state.ensure_ready()?;
    let body = body.map_err(|r| body_rejection(r, state.settings.max_input_bytes))?;
    let request: InvokeRequest = parse_json(&body)?;
    let key = idempotency_key(&headers)?;
    let resolved = state
        .registry
        .resolve(&name, request.version.as_deref())
        .await
        .map_err(registry_problem)?;
    if request.participants.as_ref().is_some_and(Vec::is_empty) {
        return Err(Problem::bad_request(
            "no-participants",
            "`participants` is empty; name some, or leave it out for all",
        ));
    }
    let timeout = match request.timeout_ms {
        None => None,
        Some(0) => {
            return Err(Problem::bad_request(
                "invalid-timeout",
                "timeout_ms must be at least 1",
            ));
        }
        Some(ms) if ms > state.settings.max_timeout_ms => {
            return Err(Problem::bad_request(
                "invalid-timeout",
                format!(
                    "timeout_ms {ms} is above this server's maximum of {} ([server] max_timeout_ms)",
                    state.settings.max_timeout_ms
                ),
            ));
        }
        Some(ms) => Some(Duration::from_millis(ms)),
    };
    let options = RunOptions {
        participants: request.participants.clone(),
        timeout,
        gid: None,
        // A keyed transaction's decision stays until its history row says how it ended, so
        // that a repeat after a crash can always tell (see `history.rs`).
        keep_decision: key.is_some(),
    };
    let planned = state.host.plan(options).map_err(|err| match err {
        RunOptionsError::UnknownParticipant { unknown, known } => Problem::bad_request(
            "unknown-participant",
            format!(
                "`{unknown}` is not a participant of this server; it has: {}",
                known.join(", ")
            ),
        ),
    })?;
    let input = match &request.input {
        Some(value) => value.to_string(),
        None => "{}".to_owned(),
    };
    let script = state.script(&resolved)?;
    let permit = state.admit().await?;

    // Requests with one key take turns. The turn ends with the transaction's task (which
    // outlives a client that disconnects), or when this handler returns before one starts.
    let key_turn = match &key {
        Some(key) => Some(KeyTurn::take(&state, &resolved.name, key).await),
        None => None,
    };
    let request_sha256 = hex::encode(Sha256::digest(&body));
    let mut record = TxRecord {
        gid: planned.gid().to_string(),
        plugin: resolved.name.clone(),
        version: resolved.version.clone(),
        digest: resolved.digest.clone(),
        participants: planned.participant_names(),
        status: TxState::Running,
        http_status: None,
        response: None,
        idem_key: key.clone(),
        request_sha256: key.as_ref().map(|_| request_sha256.clone()),
        started_at: now_ms(),
        finished_at: None,
        resolution: None,
    };
    let reservation = match &key {
        Some(key) => {
            if let Some(earlier) = state
                .history
                .by_key(&resolved.name, key)
                .await
                .map_err(Problem::internal)?
            {
                drop(permit);
                return replay(&state, earlier, &request_sha256).await;
            }
            // Queued for the next group commit; awaited before the commit and the answer.
            Some(state.history.reserve_key(&record).boxed().shared())
        }
        None => None,
    };

    state.running.lock().unwrap().insert(
        record.gid.clone(),
        Running {
            plugin: record.plugin.clone(),
            version: record.version.clone(),
            digest: record.digest.clone(),
            participants: record.participants.clone(),
            started_at: record.started_at,
        },
    );
    let task_state = state.clone();
    let plugin = PluginRef::from(&resolved);
    let gid = planned.gid().clone();
    let span = tracing::info_span!("transaction", gid = %planned.gid(), plugin = %resolved.name);
    let task = state.tasks.spawn(tracing::Instrument::instrument(
        async move {
            let _key_turn = key_turn;
            let state = task_state;
            let report = match &reservation {
                Some(reservation) => {
                    let keyed = KeyedLogic {
                        script: &script,
                        reservation: reservation.clone(),
                    };
                    planned.run(&keyed, &input).await
                }
                None => planned.run(&script, &input).await,
            };
            drop(permit);
            // Whatever the outcome, the key is on disk before anyone hears of it; if it could
            // not be written, the transaction did not commit (see `KeyedLogic`).
            if let Some(reservation) = reservation
                && let Err(err) = reservation.await
            {
                tracing::error!(gid = %report.gid, "{err}");
            }
            state.metrics.transaction(&plugin.name, &report);
            let (status, body) = answer(&plugin, &report);
            record.status = TxState::of_report(&report);
            record.http_status = Some(status.as_u16());
            record.response = Some(body.clone());
            record.finished_at = Some(now_ms());
            match state.history.finish(&record).await {
                // The row now says how it ended: the decision a keyed run kept can go (only
                // once every branch is committed; a pending one is recovery's, with it).
                Ok(()) if record.idem_key.is_some() && report.outcome == Outcome::Committed => {
                    state.host.release_decision(&gid).await;
                }
                Ok(()) => {}
                Err(err) => {
                    tracing::error!(gid = %record.gid, "cannot record the transaction's end: {err}");
                }
            }
            state.running.lock().unwrap().remove(&record.gid);
            (status, body)
        },
        span,
    ));
    let outcome = task.await;
    let (status, body) =
        outcome.map_err(|e| Problem::internal(format!("the transaction's task failed: {e}")))?;
    Ok(json_response(status, &body, false))
}

/// A keyed transaction's prepare logic: the script, and then — before the coordinator may
/// commit — the key's record on disk. A key that cannot be recorded aborts the transaction.
struct KeyedLogic<'a> {
    script: &'a ScriptLogic,
    reservation: Shared<BoxFuture<'static, Result<bool, String>>>,
}

#[async_trait::async_trait]
impl PrepareLogic for KeyedLogic<'_> {
    async fn prepare(
        &self,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        let (tx, voted) = self.script.prepare(tx, input).await;
        if voted.is_err() {
            return (tx, voted);
        }
        let refusal = match self.reservation.clone().await {
            Ok(true) => return (tx, voted),
            Ok(false) => {
                "the Idempotency-Key was taken by another transaction while this one held its lock"
                    .to_owned()
            }
            Err(err) => err,
        };
        let error = TxError::new(
            ErrorKind::Participant,
            format!("{refusal}; the transaction was not committed"),
        )
        .with_hint("retry the request with the same key");
        (tx, Err(error))
    }
}

/// A repeat of a keyed request: the first run's answer, or 409 for another body.
async fn replay(
    state: &AppState,
    earlier: TxRecord,
    request_sha256: &str,
) -> Result<Response, Problem> {
    if earlier.request_sha256.as_deref() != Some(request_sha256) {
        return Err(Problem::conflict(
            "idempotency-conflict",
            format!(
                "this Idempotency-Key was used for another request body (transaction {}); use a new key for a new request",
                earlier.gid
            ),
        )
        .with("gid", &earlier.gid));
    }
    if let (Some(status), Some(body)) = (earlier.http_status, &earlier.response) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        return Ok(json_response(status, body, true));
    }
    // Recorded before it ran, never finished here: the server stopped meanwhile. Its
    // decision says what became of it.
    let status = super::transactions::status_of(state, &earlier.gid).await?;
    let code = match status.status {
        TxState::Committed => StatusCode::OK,
        TxState::Aborted => StatusCode::CONFLICT,
        _ => StatusCode::ACCEPTED,
    };
    let body = serde_json::to_value(&status).map_err(Problem::internal)?;
    Ok(json_response(code, &body, true))
}

fn json_response(status: StatusCode, body: &serde_json::Value, replayed: bool) -> Response {
    let problem = !status.is_success();
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if problem {
            super::problem::PROBLEM_JSON
        } else {
            "application/json"
        }),
    );
    if status == StatusCode::ACCEPTED
        && let Some(gid) = body.get("gid").and_then(|g| g.as_str())
        && let Ok(location) = HeaderValue::from_str(&format!("/v1/transactions/{gid}"))
    {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The status code and body for a transaction's report.
pub fn answer(plugin: &PluginRef, report: &TxReport) -> (StatusCode, serde_json::Value) {
    let output = report.output.as_ref().map(|text| {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.clone()))
    });
    match report.outcome {
        Outcome::Committed | Outcome::InDoubt => {
            let status = if report.outcome == Outcome::Committed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let body = InvokeResponse {
                gid: report.gid.clone(),
                status: TxState::of_report(report),
                plugin: plugin.clone(),
                output,
                transaction: report.clone(),
            };
            (status, serde_json::to_value(body).unwrap_or_default())
        }
        Outcome::Aborted => {
            let error = report.error.clone();
            let kind = error.as_ref().map(|e| e.kind);
            let (status, code) = match kind {
                Some(ErrorKind::Script) => (StatusCode::UNPROCESSABLE_ENTITY, "script-aborted"),
                Some(ErrorKind::Trap) | Some(ErrorKind::Memory) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "script-trapped")
                }
                Some(ErrorKind::Limit) => (StatusCode::UNPROCESSABLE_ENTITY, "limit-exceeded"),
                Some(ErrorKind::Forbidden) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "statement-forbidden")
                }
                Some(ErrorKind::Database) => (StatusCode::UNPROCESSABLE_ENTITY, "statement-failed"),
                Some(ErrorKind::Timeout) => (StatusCode::GATEWAY_TIMEOUT, "deadline-exceeded"),
                Some(ErrorKind::Participant) => (StatusCode::BAD_GATEWAY, "participant-failed"),
                Some(ErrorKind::Input) => (StatusCode::BAD_REQUEST, "invalid-input"),
                None => (StatusCode::UNPROCESSABLE_ENTITY, "aborted"),
            };
            let detail = error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_else(|| "the transaction was rolled back".into());
            let mut problem = Problem::new(status, code, detail)
                .with("gid", &report.gid)
                .with("tx_status", "aborted")
                .with("plugin", plugin)
                .with("transaction", report);
            if let Some(hint) = error.and_then(|e| e.hint) {
                problem = problem.with("hint", hint);
            }
            (status, serde_json::to_value(problem).unwrap_or_default())
        }
    }
}

/// The `Idempotency-Key` header, if any: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::bad_request(
            "invalid-idempotency-key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_doubt(output: Option<&str>) -> TxReport {
        TxReport {
            gid: "wtx.n.01M8VT6Q2DNA5JKSMPTE1747ZX".into(),
            outcome: Outcome::InDoubt,
            output: output.map(str::to_owned),
            error: None,
            participants: Vec::new(),
            elapsed_ms: 1.0,
            phases_ms: Default::default(),
        }
    }

    #[test]
    fn an_unknown_decision_is_in_doubt_and_a_recorded_one_is_committing() {
        assert_eq!(
            TxState::of_report(&in_doubt(Some("{}"))).as_str(),
            "committing"
        );
        assert_eq!(TxState::of_report(&in_doubt(None)).as_str(), "in-doubt");
    }
}
