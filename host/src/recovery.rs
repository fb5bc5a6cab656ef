//! Recovery (in progress).
