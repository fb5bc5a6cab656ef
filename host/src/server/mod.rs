//! `wasmtx serve`: a long-running host behind an HTTP API.
//!
//! - plugins are published to a registry in the state directory ([`crate::registry`]) and
//!   invoked by name; participants are this server's configuration, a request only picks
//!   some of them by name;
//! - each transaction runs on its own task, so a client that goes away cannot cancel it
//!   half-way: phase 2 finishes, nothing is left prepared;
//! - an `Idempotency-Key` is recorded (synced) before its transaction runs, so a repeat —
//!   also after a crash — answers from the first run instead of running again;
//! - recovery runs at start (`/readyz` is false until nothing this node left prepared is
//!   unresolved) and then periodically, a gid that keeps failing backing off up to a minute;
//! - bearer tokens with scopes on every route but the health checks; without tokens the
//!   server only listens on loopback;
//! - HTTPS with `[server] tls_cert` and `tls_key`, reloaded without a restart, and
//!   optionally client certificates (`tls_client_ca`);
//! - Prometheus metrics at `/metrics`, an OpenAPI document at `/v1/openapi.json`;
//! - an operator console at `/console/` (`console/`), signed in with a token;
//! - with `[decision_log] url`, one node of a cluster: it holds its node id with a lease,
//!   stops deciding when the lease is lost, and adopts nodes whose lease lapsed
//!   (`cluster_loop.rs`, [`crate::cluster`]); `/v1/nodes` lists them;
//! - SIGTERM or Ctrl-C: stop accepting, let in-flight transactions finish, flush the
//!   decision log, exit.
//!
//! Files: `state.rs` (what every handler shares),
//! `invoke.rs`, `plugins.rs`, `transactions.rs` (status, history, in-doubt, retry,
//! resolve, recovery), `ops.rs` (health, readiness, metrics, nodes), `recovery_loop.rs`,
//! `cluster_loop.rs`, `tls.rs` (HTTPS and certificate reloading),
//! `history.rs`, `auth.rs`, `problem.rs`, `metrics.rs`, `api.rs` (every route and the
//! OpenAPI document, from one declaration), `console/` (the operator console's pages).

mod api;
mod auth;
mod cluster_loop;
mod console;
mod history;
mod invoke;
mod metrics;
mod ops;
mod plugins;
mod problem;
mod recovery_loop;
mod state;
mod tls;
mod transactions;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use thiserror::Error;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::host::{Host, HostError, HostOptions};
pub use invoke::InvokeRequest;
pub use problem::{PROBLEM_JSON, Problem};
use state::AppState;

/// Why the server could not start. Nothing was touched.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    State(String),
}

/// A server bound to its address, not yet serving.
pub struct Server {
    state: Arc<AppState>,
    listener: Listening,
}

/// Plain HTTP, or HTTPS with `[server] tls_cert`.
enum Listening {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

impl Server {
    /// Checks the settings, connects the participants, opens the registry and history, and
    /// binds `listen` (or `[server] listen`).
    pub async fn bind(mut config: Config, listen: Option<String>) -> Result<Server, ServeError> {
        if let Some(listen) = listen {
            config.server.listen = listen;
        }
        let settings = config.server.clone();
        settings.validate().map_err(ServeError::Config)?;
        // The TLS files are read before anything is connected: a bad one touches nothing.
        let tls = match settings.tls_files() {
            Some(files) => {
                let config = files
                    .load()
                    .map_err(|e| ServeError::Config(e.to_string()))?;
                Some((files, config))
            }
            None => None,
        };
        let addr: SocketAddr = settings.listen.parse().map_err(|_| {
            ServeError::Config(format!(
                "--listen {:?} is not an address: give IP:PORT, e.g. 127.0.0.1:8080",
                settings.listen
            ))
        })?;
        if settings.tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(ServeError::Config(format!(
                "no tokens are configured, so the server only listens on loopback (127.0.0.1 or ::1), not {addr}: add [[server.tokens]] to the configuration to listen elsewhere"
            )));
        }
        if config.participants.is_empty() {
            return Err(ServeError::Config(
                "no participants: give -p NAME=URL or [participants] in --config".into(),
            ));
        }
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            ServeError::State(format!(
                "cannot create the state directory {}: {e}",
                config.state_dir.display()
            ))
        })?;
        let lock = state::lock_state_dir(&config).map_err(ServeError::State)?;
        let host = Host::open(
            config,
            HostOptions {
                concurrency: settings.concurrency,
                max_connections: settings.max_connections,
                ..HostOptions::default()
            }
            .with_warm_room(!settings.warm.is_empty()),
        )
        .await?;
        refuse_superusers(&host, &settings.allow_superuser).await?;
        let state = AppState::open(host, settings, lock)
            .await
            .map_err(ServeError::State)?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let listener = match tls {
            Some((files, config)) => {
                Listening::Tls(tls::TlsListener::new(tcp, files, config).map_err(|source| {
                    ServeError::Listen {
                        addr: addr.to_string(),
                        source,
                    }
                })?)
            }
            None => Listening::Plain(tcp),
        };
        Ok(Server {
            state: Arc::new(state),
            listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Listening::Plain(tcp) => tcp.local_addr(),
            Listening::Tls(tls) => axum::serve::Listener::local_addr(tls),
        }
    }

    /// The URL clients reach this server at.
    pub fn url(&self) -> std::io::Result<String> {
        let scheme = match self.listener {
            Listening::Plain(_) => "http",
            Listening::Tls(_) => "https",
        };
        Ok(format!("{scheme}://{}", self.local_addr()?))
    }

    /// Serves until `shutdown` completes, then stops accepting, waits for in-flight
    /// transactions and flushes the decision log.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let recovery = tokio::spawn(recovery_loop::run(state.clone()));
        let metrics_upkeep = tokio::spawn(state.metrics.upkeep());
        let cluster = state
            .host
            .cluster()
            .cloned()
            .map(|cluster| tokio::spawn(cluster_loop::run(state.clone(), cluster)));
        let app = router(state.clone());
        let result = match self.listener {
            Listening::Plain(tcp) => axum::serve(tcp, app).with_graceful_shutdown(shutdown).await,
            Listening::Tls(tls) => {
                let app = app.into_make_service_with_connect_info::<auth::PeerCertificate>();
                axum::serve(tls, app).with_graceful_shutdown(shutdown).await
            }
        };
        state.draining();
        recovery.abort();
        metrics_upkeep.abort();
        if let Some(cluster) = cluster {
            cluster.abort();
        }
        state.tasks.close();
        state.tasks.wait().await;
        state.flush().await;
        result
    }
}

/// A script could read any table or other sessions' queries through a superuser role: a
/// participant connecting as one is refused unless `[server] allow_superuser` names it. A
/// participant whose privileges cannot be checked is refused too.
async fn refuse_superusers(host: &Host, allowed: &[String]) -> Result<(), ServeError> {
    for slot in host.participants() {
        let name = slot.name();
        if allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            continue;
        }
        match slot.privilege_check().await {
            Ok(report) if !report.superuser => {}
            Ok(report) => {
                return Err(ServeError::Config(format!(
                    "participant `{name}` connects as a superuser ({}): a script could read or change anything on that server. Connect as a role with only the grants it needs (README: least privilege), or add \"{name}\" to [server] allow_superuser",
                    report.detail
                )));
            }
            Err(err) => {
                return Err(ServeError::Config(format!(
                    "cannot check the privileges of participant `{name}` ({err}); add \"{name}\" to [server] allow_superuser to serve anyway"
                )));
            }
        }
    }
    Ok(())
}

/// Every route ([`api::api`]) and the layers around them all. Upload and invoke bodies have
/// their own limits; everything else is small.
fn router(state: Arc<AppState>) -> Router {
    let limits = api::BodyLimits {
        upload: state.settings.max_upload_bytes,
        input: state.settings.max_input_bytes,
    };
    let (routes, _) = api::api(limits).split_for_parts();
    routes
        .merge(console::router(limits.upload))
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn(problem::errors_as_problems))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(Extension(state.auth.clone()))
        .layer(DefaultBodyLimit::max(64 << 10))
        .layer(CatchPanicLayer::custom(ops::panic_response))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// The OpenAPI document of every route, as JSON text.
pub fn openapi_json() -> String {
    api::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
