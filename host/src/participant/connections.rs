//! A server participant's connections: sqlx's pool, which opens, limits and closes them, and
//! the connections branches handed back clean, kept checked out for the next branch.
//!
//! sqlx pings every connection that goes back to its pool (a `Sync` on PostgreSQL, a
//! `COM_PING` on MySQL), so each branch would pay one more round trip, and one more wake-up
//! of the database server, after it ends. A branch only hands its connection back once the
//! session is out of the transaction (`server_branch.rs`), so there is nothing to test:
//! such connections wait here instead, most recently used first, and the next `acquire`
//! takes one without a message. A connection that died while it waited fails at the next
//! `BEGIN`, which `begin` retries; the others waiting are then dropped too (a server restart
//! or an idle timeout ends them all), and the retry gets one from the pool.
//!
//! Connections waiting here count as checked out of the pool: everyone who needs one comes
//! through [`Connections::acquire`], which also wakes when a connection is handed back while
//! the pool is exhausted.

use std::sync::Mutex;

use sqlx::pool::{Pool, PoolConnection};
use tokio::sync::Notify;

pub struct Connections<DB: sqlx::Database> {
    pool: Pool<DB>,
    idle: Mutex<Vec<PoolConnection<DB>>>,
    handed_back: Notify,
}

impl<DB: sqlx::Database> Connections<DB> {
    pub fn new(pool: Pool<DB>) -> Self {
        Connections {
            pool,
            idle: Mutex::new(Vec::new()),
            handed_back: Notify::new(),
        }
    }

    /// A connection: the last one handed back, or one from the pool (waiting for either
    /// while every connection is in use).
    pub async fn acquire(&self) -> Result<PoolConnection<DB>, sqlx::Error> {
        loop {
            // Registered before looking, so a hand-back in between is not missed.
            let handed_back = self.handed_back.notified();
            if let Some(conn) = self.pop() {
                return Ok(conn);
            }
            tokio::select! {
                biased;
                () = handed_back => {}
                conn = self.pool.acquire() => return conn,
            }
        }
    }

    /// Keeps `conn` for the next [`acquire`](Self::acquire). Only for a connection whose
    /// session is outside any transaction.
    pub fn hand_back(&self, conn: PoolConnection<DB>) {
        self.lock().push(conn);
        self.handed_back.notify_one();
    }

    /// Closes every waiting connection: one of them was found dead, and the others most
    /// likely are too.
    pub fn discard_idle(&self) {
        for mut conn in std::mem::take(&mut *self.lock()) {
            conn.close_on_drop();
        }
    }

    pub fn connect_options(&self) -> std::sync::Arc<<DB::Connection as sqlx::Connection>::Options> {
        self.pool.connect_options()
    }

    fn pop(&self) -> Option<PoolConnection<DB>> {
        self.lock().pop()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PoolConnection<DB>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<DB: sqlx::Database> Drop for Connections<DB> {
    /// Detached from the pool and dropped: a pooled connection's own drop would need a
    /// runtime to return it, and there may be none left.
    fn drop(&mut self) {
        for conn in std::mem::take(&mut *self.lock()) {
            drop(conn.detach());
        }
    }
}
