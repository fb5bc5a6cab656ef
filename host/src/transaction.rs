//! One global transaction while it is open: its gid and deadline, its participants (each
//! routed to a server branch or to a member of the SQLite group), and whether an error has
//! already doomed it. Prepare logic (the script host, or native code) sends statements
//! through it; the coordinator drives the protocol on it.

use std::sync::Arc;
use std::time::Instant;

use crate::dialect::Dialect;
use crate::gid::{BranchId, Gid};
use crate::participant::sqlite::SqliteGroup;
use crate::participant::{DbError, ServerBranch, ServerParticipant, StatementError};
use crate::report::{ErrorKind, TxError};
use crate::value::{ResultLimits, RowSet, Value};

/// A participant's place in its transaction, in configuration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(usize);

impl MemberId {
    /// The position in configuration order (0-based).
    pub fn index(self) -> usize {
        self.0
    }
}

/// Where a participant's statements go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The server branch at this position in [`OpenTransaction::branches`].
    Server(usize),
    /// The SQLite group's member at this position.
    Sqlite(usize),
}

/// A participant as the transaction sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) dialect: Dialect,
    pub(crate) route: Route,
}

/// A server participant's open branch, with the participant that can resolve it from any
/// connection if the branch's own connection fails.
pub(crate) struct OpenBranch {
    pub(crate) member: MemberId,
    pub(crate) id: BranchId,
    pub(crate) participant: Arc<dyn ServerParticipant>,
    pub(crate) branch: Box<dyn ServerBranch>,
}

/// An open global transaction.
pub struct OpenTransaction {
    pub(crate) gid: Gid,
    /// When the transaction must be decided by; also bounds the script's run. The same
    /// deadline on the wall clock is the gid's ([`Gid::deadline`]).
    pub(crate) deadline: Instant,
    pub(crate) members: Vec<Member>,
    pub(crate) branches: Vec<OpenBranch>,
    pub(crate) sqlite: Option<SqliteGroup>,
    pub(crate) result_limits: ResultLimits,
    /// The first error that doomed the transaction; once set, it can only roll back.
    doom: Option<TxError>,
}

impl OpenTransaction {
    /// A transaction with no participants yet.
    pub fn new(gid: Gid, deadline: Instant, result_limits: ResultLimits) -> Self {
        OpenTransaction {
            gid,
            deadline,
            members: Vec::new(),
            branches: Vec::new(),
            sqlite: None,
            result_limits,
            doom: None,
        }
    }

    /// Adds a server participant whose branch `id` is open as `branch`.
    pub fn push_server_branch(
        &mut self,
        participant: Arc<dyn ServerParticipant>,
        id: BranchId,
        branch: Box<dyn ServerBranch>,
    ) -> MemberId {
        let member = self.push_member(
            participant.name(),
            participant.dialect(),
            Route::Server(self.branches.len()),
        );
        self.branches.push(OpenBranch {
            member,
            id,
            participant,
            branch,
        });
        member
    }

    /// Adds the SQLite group's member `group_index`, whose statements go to the group set
    /// with [`Self::set_sqlite_group`].
    pub(crate) fn push_sqlite_member(&mut self, name: &str, group_index: usize) -> MemberId {
        self.push_member(name, Dialect::Sqlite, Route::Sqlite(group_index))
    }

    pub(crate) fn set_sqlite_group(&mut self, group: SqliteGroup) {
        self.sqlite = Some(group);
    }

    fn push_member(&mut self, name: &str, dialect: Dialect, route: Route) -> MemberId {
        self.members.push(Member {
            name: name.to_owned(),
            dialect,
            route,
        });
        MemberId(self.members.len() - 1)
    }

    pub fn gid(&self) -> &Gid {
        &self.gid
    }

    /// When the transaction must be decided by.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Every participant, in configuration order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = MemberId> + use<> {
        (0..self.members.len()).map(MemberId)
    }

    /// The participant called `name` (names are case-insensitive).
    pub fn member(&self, name: &str) -> Option<MemberId> {
        self.members
            .iter()
            .position(|m| m.name.eq_ignore_ascii_case(name))
            .map(MemberId)
    }

    pub fn name_of(&self, member: MemberId) -> &str {
        &self.members[member.0].name
    }

    pub fn dialect_of(&self, member: MemberId) -> Dialect {
        self.members[member.0].dialect
    }

    /// The members that are SQLite files (they commit together, as one resource).
    pub(crate) fn sqlite_members(&self) -> Vec<MemberId> {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.route, Route::Sqlite(_)))
            .map(|(i, _)| MemberId(i))
            .collect()
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
        member: MemberId,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StatementError> {
        self.refuse_if_doomed()?;
        let result = match self.members[member.0].route {
            Route::Server(i) => self.branches[i].branch.execute(sql, params).await,
            Route::Sqlite(i) => self.sqlite_group().execute(i, sql, params).await,
        };
        self.note_failure(member, result)
    }

    /// Runs a statement that returns rows on participant `member`.
    pub async fn query(
        &mut self,
        member: MemberId,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, StatementError> {
        self.refuse_if_doomed()?;
        let limits = self.result_limits;
        let result = match self.members[member.0].route {
            Route::Server(i) => self.branches[i].branch.query(sql, params, limits).await,
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
            Some(reason) => Err(StatementError::Database(DbError {
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
        member: MemberId,
        result: Result<T, StatementError>,
    ) -> Result<T, StatementError> {
        if let Err(err) = &result {
            let name = &self.members[member.0].name;
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
