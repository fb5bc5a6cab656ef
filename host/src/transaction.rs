//! One global transaction while it is open: its gid and deadline, its participants (each
//! routed to an XA branch or to a member of the SQLite group), and whether an error has
//! already doomed it. The script host sends statements through it; the coordinator drives
//! the protocol on it.

use std::sync::Arc;
use std::time::Instant;

use crate::dialect::Dialect;
use crate::gid::{BranchId, Gid};
use crate::participant::sqlite::SqliteGroup;
use crate::participant::{StatementError, ServerBranch, ServerParticipant};
use crate::report::{ErrorKind, TxError};
use crate::value::{ResultLimits, RowSet, Value};

/// Where a participant's statements go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The XA branch with this index in [`OpenTransaction::branches`].
    Xa(usize),
    /// The SQLite group member with this index.
    Sqlite(usize),
}

/// A participant as the transaction sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub dialect: Dialect,
    pub route: Route,
}

/// An XA participant's open branch, with the participant that can resolve it from any
/// connection if the branch's own connection fails.
pub struct OpenBranch {
    pub member: usize,
    pub id: BranchId,
    pub participant: Arc<dyn ServerParticipant>,
    pub branch: Box<dyn ServerBranch>,
}

/// An open global transaction.
pub struct OpenTransaction {
    pub gid: Gid,
    /// When the transaction must be decided by; also bounds the script's run. The same
    /// deadline on the wall clock is the gid's ([`Gid::deadline`]).
    pub deadline: Instant,
    pub members: Vec<Member>,
    pub branches: Vec<OpenBranch>,
    pub sqlite: Option<SqliteGroup>,
    pub result_limits: ResultLimits,
    /// The first error that doomed the transaction; once set, it can only roll back.
    doom: Option<TxError>,
}

impl OpenTransaction {
    pub fn new(
        gid: Gid,
        deadline: Instant,
        members: Vec<Member>,
        result_limits: ResultLimits,
    ) -> Self {
        OpenTransaction {
            gid,
            deadline,
            members,
            branches: Vec::new(),
            sqlite: None,
            result_limits,
            doom: None,
        }
    }

    /// The index of the participant called `name` (names are case-insensitive).
    pub fn member_index(&self, name: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// Marks the transaction as doomed; the first reason is kept.
    pub fn doom(&mut self, error: TxError) {
        self.doom.get_or_insert(error);
    }

    /// Why the transaction must roll back, if it must.
    pub fn doomed(&self) -> Option<&TxError> {
        self.doom.as_ref()
    }

    /// Runs a statement that changes rows on participant `member`.
    pub async fn execute(
        &mut self,
        member: usize,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StatementError> {
        self.refuse_if_doomed()?;
        let result = match self.members[member].route {
            Route::Xa(i) => self.branches[i].branch.execute(sql, params).await,
            Route::Sqlite(i) => self.sqlite_group().execute(i, sql, params).await,
        };
        self.note_failure(member, result)
    }

    /// Runs a statement that returns rows on participant `member`.
    pub async fn query(
        &mut self,
        member: usize,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, StatementError> {
        self.refuse_if_doomed()?;
        let limits = self.result_limits;
        let result = match self.members[member].route {
            Route::Xa(i) => self.branches[i].branch.query(sql, params, limits).await,
            Route::Sqlite(i) => self.sqlite_group().query(i, sql, params, limits).await,
        };
        self.note_failure(member, result)
    }

    fn sqlite_group(&mut self) -> &mut SqliteGroup {
        self.sqlite
            .as_mut()
            .expect("a member routed to SQLite implies an open SQLite group")
    }

    fn refuse_if_doomed(&self) -> Result<(), StatementError> {
        match &self.doom {
            Some(reason) => Err(StatementError::Database(crate::participant::DbError {
                code: None,
                message: format!("not sent: the transaction is already doomed ({reason})"),
            })),
            None => Ok(()),
        }
    }

    /// Any failed statement dooms the transaction: the database may have aborted it
    /// already (PostgreSQL does), and committing around a failure would be partial.
    fn note_failure<T>(
        &mut self,
        member: usize,
        result: Result<T, StatementError>,
    ) -> Result<T, StatementError> {
        if let Err(err) = &result {
            let name = &self.members[member].name;
            let error = if Instant::now() >= self.deadline {
                TxError::new(
                    ErrorKind::Timeout,
                    format!(
                        "the transaction's deadline passed during a statement on participant `{name}` ({err})"
                    ),
                )
            } else {
                statement_error_to_tx(name, err)
            };
            self.doom(error);
        }
        result
    }
}

/// The transaction-level error for a failed statement on participant `name`.
pub fn statement_error_to_tx(name: &str, err: &StatementError) -> TxError {
    let kind = match err {
        StatementError::Forbidden(_) => ErrorKind::Forbidden,
        StatementError::Database(_) | StatementError::BadParameter(_) => ErrorKind::Database,
        StatementError::LimitExceeded(_) => ErrorKind::Limit,
    };
    TxError::new(kind, format!("participant `{name}`: {err}"))
}
