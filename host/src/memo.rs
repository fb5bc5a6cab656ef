//! A small bounded memo for pure, repeated work on statement text: the statement policy
//! and SQLite qualification parse every statement, and scripts send the same few statement
//! texts over and over (parameters are bound, not spliced).
//!
//! Misses are computed on a blocking-pool thread, never on the caller's stack: host calls
//! run on a wasmtime fiber, whose bounds the parser's stack guard (`stacker`) cannot see —
//! there it would map a fresh stack for every recursive call (measured: 220 µs instead of
//! 30 µs per transaction), and without the guard deep nesting would overflow.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Statement texts longer than this are not memoized (they are rarely repeated).
pub const MAX_MEMO_TEXT: usize = 2048;

/// Remembers up to `capacity` results; when full it starts over, which bounds memory
/// without bookkeeping on the hot path. Lookups share a read lock, so concurrent
/// transactions on different runtime threads do not wait for each other.
pub struct Memo<K, V> {
    entries: RwLock<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new(capacity: usize) -> Self {
        Memo {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The remembered value for `key`, or `compute(key)` — run on tokio's blocking pool —
    /// remembered. A hit borrows the key; only a miss copies it.
    pub async fn get_or_compute_blocking<Q, F>(&self, key: &Q, compute: F) -> V
    where
        K: Borrow<Q> + Send + 'static,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: FnOnce(&K) -> V + Send + 'static,
        V: Send + 'static,
    {
        if let Some(value) = self.read().get(key) {
            return value.clone();
        }
        let key = key.to_owned();
        let (key, value) = run_blocking(move || {
            let value = compute(&key);
            (key, value)
        })
        .await;
        self.remember(key, value.clone());
        value
    }

    fn remember(&self, key: K, value: V) {
        let mut entries = self.write();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, value);
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, V>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, V>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `compute` on tokio's blocking pool (a thread with a known stack).
pub async fn run_blocking<V: Send + 'static>(compute: impl FnOnce() -> V + Send + 'static) -> V {
    match tokio::task::spawn_blocking(compute).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn computes_once_and_stays_bounded() {
        let memo = Memo::new(2);
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for key in [1, 1, 2, 1] {
            let calls = calls.clone();
            memo.get_or_compute_blocking(&key, move |key| {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                key * 10
            })
            .await;
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(memo.get_or_compute_blocking(&3, |_| 30).await, 30);
        assert!(memo.read().len() <= 2);
    }
}
