//! Logging to the host's log: [`log()`] and the `trace!` … `error!` macros.

use crate::Level;
use crate::bindings::wasmtx::script::log as wit;

/// Writes one line to the host's log at `level`.
///
/// Lines past the host's log limit are dropped and counted by the host; logging never
/// fails the script. The macros [`trace!`](crate::trace), [`debug!`](crate::debug),
/// [`info!`](crate::info), [`warn!`](crate::warn) and [`error!`](crate::error) format and
/// call this.
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

/// Logs a line at [`Level::Trace`](crate::Level::Trace), formatted like `format!`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log($crate::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs a line at [`Level::Debug`](crate::Level::Debug), formatted like `format!`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs a line at [`Level::Info`](crate::Level::Info), formatted like `format!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs a line at [`Level::Warn`](crate::Level::Warn), formatted like `format!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs a line at [`Level::Error`](crate::Level::Error), formatted like `format!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::Level::Error, &::std::format!($($arg)+)) };
}
