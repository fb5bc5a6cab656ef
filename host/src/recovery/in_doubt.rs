//! What is in doubt: the prepared branches a dry run of recovery found (this node's and, in a
//! cluster, every other node's on the shared participants), and the COMMITs still pending
//! while some participant could not be listed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use utoipa::ToSchema;

use super::{Decision, RecoveryReport, ScanFailure};
use crate::decision_store::DecisionStore;
use crate::gid::Gid;

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct InDoubtFilter {
    /// Only branches on this participant (case-insensitive).
    pub participant: Option<String>,
    /// Only transactions whose deadline passed at least this long ago.
    pub older_than: Option<Duration>,
    /// Gids running now on this host: not in doubt, whatever the databases show.
    pub running: BTreeSet<String>,
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
    pub failures: Vec<ScanFailure>,
}

/// The entries of `dry_run` (a dry run over every node) that `filter` keeps, at `now`; and
/// while some participant could not be listed, the COMMITs `store` holds pending that no
/// listed branch accounts for.
pub async fn in_doubt(
    dry_run: RecoveryReport,
    store: Option<&Arc<dyn DecisionStore>>,
    filter: &InDoubtFilter,
    now: SystemTime,
) -> InDoubtList {
    let overdue = |gid: &Gid| match filter.older_than {
        None => true,
        Some(age) => gid.deadline() + age <= now,
    };
    let mut entries: Vec<InDoubtEntry> = Vec::new();
    for branch in &dry_run.branches {
        let Ok(gid) = Gid::parse(&branch.gid) else {
            continue;
        };
        if filter.running.contains(&branch.gid)
            || !overdue(&gid)
            || filter
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
            action: branch.action.name().into(),
            deadline: gid.deadline_rfc3339(),
        });
    }
    // A COMMIT whose branches the scan found none of prepared is finished (recovery records
    // its DONE); only while some participant could not be scanned is it unknown.
    if filter.participant.is_none()
        && !dry_run.failures.is_empty()
        && let Some(store) = store
        && let Ok(snapshot) = store.snapshot().await
    {
        for gid in snapshot.pending {
            let listed = entries.iter().any(|e| e.gid == gid.as_str());
            if !listed && !filter.running.contains(gid.as_str()) && overdue(&gid) {
                entries.push(InDoubtEntry {
                    gid: gid.to_string(),
                    participant: None,
                    kind: "commit-pending".into(),
                    decision: "commit".into(),
                    action: "would-commit".into(),
                    deadline: gid.deadline_rfc3339(),
                });
            }
        }
    }
    InDoubtList {
        entries,
        failures: dry_run.failures,
    }
}
