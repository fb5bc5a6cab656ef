//! Warm instances: an opt-in reuse of one script instance for up to `max_uses` transactions
//! of the same plugin version, one at a time, so a guest runtime's start-up (CPython,
//! QuickJS) or a cold instantiation is paid once instead of per transaction.
//!
//! What an operator gives up: a plugin may carry data from one of its transactions to the
//! next — in its linear memory, globals and tables — but only within its own instances:
//! instances are never shared across plugins or versions ([`Warm`] is the identity they are
//! parked under). Everything host-side is per transaction whatever the guest keeps: the
//! participant handles (a handle from an earlier transaction traps), the statement and log
//! budgets, the memory-limit flag, the deadline, the statement policy and the captured
//! output. An instance is never parked again after a trap, a timeout, any limit or the memory
//! limit — only after the script returned (`Ok` or `Err`) with no limit hit — and is
//! dropped after `max_uses` transactions or `idle_secs` unused.
//!
//! Parked instances hold slots of the sandbox's instance pool, so their number is bounded
//! ([`Parked::new`]'s `capacity`): the pool is sized for the running instances plus that
//! many parked ones, and parking one more drops the longest parked.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How far one plugin's instances may be reused. The `[server.warm.<plugin>]` section of the
/// configuration; `wasmtx bench --warm-uses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmSettings {
    /// Transactions one instance serves, one at a time, before it is dropped.
    pub max_uses: u32,
    /// Seconds an instance may wait unused before it is dropped.
    pub idle_secs: u64,
}

impl Default for WarmSettings {
    fn default() -> Self {
        WarmSettings {
            max_uses: 1000,
            idle_secs: 60,
        }
    }
}

impl WarmSettings {
    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_uses == 0 {
            return Err("max_uses must be at least 1".into());
        }
        if self.idle_secs == 0 {
            return Err("idle_secs must be at least 1".into());
        }
        Ok(())
    }

    /// Up to `max_uses` transactions per instance, the rest at its defaults (`wasmtx run`
    /// and `wasmtx bench --warm-uses`); refused as [`Self::validate`] refuses.
    pub fn for_uses(max_uses: u32) -> Result<Self, String> {
        let settings = WarmSettings {
            max_uses,
            ..WarmSettings::default()
        };
        settings.validate()?;
        Ok(settings)
    }

    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_secs)
    }
}

/// One plugin version's claim on warm instances: only runs under the same `Warm` share
/// instances. Counts what its transactions got.
#[derive(Debug)]
pub struct Warm {
    id: u64,
    settings: WarmSettings,
    fresh: AtomicU64,
    reused: AtomicU64,
}

impl Warm {
    /// A new identity: no instance of any other `Warm` is ever handed to it.
    pub fn new(settings: WarmSettings) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Warm {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            settings,
            fresh: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &WarmSettings {
        &self.settings
    }

    /// Transactions that got a new instance, and those that got a parked one.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.fresh.load(Ordering::Relaxed),
            self.reused.load(Ordering::Relaxed),
        )
    }

    pub(super) fn count(&self, reused: bool) {
        let counter = if reused { &self.reused } else { &self.fresh };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// An instance waiting for its next transaction.
struct Waiting<T> {
    owner: u64,
    instance: T,
    uses: u32,
    since: Instant,
    idle: Duration,
}

/// The parked instances of every plugin, at most `capacity` of them, newest last.
pub(super) struct Parked<T> {
    capacity: usize,
    waiting: Mutex<VecDeque<Waiting<T>>>,
}

impl<T> Parked<T> {
    pub(super) fn new(capacity: usize) -> Self {
        Parked {
            capacity,
            waiting: Mutex::new(VecDeque::new()),
        }
    }

    /// The most recently parked instance of `warm` and the transactions it has served, if
    /// one waits that has not been idle too long. Instances idle too long are dropped.
    pub(super) fn take(&self, warm: &Warm) -> Option<(T, u32)> {
        let now = Instant::now();
        let (found, expired) = {
            let mut waiting = self.waiting.lock().expect("parked instances");
            let expired: Vec<Waiting<T>> = drain_where(&mut waiting, |w| {
                now.saturating_duration_since(w.since) > w.idle
            });
            let found = waiting
                .iter()
                .rposition(|w| w.owner == warm.id)
                .and_then(|at| waiting.remove(at));
            (found, expired)
        };
        // Dropping an instance resets its memory: outside the lock.
        drop(expired);
        found.map(|w| (w.instance, w.uses))
    }

    /// Parks `instance` of `warm` after its `uses`-th transaction, unless it has served
    /// `max_uses`; beyond the capacity the longest parked instance is dropped.
    pub(super) fn park(&self, warm: &Warm, instance: T, uses: u32) {
        if uses >= warm.settings.max_uses || self.capacity == 0 {
            return;
        }
        let evicted = {
            let mut waiting = self.waiting.lock().expect("parked instances");
            waiting.push_back(Waiting {
                owner: warm.id,
                instance,
                uses,
                since: Instant::now(),
                idle: warm.settings.idle(),
            });
            let over = waiting.len().saturating_sub(self.capacity);
            waiting.drain(..over).collect::<Vec<_>>()
        };
        drop(evicted);
    }

    /// Drops every parked instance.
    pub(super) fn clear(&self) {
        let all: Vec<Waiting<T>> = self
            .waiting
            .lock()
            .expect("parked instances")
            .drain(..)
            .collect();
        drop(all);
    }

    /// How many instances are parked now.
    pub(super) fn len(&self) -> usize {
        self.waiting.lock().expect("parked instances").len()
    }
}

/// Removes and returns the entries `pred` selects, keeping the others in order.
fn drain_where<T>(queue: &mut VecDeque<T>, pred: impl Fn(&T) -> bool) -> Vec<T> {
    let mut kept = VecDeque::with_capacity(queue.len());
    let mut taken = Vec::new();
    for item in queue.drain(..) {
        if pred(&item) {
            taken.push(item);
        } else {
            kept.push_back(item);
        }
    }
    *queue = kept;
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(max_uses: u32, idle_secs: u64) -> Warm {
        Warm::new(WarmSettings {
            max_uses,
            idle_secs,
        })
    }

    #[test]
    fn an_instance_goes_back_only_to_its_own_plugin() {
        let parked = Parked::new(4);
        let (a, b) = (warm(10, 60), warm(10, 60));
        parked.park(&a, "a's", 1);
        assert!(parked.take(&b).is_none());
        assert_eq!(parked.take(&a), Some(("a's", 1)));
        assert!(parked.take(&a).is_none());
    }

    #[test]
    fn an_instance_that_served_max_uses_is_not_parked() {
        let parked = Parked::new(4);
        let a = warm(2, 60);
        parked.park(&a, "first", 1);
        parked.park(&a, "second", 2);
        assert_eq!(parked.len(), 1);
        assert_eq!(parked.take(&a), Some(("first", 1)));
    }

    #[test]
    fn beyond_capacity_the_longest_parked_is_dropped() {
        let parked = Parked::new(2);
        let (a, b) = (warm(10, 60), warm(10, 60));
        parked.park(&a, "a1", 1);
        parked.park(&b, "b1", 1);
        parked.park(&b, "b2", 1);
        assert!(parked.take(&a).is_none());
        assert_eq!(parked.take(&b), Some(("b2", 1)));
        assert_eq!(parked.take(&b), Some(("b1", 1)));
    }

    #[test]
    fn an_instance_idle_too_long_is_dropped() {
        let parked = Parked::new(4);
        let a = warm(10, 60);
        parked.park(&a, "old", 1);
        // Age it past its idle time.
        parked.waiting.lock().unwrap()[0].since = Instant::now() - Duration::from_secs(61);
        assert!(parked.take(&a).is_none());
        assert_eq!(parked.len(), 0);
    }

    #[test]
    fn settings_refuse_zero() {
        assert!(
            WarmSettings {
                max_uses: 0,
                idle_secs: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            WarmSettings {
                max_uses: 1,
                idle_secs: 0
            }
            .validate()
            .is_err()
        );
        assert!(WarmSettings::default().validate().is_ok());
        assert!(WarmSettings::for_uses(0).is_err());
        assert_eq!(WarmSettings::for_uses(5).map(|s| s.max_uses), Ok(5));
    }
}
