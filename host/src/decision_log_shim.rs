//! Temporary: DecisionStore for DecisionLog until the decision log folder lands.
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::decision_log::{DecisionLog, DecisionLogError, DecisionLogOptions};
use crate::decision_store::*;
use crate::gid::Gid;

fn conv(e: DecisionLogError) -> DecisionError {
    if e.may_be_recorded() {
        DecisionError::MaybeRecorded(Arc::new(e))
    } else {
        DecisionError::NotRecorded(Arc::new(e))
    }
}

impl DecisionLog {
    pub async fn open_async(path: &Path) -> Result<Self, DecisionLogError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            DecisionLog::open_with(&path, DecisionLogOptions::default())
        })
        .await
        .expect("open")
    }
}

#[async_trait]
impl DecisionSource for DecisionLog {
    fn describe(&self) -> String {
        format!("decision log {}", self.path().display())
    }
    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        DecisionLog::is_committed(self, gid).map_err(|e| DecisionError::Unavailable(Arc::new(e)))
    }
}

#[async_trait]
impl DecisionStore for DecisionLog {
    async fn record_commit(&self, gid: &Gid, deadline: SystemTime) -> Result<(), DecisionError> {
        DecisionLog::record_commit(self, gid, deadline)
            .await
            .map_err(conv)
    }
    async fn record_done(&self, gid: &Gid) -> Result<(), DecisionError> {
        DecisionLog::record_done(self, gid).await.map_err(conv)
    }
    async fn snapshot(&self) -> Result<Snapshot, DecisionError> {
        let s = DecisionLog::snapshot(self).map_err(conv)?;
        Ok(Snapshot {
            pending: s.pending,
            as_of: s.as_of,
        })
    }
    async fn flush(&self) -> Result<(), DecisionError> {
        DecisionLog::flush(self).await.map_err(conv)
    }
    fn stats(&self) -> DecisionStats {
        let s = DecisionLog::stats(self);
        DecisionStats {
            commits_written: s.commits_written,
            dones_written: s.dones_written,
            batches_written: s.frames_written,
            syncs: s.fsyncs,
            compactions: s.compactions,
        }
    }
}

pub struct SqliteDecisionTable {
    main: std::path::PathBuf,
}
impl SqliteDecisionTable {
    pub fn new(main: std::path::PathBuf) -> Self {
        SqliteDecisionTable { main }
    }
}
#[async_trait]
impl DecisionSource for SqliteDecisionTable {
    fn describe(&self) -> String {
        format!("SQLite coordinator file {}", self.main.display())
    }
    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        crate::participant::sqlite::decision_recorded(&self.main, gid)
            .await
            .map_err(|e| DecisionError::Unavailable(Arc::new(std::io::Error::other(e))))
    }
}
