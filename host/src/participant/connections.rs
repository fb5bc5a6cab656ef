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
//! the pool is exhausted. One that has waited longer than the pool's idle timeout is closed,
//! as the pool would close it, at the next hand-back or acquire: a quiet participant does not
//! keep its busiest hour's connections open, and never reuses one that idled past it (a
//! firewall may have dropped it). The pool's maximum lifetime applies to connections it
//! opens and gets back, not to those reused from here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::{Pool, PoolConnection};
use tokio::sync::Notify;

pub struct Connections<DB: sqlx::Database> {
    pool: Pool<DB>,
    /// Oldest first, each with when it was handed back.
    idle: Mutex<Vec<(Instant, PoolConnection<DB>)>>,
    handed_back: Notify,
    idle_limit: Duration,
}

/// How long a handed-back connection waits for reuse when the pool sets no idle timeout.
const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(600);

impl<DB: sqlx::Database> Connections<DB> {
    pub fn new(pool: Pool<DB>) -> Self {
        let idle_limit = pool
            .options()
            .get_idle_timeout()
            .unwrap_or(DEFAULT_IDLE_LIMIT);
        Connections {
            pool,
            idle: Mutex::new(Vec::new()),
            handed_back: Notify::new(),
            idle_limit,
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
        let now = Instant::now();
        let expired = {
            let mut idle = self.lock();
            let oldest_expired = idle
                .first()
                .is_some_and(|(since, _)| now.duration_since(*since) > self.idle_limit);
            let expired = oldest_expired.then(|| idle.remove(0).1);
            idle.push((now, conn));
            expired
        };
        self.handed_back.notify_one();
        if let Some(mut conn) = expired {
            conn.close_on_drop();
        }
    }

    /// Closes every waiting connection: one of them was found dead, and the others most
    /// likely are too.
    pub fn discard_idle(&self) {
        let idle = std::mem::take(&mut *self.lock());
        for (_, mut conn) in idle {
            conn.close_on_drop();
        }
    }

    pub fn connect_options(&self) -> std::sync::Arc<<DB::Connection as sqlx::Connection>::Options> {
        self.pool.connect_options()
    }

    /// The most recently handed-back connection, unless even that one has idled too long
    /// (then so have all the others, and they are closed).
    fn pop(&self) -> Option<PoolConnection<DB>> {
        let (since, mut conn) = self.lock().pop()?;
        if since.elapsed() <= self.idle_limit {
            return Some(conn);
        }
        conn.close_on_drop();
        self.discard_idle();
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, PoolConnection<DB>)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<DB: sqlx::Database> Drop for Connections<DB> {
    /// Detached from the pool and dropped: a pooled connection's own drop would need a
    /// runtime to return it, and there may be none left.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *self.lock());
        for (_, conn) in idle {
            drop(conn.detach());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::sqlite::SqlitePoolOptions;
    use sqlx::{Executor, Sqlite};

    use super::Connections;

    /// In-memory SQLite: every connection is a database of its own, so a table tells them
    /// apart.
    async fn connections(max: u32, idle_timeout: Duration) -> Connections<Sqlite> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .idle_timeout(idle_timeout)
            .connect_lazy("sqlite::memory:")
            .unwrap();
        Connections::new(pool)
    }

    /// A connection once the pool has room for one: the closed connection gave its place back.
    async fn acquire_fresh(
        connections: &Connections<Sqlite>,
    ) -> sqlx::pool::PoolConnection<Sqlite> {
        tokio::time::timeout(Duration::from_secs(5), connections.acquire())
            .await
            .expect("the closed connection gave its place back")
            .unwrap()
    }

    /// A connection, marked with a table of its own.
    async fn marked(connections: &Connections<Sqlite>) -> sqlx::pool::PoolConnection<Sqlite> {
        let mut conn = connections.acquire().await.unwrap();
        conn.execute("CREATE TABLE mark (x)").await.unwrap();
        conn
    }

    async fn has_mark(conn: &mut sqlx::SqliteConnection) -> bool {
        conn.fetch_optional("SELECT 1 FROM sqlite_master WHERE name = 'mark'")
            .await
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn a_connection_handed_back_is_the_next_one_acquired() {
        let connections = connections(2, Duration::from_secs(600)).await;
        let conn = marked(&connections).await;
        connections.hand_back(conn);
        let mut again = connections.acquire().await.unwrap();
        assert!(has_mark(&mut again).await);
    }

    #[tokio::test]
    async fn one_idle_past_the_pool_idle_timeout_is_closed_not_reused() {
        let connections = connections(1, Duration::from_millis(50)).await;
        let conn = marked(&connections).await;
        connections.hand_back(conn);
        tokio::time::sleep(Duration::from_millis(120)).await;
        // The only connection the pool allows was closed, so this is a new one.
        let mut fresh = acquire_fresh(&connections).await;
        assert!(!has_mark(&mut fresh).await);
    }

    #[tokio::test]
    async fn a_waiter_on_an_exhausted_pool_gets_the_connection_handed_back() {
        let connections = std::sync::Arc::new(connections(1, Duration::from_secs(600)).await);
        let conn = marked(&connections).await;
        let waiter = tokio::spawn({
            let connections = connections.clone();
            async move {
                let mut conn = connections.acquire().await.unwrap();
                has_mark(&mut conn).await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "the pool holds one connection, in use"
        );
        connections.hand_back(conn);
        let got_it = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke when the connection was handed back")
            .unwrap();
        assert!(got_it);
    }

    #[tokio::test]
    async fn discarding_the_idle_ones_closes_them() {
        let connections = connections(1, Duration::from_secs(600)).await;
        let conn = marked(&connections).await;
        connections.hand_back(conn);
        connections.discard_idle();
        let mut fresh = acquire_fresh(&connections).await;
        assert!(!has_mark(&mut fresh).await);
    }
}
