//! wasmtx runs distributed transactions whose prepare logic is a sandboxed WebAssembly
//! component, and commits them with real two-phase commit.
//!
//! Data flows one way: CLI or embedder → [`Host`] → coordinator → script sandbox /
//! participants → decision store.
//!
//! - [`host`]: the front door — a [`Host`] built from a [`Config`] owns the sandbox, the
//!   participants, the coordinator and the decision store; it runs transactions (with
//!   per-run [`RunOptions`]) and answers recovery's questions and actions;
//! - [`config`]: node id, directories, participants and [`limits`], from TOML and flags, and
//!   the sections of the server and the cluster (below the modules that use them);
//! - [`script`]: the sandbox — the wasmtime engine and its instance pool
//!   ([`script::engine`]), loads components (through the on-disk cache of compiled
//!   components), runs one fresh instance per transaction (or, opted in, a warm one),
//!   implements the WIT imports, converts values, enforces the statement policy;
//! - [`participant`]: the databases — one factory ([`ParticipantSlot`]) from a spec to a
//!   PostgreSQL or MySQL/MariaDB server participant or an SQLite file, one state machine
//!   for server branches, SQLite files attached to one connection, a last agent's table;
//! - [`transaction`]: one open global transaction, as prepare logic and the coordinator
//!   share it;
//! - [`coordinator`]: the two-phase commit state machine over injected participants and
//!   an injected decision store;
//! - [`decision_store`]: the interfaces of decision stores, sources and arbiters;
//!   [`decision_log`]: the file log, durable COMMIT decisions with group commit;
//!   [`decisions`]: the one choice of a host's store and sources;
//! - [`cluster`]: a cluster's shared decision log in PostgreSQL, node leases, takeover;
//! - [`recovery`]: resolves branches left prepared by a crash, consulting every decision
//!   source; an operator's questions and actions on one gid (state, retry, force-resolve)
//!   and what is in doubt across nodes;
//! - [`registry`]: published plugins — components stored by digest as immutable
//!   `name@version`, with aliases, in the state directory;
//! - [`server`]: `wasmtx serve`, the HTTP front over [`Host`];
//! - [`report`]: what a transaction ended as, for humans and `--json`;
//! - [`gid`]: global transaction ids; [`value`]: SQL values; [`dialect`]: SQL dialects;
//! - [`guest_build`]: builds a guest crate directory into a component;
//! - [`tls`]: TLS configurations for `wasmtx serve` and its clients.
//!
//! Internal: `memo` (bounded memo of statement parsing), `fault` (test-only crash points).
//!
//! # Embedding
//!
//! Prepare logic is a WASM script ([`Host::load_script`]) or any [`PrepareLogic`] written in
//! Rust. Here a user row goes into two SQLite files atomically — both get it or neither:
//!
//! ```
//! use wasmtx::{Config, Host, HostOptions, OpenTransaction, ParticipantSpec, PrepareLogic, TxError, Value};
//!
//! struct InsertUser;
//!
//! #[async_trait::async_trait]
//! impl PrepareLogic for InsertUser {
//!     async fn prepare(&self, mut tx: OpenTransaction, name: &str) -> (OpenTransaction, Result<String, TxError>) {
//!         for db in tx.members().collect::<Vec<_>>() {
//!             if let Err(e) = tx.execute(db, "INSERT INTO user (name) VALUES (?)", &[Value::Text(name.into())]).await {
//!                 return (tx, Err(TxError::new(wasmtx::ErrorKind::Database, e.to_string())));
//!             }
//!         }
//!         (tx, Ok("inserted".into()))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # for db in ["a", "b"] {
//! #     let url = format!("sqlite://{}/{db}.db?mode=rwc", dir.path().display());
//! #     let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
//! #     sqlx::raw_sql("CREATE TABLE user (name TEXT PRIMARY KEY)").execute(&mut conn).await.unwrap();
//! # }
//! # let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
//! let mut config = Config::defaults();
//! # config.state_dir = dir.path().join("state");
//! config.add_participant(ParticipantSpec::new("a", &format!("sqlite://{}", a.display()))?, false)?;
//! config.add_participant(ParticipantSpec::new("b", &format!("sqlite://{}", b.display()))?, false)?;
//! let host = Host::open(config, HostOptions::default()).await?;
//!
//! let report = host.run(&InsertUser, "ada").await;
//! assert_eq!(report.outcome, wasmtx::Outcome::Committed);
//! let again = host.run(&InsertUser, "ada").await; // a unique clash: neither file changes
//! assert_eq!(again.outcome, wasmtx::Outcome::Aborted);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

// The command line uses the library by its name, as an outside front would.
extern crate self as wasmtx;

#[doc(hidden)]
pub mod cli;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod decision_log;
pub mod decision_store;
pub mod decisions;
pub mod dialect;
mod fault;
#[cfg(test)]
mod fuzzing;
pub mod gid;
pub mod guest_build;
pub mod host;
pub mod limits;
mod memo;
pub mod participant;
pub mod recovery;
pub mod registry;
pub mod report;
pub mod script;
pub mod server;
mod sql_parse;
pub mod tls;
pub mod transaction;
pub mod value;

pub use config::Config;
pub use coordinator::{Coordinator, CoordinatorSettings, PrepareLogic};
pub use decision_log::DecisionLog;
pub use decision_store::{DecisionError, DecisionSource, DecisionStore};
pub use host::{
    Host, HostBuilder, HostError, HostOptions, PlannedRun, RunOptions, RunOptionsError,
};
pub use participant::{ParticipantSlot, ParticipantSpec};
pub use recovery::{Recovery, RecoveryReport, TxState};
pub use report::{ErrorKind, Outcome, TxError, TxReport};
pub use script::{Sandbox, ScriptLogic};
pub use transaction::{MemberId, OpenTransaction};
pub use value::Value;
