//! wasmtx runs distributed transactions whose prepare logic is a sandboxed WebAssembly
//! component, and commits them with real two-phase commit.
//!
//! Data flows one way: CLI → coordinator → script host / participants → decision log.
//!
//! - [`config`]: node id, directories, participants and [`limits`], from TOML and flags;
//! - [`engine`] and [`cache`]: the one wasmtime engine and the on-disk cache of compiled
//!   components;
//! - [`script`]: the sandbox — loads components, runs one fresh instance per transaction,
//!   implements the WIT imports, converts values, enforces the statement policy;
//! - [`participant`]: the databases — PostgreSQL and MySQL/MariaDB branches with XA-style
//!   prepare, SQLite files attached to one connection;
//! - [`transaction`]: one open global transaction, as the script and coordinator share it;
//! - [`coordinator`]: the two-phase commit state machine;
//! - [`decision_log`]: durable COMMIT decisions with group commit;
//! - [`recovery`]: resolves branches left prepared by a crash;
//! - [`report`]: what a transaction ended as, for humans and `--json`;
//! - [`gid`]: global transaction ids; [`value`]: SQL values; [`dialect`]: SQL dialects;
//! - [`guest_build`]: builds a guest crate directory into a component;
//! - [`bench`](mod@bench): the benchmark runner, the native twin of `examples/transfer`, and
//!   the CPU and memory readings it reports;
//! - [`memo`]: a bounded memo for repeated statement parsing;
//! - [`fault`]: test-only crash points.

pub mod bench;
pub mod cache;
pub mod config;
pub mod coordinator;
pub mod decision_log;
pub mod decision_store;
pub mod dialect;
pub mod engine;
pub mod fault;
pub mod gid;
pub mod guest_build;
pub mod limits;
pub mod memo;
pub mod participant;
pub mod recovery;
pub mod report;
pub mod script;
pub mod transaction;
pub mod value;
