//! A node's lease: the `wasmtx.node` row that says which process holds a node id, until when,
//! and in which incarnation.
//!
//! - **Claim** at start: the row is taken if it is new or its lease has lapsed (the
//!   incarnation goes up by one, an adoption is cleared); a live holder makes the claim fail
//!   with a message naming it. A holder on this same machine whose process is gone (a
//!   crash, then a restart here) is replaced at once instead of after its lease.
//! - **Renew** every third of the TTL, only while the lease is still live by the database's
//!   clock. A renewal that finds it lapsed (the process was paused or cut off past its TTL)
//!   marks the lease **lost**: the decision store refuses COMMITs at once, and the database
//!   would refuse them anyway, since every COMMIT INSERT checks the lease and incarnation.
//!   A lost lease is claimed again only when the owner says so ([`Lease::reclaim`]) — the
//!   server does it once its in-flight transactions have ended and before its own recovery.
//! - How long the lease surely lasts is judged without trusting clocks across machines: the
//!   local instant a successful renewal was *sent*, plus the TTL.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use thiserror::Error;

use crate::gid::NodeId;

#[derive(Debug, Error)]
pub enum ClaimError {
    #[error(
        "node id `{node}` is held by {holder} (incarnation {incarnation}) until {until}: another process runs as this node; stop it, give this one another node id, or wait for that lease to lapse"
    )]
    Held {
        node: String,
        holder: String,
        incarnation: i64,
        until: String,
    },
    #[error("node id `{0}` is retired in the decision database; give another node id")]
    Retired(String),
    #[error("cannot claim node id `{node}` in the decision database: {source}")]
    Database {
        node: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Whether this process may decide transactions as its node now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeaseStatus {
    /// Held for at least this long.
    Held(Duration),
    /// The last renewal was not answered and the lease may have lapsed.
    Unconfirmed,
    /// Found lapsed: another process may adopt this node's work.
    Lost,
}

pub struct Lease {
    pool: PgPool,
    node: NodeId,
    ttl: Duration,
    api_addr: Option<String>,
    /// `hostname:pid`, written to the row for people and for a restart on this machine.
    holder: String,
    incarnation: AtomicI64,
    /// Until when the lease surely holds (a renewal's send instant + TTL).
    held_until: Mutex<Instant>,
    lost: AtomicBool,
    lost_total: AtomicU64,
}

impl Lease {
    /// Claims `node`'s row (see the module doc).
    pub async fn claim(
        pool: PgPool,
        node: NodeId,
        ttl: Duration,
        api_addr: Option<String>,
    ) -> Result<Lease, ClaimError> {
        let lease = Lease {
            pool,
            node,
            ttl,
            api_addr,
            holder: format!("{}:{}", hostname(), std::process::id()),
            incarnation: AtomicI64::new(0),
            held_until: Mutex::new(Instant::now()),
            lost: AtomicBool::new(true),
            lost_total: AtomicU64::new(0),
        };
        lease.take_row().await?;
        Ok(lease)
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The incarnation of the last successful claim.
    pub fn incarnation(&self) -> i64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    /// The incarnation to decide with, if the lease is surely held now.
    pub fn fencing_token(&self) -> Option<i64> {
        matches!(self.status(), LeaseStatus::Held(_)).then(|| self.incarnation())
    }

    pub fn status(&self) -> LeaseStatus {
        if self.lost.load(Ordering::SeqCst) {
            return LeaseStatus::Lost;
        }
        let until = *self.held_until.lock().unwrap();
        match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => LeaseStatus::Held(left),
            _ => LeaseStatus::Unconfirmed,
        }
    }

    /// How often the lease was found lost since start.
    pub fn lost_total(&self) -> u64 {
        self.lost_total.load(Ordering::SeqCst)
    }

    /// Marks the lease lost (a renewal, or a refused COMMIT, found it lapsed).
    pub fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            self.lost_total.fetch_add(1, Ordering::SeqCst);
            tracing::error!(
                node = %self.node,
                incarnation = self.incarnation(),
                "the node's lease has lapsed: no transaction is decided until it is claimed again"
            );
        }
    }

    /// Renews a held lease; marks it lost if the database says it lapsed. Does nothing while
    /// lost.
    pub async fn renew(&self) -> Result<(), sqlx::Error> {
        if self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        let sent = Instant::now();
        let renewed = sqlx::query(
            "UPDATE wasmtx.node SET heartbeat_at = clock_timestamp(), \
                    lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
              WHERE node_id = $1 AND incarnation = $2 AND lease_until > clock_timestamp() \
                    AND state = 'active'",
        )
        .bind(self.node.as_str())
        .bind(self.incarnation())
        .bind(millis(self.ttl))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 1 {
            *self.held_until.lock().unwrap() = sent + self.ttl;
        } else {
            self.mark_lost();
        }
        Ok(())
    }

    /// Claims a lost lease again (incarnation + 1). Call it once nothing decided under the
    /// old incarnation is still running; run this node's recovery before deciding again.
    pub async fn reclaim(&self) -> Result<(), ClaimError> {
        self.take_row().await
    }

    /// Gives the lease up (at a clean shutdown): survivors may adopt the node after the
    /// grace period, and a restart claims it at once.
    pub async fn release(&self) {
        self.lost.store(true, Ordering::SeqCst);
        let released = sqlx::query(
            "UPDATE wasmtx.node SET lease_until = clock_timestamp() \
              WHERE node_id = $1 AND incarnation = $2",
        )
        .bind(self.node.as_str())
        .bind(self.incarnation())
        .execute(&self.pool)
        .await;
        if let Err(err) = released {
            tracing::warn!(node = %self.node, "cannot release the node's lease: {err}");
        }
    }

    async fn take_row(&self) -> Result<(), ClaimError> {
        let db = |source| ClaimError::Database {
            node: self.node.to_string(),
            source,
        };
        // A holder on this machine whose process is gone may be replaced at once.
        let mut replace_incarnation = -1_i64;
        loop {
            let sent = Instant::now();
            let claimed: Option<i64> = sqlx::query_scalar(
                "INSERT INTO wasmtx.node (node_id, host, api_addr, version, lease_until) \
                 VALUES ($1, $2, $3, $4, clock_timestamp() + $5 * interval '1 millisecond') \
                 ON CONFLICT (node_id) DO UPDATE \
                    SET incarnation = wasmtx.node.incarnation + 1, host = EXCLUDED.host, \
                        api_addr = EXCLUDED.api_addr, version = EXCLUDED.version, \
                        started_at = clock_timestamp(), heartbeat_at = clock_timestamp(), \
                        lease_until = EXCLUDED.lease_until, adopted_by = NULL, adopted_until = NULL \
                  WHERE (wasmtx.node.lease_until < clock_timestamp() \
                         OR wasmtx.node.incarnation = $6) \
                    AND wasmtx.node.state = 'active' \
                 RETURNING incarnation",
            )
            .bind(self.node.as_str())
            .bind(&self.holder)
            .bind(self.api_addr.as_deref())
            .bind(env!("CARGO_PKG_VERSION"))
            .bind(millis(self.ttl))
            .bind(replace_incarnation)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            if let Some(incarnation) = claimed {
                self.incarnation.store(incarnation, Ordering::SeqCst);
                *self.held_until.lock().unwrap() = sent + self.ttl;
                self.lost.store(false, Ordering::SeqCst);
                tracing::info!(node = %self.node, incarnation, "claimed the node's lease");
                return Ok(());
            }
            let (holder, incarnation, until, state): (String, i64, String, String) =
                sqlx::query_as(
                    "SELECT host, incarnation, to_char(lease_until AT TIME ZONE 'UTC', \
                            'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), state \
                       FROM wasmtx.node WHERE node_id = $1",
                )
                .bind(self.node.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            if state != "active" {
                return Err(ClaimError::Retired(self.node.to_string()));
            }
            if replace_incarnation < 0 && holder_is_gone(&holder) {
                tracing::info!(node = %self.node, %holder, "the lease's holder on this machine is gone; taking its node id");
                replace_incarnation = incarnation;
                continue;
            }
            return Err(ClaimError::Held {
                node: self.node.to_string(),
                holder,
                incarnation,
                until,
            });
        }
    }
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether `holder` (`hostname:pid`) names a process of this machine that no longer runs.
fn holder_is_gone(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<libc::pid_t>() else {
        return false;
    };
    if host != hostname() || pid <= 0 || pid == std::process::id() as libc::pid_t {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}
