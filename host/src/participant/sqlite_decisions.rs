//! The last-resource decision table: when an SQLite group commits last, after every server
//! participant prepared, the COMMIT decision is a row written into the host's main SQLite
//! file inside the group's own commit, so that commit is the decision. Recovery reads the
//! table through [`SqliteDecisionTable`], a [`DecisionSource`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use thiserror::Error;

use super::DbError;
use crate::decision_store::{DecisionError, DecisionSource};
use crate::gid::Gid;

/// The table's name, in one place for the statements below.
macro_rules! decisions_table {
    () => {
        "wasmtx_decisions"
    };
}

/// The table in the host's main file that holds last-resource COMMIT decisions.
pub const DECISIONS_TABLE: &str = decisions_table!();

const CREATE: &str = concat!(
    "CREATE TABLE IF NOT EXISTS main.",
    decisions_table!(),
    " (gid TEXT PRIMARY KEY, decided_at_ms INTEGER NOT NULL)"
);
const INSERT: &str = concat!(
    "INSERT INTO main.",
    decisions_table!(),
    " (gid, decided_at_ms) VALUES (?, ?)"
);
const TABLE_EXISTS: &str = "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?";
const FIND: &str = concat!("SELECT 1 FROM main.", decisions_table!(), " WHERE gid = ?");

/// Creates the decision table in the connection's main database if it is missing.
pub(super) async fn create_table(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(CREATE).execute(conn).await.map(drop)
}

/// Records the COMMIT decision for `gid`, inside the connection's open transaction.
pub(super) async fn record_commit(
    conn: &mut SqliteConnection,
    gid: &Gid,
) -> Result<(), sqlx::Error> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    sqlx::query(INSERT)
        .bind(gid.as_str().to_owned())
        .bind(now_ms)
        .execute(conn)
        .await
        .map(drop)
}

/// The decision table could not be read.
#[derive(Debug, Clone, Error)]
pub enum SqliteDecisionError {
    #[error(
        "cannot inspect SQLite coordinator file {path}: {source}; check that its directory \
         is readable"
    )]
    Inspect {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "cannot read the COMMIT decisions in SQLite coordinator file {path}: {cause}; check \
         that the file is readable and is the one this node's transactions used"
    )]
    Read { path: PathBuf, cause: DbError },
}

/// The decision table in the host's main SQLite file: recovery's view of the decisions
/// SQLite groups recorded when they committed last. It only reads the table, but opens the
/// file read-write: a host killed during a group's commit leaves a hot journal next to the
/// file, which SQLite must roll back (as every reader does) before the file can be read —
/// read-only, every read fails with SQLITE_READONLY_ROLLBACK until a host opens it again.
#[derive(Debug, Clone)]
pub struct SqliteDecisionTable {
    main: PathBuf,
}

impl SqliteDecisionTable {
    /// The table in the main file at `main` (which may not exist yet).
    pub fn new(main: impl Into<PathBuf>) -> Self {
        SqliteDecisionTable { main: main.into() }
    }

    /// The main file's path.
    pub fn path(&self) -> &Path {
        &self.main
    }

    /// Whether a COMMIT decision is recorded for `gid`. A missing file or table means none.
    pub async fn contains(&self, gid: &Gid) -> Result<bool, SqliteDecisionError> {
        let fail = |e: sqlx::Error| SqliteDecisionError::Read {
            path: self.main.clone(),
            cause: DbError::from_sqlx(&e),
        };
        let exists =
            tokio::fs::try_exists(&self.main)
                .await
                .map_err(|e| SqliteDecisionError::Inspect {
                    path: self.main.clone(),
                    source: Arc::new(e),
                })?;
        if !exists {
            return Ok(false);
        }
        let mut conn = SqliteConnectOptions::new()
            .filename(&self.main)
            .create_if_missing(false)
            .connect()
            .await
            .map_err(fail)?;
        let found = find(&mut conn, gid).await;
        let _ = conn.close().await;
        found.map_err(fail)
    }
}

async fn find(conn: &mut SqliteConnection, gid: &Gid) -> Result<bool, sqlx::Error> {
    let table = sqlx::query(TABLE_EXISTS)
        .bind(DECISIONS_TABLE)
        .fetch_optional(&mut *conn)
        .await?;
    if table.is_none() {
        return Ok(false);
    }
    let row = sqlx::query(FIND)
        .bind(gid.as_str().to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

#[async_trait]
impl DecisionSource for SqliteDecisionTable {
    fn describe(&self) -> String {
        format!(
            "SQLite decision table {DECISIONS_TABLE} in {}",
            self.main.display()
        )
    }

    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        self.contains(gid)
            .await
            .map_err(|e| DecisionError::Unavailable(Arc::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::gid::NodeId;

    fn gid() -> Gid {
        Gid::new(
            &NodeId::new("test").unwrap(),
            SystemTime::now() + Duration::from_secs(60),
        )
    }

    async fn open(main: &Path) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(main)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_missing_file_or_table_holds_no_decision() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("coordinator.db");
        let table = SqliteDecisionTable::new(&main);
        assert!(!table.is_committed(&gid()).await.unwrap());
        assert!(!main.exists(), "reading does not create the file");
        open(&main).await.close().await.unwrap();
        assert!(!table.is_committed(&gid()).await.unwrap());
        assert!(table.describe().contains(&main.display().to_string()));
    }

    #[tokio::test]
    async fn a_decision_recorded_in_a_commit_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("coordinator.db");
        let (decided, rolled_back, other) = (gid(), gid(), gid());
        let mut conn = open(&main).await;
        create_table(&mut conn).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        record_commit(&mut tx, &decided).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        record_commit(&mut tx, &rolled_back).await.unwrap();
        tx.rollback().await.unwrap();
        conn.close().await.unwrap();

        let table = SqliteDecisionTable::new(&main);
        assert!(table.is_committed(&decided).await.unwrap());
        assert!(!table.is_committed(&rolled_back).await.unwrap());
        assert!(!table.is_committed(&other).await.unwrap());
    }

    #[tokio::test]
    async fn a_hot_journal_left_by_a_crash_is_rolled_back_and_the_decisions_read() {
        // The state a host killed in the middle of a group's commit leaves: the file and
        // its journal, copied while a writer holds them, with no process holding a lock.
        let dir = tempfile::tempdir().unwrap();
        let (live, main) = (
            dir.path().join("live.db"),
            dir.path().join("coordinator.db"),
        );
        let (decided, torn) = (gid(), gid());
        let mut conn = open(&live).await;
        create_table(&mut conn).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        record_commit(&mut tx, &decided).await.unwrap();
        tx.commit().await.unwrap();
        // A one-page cache spills the uncommitted pages into the file itself.
        sqlx::query("PRAGMA cache_size = 1")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        record_commit(&mut tx, &torn).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
             INSERT INTO main.wasmtx_decisions SELECT 'filler-' || i, 0 FROM n",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let journal = |db: &Path| PathBuf::from(format!("{}-journal", db.display()));
        std::fs::copy(&live, &main).unwrap();
        std::fs::copy(journal(&live), journal(&main)).unwrap();
        tx.rollback().await.unwrap();
        conn.close().await.unwrap();

        let table = SqliteDecisionTable::new(&main);
        assert!(table.is_committed(&decided).await.unwrap());
        assert!(!table.is_committed(&torn).await.unwrap());
        assert!(!journal(&main).exists(), "the hot journal was rolled back");
    }

    #[tokio::test]
    async fn an_unreadable_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("coordinator.db");
        std::fs::write(&main, vec![0x5a; 4096]).unwrap();
        let error = SqliteDecisionTable::new(&main)
            .is_committed(&gid())
            .await
            .unwrap_err();
        assert!(matches!(error, DecisionError::Unavailable(_)), "{error}");
        assert!(
            error.to_string().contains(&main.display().to_string()),
            "{error}"
        );
    }
}
