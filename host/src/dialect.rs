//! The SQL dialects wasmtx speaks, one per kind of participant database.

use std::fmt;

/// The SQL dialect of a participant: decides placeholders, the statement parser and the
/// commit protocol the participant takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// The database product, for messages: `PostgreSQL`, `MySQL`, `SQLite`.
    pub fn server_name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL",
            Dialect::Sqlite => "SQLite",
        }
    }

    /// The `n`th placeholder (from 1): `$n` for PostgreSQL, `?` for MySQL and SQLite.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql | Dialect::Sqlite => "?".to_owned(),
        }
    }

    /// `ident` quoted as an identifier: `"user"` for PostgreSQL and SQLite, `` `user` `` for
    /// MySQL, with any quote character inside doubled.
    pub fn quote_ident(self, ident: &str) -> String {
        let quote = match self {
            Dialect::Postgres | Dialect::Sqlite => '"',
            Dialect::Mysql => '`',
        };
        let mut quoted = String::with_capacity(ident.len() + 2);
        quoted.push(quote);
        for c in ident.chars() {
            if c == quote {
                quoted.push(quote);
            }
            quoted.push(c);
        }
        quoted.push(quote);
        quoted
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn placeholders_and_quoting() {
        assert_eq!(Dialect::Postgres.placeholder(3), "$3");
        assert_eq!(Dialect::Mysql.placeholder(3), "?");
        assert_eq!(Dialect::Sqlite.placeholder(1), "?");
        assert_eq!(Dialect::Postgres.quote_ident("user"), "\"user\"");
        assert_eq!(Dialect::Sqlite.quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(Dialect::Mysql.quote_ident("a`b"), "`a``b`");
    }
}
