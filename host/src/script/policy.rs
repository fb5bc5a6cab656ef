//! The statement policy: decides whether one statement a script hands to a participant may be
//! sent to that participant's database.
//!
//! Scripts are untrusted, and the host owns every participant's transaction. So a statement
//! may do the transaction's work (read, write, and on PostgreSQL and SQLite ordinary DDL) and
//! nothing that would end or split the transaction, change the session behind it, outlive it,
//! or reach outside the database. The policy is an allow-list: a statement is parsed with the
//! participant's dialect and must be exactly one statement of an allowed kind; anything else,
//! including anything sqlparser cannot parse, is refused with a readable reason.
//!
//! All statement rules live in `statement_rule`; the rules for what may appear *inside* an
//! allowed statement (functions, `SELECT ... INTO`, MySQL variable assignment, nested DML)
//! live in `NestedRules`. Function rules are a convenience that gives a clear early error
//! for well-known escapes; the real boundary for server-side functions (`pg_read_file`,
//! `LOAD_FILE`, user-defined functions and procedures) is the database role's privileges.
//!
//! Assumptions: the tokenizer must split text the way the server does, so PostgreSQL sessions
//! keep `standard_conforming_strings = on` and MySQL sessions keep backslash escapes (no
//! `NO_BACKSLASH_ESCAPES` in `sql_mode`); both are the servers' defaults.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, ObjectName, ObjectType, Query, Select, Set, SetExpr, Statement,
    TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{
    Dialect as ParserDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};

use crate::dialect::Dialect;
use crate::sql_parse::parse_whole;

/// An allowed statement: what it is and whether it is expected to return rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The statement's kind, e.g. `"SELECT"`, `"INSERT"`, `"CREATE TABLE"`.
    pub kind: &'static str,
    /// Best effort: true for queries, `VALUES`, `SHOW`, `EXPLAIN` and DML with `RETURNING`.
    pub returns_rows: bool,
}

/// Why a statement was refused; it was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} is refused: {reason}")]
pub struct Refusal {
    /// What was refused: a statement kind (`"COMMIT"`, `"CREATE TEMPORARY TABLE"`) or a part of
    /// one (`"function pg_read_file"`).
    pub kind: String,
    /// Why, in plain words.
    pub reason: String,
}

/// [`check`] for a host call: remembered for repeated statement texts, and parsed off
/// the script's fiber stack (see `crate::memo`).
pub async fn check_memoized(dialect: Dialect, sql: &str) -> Result<Checked, Refusal> {
    type PolicyMemo = crate::memo::Memo<String, Result<Checked, Refusal>>;
    // One memo per dialect, so a lookup borrows the statement text.
    static MEMOS: std::sync::LazyLock<[PolicyMemo; 3]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|_| crate::memo::Memo::new(4096)));
    if sql.len() > crate::memo::MAX_MEMO_TEXT {
        let owned = sql.to_owned();
        return crate::memo::run_blocking(move || check(dialect, &owned)).await;
    }
    let memo = &MEMOS[match dialect {
        Dialect::Postgres => 0,
        Dialect::Mysql => 1,
        Dialect::Sqlite => 2,
    }];
    memo.get_or_compute_blocking(sql, move |sql| check(dialect, sql))
        .await
}

/// Checks one statement text for a participant's dialect. Ok: the statement may be sent.
pub fn check(dialect: Dialect, sql: &str) -> Result<Checked, Refusal> {
    refuse_executable_comments(dialect, sql)?;
    refuse_misread_variables(dialect, sql)?;
    refuse_decision_table(dialect, sql)?;
    let statement = parse_one(dialect, sql)?;
    let checked = statement_rule(dialect, &statement)?;
    match statement.visit(&mut NestedRules { dialect }) {
        ControlFlow::Break(refusal) => Err(refusal),
        ControlFlow::Continue(()) => Ok(checked),
    }
}

// Reasons, one per group of rules.
const TRANSACTION_CONTROL: &str = "transaction control belongs to the host";
const SESSION_STATE: &str = "session state would outlive the statement";
const NOTIFICATIONS: &str =
    "LISTEN/NOTIFY is session state and cannot take part in a prepared transaction";
const TEMPORARY: &str = "temporary objects are session state, and PostgreSQL cannot prepare a \
     transaction that used them";
const CONNECTION: &str =
    "ATTACH, DETACH and PRAGMA change the connection the host shares between participants";
const TABLE_LOCKS: &str =
    "explicit table locks are not allowed (MySQL's LOCK TABLES also commits implicitly)";
const FILES: &str = "server file access";
const PROGRAMS: &str = "runs programs on the database server";
const PREPARED: &str = "SQL-level prepared statements and cursors are session state";
const PROCEDURES: &str = "procedures and functions can run anything, including transaction control";
const ADMINISTRATION: &str = "roles, privileges and server administration are not transaction work";
const OTHER_SESSIONS: &str = "reaches into other sessions";
const MYSQL_DDL: &str = "DDL on MySQL commits implicitly";
const SQLITE_DROP: &str = "DROP is not allowed on SQLite participants";
const SQLITE_VIEWS: &str =
    "views and triggers cannot be qualified safely with an SQLite participant's schema";
const CONCURRENTLY: &str = "CREATE INDEX CONCURRENTLY cannot run inside a transaction";
const DYNAMIC_SQL: &str = "runs SQL text the policy cannot check";
const REMOTE: &str = "connects to other databases outside the transaction";
const NATIVE_CODE: &str = "loads native code into the database";
const SESSION_LOCKS: &str = "session-level locks outlive the transaction";
const EXECUTABLE_COMMENTS: &str =
    "MySQL executable comments (/*! */, /*M! */) hide SQL from the policy";
const MISREAD_VARIABLE: &str = "`@` must be followed by a variable name (letters, digits, `_`, \
     `$`, `.`): the policy would read the text differently from the server";
const NOT_ALLOWED: &str = "it is not on the list of allowed statements";
const ONE_STATEMENT: &str = "exactly one statement per call";

fn refuse<T>(kind: impl Into<String>, reason: &str) -> Result<T, Refusal> {
    Err(Refusal {
        kind: kind.into(),
        reason: reason.to_owned(),
    })
}

fn allow(kind: &'static str, returns_rows: bool) -> Result<Checked, Refusal> {
    Ok(Checked { kind, returns_rows })
}

/// MariaDB executes `/*M! ... */` and MySQL/MariaDB execute `/*! ... */`; sqlparser expands only
/// the latter. Refusing both (even inside string literals) keeps the policy's view of the
/// statement and the server's the same. Bind such text as a parameter instead.
fn refuse_executable_comments(dialect: Dialect, sql: &str) -> Result<(), Refusal> {
    if dialect != Dialect::Mysql {
        return Ok(());
    }
    let lowered = sql.to_ascii_lowercase();
    if lowered.contains("/*!") || lowered.contains("/*m!") {
        return refuse("executable comment", EXECUTABLE_COMMENTS);
    }
    Ok(())
}

/// The last agent's decision table (`participant/decision_table.rs`) belongs to the host: a
/// statement that names it anywhere (a table, a view's query, a quoted identifier) is
/// refused.
fn refuse_decision_table(dialect: Dialect, sql: &str) -> Result<(), Refusal> {
    use crate::participant::decision_table::DECISION_TABLE;
    use sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.to_ascii_lowercase().contains(DECISION_TABLE) {
        return Ok(());
    }
    let parser_dialect: &dyn ParserDialect = match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Mysql => &MySqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    };
    let names_it = match Tokenizer::new(parser_dialect, sql).tokenize() {
        Ok(tokens) => tokens.iter().any(|token| {
            matches!(token, Token::Word(word) if word.value.eq_ignore_ascii_case(DECISION_TABLE))
        }),
        Err(_) => true,
    };
    if names_it {
        return refuse(
            format!("a statement on {DECISION_TABLE}"),
            "the last agent's decision table belongs to the host",
        );
    }
    Ok(())
}

/// sqlparser's MySQL tokenizer reads `@` and whatever character follows it as the start of
/// a variable name: `@;` is one word to it, while MySQL ends the statement at the `;`.
/// Refusing such words keeps the policy's view of the statement and the server's the same.
fn refuse_misread_variables(dialect: Dialect, sql: &str) -> Result<(), Refusal> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    if dialect != Dialect::Mysql || !sql.contains('@') {
        return Ok(());
    }
    let Ok(tokens) = Tokenizer::new(&MySqlDialect {}, sql).tokenize() else {
        return Ok(()); // refused as unparsable
    };
    let variable_name =
        |c: char| c.is_alphanumeric() || matches!(c, '_' | '$' | '.' | '@') || !c.is_ascii();
    let misread = tokens.iter().any(|token| match token {
        Token::Word(word) if word.quote_style.is_none() => word
            .value
            .strip_prefix('@')
            .is_some_and(|name| !name.chars().all(variable_name)),
        _ => false,
    });
    if misread {
        return refuse("variable", MISREAD_VARIABLE);
    }
    Ok(())
}

/// Parses `sql` as exactly one statement. Empty statements (`;`, comments) do not count, so
/// `SELECT 1;` and `SELECT 1; -- note` are one statement.
fn parse_one(dialect: Dialect, sql: &str) -> Result<Statement, Refusal> {
    let parser_dialect: &dyn ParserDialect = match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Mysql => &MySqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    };
    let mut statements = parse_whole(parser_dialect, sql).map_err(|error| {
        known_unparsable(parser_dialect, sql).unwrap_or_else(|| Refusal {
            kind: "unparsable statement".to_owned(),
            reason: format!(
                "does not parse as one {} statement: {error}",
                dialect.as_str()
            ),
        })
    })?;
    match statements.len() {
        0 => refuse("empty statement", ONE_STATEMENT),
        1 => Ok(statements.remove(0)),
        n => refuse(format!("{n} statements"), ONE_STATEMENT),
    }
}

/// Statements the parser cannot read but that are refused anyway, named by their leading
/// keywords so the refusal says what they are (fail closed either way).
fn known_unparsable(dialect: &dyn ParserDialect, sql: &str) -> Option<Refusal> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(dialect, sql).tokenize().ok()?;
    let words: Vec<String> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect();
    let first = |n: usize| {
        words
            .iter()
            .take(n)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let has_pair = |a: &str, b: &str| words.windows(2).any(|w| w[0] == a && w[1] == b);
    let (kind, reason) = match first(1).as_str() {
        "XA" => (first(2), TRANSACTION_CONTROL),
        "PREPARE" if has_pair("PREPARE", "TRANSACTION") => {
            ("PREPARE TRANSACTION".to_owned(), TRANSACTION_CONTROL)
        }
        "COMMIT" | "ROLLBACK" if words.get(1).is_some_and(|w| w == "PREPARED") => {
            (first(2), TRANSACTION_CONTROL)
        }
        "PRAGMA" | "ATTACH" | "DETACH" => (first(1), CONNECTION),
        "VACUUM" => ("VACUUM".to_owned(), ADMINISTRATION),
        "LOAD" => (first(2), FILES),
        "DO" => ("DO".to_owned(), PROCEDURES),
        _ if has_pair("INTO", "OUTFILE") || has_pair("INTO", "DUMPFILE") => {
            ("SELECT INTO OUTFILE".to_owned(), FILES)
        }
        _ => return None,
    };
    Some(Refusal {
        kind,
        reason: reason.to_owned(),
    })
}

/// The statement rules, in one place. Applied to the statement and to every statement nested
/// in it (DML in a CTE, the statement under EXPLAIN).
fn statement_rule(dialect: Dialect, statement: &Statement) -> Result<Checked, Refusal> {
    use Dialect::{Mysql, Postgres, Sqlite};
    use Statement as S;
    match statement {
        // The transaction's work: reads and writes.
        S::Query(query) => query_rule(dialect, query),
        S::Insert(insert) => allow("INSERT", insert.returning.is_some()),
        S::Update(update) => allow("UPDATE", update.returning.is_some()),
        S::Delete(delete) => allow("DELETE", delete.returning.is_some()),
        S::Merge(_) if dialect == Postgres => allow("MERGE", false),
        // EXPLAIN (ANALYZE runs the statement): allowed when the explained statement is.
        S::Explain { statement, .. } => {
            statement_rule(dialect, statement)?;
            allow("EXPLAIN", true)
        }

        // Harmless reads of server metadata (PostgreSQL and MySQL syntax, not SQLite's).
        S::ShowProcessList { .. } => refuse("SHOW PROCESSLIST", OTHER_SESSIONS),
        S::ShowVariable { .. }
        | S::ShowVariables { .. }
        | S::ShowStatus { .. }
        | S::ShowTables { .. }
        | S::ShowColumns { .. }
        | S::ShowCreate { .. }
        | S::ShowDatabases { .. }
        | S::ShowSchemas { .. }
        | S::ShowCollation { .. }
        | S::ShowCharset(_)
        | S::ShowFunctions { .. }
        | S::ShowViews { .. }
            if dialect != Sqlite =>
        {
            allow("SHOW", true)
        }
        S::ExplainTable { .. } if dialect == Mysql => allow("DESCRIBE", true),

        // Temporary objects, whatever the dialect, also when named into the temporary schema.
        S::CreateTable(table) if table.temporary || in_temporary_schema(dialect, &table.name) => {
            refuse("CREATE TEMPORARY TABLE", TEMPORARY)
        }
        S::CreateView(view) if view.temporary || in_temporary_schema(dialect, &view.name) => {
            refuse("CREATE TEMPORARY VIEW", TEMPORARY)
        }
        S::CreateSequence {
            temporary, name, ..
        } if *temporary || in_temporary_schema(dialect, name) => {
            refuse("CREATE TEMPORARY SEQUENCE", TEMPORARY)
        }
        S::CreateIndex(index)
            if in_temporary_schema(dialect, &index.table_name)
                || (index.name.as_ref()).is_some_and(|name| in_temporary_schema(dialect, name)) =>
        {
            refuse("CREATE INDEX on a temporary table", TEMPORARY)
        }
        S::Drop {
            temporary: true, ..
        } => refuse("DROP TEMPORARY TABLE", TEMPORARY),

        // Ordinary DDL: PostgreSQL (transactional), a subset on SQLite, never on MySQL.
        S::CreateTable(_)
        | S::CreateIndex(_)
        | S::CreateView(_)
        | S::CreateSequence { .. }
        | S::AlterTable(_)
        | S::Drop { .. }
        | S::Truncate(_) => ddl_rule(dialect, statement),

        // Transaction control.
        S::StartTransaction { begin: true, .. } => refuse("BEGIN", TRANSACTION_CONTROL),
        S::StartTransaction { .. } => refuse("START TRANSACTION", TRANSACTION_CONTROL),
        S::Commit { .. } => refuse("COMMIT", TRANSACTION_CONTROL),
        S::Rollback {
            savepoint: Some(_), ..
        } => refuse("ROLLBACK TO SAVEPOINT", TRANSACTION_CONTROL),
        S::Rollback { .. } => refuse("ROLLBACK", TRANSACTION_CONTROL),
        S::Savepoint { .. } => refuse("SAVEPOINT", TRANSACTION_CONTROL),
        S::ReleaseSavepoint { .. } => refuse("RELEASE SAVEPOINT", TRANSACTION_CONTROL),
        S::Set(Set::SetTransaction { .. }) => refuse("SET TRANSACTION", TRANSACTION_CONTROL),

        // Session state.
        S::Set(_) => refuse("SET", SESSION_STATE),
        S::Use(_) => refuse("USE", SESSION_STATE),
        S::Reset(_) => refuse("RESET", SESSION_STATE),
        S::Discard { .. } => refuse("DISCARD", SESSION_STATE),
        S::Prepare { .. } => refuse("PREPARE", PREPARED),
        S::Execute { .. } => refuse("EXECUTE", PREPARED),
        S::Deallocate { .. } => refuse("DEALLOCATE", PREPARED),
        S::Declare { .. } => refuse("DECLARE", PREPARED),
        S::Fetch { .. } => refuse("FETCH", PREPARED),
        S::Close { .. } => refuse("CLOSE", PREPARED),
        S::LISTEN { .. } => refuse("LISTEN", NOTIFICATIONS),
        S::UNLISTEN { .. } => refuse("UNLISTEN", NOTIFICATIONS),
        S::NOTIFY { .. } => refuse("NOTIFY", NOTIFICATIONS),

        // The connection itself (SQLite's attached participants).
        S::AttachDatabase { .. } | S::AttachDuckDBDatabase { .. } => refuse("ATTACH", CONNECTION),
        S::DetachDuckDBDatabase { .. } => refuse("DETACH", CONNECTION),
        S::Pragma { .. } => refuse("PRAGMA", CONNECTION),

        // Explicit locks.
        S::Lock(_) => refuse("LOCK TABLE", TABLE_LOCKS),
        S::LockTables { .. } => refuse("LOCK TABLES", TABLE_LOCKS),
        S::UnlockTables => refuse("UNLOCK TABLES", TABLE_LOCKS),

        // Files and programs on the server. COPY is refused whole: TO/FROM a file or PROGRAM
        // reaches the server, and STDIN/STDOUT need a protocol the host does not offer scripts.
        S::Copy { .. } | S::CopyIntoSnowflake { .. } => refuse("COPY", FILES),
        S::LoadData { .. } => refuse("LOAD DATA", FILES),
        S::Directory { .. } | S::Unload { .. } => refuse("INSERT OVERWRITE DIRECTORY", FILES),
        S::Install { .. } | S::Load { .. } => refuse("LOAD", NATIVE_CODE),

        // Procedures and functions.
        S::Call(_) => refuse("CALL", PROCEDURES),
        S::CreateFunction(_) => refuse("CREATE FUNCTION", PROCEDURES),
        S::CreateProcedure { .. } => refuse("CREATE PROCEDURE", PROCEDURES),
        S::CreateTrigger(_) if dialect == Sqlite => refuse("CREATE TRIGGER", SQLITE_VIEWS),
        S::CreateTrigger(_) => refuse("CREATE TRIGGER", PROCEDURES),
        S::CreateExtension(_) => refuse("CREATE EXTENSION", NATIVE_CODE),

        // Administration.
        S::Grant(_) => refuse("GRANT", ADMINISTRATION),
        S::Revoke(_) => refuse("REVOKE", ADMINISTRATION),
        S::Deny(_) => refuse("DENY", ADMINISTRATION),
        S::CreateRole(_) | S::AlterRole { .. } => refuse("ROLE", ADMINISTRATION),
        S::CreateUser(_) | S::AlterUser(_) => refuse("USER", ADMINISTRATION),
        S::Kill { .. } => refuse("KILL", OTHER_SESSIONS),
        S::Flush { .. } => refuse("FLUSH", ADMINISTRATION),
        S::Vacuum(_) => refuse("VACUUM", ADMINISTRATION),

        // Everything else: fail closed.
        other => refuse(leading_keywords(other), NOT_ALLOWED),
    }
}

/// A query's kind is its body's: `WITH x AS (...) DELETE ...` is a DELETE.
fn query_rule(dialect: Dialect, query: &Query) -> Result<Checked, Refusal> {
    match query.body.as_ref() {
        SetExpr::Insert(statement)
        | SetExpr::Update(statement)
        | SetExpr::Delete(statement)
        | SetExpr::Merge(statement) => statement_rule(dialect, statement),
        SetExpr::Query(inner) => query_rule(dialect, inner),
        SetExpr::Values(_) => allow("VALUES", true),
        SetExpr::Select(_) | SetExpr::SetOperation { .. } | SetExpr::Table(_) => {
            allow("SELECT", true)
        }
    }
}

/// DDL on non-temporary objects (temporary ones are refused before this).
fn ddl_rule(dialect: Dialect, statement: &Statement) -> Result<Checked, Refusal> {
    use Statement as S;
    let kind = match statement {
        S::CreateTable(_) => "CREATE TABLE",
        S::CreateIndex(index) if index.concurrently => {
            return refuse("CREATE INDEX CONCURRENTLY", CONCURRENTLY);
        }
        S::CreateIndex(_) => "CREATE INDEX",
        S::CreateView(_) => "CREATE VIEW",
        S::CreateSequence { .. } => "CREATE SEQUENCE",
        S::AlterTable(_) => "ALTER TABLE",
        S::Truncate(_) => "TRUNCATE",
        S::Drop { object_type, .. } => match object_type {
            ObjectType::Table => "DROP TABLE",
            ObjectType::View => "DROP VIEW",
            ObjectType::MaterializedView => "DROP MATERIALIZED VIEW",
            ObjectType::Index => "DROP INDEX",
            ObjectType::Sequence => "DROP SEQUENCE",
            other => return refuse(format!("DROP {other}"), NOT_ALLOWED),
        },
        other => return refuse(leading_keywords(other), NOT_ALLOWED),
    };
    match dialect {
        Dialect::Postgres => allow(kind, false),
        Dialect::Mysql => refuse(kind, MYSQL_DDL),
        Dialect::Sqlite => match statement {
            S::CreateTable(_) | S::CreateIndex(_) | S::AlterTable(_) => allow(kind, false),
            S::Drop { .. } => refuse(kind, SQLITE_DROP),
            S::CreateView(_) => refuse(kind, SQLITE_VIEWS),
            _ => refuse(kind, NOT_ALLOWED),
        },
    }
}

/// Whether `name` is qualified with the session's temporary schema (PostgreSQL `pg_temp` or
/// `pg_temp_N`, SQLite `temp`): creating an object there makes a temporary object. Every
/// qualifier counts, so a name with too many parts for the server is refused here too.
fn in_temporary_schema(dialect: Dialect, name: &ObjectName) -> bool {
    let qualifiers = &name.0[..name.0.len().saturating_sub(1)];
    qualifiers
        .iter()
        .filter_map(|part| part.as_ident())
        .any(|schema| {
            let schema = schema.value.to_ascii_lowercase();
            match dialect {
                Dialect::Postgres => schema.starts_with("pg_temp"),
                Dialect::Sqlite => schema == "temp",
                Dialect::Mysql => false,
            }
        })
}

/// A name for a statement the rules do not list: its leading keywords as sqlparser prints
/// them, e.g. `CREATE EXTENSION` or `ANALYZE`.
fn leading_keywords(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("statement");
    let is_keyword = |word: &str| !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase());
    match words.next() {
        Some(second)
            if matches!(first, "CREATE" | "ALTER" | "DROP" | "SHOW") && is_keyword(second) =>
        {
            format!("{first} {second}")
        }
        _ => first.to_owned(),
    }
}

/// Rules for what appears inside a statement: nested statements, `SELECT ... INTO`, function
/// calls, MySQL variable assignment.
struct NestedRules {
    dialect: Dialect,
}

impl Visitor for NestedRules {
    type Break = Refusal;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refusal> {
        break_on_refusal(statement_rule(self.dialect, statement).map(drop))
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Refusal> {
        let Some(into) = &select.into else {
            return ControlFlow::Continue(());
        };
        break_on_refusal(match self.dialect {
            _ if into.temporary => refuse("SELECT INTO TEMPORARY", TEMPORARY),
            Dialect::Mysql => refuse("SELECT INTO", "it writes session variables or server files"),
            _ => refuse(
                "SELECT INTO",
                "it creates a table; use CREATE TABLE ... AS or INSERT ... SELECT",
            ),
        })
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        break_on_refusal(match expr {
            Expr::Function(function) => function_rule(self.dialect, &function.name),
            Expr::BinaryOp {
                op: BinaryOperator::Assignment,
                ..
            } if self.dialect == Dialect::Mysql => refuse("variable assignment", SESSION_STATE),
            _ => Ok(()),
        })
    }

    fn pre_visit_table_factor(&mut self, table_factor: &TableFactor) -> ControlFlow<Refusal> {
        break_on_refusal(match table_factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => function_rule(self.dialect, name),
            // SQLite's pragma functions also work without arguments, like tables.
            TableFactor::Table { name, .. }
                if self.dialect == Dialect::Sqlite
                    && last_name(name).is_some_and(|name| name.starts_with("pragma_")) =>
            {
                function_rule(self.dialect, name)
            }
            _ => Ok(()),
        })
    }
}

fn break_on_refusal(result: Result<(), Refusal>) -> ControlFlow<Refusal> {
    match result {
        Ok(()) => ControlFlow::Continue(()),
        Err(refusal) => ControlFlow::Break(refusal),
    }
}

/// Functions refused inside allowed statements: a name, or a prefix ending in `*`, matched
/// case-insensitively against the last part of the function's name, with the reason.
/// `pg_sleep`, MySQL `SLEEP` and the like are allowed: the host's timeouts bound them.
const POSTGRES_FUNCTIONS: &[(&str, &str)] = &[
    ("pg_read_file", FILES),
    ("pg_read_binary_file", FILES),
    ("pg_ls_*", FILES),
    ("pg_stat_file", FILES),
    ("pg_file_*", FILES),
    ("lo_import", FILES),
    ("lo_export", FILES),
    ("dblink*", REMOTE),
    ("pg_terminate_backend", OTHER_SESSIONS),
    ("pg_cancel_backend", OTHER_SESSIONS),
    ("pg_reload_conf", ADMINISTRATION),
    ("pg_rotate_logfile", ADMINISTRATION),
    ("pg_promote", ADMINISTRATION),
    ("set_config", SESSION_STATE),
    ("pg_advisory_lock*", SESSION_LOCKS),
    ("pg_advisory_unlock*", SESSION_LOCKS),
    ("pg_try_advisory_lock*", SESSION_LOCKS),
    ("pg_notify", NOTIFICATIONS),
    ("query_to_xml*", DYNAMIC_SQL),
];
const MYSQL_FUNCTIONS: &[(&str, &str)] = &[
    ("load_file", FILES),
    ("get_lock", SESSION_LOCKS),
    ("release_lock", SESSION_LOCKS),
    ("release_all_locks", SESSION_LOCKS),
    ("sys_exec", PROGRAMS),
    ("sys_eval", PROGRAMS),
];
const SQLITE_FUNCTIONS: &[(&str, &str)] = &[
    ("load_extension", NATIVE_CODE),
    ("fts3_tokenizer", NATIVE_CODE),
    ("readfile", FILES),
    ("writefile", FILES),
    ("edit", PROGRAMS),
    ("fsdir", FILES),
    ("lsdir", FILES),
    ("zipfile", FILES),
    ("pragma_*", CONNECTION),
];

/// The last part of a (possibly qualified) name, in ASCII lower case.
fn last_name(name: &ObjectName) -> Option<String> {
    let last = name.0.last()?.as_ident()?;
    Some(last.value.to_ascii_lowercase())
}

fn function_rule(dialect: Dialect, name: &ObjectName) -> Result<(), Refusal> {
    let Some(lowered) = last_name(name) else {
        return Ok(());
    };
    let refused = match dialect {
        Dialect::Postgres => POSTGRES_FUNCTIONS,
        Dialect::Mysql => MYSQL_FUNCTIONS,
        Dialect::Sqlite => SQLITE_FUNCTIONS,
    };
    let matches = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => lowered.starts_with(prefix),
        None => lowered == pattern,
    };
    match refused.iter().find(|(pattern, _)| matches(pattern)) {
        Some((_, reason)) => refuse(format!("function {lowered}"), reason),
        None => Ok(()),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    /// What a row expects: allowed with this kind, or refused with this kind.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Allowed(&'static str),
        Refused(&'static str),
    }
    use Expect::{Allowed, Refused};

    const UNPARSABLE: Expect = Refused("unparsable statement");

    fn run_table(dialect: Dialect, rows: &[(&str, Expect)]) {
        let mut failures = Vec::new();
        for &(sql, expect) in rows {
            let got = match check(dialect, sql) {
                Ok(checked) => Allowed(checked.kind),
                Err(refusal) => Refused(Box::leak(refusal.kind.into_boxed_str())),
            };
            if got != expect {
                failures.push(format!("{sql:?}: expected {expect:?}, got {got:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} rows failed for {dialect:?}:\n{}",
            failures.len(),
            rows.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn the_decision_table_is_out_of_reach() {
        const REFUSED: Expect = Refused("a statement on wasmtx_decisions");
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            run_table(
                dialect,
                &[
                    ("SELECT * FROM wasmtx_decisions", REFUSED),
                    (
                        "INSERT INTO wasmtx_decisions VALUES ('g', 'C', 1, 0)",
                        REFUSED,
                    ),
                    ("DELETE FROM Wasmtx_Decisions", REFUSED),
                    ("UPDATE public.wasmtx_decisions SET decision = 'A'", REFUSED),
                    (
                        "SELECT a FROM t WHERE a IN (SELECT gid FROM WASMTX_DECISIONS)",
                        REFUSED,
                    ),
                    ("SELECT 'wasmtx_decisions'", Allowed("SELECT")),
                    ("SELECT * FROM wasmtx_decisions_of_mine", Allowed("SELECT")),
                ],
            );
        }
        run_table(
            Dialect::Postgres,
            &[
                ("DROP TABLE \"wasmtx_decisions\"", REFUSED),
                ("CREATE VIEW v AS SELECT * FROM wasmtx_decisions", REFUSED),
            ],
        );
        run_table(
            Dialect::Mysql,
            &[("DELETE FROM `wasmtx_decisions` WHERE 1", REFUSED)],
        );
    }

    #[test]
    fn postgres_statements() {
        run_table(
            Dialect::Postgres,
            &[
                // Reads.
                ("SELECT 1", Allowed("SELECT")),
                ("select * from accounts where id = $1", Allowed("SELECT")),
                ("SeLeCt 1", Allowed("SELECT")),
                ("SELECT 1;", Allowed("SELECT")),
                ("SELECT 1; -- x", Allowed("SELECT")),
                ("select 1;;", Allowed("SELECT")),
                ("/* leading */ SELECT 1", Allowed("SELECT")),
                ("SELECT * FROM accounts FOR UPDATE", Allowed("SELECT")),
                (
                    "SELECT * FROM accounts FOR UPDATE SKIP LOCKED",
                    Allowed("SELECT"),
                ),
                (
                    "SELECT a FROM t UNION ALL SELECT b FROM u",
                    Allowed("SELECT"),
                ),
                ("VALUES (1, 'a')", Allowed("VALUES")),
                ("WITH x AS (SELECT 1) SELECT * FROM x", Allowed("SELECT")),
                ("SELECT $$;$$", Allowed("SELECT")),
                // PostgreSQL nests comments, as sqlparser's PostgreSQL dialect does.
                ("SELECT 1 /* a /* b */ ; COMMIT */", Allowed("SELECT")),
                ("SELECT $a$ ; COMMIT $a$", Allowed("SELECT")),
                ("/* /* */ COMMIT", UNPARSABLE),
                ("SELECT pg_sleep(1)", Allowed("SELECT")),
                ("SELECT pg_advisory_xact_lock(1)", Allowed("SELECT")),
                ("SELECT txid_current()", Allowed("SELECT")),
                ("SELECT nextval('s')", Allowed("SELECT")),
                ("SELECT current_setting('search_path')", Allowed("SELECT")),
                ("EXPLAIN SELECT 1", Allowed("EXPLAIN")),
                ("EXPLAIN ANALYZE DELETE FROM t", Allowed("EXPLAIN")),
                ("SHOW search_path", Allowed("SHOW")),
                // Writes.
                (
                    "INSERT INTO accounts (id, balance) VALUES ($1, $2)",
                    Allowed("INSERT"),
                ),
                ("INSERT INTO t SELECT * FROM u", Allowed("INSERT")),
                (
                    "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
                    Allowed("INSERT"),
                ),
                ("INSERT INTO t VALUES (1) RETURNING id", Allowed("INSERT")),
                (
                    "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
                    Allowed("UPDATE"),
                ),
                (
                    "UPDATE t SET a = u.a FROM u WHERE u.id = t.id",
                    Allowed("UPDATE"),
                ),
                ("DELETE FROM accounts WHERE id = $1", Allowed("DELETE")),
                ("DELETE FROM t USING u WHERE t.id = u.id", Allowed("DELETE")),
                (
                    "WITH x AS (SELECT id FROM t) DELETE FROM t WHERE id IN (SELECT id FROM x)",
                    Allowed("DELETE"),
                ),
                (
                    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                    Allowed("SELECT"),
                ),
                (
                    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
                    Allowed("MERGE"),
                ),
                // DDL on non-temporary objects.
                (
                    "CREATE TABLE t (id int PRIMARY KEY)",
                    Allowed("CREATE TABLE"),
                ),
                (
                    "CREATE TABLE IF NOT EXISTS t2 AS SELECT * FROM t",
                    Allowed("CREATE TABLE"),
                ),
                ("CREATE UNLOGGED TABLE u (a int)", Allowed("CREATE TABLE")),
                ("CREATE INDEX i ON t (a)", Allowed("CREATE INDEX")),
                ("CREATE VIEW v AS SELECT 1", Allowed("CREATE VIEW")),
                ("CREATE SEQUENCE s", Allowed("CREATE SEQUENCE")),
                ("ALTER TABLE t ADD COLUMN b int", Allowed("ALTER TABLE")),
                ("DROP TABLE t", Allowed("DROP TABLE")),
                ("DROP INDEX IF EXISTS i", Allowed("DROP INDEX")),
                ("TRUNCATE t", Allowed("TRUNCATE")),
                (
                    "CREATE INDEX CONCURRENTLY i ON t (a)",
                    Refused("CREATE INDEX CONCURRENTLY"),
                ),
                ("DROP SCHEMA s", Refused("DROP SCHEMA")),
                ("DROP DATABASE d", Refused("DROP DATABASE")),
                // Not exactly one statement.
                ("", Refused("empty statement")),
                (";", Refused("empty statement")),
                ("-- just a comment", Refused("empty statement")),
                ("SELECT 1; SELECT 2", Refused("2 statements")),
                // sqlparser stops at a bare END and drops the rest; the server runs it.
                ("SELECT 1 END; COMMIT", UNPARSABLE),
                ("SELECT 1; COMMIT", Refused("2 statements")),
                ("SELECT E'\\''; DROP TABLE t; --'", Refused("2 statements")),
                ("SELECT 'a\\'; DROP TABLE t; --'", Refused("2 statements")),
                // Transaction control.
                ("/* */ COMMIT", Refused("COMMIT")),
                ("commit", Refused("COMMIT")),
                ("END", Refused("COMMIT")),
                ("BEGIN", Refused("BEGIN")),
                ("START TRANSACTION", Refused("START TRANSACTION")),
                ("ROLLBACK", Refused("ROLLBACK")),
                ("ABORT", Refused("ROLLBACK")),
                ("SAVEPOINT s", Refused("SAVEPOINT")),
                ("RELEASE SAVEPOINT s", Refused("RELEASE SAVEPOINT")),
                ("ROLLBACK TO SAVEPOINT s", Refused("ROLLBACK TO SAVEPOINT")),
                ("PREPARE TRANSACTION 'x'", Refused("PREPARE TRANSACTION")),
                ("COMMIT PREPARED 'x'", Refused("COMMIT PREPARED")),
                ("ROLLBACK PREPARED 'x'", Refused("ROLLBACK PREPARED")),
                (
                    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                    Refused("SET TRANSACTION"),
                ),
                ("EXPLAIN ANALYZE COMMIT", Refused("COMMIT")),
                // Session state.
                ("SET search_path = x", Refused("SET")),
                ("SET LOCAL statement_timeout = 0", Refused("SET")),
                ("SET ROLE admin", Refused("SET")),
                ("RESET ALL", Refused("RESET")),
                ("DISCARD ALL", Refused("DISCARD")),
                ("PREPARE p AS SELECT 1", Refused("PREPARE")),
                ("EXECUTE p", Refused("EXECUTE")),
                ("DEALLOCATE p", Refused("DEALLOCATE")),
                ("DECLARE c CURSOR FOR SELECT 1", Refused("DECLARE")),
                ("LISTEN x", Refused("LISTEN")),
                ("UNLISTEN x", Refused("UNLISTEN")),
                ("NOTIFY x", Refused("NOTIFY")),
                ("SELECT pg_notify('x', 'y')", Refused("function pg_notify")),
                (
                    "SELECT set_config('search_path', 'x', false)",
                    Refused("function set_config"),
                ),
                (
                    "SELECT PG_ADVISORY_LOCK(1)",
                    Refused("function pg_advisory_lock"),
                ),
                // Temporary objects.
                (
                    "CREATE TEMP TABLE t (a int)",
                    Refused("CREATE TEMPORARY TABLE"),
                ),
                (
                    "CREATE TEMPORARY TABLE t AS SELECT 1",
                    Refused("CREATE TEMPORARY TABLE"),
                ),
                (
                    "CREATE TEMP VIEW v AS SELECT 1",
                    Refused("CREATE TEMPORARY VIEW"),
                ),
                (
                    "CREATE TEMP SEQUENCE s",
                    Refused("CREATE TEMPORARY SEQUENCE"),
                ),
                (
                    "CREATE TABLE pg_temp.t (a int)",
                    Refused("CREATE TEMPORARY TABLE"),
                ),
                (
                    "CREATE VIEW PG_TEMP_3.v AS SELECT 1",
                    Refused("CREATE TEMPORARY VIEW"),
                ),
                (
                    "CREATE INDEX i ON pg_temp.t (a)",
                    Refused("CREATE INDEX on a temporary table"),
                ),
                (
                    "CREATE SEQUENCE pg_temp.s",
                    Refused("CREATE TEMPORARY SEQUENCE"),
                ),
                ("CREATE TABLE public.t (a int)", Allowed("CREATE TABLE")),
                ("SELECT 1 INTO TEMP t", Refused("SELECT INTO TEMPORARY")),
                ("SELECT 1 INTO t", Refused("SELECT INTO")),
                // Files, programs, other sessions and databases.
                ("COPY t TO PROGRAM 'rm -rf /'", Refused("COPY")),
                ("COPY t FROM '/etc/passwd'", Refused("COPY")),
                ("COPY (SELECT 1) TO STDOUT", Refused("COPY")),
                (
                    "SELECT pg_read_file('/etc/passwd')",
                    Refused("function pg_read_file"),
                ),
                (
                    "SELECT * FROM pg_read_file('/etc/passwd')",
                    Refused("function pg_read_file"),
                ),
                (
                    "SELECT * FROM LATERAL pg_read_file('x')",
                    Refused("function pg_read_file"),
                ),
                (
                    "SELECT pg_catalog.pg_read_binary_file('x')",
                    Refused("function pg_read_binary_file"),
                ),
                (
                    "SELECT * FROM pg_ls_dir('.')",
                    Refused("function pg_ls_dir"),
                ),
                (
                    "SELECT lo_import('/etc/passwd')",
                    Refused("function lo_import"),
                ),
                (
                    "UPDATE t SET a = (SELECT pg_read_file('x'))",
                    Refused("function pg_read_file"),
                ),
                (
                    "WITH x AS (SELECT lo_export(1, '/tmp/x')) SELECT * FROM x",
                    Refused("function lo_export"),
                ),
                (
                    "SELECT dblink_exec('host=x', 'COMMIT')",
                    Refused("function dblink_exec"),
                ),
                (
                    "SELECT pg_terminate_backend(1)",
                    Refused("function pg_terminate_backend"),
                ),
                (
                    "SELECT query_to_xml('select 1', true, true, '')",
                    Refused("function query_to_xml"),
                ),
                (
                    "CREATE TABLE t (a text DEFAULT pg_read_file('x'))",
                    Refused("function pg_read_file"),
                ),
                // Locks, procedures, administration, the rest.
                ("LOCK TABLE t", Refused("LOCK TABLE")),
                ("CALL p()", Refused("CALL")),
                ("DO $$ BEGIN END $$", Refused("DO")),
                (
                    "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
                    Refused("CREATE FUNCTION"),
                ),
                ("CREATE EXTENSION dblink", Refused("CREATE EXTENSION")),
                ("GRANT SELECT ON t TO u", Refused("GRANT")),
                ("REVOKE SELECT ON t FROM u", Refused("REVOKE")),
                ("CREATE ROLE r", Refused("ROLE")),
                ("VACUUM", Refused("VACUUM")),
                ("ANALYZE t", Refused("ANALYZE")),
                ("COMMENT ON TABLE t IS 'x'", Refused("COMMENT")),
                ("SELECT 1 /* unterminated", UNPARSABLE),
                ("TABLE t", UNPARSABLE),
                ("XA COMMIT 'x'", Refused("XA COMMIT")),
            ],
        );
    }

    #[test]
    fn mysql_statements() {
        run_table(
            Dialect::Mysql,
            &[
                // Reads.
                ("SELECT 1", Allowed("SELECT")),
                ("select * from accounts where id = ?", Allowed("SELECT")),
                ("SELECT 1;", Allowed("SELECT")),
                ("select 1;;", Allowed("SELECT")),
                ("SELECT 1; -- x", Allowed("SELECT")),
                ("SELECT 1 # comment", Allowed("SELECT")),
                ("SELECT 1 --1", Allowed("SELECT")),
                ("SELECT * FROM t FOR UPDATE", Allowed("SELECT")),
                ("SELECT * FROM t FOR UPDATE NOWAIT", Allowed("SELECT")),
                ("WITH x AS (SELECT 1) SELECT * FROM x", Allowed("SELECT")),
                ("SELECT SLEEP(1)", Allowed("SELECT")),
                ("SELECT LAST_INSERT_ID()", Allowed("SELECT")),
                ("SELECT IS_FREE_LOCK('a')", Allowed("SELECT")),
                ("SELECT @a", Allowed("SELECT")),
                ("SELECT '/* not a comment */'", Allowed("SELECT")),
                ("SHOW TABLES", Allowed("SHOW")),
                ("SHOW CREATE TABLE t", Allowed("SHOW")),
                ("SHOW VARIABLES LIKE 'x'", Allowed("SHOW")),
                ("SHOW WARNINGS", Allowed("SHOW")),
                ("DESCRIBE t", Allowed("DESCRIBE")),
                ("EXPLAIN SELECT * FROM t", Allowed("EXPLAIN")),
                // Writes.
                ("INSERT INTO t (a) VALUES (?)", Allowed("INSERT")),
                (
                    "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2",
                    Allowed("INSERT"),
                ),
                ("INSERT IGNORE INTO t VALUES (1)", Allowed("INSERT")),
                ("REPLACE INTO t VALUES (1)", Allowed("INSERT")),
                ("INSERT INTO t SELECT * FROM u", Allowed("INSERT")),
                ("UPDATE t SET a = 1 WHERE id = ?", Allowed("UPDATE")),
                (
                    "UPDATE t1 JOIN t2 ON t1.a = t2.a SET t1.b = 1",
                    Allowed("UPDATE"),
                ),
                ("DELETE FROM t WHERE id = ?", Allowed("DELETE")),
                (
                    "DELETE t1 FROM t1 JOIN t2 ON t1.a = t2.a",
                    Allowed("DELETE"),
                ),
                ("Delete From t", Allowed("DELETE")),
                // Not exactly one statement.
                ("", Refused("empty statement")),
                ("SELECT 1; SELECT 2", Refused("2 statements")),
                // sqlparser stops at a bare END and drops the rest; the server runs it.
                ("SELECT 1 END; COMMIT", UNPARSABLE),
                ("SELECT '\\''; DROP TABLE t; -- '", Refused("2 statements")),
                (r#"SELECT "a\\"; COMMIT; -- ""#, Refused("2 statements")),
                ("SELECT 1 -- x\n; COMMIT", Refused("2 statements")),
                ("SELECT 1 --x\n; COMMIT", Refused("2 statements")),
                // XA and transaction control.
                ("XA START 'x'", Refused("XA START")),
                ("XA END 'x'", Refused("XA END")),
                ("XA PREPARE 'x'", Refused("XA PREPARE")),
                ("XA COMMIT 'x'", Refused("XA COMMIT")),
                ("XA ROLLBACK 'x'", Refused("XA ROLLBACK")),
                ("XA RECOVER", Refused("XA RECOVER")),
                ("START TRANSACTION", Refused("START TRANSACTION")),
                ("BEGIN", Refused("BEGIN")),
                ("/* */ COMMIT", Refused("COMMIT")),
                ("Commit", Refused("COMMIT")),
                ("ROLLBACK", Refused("ROLLBACK")),
                ("SAVEPOINT s", Refused("SAVEPOINT")),
                ("RELEASE SAVEPOINT s", Refused("RELEASE SAVEPOINT")),
                ("ROLLBACK TO SAVEPOINT s", Refused("ROLLBACK TO SAVEPOINT")),
                (
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    Refused("SET TRANSACTION"),
                ),
                ("SET TRANSACTION READ ONLY", Refused("SET TRANSACTION")),
                // Session state.
                ("SET autocommit=0", Refused("SET")),
                ("SET @a = 1", Refused("SET")),
                ("SET NAMES utf8mb4", Refused("SET")),
                ("SET GLOBAL x = 1", Refused("SET")),
                ("SET PASSWORD = 'x'", Refused("SET")),
                ("USE db", Refused("USE")),
                ("SELECT 1 INTO @a", Refused("SELECT INTO")),
                ("SELECT @a := 1", Refused("variable assignment")),
                ("SELECT @a, @@b, @c_d", Allowed("SELECT")),
                // sqlparser reads `@;` as one word; MySQL ends the statement there.
                ("SELECT @; COMMIT", Refused("variable")),
                ("SELECT a --@;  COMMIT", Refused("variable")),
                ("UPDATE t SET a = (@b := 2)", Refused("variable assignment")),
                ("SELECT GET_LOCK('a', 1)", Refused("function get_lock")),
                ("SELECT release_lock('a')", Refused("function release_lock")),
                ("PREPARE s FROM 'select 1'", UNPARSABLE),
                ("EXECUTE s", Refused("EXECUTE")),
                ("DEALLOCATE PREPARE s", Refused("DEALLOCATE")),
                // DDL commits implicitly on MySQL.
                ("CREATE TABLE t (a int)", Refused("CREATE TABLE")),
                (
                    "CREATE TABLE t2 AS SELECT * FROM t",
                    Refused("CREATE TABLE"),
                ),
                ("CREATE INDEX i ON t (a)", Refused("CREATE INDEX")),
                ("CREATE VIEW v AS SELECT 1", Refused("CREATE VIEW")),
                ("ALTER TABLE t ADD COLUMN b int", Refused("ALTER TABLE")),
                ("DROP TABLE t", Refused("DROP TABLE")),
                ("TRUNCATE TABLE t", Refused("TRUNCATE")),
                ("RENAME TABLE a TO b", Refused("RENAME")),
                (
                    "CREATE TEMPORARY TABLE t (a int)",
                    Refused("CREATE TEMPORARY TABLE"),
                ),
                ("DROP TEMPORARY TABLE t", Refused("DROP TEMPORARY TABLE")),
                // Locks, files, programs, other sessions, administration.
                ("LOCK TABLES t WRITE", Refused("LOCK TABLES")),
                ("UNLOCK TABLES", Refused("UNLOCK TABLES")),
                ("LOAD DATA INFILE '/x' INTO TABLE t", Refused("LOAD DATA")),
                (
                    "LOAD DATA LOCAL INFILE '/x' INTO TABLE t",
                    Refused("LOAD DATA"),
                ),
                (
                    "SELECT * FROM t INTO OUTFILE '/tmp/x'",
                    Refused("SELECT INTO OUTFILE"),
                ),
                (
                    "SELECT 1 INTO DUMPFILE '/tmp/x'",
                    Refused("SELECT INTO OUTFILE"),
                ),
                (
                    "SELECT LOAD_FILE('/etc/passwd')",
                    Refused("function load_file"),
                ),
                ("SELECT sys_exec('rm -rf /')", Refused("function sys_exec")),
                (
                    "SELECT 1 /*!, LOAD_FILE('x') */",
                    Refused("executable comment"),
                ),
                (
                    "SELECT 1 /*M!, LOAD_FILE('x') */",
                    Refused("executable comment"),
                ),
                ("SELECT 1 /*!50000 FROM t */", Refused("executable comment")),
                ("CALL p()", Refused("CALL")),
                ("KILL 1", Refused("KILL")),
                ("FLUSH TABLES", Refused("FLUSH")),
                ("SHUTDOWN", UNPARSABLE),
                ("SHOW PROCESSLIST", Refused("SHOW PROCESSLIST")),
                ("CREATE USER u", Refused("USER")),
                ("ANALYZE TABLE t", Refused("ANALYZE")),
                ("HANDLER t OPEN", UNPARSABLE),
                ("DO 1", Refused("DO")),
                ("INSTALL PLUGIN x SONAME 'y'", UNPARSABLE),
                // Valid MySQL that sqlparser 0.63 cannot parse: refused (use FOR SHARE).
                ("SELECT * FROM t LOCK IN SHARE MODE", UNPARSABLE),
            ],
        );
    }

    #[test]
    fn sqlite_statements() {
        run_table(
            Dialect::Sqlite,
            &[
                // Reads.
                ("SELECT 1", Allowed("SELECT")),
                ("SELECT * FROM accounts WHERE id = ?", Allowed("SELECT")),
                ("select 1;;", Allowed("SELECT")),
                ("SELECT 1; -- x", Allowed("SELECT")),
                ("SELECT * FROM json_each('[1,2]')", Allowed("SELECT")),
                (
                    "SELECT * FROM t WHERE a IN (SELECT a FROM u)",
                    Allowed("SELECT"),
                ),
                (
                    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
                    Allowed("SELECT"),
                ),
                ("SELECT 0x10", Allowed("SELECT")),
                ("SELECT X'10'", Allowed("SELECT")),
                ("SELECT * FROM sqlite_master", Allowed("SELECT")),
                ("SELECT * FROM main.t", Allowed("SELECT")),
                ("SELECT 'é' || name FROM t", Allowed("SELECT")),
                ("SELECT * FROM edit", Allowed("SELECT")),
                ("VALUES (1)", Allowed("VALUES")),
                ("EXPLAIN QUERY PLAN SELECT * FROM t", Allowed("EXPLAIN")),
                // Writes.
                ("INSERT INTO t VALUES (1)", Allowed("INSERT")),
                ("INSERT OR REPLACE INTO t VALUES (1)", Allowed("INSERT")),
                ("REPLACE INTO t VALUES (1)", Allowed("INSERT")),
                (
                    "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
                    Allowed("INSERT"),
                ),
                ("INSERT INTO t VALUES (1) RETURNING *", Allowed("INSERT")),
                ("INSERT INTO t DEFAULT VALUES", Allowed("INSERT")),
                ("UPDATE t SET a = 1 WHERE id = ?", Allowed("UPDATE")),
                (
                    "UPDATE t SET a = u.a FROM u WHERE u.id = t.id",
                    Allowed("UPDATE"),
                ),
                ("DELETE FROM t WHERE id = ?", Allowed("DELETE")),
                ("DELETE FROM t RETURNING id", Allowed("DELETE")),
                ("WITH x AS (SELECT 1) DELETE FROM t", Allowed("DELETE")),
                // DDL: CREATE TABLE/INDEX and ALTER TABLE only.
                (
                    "CREATE TABLE t (a INTEGER PRIMARY KEY)",
                    Allowed("CREATE TABLE"),
                ),
                (
                    "CREATE TABLE t2 AS SELECT * FROM t",
                    Allowed("CREATE TABLE"),
                ),
                ("CREATE INDEX i ON t (a)", Allowed("CREATE INDEX")),
                (
                    "CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a)",
                    Allowed("CREATE INDEX"),
                ),
                ("ALTER TABLE t ADD COLUMN b TEXT", Allowed("ALTER TABLE")),
                ("ALTER TABLE t RENAME TO u", Allowed("ALTER TABLE")),
                ("DROP TABLE t", Refused("DROP TABLE")),
                ("DROP INDEX i", Refused("DROP INDEX")),
                ("DROP VIEW v", Refused("DROP VIEW")),
                ("CREATE VIEW v AS SELECT 1", Refused("CREATE VIEW")),
                (
                    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
                    Refused("CREATE TRIGGER"),
                ),
                (
                    "CREATE VIRTUAL TABLE v USING fts5(x)",
                    Refused("CREATE VIRTUAL"),
                ),
                ("CREATE TEMP TABLE t (a)", Refused("CREATE TEMPORARY TABLE")),
                (
                    "CREATE TEMPORARY VIEW v AS SELECT 1",
                    Refused("CREATE TEMPORARY VIEW"),
                ),
                ("CREATE TABLE temp.t (a)", Refused("CREATE TEMPORARY TABLE")),
                // SQLite puts the index in its table's schema, named on the index.
                (
                    "CREATE INDEX temp.i ON t (a)",
                    Refused("CREATE INDEX on a temporary table"),
                ),
                (
                    "CREATE TABLE temp.x.t (a)",
                    Refused("CREATE TEMPORARY TABLE"),
                ),
                (
                    "CREATE TABLE TEMP.t AS SELECT 1",
                    Refused("CREATE TEMPORARY TABLE"),
                ),
                // Not exactly one statement.
                ("", Refused("empty statement")),
                ("SELECT 1; DELETE FROM t", Refused("2 statements")),
                // sqlparser stops at a bare END and drops the rest; the server runs it.
                ("SELECT 1 END; COMMIT", UNPARSABLE),
                ("SELECT 'a\\'; DROP TABLE t; --'", Refused("2 statements")),
                // SQLite does not nest comments, nor does sqlparser's SQLite dialect.
                ("SELECT 1 /* a /* b */ ; COMMIT */", UNPARSABLE),
                ("/* /* */ COMMIT", Refused("COMMIT")),
                // Transaction control.
                ("BEGIN", Refused("BEGIN")),
                ("BEGIN IMMEDIATE", Refused("BEGIN")),
                ("COMMIT", Refused("COMMIT")),
                ("/* */ COMMIT", Refused("COMMIT")),
                ("END", Refused("COMMIT")),
                ("ROLLBACK", Refused("ROLLBACK")),
                ("SAVEPOINT s", Refused("SAVEPOINT")),
                ("RELEASE s", Refused("RELEASE SAVEPOINT")),
                ("RELEASE SAVEPOINT s", Refused("RELEASE SAVEPOINT")),
                ("ROLLBACK TO s", Refused("ROLLBACK TO SAVEPOINT")),
                // The shared connection.
                ("ATTACH DATABASE 'x' AS y", Refused("ATTACH")),
                ("DETACH DATABASE y", Refused("DETACH")),
                ("PRAGMA journal_mode=WAL", Refused("PRAGMA")),
                ("PRAGMA journal_mode", Refused("PRAGMA")),
                ("PRAGMA foreign_keys = 1", Refused("PRAGMA")),
                (
                    "SELECT * FROM pragma_table_info('t')",
                    Refused("function pragma_table_info"),
                ),
                (
                    "SELECT * FROM pragma_database_list",
                    Refused("function pragma_database_list"),
                ),
                ("VACUUM", Refused("VACUUM")),
                ("VACUUM INTO '/tmp/x'", Refused("VACUUM")),
                // Native code and files.
                (
                    "select load_extension('x')",
                    Refused("function load_extension"),
                ),
                (
                    "CREATE TABLE t AS SELECT load_extension('x')",
                    Refused("function load_extension"),
                ),
                (
                    "SELECT readfile('/etc/passwd')",
                    Refused("function readfile"),
                ),
                (
                    "SELECT writefile('/tmp/x', 'y')",
                    Refused("function writefile"),
                ),
                ("SELECT edit('x', 'vi')", Refused("function edit")),
                (
                    "SELECT fts3_tokenizer('simple')",
                    Refused("function fts3_tokenizer"),
                ),
                ("SELECT * FROM fsdir('/')", Refused("function fsdir")),
                // The rest.
                ("ANALYZE", Refused("ANALYZE")),
                ("SELECT 1 /* unterminated", UNPARSABLE),
                ("REINDEX", UNPARSABLE),
                // Valid SQLite that sqlparser 0.63 cannot parse: refused.
                ("SELECT * FROM t INDEXED BY i", UNPARSABLE),
            ],
        );
    }

    #[test]
    fn returns_rows_is_reported() {
        let rows = |dialect, sql| check(dialect, sql).unwrap().returns_rows;
        assert!(rows(Dialect::Postgres, "SELECT 1"));
        assert!(rows(Dialect::Postgres, "VALUES (1)"));
        assert!(rows(
            Dialect::Postgres,
            "INSERT INTO t VALUES (1) RETURNING id"
        ));
        assert!(rows(
            Dialect::Postgres,
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"
        ));
        assert!(rows(Dialect::Mysql, "SHOW TABLES"));
        assert!(rows(Dialect::Sqlite, "EXPLAIN QUERY PLAN SELECT 1"));
        assert!(!rows(Dialect::Postgres, "INSERT INTO t VALUES (1)"));
        assert!(!rows(Dialect::Mysql, "UPDATE t SET a = 1"));
        assert!(!rows(Dialect::Sqlite, "DELETE FROM t"));
        assert!(!rows(Dialect::Sqlite, "CREATE TABLE t (a)"));
    }

    #[test]
    fn refusals_read_well() {
        let refusal = |dialect, sql| check(dialect, sql).unwrap_err().to_string();
        assert_eq!(
            refusal(Dialect::Postgres, "COMMIT"),
            "COMMIT is refused: transaction control belongs to the host"
        );
        assert_eq!(
            refusal(Dialect::Mysql, "CREATE TABLE t (a int)"),
            "CREATE TABLE is refused: DDL on MySQL commits implicitly"
        );
        assert_eq!(
            refusal(Dialect::Postgres, "SET search_path = x"),
            "SET is refused: session state would outlive the statement"
        );
        assert_eq!(
            refusal(Dialect::Postgres, "SELECT pg_read_file('/etc/passwd')"),
            "function pg_read_file is refused: server file access"
        );
        assert_eq!(
            refusal(Dialect::Sqlite, "SELECT 1; SELECT 2"),
            "2 statements is refused: exactly one statement per call"
        );
        assert_eq!(
            refusal(Dialect::Postgres, "XA COMMIT 'x'"),
            "XA COMMIT is refused: transaction control belongs to the host"
        );
        let unparsable = refusal(Dialect::Postgres, "FROBNICATE THE DATABASE");
        assert!(
            unparsable.starts_with(
                "unparsable statement is refused: does not parse as one postgres statement: "
            ),
            "{unparsable}"
        );
    }

    /// Deep nesting is refused instead of overflowing the stack, even on a small one.
    #[test]
    fn deeply_nested_statements_are_refused_not_a_crash() {
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            assert!(check(dialect, &deep).is_err(), "{dialect}");
        }
        let std::thread::Result::Ok(()) = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                assert!(check(Dialect::Postgres, &deep).is_err());
            })
            .unwrap()
            .join()
        else {
            panic!("parsing deep nesting on a small stack panicked");
        };
    }
}
