//! Takeover: a live node adopts the nodes whose lease lapsed more than the grace period ago,
//! then runs their recovery (the caller does, with the dead node's gid prefix). Adoption is
//! itself leased (`adopted_until`, one lease TTL), so two survivors do not drive one dead
//! node at once; a dead node that comes back claims its row again, which clears the
//! adoption. Both working on one gid for a moment is safe: phase 2 is idempotent and every
//! ABORT goes through the decision's primary key.

use serde::Serialize;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

use super::lease::millis;
use crate::config::ClusterSettings;
use crate::gid::NodeId;

/// A node this one adopted now.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub node: NodeId,
    pub incarnation: i64,
    /// Whether this node had not been adopting it already (a takeover starts).
    pub newly: bool,
}

/// One row of the node table.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeRow {
    pub node: String,
    pub incarnation: i64,
    /// `hostname:pid` of the holder.
    pub host: String,
    pub api_addr: Option<String>,
    pub version: String,
    /// `active` or `retired`.
    pub state: String,
    /// Whether its lease is live by the decision database's clock.
    pub live: bool,
    /// RFC 3339, UTC.
    pub lease_until: String,
    pub heartbeat_at: String,
    pub adopted_by: Option<String>,
    pub adopted_until: Option<String>,
}

pub(super) async fn adopt(
    pool: &PgPool,
    me: &NodeId,
    settings: &ClusterSettings,
) -> Result<Vec<Adopted>, sqlx::Error> {
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "WITH dead AS ( \
           SELECT node_id, adopted_by AS before FROM wasmtx.node \
            WHERE node_id <> $1 AND state = 'active' \
              AND lease_until < clock_timestamp() - $3 * interval '1 millisecond' \
              AND (adopted_until IS NULL OR adopted_until < clock_timestamp() OR adopted_by = $1) \
            FOR UPDATE SKIP LOCKED) \
         UPDATE wasmtx.node n \
            SET adopted_by = $1, adopted_until = clock_timestamp() + $2 * interval '1 millisecond' \
           FROM dead \
          WHERE n.node_id = dead.node_id \
            AND EXISTS (SELECT 1 FROM wasmtx.node me WHERE me.node_id = $1 \
                          AND me.lease_until > clock_timestamp()) \
         RETURNING n.node_id, n.incarnation, dead.before",
    )
    .bind(me.as_str())
    .bind(millis(settings.lease_ttl()))
    .bind(millis(settings.takeover_grace()))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(node, incarnation, before)| {
            let newly = before.as_deref() != Some(me.as_str());
            NodeId::new(&node).ok().map(|node| Adopted {
                node,
                incarnation,
                newly,
            })
        })
        .collect())
}

pub(super) async fn nodes(pool: &PgPool) -> Result<Vec<NodeRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT node_id, incarnation, host, api_addr, version, state, \
                lease_until > clock_timestamp() AS live, \
                to_char(lease_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS lease_until, \
                to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS heartbeat_at, \
                adopted_by, \
                to_char(adopted_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS adopted_until \
           FROM wasmtx.node ORDER BY node_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(NodeRow {
                node: row.try_get("node_id")?,
                incarnation: row.try_get("incarnation")?,
                host: row.try_get("host")?,
                api_addr: row.try_get("api_addr")?,
                version: row.try_get("version")?,
                state: row.try_get("state")?,
                live: row.try_get("live")?,
                lease_until: row.try_get("lease_until")?,
                heartbeat_at: row.try_get("heartbeat_at")?,
                adopted_by: row.try_get("adopted_by")?,
                adopted_until: row.try_get("adopted_until")?,
            })
        })
        .collect()
}
