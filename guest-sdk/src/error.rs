//! The SDK's one error type: the host's WIT `error` cases plus the guest-side failures of
//! reading results.

use std::fmt;

use crate::bindings::wasmtx::script::types::Error as WitError;
use crate::{ConversionError, DatabaseError};

/// Why a call failed.
///
/// The first five cases are the WIT `error` variant the host returns for a statement
/// (see the WIT comments); the rest are failures of reading a result in the guest.
/// `Display` gives one readable line, e.g. `database error [23505]: duplicate key value…`.
///
/// An `Error` converts into `String` (`impl From<Error> for String`), so `?` works directly
/// in a `fn run(input: String) -> Result<String, String>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Refused by the host's statement policy; never sent to the database.
    Forbidden(String),
    /// The database failed the statement. This dooms the global transaction: the host rolls
    /// it back even if the script then returns `Ok`.
    Database(DatabaseError),
    /// A limit was reached: statements, rows, bytes or time.
    LimitExceeded(String),
    /// A parameter this participant cannot take.
    BadParameter(String),
    /// No participant has this name.
    NoSuchParticipant(String),
    /// A row has no column of this name.
    NoColumn {
        /// The name asked for.
        name: String,
        /// The names the row has.
        columns: Vec<String>,
    },
    /// A row has no column at this index.
    NoColumnIndex {
        /// The index asked for.
        index: usize,
        /// How many columns the row has.
        count: usize,
    },
    /// A column's value could not be read as the requested type.
    Column {
        /// The column's name.
        column: String,
        /// Why its value could not be read.
        error: ConversionError,
    },
}

impl Error {
    /// The database's error, when the database failed the statement.
    pub fn as_database(&self) -> Option<&DatabaseError> {
        match self {
            Error::Database(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WitError> for Error {
    fn from(e: WitError) -> Error {
        match e {
            WitError::Forbidden(m) => Error::Forbidden(m),
            WitError::Database(d) => Error::Database(d),
            WitError::LimitExceeded(m) => Error::LimitExceeded(m),
            WitError::BadParameter(m) => Error::BadParameter(m),
            WitError::NoSuchParticipant(m) => Error::NoSuchParticipant(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Forbidden(m) => write!(f, "forbidden: {m}"),
            Error::Database(DatabaseError {
                code: Some(code),
                message,
            }) => {
                write!(f, "database error [{code}]: {message}")
            }
            Error::Database(DatabaseError {
                code: None,
                message,
            }) => {
                write!(f, "database error: {message}")
            }
            Error::LimitExceeded(m) => write!(f, "limit exceeded: {m}"),
            Error::BadParameter(m) => write!(f, "bad parameter: {m}"),
            Error::NoSuchParticipant(m) => write!(f, "no such participant: {m}"),
            Error::NoColumn { name, columns } => {
                write!(
                    f,
                    "no column named `{name}` (columns: {})",
                    columns.join(", ")
                )
            }
            Error::NoColumnIndex { index, count } => {
                write!(f, "no column at index {index} (the row has {count})")
            }
            Error::Column { column, error } => error.describe(&format!("column `{column}`"), f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Column { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// For `?` in a script returning `Result<_, String>`: the error's `Display` text.
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_read_well() {
        let db = |code: Option<&str>| {
            Error::from(WitError::Database(DatabaseError {
                code: code.map(Into::into),
                message: "duplicate key".into(),
            }))
        };
        assert_eq!(
            db(Some("23505")).to_string(),
            "database error [23505]: duplicate key"
        );
        assert_eq!(db(None).to_string(), "database error: duplicate key");
        assert_eq!(
            Error::from(WitError::Forbidden("COMMIT is not allowed".into())).to_string(),
            "forbidden: COMMIT is not allowed"
        );
        assert_eq!(String::from(db(None)), "database error: duplicate key");
    }
}
