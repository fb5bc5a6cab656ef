//! Properties of the statement policy over hostile SQL: it never panics, and what it allows
//! is, as the server reads the text, exactly one statement that is the transaction's work —
//! never transaction control, session state or a change to the connection.

use proptest::prelude::*;

use super::check;
use crate::dialect::Dialect;
use crate::fuzzing::sql::{ServerView, Token, server_view, statement};

/// Words that start a statement controlling the transaction, the session or the
/// connection; an allowed statement, or the statement under its `EXPLAIN`, starts with none.
const CONTROL_WORDS: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "XA",
    "PREPARE",
    "SET",
    "RESET",
    "DISCARD",
    "USE",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "VACUUM",
    "LOCK",
    "UNLOCK",
    "LISTEN",
    "UNLISTEN",
    "NOTIFY",
    "DECLARE",
    "EXECUTE",
    "DEALLOCATE",
    "FETCH",
    "CLOSE",
    "CALL",
    "DO",
    "LOAD",
    "COPY",
];

/// Words `EXPLAIN` takes before the statement it explains.
const EXPLAIN_OPTIONS: &[&str] = &[
    "ANALYZE",
    "ANALYSE",
    "VERBOSE",
    "QUERY",
    "PLAN",
    "FORMAT",
    "JSON",
    "TEXT",
    "XML",
    "YAML",
    "TREE",
    "TRADITIONAL",
    "COSTS",
    "BUFFERS",
    "TIMING",
    "SUMMARY",
    "SETTINGS",
    "WAL",
    "ON",
    "OFF",
    "TRUE",
    "FALSE",
    "EXTENDED",
    "PARTITIONS",
];

/// Why the server's reading of an allowed statement shows it is not the transaction's work.
fn violation(dialect: Dialect, view: &ServerView) -> Option<String> {
    if view.executable_comment {
        return Some("it holds a MySQL executable comment".into());
    }
    let [_] = view.statements.as_slice() else {
        return Some(format!(
            "the server reads {} statements",
            view.statements.len()
        ));
    };
    let words = view.words(0);
    let Some(&first) = words.first() else {
        return Some("the statement has no keyword".into());
    };
    if CONTROL_WORDS.contains(&first) {
        return Some(format!("it starts with {first}"));
    }
    if first == "CREATE" && creates_temporary(dialect, &view.statements[0]) {
        return Some("it creates a temporary object".into());
    }
    if matches!(first, "EXPLAIN" | "DESCRIBE" | "DESC") {
        let explained = (1..words.len()).find(|&i| !EXPLAIN_OPTIONS.contains(&words[i]));
        // On MySQL, `EXPLAIN name [column]` describes a table, whatever its name.
        let describes_table = |i: usize| dialect == Dialect::Mysql && words.len() - i <= 2;
        if let Some(i) = explained.filter(|&i| CONTROL_WORDS.contains(&words[i]))
            && !describes_table(i)
        {
            return Some(format!("it explains {}", words[i]));
        }
    }
    None
}

/// Whether a `CREATE` statement's name part (before `(`, `AS` or `ON`) makes a temporary
/// object: `CREATE [GLOBAL|LOCAL] TEMP[ORARY] ...`, or a name in SQLite's `temp.` or
/// PostgreSQL's `pg_temp*.`.
fn creates_temporary(dialect: Dialect, tokens: &[Token]) -> bool {
    let word_at = |index: usize| match tokens.get(index) {
        Some(Token::Word(word)) => Some(word.as_str()),
        _ => None,
    };
    let name_part = tokens
        .iter()
        .position(|token| match token {
            Token::Word(word) => word == "AS" || word == "ON",
            Token::Punct(c) => *c == '(',
            Token::Quoted => false,
        })
        .unwrap_or(tokens.len());
    (1..name_part).any(|index| {
        let Some(word) = word_at(index) else {
            return false;
        };
        let temporary_keyword = matches!(word, "TEMP" | "TEMPORARY")
            && matches!(word_at(index - 1), Some("CREATE" | "GLOBAL" | "LOCAL"));
        let temporary_schema = match dialect {
            Dialect::Sqlite => word == "TEMP",
            Dialect::Postgres => word.starts_with("PG_TEMP"),
            Dialect::Mysql => false,
        } && tokens.get(index + 1) == Some(&Token::Punct('.'));
        temporary_keyword || temporary_schema
    })
}

fn assert_allowed_is_work(dialect: Dialect, sql: &str) -> Result<(), TestCaseError> {
    if check(dialect, sql).is_ok() {
        let view = server_view(dialect, sql);
        if let Some(why) = violation(dialect, &view) {
            return Err(TestCaseError::fail(format!(
                "{dialect} allowed {sql:?}, but {why} ({view:?})"
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::fuzzing::config(20_000))]

    #[test]
    fn allowed_statements_are_one_statement_of_transaction_work(sql in statement()) {
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            assert_allowed_is_work(dialect, &sql)?;
        }
    }
}

/// The independent reading agrees with the policy's tables on texts that hide statements.
#[test]
fn the_server_view_splits_like_the_servers() {
    let count = |dialect, sql| server_view(dialect, sql).statements.len();
    assert_eq!(count(Dialect::Postgres, "SELECT $a$;$a$; COMMIT"), 2);
    assert_eq!(count(Dialect::Postgres, "SELECT 1 /* /* */ ; */"), 1);
    assert_eq!(count(Dialect::Postgres, "SELECT E'\\'; COMMIT; --'"), 1);
    assert_eq!(count(Dialect::Postgres, "SELECT '\\'; COMMIT; --'"), 2);
    assert_eq!(count(Dialect::Mysql, "SELECT '\\'; COMMIT; --'"), 1);
    assert_eq!(count(Dialect::Mysql, "SELECT 1 --x\n; COMMIT"), 2);
    assert_eq!(count(Dialect::Mysql, "SELECT 1 -- x\n; COMMIT"), 2);
    assert_eq!(count(Dialect::Mysql, "SELECT 1 #; COMMIT"), 1);
    assert_eq!(
        count(Dialect::Sqlite, "SELECT [a;b], `c;d`, \"e;\"\"f\""),
        1
    );
    assert_eq!(count(Dialect::Sqlite, "SELECT 1 /* /* */ ; COMMIT */"), 2);
    assert_eq!(count(Dialect::Sqlite, ";; -- only comments\n;"), 0);
    assert_eq!(count(Dialect::Mysql, "SELECT 1 /* ; /*/ ; COMMIT"), 2);
    assert!(server_view(Dialect::Mysql, "SELECT 1 /*M! , 2 */").executable_comment);
}
