//! Limits on what one transaction's script may use: time, memory, stack, statements,
//! result sizes, output and logs. Set in `[limits]` of the configuration file or on the
//! command line; the defaults suit interactive use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::value::ResultLimits;

/// A limit set to a value the host cannot work with; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidLimit(String);

/// The most of one kind of pool resource a script instance may be allowed.
const MAX_POOL_PER_INSTANCE: u32 = 1_000;

/// Every bound the host enforces on a transaction. Field names are the configuration keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock deadline of the whole transaction, in seconds: script, statements and
    /// phase 1. Past it the transaction aborts and recovery may roll back what is prepared.
    pub timeout_secs: f64,
    /// Largest linear memory a script may grow to, in MiB.
    pub memory_mib: u32,
    /// Largest WebAssembly stack, in KiB.
    pub stack_kib: u32,
    /// Statements a script may send in one transaction (all participants together).
    pub max_statements: u32,
    /// Rows one query may return.
    pub max_result_rows: usize,
    /// Bytes one query may return.
    pub max_result_bytes: usize,
    /// Bytes of the script's output (the string `run` returns).
    pub max_output_bytes: usize,
    /// Bytes of captured stdout and stderr, each; the rest is dropped and counted.
    pub max_stdio_bytes: usize,
    /// Lines the script may log; the rest are dropped and counted.
    pub max_log_lines: u32,
    /// Bytes the script may log in all; the rest are dropped and counted.
    pub max_log_bytes: usize,
    /// Resource handles (participant handles) a script may hold at once.
    pub max_handles: u32,
    /// Core module instances one instance of a script may use. A Rust script uses a few,
    /// a Python (CPython) or JavaScript engine component 10–20. The sandbox's instance
    /// pool grows to what the loaded scripts need, up to this; a script needing more is
    /// refused when it is loaded.
    pub max_core_instances: u32,
    /// Linear memories one instance of a script may use (as `max_core_instances`).
    pub max_memories: u32,
    /// Tables one instance of a script may use (as `max_core_instances`).
    pub max_tables: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_secs: 30.0,
            memory_mib: 64,
            stack_kib: 512,
            max_statements: 10_000,
            max_result_rows: 100_000,
            max_result_bytes: 16 << 20,
            max_output_bytes: 1 << 20,
            max_stdio_bytes: 64 << 10,
            max_log_lines: 10_000,
            max_log_bytes: 1 << 20,
            max_handles: 1_000,
            max_core_instances: 64,
            max_memories: 8,
            max_tables: 16,
        }
    }
}

impl Limits {
    /// Checks that every bound is usable; the message names the key.
    pub fn validate(&self) -> Result<(), InvalidLimit> {
        if !(self.timeout_secs.is_finite()
            && self.timeout_secs > 0.0
            && self.timeout_secs <= 86_400.0)
        {
            return Err(InvalidLimit(format!(
                "limits.timeout_secs must be between 0 and 86400, not {}",
                self.timeout_secs
            )));
        }
        if !(1..=4096).contains(&self.memory_mib) {
            return Err(InvalidLimit(format!(
                "limits.memory_mib must be between 1 and 4096, not {}",
                self.memory_mib
            )));
        }
        if !(64..=65_536).contains(&self.stack_kib) {
            return Err(InvalidLimit(format!(
                "limits.stack_kib must be between 64 and 65536, not {}",
                self.stack_kib
            )));
        }
        let positive = [
            ("max_statements", self.max_statements as usize),
            ("max_result_rows", self.max_result_rows),
            ("max_result_bytes", self.max_result_bytes),
            ("max_output_bytes", self.max_output_bytes),
            ("max_handles", self.max_handles as usize),
            ("max_core_instances", self.max_core_instances as usize),
            ("max_memories", self.max_memories as usize),
            ("max_tables", self.max_tables as usize),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(InvalidLimit(format!("limits.{key} must be at least 1")));
            }
        }
        let pool = [
            ("max_core_instances", self.max_core_instances),
            ("max_memories", self.max_memories),
            ("max_tables", self.max_tables),
        ];
        for (key, value) in pool {
            if value > MAX_POOL_PER_INSTANCE {
                return Err(InvalidLimit(format!(
                    "limits.{key} must be at most {MAX_POOL_PER_INSTANCE}, not {value}"
                )));
            }
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }

    pub fn stack_bytes(&self) -> usize {
        (self.stack_kib as usize) << 10
    }

    pub fn result_limits(&self) -> ResultLimits {
        ResultLimits {
            max_rows: self.max_result_rows,
            max_bytes: self.max_result_bytes,
        }
    }
}
