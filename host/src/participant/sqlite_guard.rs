//! The SQLite group's backstops, installed on its connection as SQLite callbacks:
//!
//! - an **authorizer** that, while a script's statement is being prepared, denies any
//!   access outside that statement's participant schema, and ATTACH, DETACH, PRAGMA,
//!   transaction control, temporary objects, virtual tables and file functions — even if
//!   a statement slipped past the policy and the qualifier;
//! - a **progress handler** that interrupts any statement still running at the
//!   transaction's deadline (SQLite has no statement timeout of its own).
//!
//! The callbacks get an integer key, not a pointer: they look their state up in a global
//! registry, so a callback that runs after the group is gone (a statement left running on
//! the driver's thread by a cancelled run) finds nothing and stops the statement, instead
//! of reading freed memory.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

/// SQLite VM instructions between deadline checks.
const PROGRESS_INTERVAL: c_int = 10_000;

/// Functions a script may never call, even if the build of SQLite has them.
const DENIED_FUNCTIONS: [&str; 5] = [
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

struct GuardState {
    deadline: Instant,
    /// The schema of the script statement being prepared; `None` while the host runs its
    /// own statements (attach, pragmas, commit, the decision row).
    script_schema: Option<String>,
}

static GUARDS: LazyLock<Mutex<HashMap<u64, GuardState>>> = LazyLock::new(Default::default);
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

fn guards() -> std::sync::MutexGuard<'static, HashMap<u64, GuardState>> {
    GUARDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The callbacks of one connection; drop it only after the connection is closed.
pub struct SqliteGuard {
    key: u64,
}

impl SqliteGuard {
    /// Installs the authorizer and the progress handler on `conn`.
    pub async fn install(
        conn: &mut SqliteConnection,
        deadline: Instant,
    ) -> Result<Self, sqlx::Error> {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        guards().insert(
            key,
            GuardState {
                deadline,
                script_schema: None,
            },
        );
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle().as_ptr();
        // SAFETY: `db` is a live connection and the driver's thread is not using it while
        // the handle is locked. The user data is an integer key, never dereferenced.
        unsafe {
            ffi::sqlite3_set_authorizer(db, Some(authorize), key as *mut c_void);
            ffi::sqlite3_progress_handler(
                db,
                PROGRESS_INTERVAL,
                Some(progress),
                key as *mut c_void,
            );
        }
        Ok(SqliteGuard { key })
    }

    /// From now on, statements are prepared for the script, confined to `schema`.
    pub fn enter_script(&self, schema: &str) {
        if let Some(state) = guards().get_mut(&self.key) {
            state.script_schema = Some(schema.to_owned());
        }
    }

    /// Back to the host's own statements.
    pub fn leave_script(&self) {
        if let Some(state) = guards().get_mut(&self.key) {
            state.script_schema = None;
        }
    }
}

impl Drop for SqliteGuard {
    fn drop(&mut self) {
        guards().remove(&self.key);
    }
}

fn text<'a>(ptr: *const c_char) -> Option<&'a str> {
    // SAFETY: SQLite passes NUL-terminated strings or null, valid for the callback.
    (!ptr.is_null()).then(|| {
        unsafe { CStr::from_ptr(ptr) }
            .to_str()
            .unwrap_or("\u{fffd}")
    })
}

unsafe extern "C" fn authorize(
    key: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    let guards = guards();
    let Some(state) = guards.get(&(key as u64)) else {
        return ffi::SQLITE_DENY;
    };
    let Some(schema) = &state.script_schema else {
        return ffi::SQLITE_OK;
    };
    let denied_action = matches!(
        action,
        ffi::SQLITE_ATTACH
            | ffi::SQLITE_DETACH
            | ffi::SQLITE_PRAGMA
            | ffi::SQLITE_TRANSACTION
            | ffi::SQLITE_SAVEPOINT
            | ffi::SQLITE_CREATE_TEMP_INDEX
            | ffi::SQLITE_CREATE_TEMP_TABLE
            | ffi::SQLITE_CREATE_TEMP_TRIGGER
            | ffi::SQLITE_CREATE_TEMP_VIEW
            | ffi::SQLITE_DROP_TEMP_INDEX
            | ffi::SQLITE_DROP_TEMP_TABLE
            | ffi::SQLITE_DROP_TEMP_TRIGGER
            | ffi::SQLITE_DROP_TEMP_VIEW
            | ffi::SQLITE_CREATE_VTABLE
            | ffi::SQLITE_DROP_VTABLE
    );
    if denied_action {
        return ffi::SQLITE_DENY;
    }
    if action == ffi::SQLITE_FUNCTION
        && text(arg2).is_some_and(|f| DENIED_FUNCTIONS.iter().any(|d| d.eq_ignore_ascii_case(f)))
    {
        return ffi::SQLITE_DENY;
    }
    let _ = arg1;
    match text(database) {
        // Objects without a schema (functions, CTEs, subquery results) are fine.
        None => ffi::SQLITE_OK,
        Some(db) if db.eq_ignore_ascii_case(schema) => ffi::SQLITE_OK,
        Some(_) => ffi::SQLITE_DENY,
    }
}

unsafe extern "C" fn progress(key: *mut c_void) -> c_int {
    match guards().get(&(key as u64)) {
        Some(state) if Instant::now() < state.deadline => 0,
        // Past the deadline, or a statement outliving its group: interrupt it.
        _ => 1,
    }
}
