//! Participants: handles on the open transactions of the global transaction's databases,
//! and [`Dialect`] helpers for writing SQL that runs on any of them.

use std::cell::OnceCell;
use std::fmt;

use crate::bindings::wasmtx::script::sql;
use crate::{Dialect, Error, Rows, Value};

/// A handle on one participant's open transaction.
///
/// The host owns the transaction: statements run inside it, and it is committed or rolled
/// back by the host after `run` returns. Dropping a handle does neither, and two handles
/// on the same participant share one transaction.
pub struct Participant {
    handle: sql::Participant,
    name: OnceCell<String>,
    dialect: OnceCell<Dialect>,
}

impl Participant {
    /// The participant configured under `name`, or [`Error::NoSuchParticipant`].
    pub fn named(name: &str) -> Result<Participant, Error> {
        Ok(sql::Participant::named(name)?.into())
    }

    /// The participant's configured name.
    pub fn name(&self) -> &str {
        self.name.get_or_init(|| self.handle.name())
    }

    /// The participant's SQL dialect: statements use its placeholders
    /// ([`Dialect::placeholder`]) and quoting ([`Dialect::quote_ident`]).
    pub fn dialect(&self) -> Dialect {
        *self.dialect.get_or_init(|| self.handle.dialect())
    }

    /// Runs one statement and returns the number of rows it affected.
    ///
    /// `params` fill the statement's placeholders in order; build them with
    /// [`params!`](crate::params).
    pub fn execute(&self, statement: &str, params: impl AsRef<[Value]>) -> Result<u64, Error> {
        Ok(self.handle.execute(statement, params.as_ref())?)
    }

    /// Runs one statement and returns its rows.
    pub fn query(&self, statement: &str, params: impl AsRef<[Value]>) -> Result<Rows, Error> {
        Ok(self.handle.query(statement, params.as_ref())?.into())
    }
}

impl From<sql::Participant> for Participant {
    fn from(handle: sql::Participant) -> Participant {
        Participant {
            handle,
            name: OnceCell::new(),
            dialect: OnceCell::new(),
        }
    }
}

impl fmt::Debug for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Participant")
            .field("name", &self.name())
            .field("dialect", &self.dialect())
            .finish()
    }
}

/// All participants of the running transaction, in configuration order.
pub fn participants() -> Vec<Participant> {
    sql::participants()
        .into_iter()
        .map(Participant::from)
        .collect()
}

impl Dialect {
    /// The `n`th placeholder (from 1): `$n` for PostgreSQL, `?` for MySQL and SQLite.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql | Dialect::Sqlite => "?".to_owned(),
        }
    }

    /// The first `count` placeholders, comma-separated: `$1, $2, $3` or `?, ?, ?`.
    pub fn placeholders(self, count: usize) -> String {
        (1..=count)
            .map(|n| self.placeholder(n))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `ident` quoted as an identifier: `"user"` for PostgreSQL and SQLite, `` `user` ``
    /// for MySQL, with any quote character inside doubled.
    pub fn quote_ident(self, ident: &str) -> String {
        let quote = match self {
            Dialect::Postgres | Dialect::Sqlite => '"',
            Dialect::Mysql => '`',
        };
        let escaped = ident.replace(quote, &format!("{quote}{quote}"));
        format!("{quote}{escaped}{quote}")
    }

    /// The dialect's name: `postgres`, `mysql` or `sqlite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_helpers() {
        assert_eq!(Dialect::Postgres.placeholders(3), "$1, $2, $3");
        assert_eq!(Dialect::Sqlite.placeholders(2), "?, ?");
        assert_eq!(Dialect::Mysql.placeholder(5), "?");
        assert_eq!(Dialect::Postgres.quote_ident("user"), "\"user\"");
        assert_eq!(Dialect::Mysql.quote_ident("a`b"), "`a``b`");
    }
}
