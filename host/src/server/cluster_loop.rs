//! A cluster member's duties besides serving (with `[decision_log] url` only):
//!
//! - **Its own lease.** When the lease is found lost (the process was paused or cut off past
//!   its TTL), the server stops admitting invokes, waits until every transaction it was
//!   running has ended (their COMMITs are refused by the database, so they roll back or stay
//!   in doubt), claims its node id again (a new incarnation), runs its own recovery, and
//!   only then is ready again. Nothing decided under the old incarnation can be recorded
//!   under the new one.
//! - **Takeover.** Every third of the lease TTL it adopts the nodes whose lease lapsed more
//!   than the grace period ago and runs their recovery: COMMITs in the log are committed,
//!   undecided branches past their deadline are rolled back after an ABORT row is written,
//!   finished COMMITs are marked DONE. It keeps adopting a dead node (renewing the
//!   adoption) until that node claims its id again.

use std::sync::Arc;
use std::time::Duration;

use super::state::AppState;
use crate::cluster::{Cluster, LeaseStatus};

/// How often a server whose lease is lost looks whether its transactions have ended.
const DRAIN_POLL: Duration = Duration::from_millis(50);

pub async fn run(state: Arc<AppState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.settings().lease_ttl() / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.lease().status() == LeaseStatus::Lost {
            regain_lease(&state, &cluster).await;
        }
        if state.readiness().is_ok() {
            adopt_dead_nodes(&state, &cluster).await;
        }
    }
}

async fn regain_lease(state: &AppState, cluster: &Cluster) {
    state.set_not_ready(format!(
        "node `{}` lost its lease (incarnation {}); waiting for its transactions to end before claiming it again",
        cluster.node(),
        cluster.lease().incarnation()
    ));
    while state.slots_in_use() > 0 || !state.running.lock().unwrap().is_empty() {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    if let Err(err) = cluster.lease().reclaim().await {
        tracing::warn!("{err}");
        state.set_not_ready(format!(
            "the node's lease is lost and cannot be claimed again: {err}"
        ));
        return;
    }
    state.set_not_ready(format!(
        "node `{}` claimed its lease again (incarnation {}); its own recovery has not finished",
        cluster.node(),
        cluster.lease().incarnation()
    ));
    super::recovery_loop::recover_until_resolved(state, "lease-regained").await;
}

async fn adopt_dead_nodes(state: &AppState, cluster: &Cluster) {
    let adopted = match cluster.adopt().await {
        Ok(adopted) => adopted,
        Err(err) => {
            tracing::warn!("cannot look for dead nodes to adopt: {err}");
            return;
        }
    };
    for node in adopted {
        if node.newly {
            tracing::warn!(dead = %node.node, incarnation = node.incarnation, "adopting a node whose lease lapsed; running its recovery");
            state.metrics.takeover();
        }
        let Some(recovery) = state.host.recovery_of(&node.node) else {
            return;
        };
        let report = {
            let _serial = state.recovery_lock.lock().await;
            recovery.run(false).await
        };
        state.metrics.recovery("takeover", &report);
        let done = report.branches.iter().filter(|b| {
            matches!(
                b.action,
                crate::recovery::Action::Committed | crate::recovery::Action::RolledBack
            )
        });
        let done = done.count();
        if done > 0 || !report.all_resolved() {
            tracing::info!(dead = %node.node, resolved = done, unresolved = !report.all_resolved(), "recovery of an adopted node");
        }
    }
}
