//! Qualifies an SQLite participant's statement with the participant's schema.
//!
//! The SQLite participants of one transaction share one connection, each file ATTACHed under
//! its participant's name. A script writes `UPDATE accounts SET ...` for participant
//! `bank_a`; the host must run `UPDATE "bank_a".accounts SET ...`, or SQLite would resolve
//! `accounts` through its search order (temp, main, then attachments in order) and could hit
//! another participant's file.
//!
//! The statement is parsed with sqlparser only to *find* the table names; the qualifier is
//! spliced into the original text at each name's position. The AST is never printed back:
//! sqlparser's Display changes meaning (`0x10` becomes `X'10'`).
//!
//! Rules:
//! - exactly one statement, of a form the qualifier understands: queries (`SELECT`, `VALUES`,
//!   `WITH`), `INSERT`/`REPLACE`, `UPDATE`, `DELETE`, non-temporary `CREATE TABLE`,
//!   `CREATE INDEX`, `ALTER TABLE`, and `EXPLAIN` of those; anything else is refused;
//! - an unqualified table name gets `"<schema>".` in front; `main.` is replaced by
//!   `"<schema>"`; any other schema qualifier is refused;
//! - names of CTEs in scope are left alone (SQLite sees every CTE of a `WITH` list in all of
//!   its bodies, itself included), except as the target of `INSERT`/`UPDATE`/`DELETE`, which
//!   SQLite always resolves to a real table;
//! - table-valued functions are left alone when on `TABLE_FUNCTIONS` and refused otherwise
//!   (`pragma_*` in particular, with or without arguments); `sqlite_temp_master` and
//!   `sqlite_temp_schema` are left alone;
//! - `CREATE INDEX` qualifies the index name and leaves the table unqualified, as SQLite
//!   requires; `REFERENCES` targets and `ALTER TABLE ... RENAME TO` names stay unqualified
//!   (SQLite resolves them in the table's own schema);
//! - column references keep their table qualifier (`accounts.balance` works against
//!   `"s".accounts`); a three-part `main.t.c` becomes `"<schema>".t.c`, other schemas refused.
//!
//! The SQLite authorizer installed by the host is the backstop for anything missed here.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FromTable, Ident, ObjectName, Query, Select, SetExpr, Statement, TableFactor,
    TableObject, Visit, Visitor,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::tokenizer::Location;

use crate::dialect::Dialect;
use crate::sql_parse::parse_whole;

/// Table-valued functions a statement may use; they are not tables and stay unqualified.
const TABLE_FUNCTIONS: &[&str] = &[
    "json_each",
    "json_tree",
    "jsonb_each",
    "jsonb_tree",
    "generate_series",
];

/// Why a statement could not be qualified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QualifyError {
    #[error("does not parse as one sqlite statement: {0}")]
    Unparsable(String),
    #[error("exactly one statement per call, found {0}")]
    NotOneStatement(usize),
    #[error(
        "only SELECT, INSERT, UPDATE, DELETE, CREATE TABLE, CREATE INDEX, ALTER TABLE and \
         EXPLAIN can be qualified with a participant's schema"
    )]
    UnsupportedStatement,
    #[error("temporary tables are not allowed")]
    Temporary,
    #[error("{name} names schema {schema}: only main (the participant's own schema) may be named")]
    ForeignSchema { name: String, schema: String },
    #[error("{0} has too many parts to be a table name")]
    TooManyParts(String),
    #[error("table-valued function {0} is not allowed")]
    TableFunction(String),
    #[error("only tables, subqueries, joins and table-valued functions may appear in FROM")]
    UnsupportedTableFactor,
    #[error("CREATE INDEX needs a name")]
    UnnamedIndex,
    #[error("CREATE INDEX takes its table unqualified (qualify the index name): {0}")]
    QualifiedIndexTable(String),
    #[error("cannot locate {0} in the statement text")]
    NoPosition(String),
    #[error("invalid schema name {0:?}")]
    InvalidSchema(String),
}

/// [`qualify`] for a host call: remembered for repeated statement texts, and parsed off
/// the script's fiber stack (see `crate::memo`).
pub async fn qualify_memoized(sql: &str, schema: &str) -> Result<String, QualifyError> {
    static MEMO: std::sync::LazyLock<
        crate::memo::Memo<(String, String), Result<String, QualifyError>>,
    > = std::sync::LazyLock::new(|| crate::memo::Memo::new(4096));
    if sql.len() > crate::memo::MAX_MEMO_TEXT {
        let (sql, schema) = (sql.to_owned(), schema.to_owned());
        return crate::memo::run_blocking(move || qualify(&sql, &schema)).await;
    }
    MEMO.get_or_compute_blocking(&(schema.to_owned(), sql.to_owned()), |(schema, sql)| {
        qualify(sql, schema)
    })
    .await
}

/// Rewrites `sql` so every table it names lives in `schema`. The text is spliced, not re-printed.
pub fn qualify(sql: &str, schema: &str) -> Result<String, QualifyError> {
    if schema.is_empty() || schema.contains('\0') {
        return Err(QualifyError::InvalidSchema(schema.to_owned()));
    }
    let statement = parse_one(sql)?;
    let mut finder = TableFinder {
        text: Text::new(sql),
        quoted_schema: Dialect::Sqlite.quote_ident(schema),
        cte_scopes: Vec::new(),
        real_tables: HashSet::new(),
        index_tables: HashSet::new(),
        functions: HashSet::new(),
        edits: Vec::new(),
    };
    if let ControlFlow::Break(error) = statement.visit(&mut finder) {
        return Err(error);
    }
    apply(sql, finder.edits)
}

fn parse_one(sql: &str) -> Result<Statement, QualifyError> {
    let mut statements = parse_whole(&SQLiteDialect {}, sql)
        .map_err(|error| QualifyError::Unparsable(error.to_string()))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        n => Err(QualifyError::NotOneStatement(n)),
    }
}

/// One change to the original text: replace `start..end` (bytes) with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    replacement: String,
}

fn apply(sql: &str, mut edits: Vec<Edit>) -> Result<String, QualifyError> {
    edits.sort_by_key(|edit| (edit.start, edit.end));
    edits.dedup();
    let mut out = String::with_capacity(sql.len() + edits.len() * 16);
    let mut done = 0;
    for edit in &edits {
        if edit.start < done {
            // Two different edits of one place: the AST named it twice, differently.
            return Err(QualifyError::NoPosition(
                sql[edit.start..edit.end].to_owned(),
            ));
        }
        out.push_str(&sql[done..edit.start]);
        out.push_str(&edit.replacement);
        done = edit.end;
    }
    out.push_str(&sql[done..]);
    Ok(out)
}

/// The statement text with a line index, to turn sqlparser's locations into byte offsets.
struct Text<'a> {
    sql: &'a str,
    /// Byte offset of the start of each line; lines end at `\n`, as in sqlparser's tokenizer.
    line_starts: Vec<usize>,
}

impl<'a> Text<'a> {
    fn new(sql: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Text { sql, line_starts }
    }

    /// The byte offset of a location: lines and columns are 1-based, columns count chars.
    fn offset(&self, location: Location) -> Option<usize> {
        let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let line_start = *self.line_starts.get(line)?;
        let line_text = &self.sql[line_start..];
        let within = match line_text.char_indices().nth(column) {
            Some((index, _)) => index,
            None if line_text.chars().count() == column => line_text.len(),
            None => return None,
        };
        Some(line_start + within)
    }

    /// The byte range of an identifier, checked against the text it should cover.
    fn ident_range(&self, ident: &Ident) -> Result<(usize, usize), QualifyError> {
        let no_position = || QualifyError::NoPosition(ident.to_string());
        let start = self.offset(ident.span.start).ok_or_else(no_position)?;
        let end = self.offset(ident.span.end).ok_or_else(no_position)?;
        let covered = self.sql.get(start..end).ok_or_else(no_position)?;
        let matches = match ident.quote_style {
            Some(open) => covered.starts_with(open) && covered.len() > ident.value.len(),
            None => covered == ident.value,
        };
        if matches {
            Ok((start, end))
        } else {
            Err(no_position())
        }
    }
}

/// Walks the statement, deciding for every name that denotes a table whether and how to
/// qualify it, and collects the edits.
struct TableFinder<'a> {
    text: Text<'a>,
    quoted_schema: String,
    /// CTE names (ASCII lower case) of the queries being walked, innermost last.
    cte_scopes: Vec<Vec<String>>,
    /// Start offsets of names that always denote real tables (DML targets, created and
    /// altered tables), even where a CTE of that name is in scope.
    real_tables: HashSet<usize>,
    /// Start offsets of `CREATE INDEX ... ON <table>` names: left unqualified.
    index_tables: HashSet<usize>,
    /// Start offsets of table-valued function names: left unqualified.
    functions: HashSet<usize>,
    edits: Vec<Edit>,
}

/// The identifier parts of a name; other kinds of parts cannot be located in the text.
fn ident_parts(name: &ObjectName) -> Result<Vec<&Ident>, QualifyError> {
    name.0
        .iter()
        .map(|part| {
            part.as_ident()
                .ok_or_else(|| QualifyError::NoPosition(name.to_string()))
        })
        .collect()
}

impl TableFinder<'_> {
    /// The byte offset where `name` starts, the key of the sets of special names.
    fn start_of(&self, name: &ObjectName) -> Result<usize, QualifyError> {
        let parts = ident_parts(name)?;
        let first = parts
            .first()
            .ok_or_else(|| QualifyError::NoPosition(name.to_string()))?;
        Ok(self.text.ident_range(first)?.0)
    }

    fn in_cte_scope(&self, ident: &Ident) -> bool {
        let name = ident.value.to_ascii_lowercase();
        self.cte_scopes.iter().flatten().any(|cte| *cte == name)
    }

    /// Qualifies the object `name`: `"<schema>".` before an unqualified name, `main`
    /// replaced by `"<schema>"`, any other qualifier refused.
    fn qualify_name(&mut self, name: &ObjectName) -> Result<(), QualifyError> {
        match ident_parts(name)?.as_slice() {
            [table] => {
                let (start, _) = self.text.ident_range(table)?;
                self.edits.push(Edit {
                    start,
                    end: start,
                    replacement: format!("{}.", self.quoted_schema),
                });
                Ok(())
            }
            [schema, _] => self.map_main(schema, name),
            _ => Err(QualifyError::TooManyParts(name.to_string())),
        }
    }

    /// Replaces a `main` schema qualifier with the participant's schema; refuses others.
    fn map_main(
        &mut self,
        schema: &Ident,
        name: &dyn std::fmt::Display,
    ) -> Result<(), QualifyError> {
        if !schema.value.eq_ignore_ascii_case("main") {
            return Err(QualifyError::ForeignSchema {
                name: name.to_string(),
                schema: schema.to_string(),
            });
        }
        let (start, end) = self.text.ident_range(schema)?;
        self.edits.push(Edit {
            start,
            end,
            replacement: self.quoted_schema.clone(),
        });
        Ok(())
    }

    fn relation(&mut self, name: &ObjectName) -> Result<(), QualifyError> {
        let parts = ident_parts(name)?;
        let start = self.start_of(name)?;
        let last = parts[parts.len() - 1].value.to_ascii_lowercase();
        if last.starts_with("pragma_") {
            return Err(QualifyError::TableFunction(name.to_string()));
        }
        if self.functions.contains(&start) {
            return Ok(());
        }
        if self.index_tables.contains(&start) {
            return match parts.len() {
                1 => Ok(()),
                _ => Err(QualifyError::QualifiedIndexTable(name.to_string())),
            };
        }
        if let [table] = parts.as_slice() {
            let skip = (!self.real_tables.contains(&start) && self.in_cte_scope(table))
                || last == "sqlite_temp_master"
                || last == "sqlite_temp_schema";
            if skip {
                return Ok(());
            }
        }
        self.qualify_name(name)
    }

    /// Checks that the statement has a form the qualifier understands, and notes the names
    /// it treats specially.
    fn statement(&mut self, statement: &Statement) -> Result<(), QualifyError> {
        match statement {
            Statement::Query(_) | Statement::Explain { .. } => Ok(()),
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => self.real_table(name),
                _ => Err(QualifyError::UnsupportedStatement),
            },
            Statement::Update(update) => match &update.table.relation {
                TableFactor::Table { name, .. } => self.real_table(name),
                _ => Err(QualifyError::UnsupportedStatement),
            },
            Statement::Delete(delete) => {
                if !delete.tables.is_empty() || delete.using.is_some() {
                    return Err(QualifyError::UnsupportedStatement);
                }
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                match from.as_slice() {
                    [only] if only.joins.is_empty() => match &only.relation {
                        TableFactor::Table { name, .. } => self.real_table(name),
                        _ => Err(QualifyError::UnsupportedStatement),
                    },
                    _ => Err(QualifyError::UnsupportedStatement),
                }
            }
            Statement::CreateTable(table) if table.temporary => Err(QualifyError::Temporary),
            Statement::CreateTable(table) => self.real_table(&table.name),
            Statement::AlterTable(alter) => self.real_table(&alter.name),
            Statement::CreateIndex(index) => {
                let name = index.name.as_ref().ok_or(QualifyError::UnnamedIndex)?;
                self.qualify_name(name)?;
                let start = self.start_of(&index.table_name)?;
                self.index_tables.insert(start);
                Ok(())
            }
            _ => Err(QualifyError::UnsupportedStatement),
        }
    }

    fn real_table(&mut self, name: &ObjectName) -> Result<(), QualifyError> {
        let start = self.start_of(name)?;
        self.real_tables.insert(start);
        Ok(())
    }

    fn table_factor(&mut self, table_factor: &TableFactor) -> Result<(), QualifyError> {
        match table_factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                let parts = ident_parts(name)?;
                let known = match parts.as_slice() {
                    [function] => TABLE_FUNCTIONS
                        .iter()
                        .any(|known| function.value.eq_ignore_ascii_case(known)),
                    _ => false,
                };
                if !known {
                    return Err(QualifyError::TableFunction(name.to_string()));
                }
                let start = self.start_of(name)?;
                self.functions.insert(start);
                Ok(())
            }
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. } => Ok(()),
            _ => Err(QualifyError::UnsupportedTableFactor),
        }
    }

    /// A column reference keeps its table qualifier (`t.c`); in `main.t.c` the schema is
    /// mapped, other schemas are refused.
    fn column_reference(&mut self, parts: &[Ident]) -> Result<(), QualifyError> {
        let whole = || ObjectName::from(parts.to_vec());
        match parts {
            [] | [_] | [_, _] => Ok(()),
            [schema, _, _] => self.map_main(schema, &whole()),
            _ => Err(QualifyError::TooManyParts(whole().to_string())),
        }
    }
}

/// Whether a query body is or contains (through set operations) `TABLE t`, whose table name
/// sqlparser keeps as a plain string, out of reach of the walk.
fn has_table_body(body: &SetExpr) -> bool {
    match body {
        SetExpr::Table(_) => true,
        SetExpr::SetOperation { left, right, .. } => has_table_body(left) || has_table_body(right),
        _ => false,
    }
}

fn break_on_error(result: Result<(), QualifyError>) -> ControlFlow<QualifyError> {
    match result {
        Ok(()) => ControlFlow::Continue(()),
        Err(error) => ControlFlow::Break(error),
    }
}

impl Visitor for TableFinder<'_> {
    type Break = QualifyError;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<QualifyError> {
        break_on_error(self.statement(statement))
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<QualifyError> {
        if has_table_body(&query.body) {
            return ControlFlow::Break(QualifyError::UnsupportedStatement);
        }
        let names = query
            .with
            .iter()
            .flat_map(|with| &with.cte_tables)
            .map(|cte| cte.alias.name.value.to_ascii_lowercase())
            .collect();
        self.cte_scopes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<QualifyError> {
        self.cte_scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<QualifyError> {
        if select.into.is_some() {
            return ControlFlow::Break(QualifyError::UnsupportedStatement);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, table_factor: &TableFactor) -> ControlFlow<QualifyError> {
        break_on_error(self.table_factor(table_factor))
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<QualifyError> {
        break_on_error(self.relation(relation))
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<QualifyError> {
        match expr {
            Expr::CompoundIdentifier(parts) => break_on_error(self.column_reference(parts)),
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "bank_a";

    fn run_table(schema: &str, rows: &[(&str, &str)]) {
        let mut failures = Vec::new();
        for &(sql, expected) in rows {
            match qualify(sql, schema) {
                Ok(got) if got == expected => {}
                other => failures.push(format!(
                    "{sql:?}\n   expected {expected:?}\n   got      {other:?}"
                )),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            rows.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn qualifies_table_names() {
        run_table(
            S,
            &[
                // Queries, joins, subqueries.
                (
                    "SELECT * FROM accounts",
                    r#"SELECT * FROM "bank_a".accounts"#,
                ),
                ("select 1", "select 1"),
                (
                    "SELECT a.id FROM accounts a JOIN owners AS o ON o.id = a.owner",
                    r#"SELECT a.id FROM "bank_a".accounts a JOIN "bank_a".owners AS o ON o.id = a.owner"#,
                ),
                (
                    "SELECT * FROM t1 LEFT JOIN (t2 JOIN t3 ON 1) ON 1, t4",
                    r#"SELECT * FROM "bank_a".t1 LEFT JOIN ("bank_a".t2 JOIN "bank_a".t3 ON 1) ON 1, "bank_a".t4"#,
                ),
                (
                    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)",
                    r#"SELECT * FROM "bank_a".t WHERE EXISTS (SELECT 1 FROM "bank_a".u WHERE u.a = t.a)"#,
                ),
                (
                    "SELECT (SELECT max(a) FROM u) FROM (SELECT * FROM t) AS x",
                    r#"SELECT (SELECT max(a) FROM "bank_a".u) FROM (SELECT * FROM "bank_a".t) AS x"#,
                ),
                (
                    "SELECT a FROM t UNION SELECT a FROM u ORDER BY 1",
                    r#"SELECT a FROM "bank_a".t UNION SELECT a FROM "bank_a".u ORDER BY 1"#,
                ),
                (
                    "SELECT t.*, accounts.balance FROM t, accounts",
                    r#"SELECT t.*, accounts.balance FROM "bank_a".t, "bank_a".accounts"#,
                ),
                // CTEs: the names are skipped, the bodies qualified.
                (
                    "WITH c AS (SELECT * FROM t) SELECT * FROM c JOIN u ON c.a = u.a",
                    r#"WITH c AS (SELECT * FROM "bank_a".t) SELECT * FROM c JOIN "bank_a".u ON c.a = u.a"#,
                ),
                (
                    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
                    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
                ),
                (
                    "WITH x AS (SELECT * FROM y), y AS (SELECT * FROM t) SELECT * FROM x",
                    r#"WITH x AS (SELECT * FROM y), y AS (SELECT * FROM "bank_a".t) SELECT * FROM x"#,
                ),
                (
                    "WITH C AS (SELECT 1) SELECT * FROM c, (SELECT * FROM \"C\") AS d",
                    "WITH C AS (SELECT 1) SELECT * FROM c, (SELECT * FROM \"C\") AS d",
                ),
                (
                    "SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) AS x, c",
                    r#"SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) AS x, "bank_a".c"#,
                ),
                // Writes.
                (
                    "INSERT INTO t VALUES (1)",
                    r#"INSERT INTO "bank_a".t VALUES (1)"#,
                ),
                (
                    "INSERT INTO t(a, b) VALUES (?, ?)",
                    r#"INSERT INTO "bank_a".t(a, b) VALUES (?, ?)"#,
                ),
                (
                    "INSERT INTO t DEFAULT VALUES",
                    r#"INSERT INTO "bank_a".t DEFAULT VALUES"#,
                ),
                (
                    "INSERT OR REPLACE INTO t VALUES (1)",
                    r#"INSERT OR REPLACE INTO "bank_a".t VALUES (1)"#,
                ),
                (
                    "REPLACE INTO t VALUES (1)",
                    r#"REPLACE INTO "bank_a".t VALUES (1)"#,
                ),
                (
                    "INSERT INTO t SELECT * FROM u WHERE a > 0",
                    r#"INSERT INTO "bank_a".t SELECT * FROM "bank_a".u WHERE a > 0"#,
                ),
                (
                    "INSERT INTO t VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b WHERE t.b < excluded.b",
                    r#"INSERT INTO "bank_a".t VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b WHERE t.b < excluded.b"#,
                ),
                (
                    "INSERT INTO t VALUES (1) RETURNING rowid, a",
                    r#"INSERT INTO "bank_a".t VALUES (1) RETURNING rowid, a"#,
                ),
                (
                    "UPDATE accounts SET balance = balance - ? WHERE id = ?",
                    r#"UPDATE "bank_a".accounts SET balance = balance - ? WHERE id = ?"#,
                ),
                (
                    "UPDATE t SET a = u.a FROM u WHERE u.id = t.id RETURNING t.a",
                    r#"UPDATE "bank_a".t SET a = u.a FROM "bank_a".u WHERE u.id = t.id RETURNING t.a"#,
                ),
                (
                    "UPDATE t SET a = (SELECT max(a) FROM u)",
                    r#"UPDATE "bank_a".t SET a = (SELECT max(a) FROM "bank_a".u)"#,
                ),
                (
                    "DELETE FROM t WHERE a IN (SELECT a FROM u) RETURNING *",
                    r#"DELETE FROM "bank_a".t WHERE a IN (SELECT a FROM "bank_a".u) RETURNING *"#,
                ),
                // DML targets are real tables even when a CTE has their name (as in SQLite).
                (
                    "WITH t AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM t",
                    r#"WITH t AS (SELECT 1 AS a) INSERT INTO "bank_a".t SELECT a FROM t"#,
                ),
                (
                    "WITH c AS (SELECT id FROM u) DELETE FROM t WHERE id IN (SELECT id FROM c)",
                    r#"WITH c AS (SELECT id FROM "bank_a".u) DELETE FROM "bank_a".t WHERE id IN (SELECT id FROM c)"#,
                ),
                (
                    "WITH c AS (SELECT 1) UPDATE c SET a = 1",
                    r#"WITH c AS (SELECT 1) UPDATE "bank_a".c SET a = 1"#,
                ),
                // Quoted names: the qualifier goes before the quote.
                (
                    r#"SELECT * FROM "accounts""#,
                    r#"SELECT * FROM "bank_a"."accounts""#,
                ),
                (
                    "SELECT * FROM [accounts]",
                    r#"SELECT * FROM "bank_a".[accounts]"#,
                ),
                (
                    "SELECT * FROM `accounts`",
                    r#"SELECT * FROM "bank_a".`accounts`"#,
                ),
                (
                    r#"SELECT * FROM "odd "" name""#,
                    r#"SELECT * FROM "bank_a"."odd "" name""#,
                ),
                // main. is the participant's own schema.
                ("SELECT * FROM main.t", r#"SELECT * FROM "bank_a".t"#),
                ("SELECT * FROM MAIN.t", r#"SELECT * FROM "bank_a".t"#),
                (
                    r#"SELECT * FROM "main"."t""#,
                    r#"SELECT * FROM "bank_a"."t""#,
                ),
                ("SELECT * FROM main . t", r#"SELECT * FROM "bank_a" . t"#),
                (
                    "SELECT * FROM main.sqlite_master",
                    r#"SELECT * FROM "bank_a".sqlite_master"#,
                ),
                (
                    "INSERT INTO main.t VALUES (1)",
                    r#"INSERT INTO "bank_a".t VALUES (1)"#,
                ),
                (
                    "SELECT main.t.a FROM main.t",
                    r#"SELECT "bank_a".t.a FROM "bank_a".t"#,
                ),
                // The schema table and the temp schema's table.
                (
                    "SELECT name FROM sqlite_master",
                    r#"SELECT name FROM "bank_a".sqlite_master"#,
                ),
                (
                    "SELECT name FROM sqlite_schema",
                    r#"SELECT name FROM "bank_a".sqlite_schema"#,
                ),
                (
                    "SELECT name FROM sqlite_temp_master",
                    "SELECT name FROM sqlite_temp_master",
                ),
                // Table-valued functions stay unqualified, their arguments do not.
                (
                    "SELECT j.value FROM t, json_each(t.doc) AS j",
                    r#"SELECT j.value FROM "bank_a".t, json_each(t.doc) AS j"#,
                ),
                (
                    "SELECT * FROM json_tree((SELECT doc FROM t))",
                    r#"SELECT * FROM json_tree((SELECT doc FROM "bank_a".t))"#,
                ),
                // The text is spliced: literals, spacing and comments survive.
                (
                    "SELECT 0x10, 0X1F FROM t",
                    r#"SELECT 0x10, 0X1F FROM "bank_a".t"#,
                ),
                ("SELECT x'0A' FROM t", r#"SELECT x'0A' FROM "bank_a".t"#),
                (
                    "/* lead */ SELECT a -- why\nFROM   t /* tail */;",
                    "/* lead */ SELECT a -- why\nFROM   \"bank_a\".t /* tail */;",
                ),
                ("select 1 from t;;", r#"select 1 from "bank_a".t;;"#),
                (
                    "SELECT 1e3, 'it''s' FROM t",
                    r#"SELECT 1e3, 'it''s' FROM "bank_a".t"#,
                ),
                // Non-ASCII text before a name: byte offsets differ from char columns.
                (
                    "SELECT 'é€𝄞' AS note FROM t WHERE n = 'ü'",
                    r#"SELECT 'é€𝄞' AS note FROM "bank_a".t WHERE n = 'ü'"#,
                ),
                (
                    "SELECT 'ä\nö' AS x,\n  'ß' FROM t JOIN\n\"ünï\" ON 1",
                    "SELECT 'ä\nö' AS x,\n  'ß' FROM \"bank_a\".t JOIN\n\"bank_a\".\"ünï\" ON 1",
                ),
                ("SELECT 1\r\nFROM t", "SELECT 1\r\nFROM \"bank_a\".t"),
                // DDL.
                (
                    "CREATE TABLE t (a INTEGER PRIMARY KEY, b REFERENCES u(id))",
                    r#"CREATE TABLE "bank_a".t (a INTEGER PRIMARY KEY, b REFERENCES u(id))"#,
                ),
                (
                    "CREATE TABLE IF NOT EXISTS t2 AS SELECT * FROM t",
                    r#"CREATE TABLE IF NOT EXISTS "bank_a".t2 AS SELECT * FROM "bank_a".t"#,
                ),
                ("CREATE TABLE main.t (a)", r#"CREATE TABLE "bank_a".t (a)"#),
                (
                    "CREATE INDEX i ON t (a)",
                    r#"CREATE INDEX "bank_a".i ON t (a)"#,
                ),
                (
                    "CREATE UNIQUE INDEX IF NOT EXISTS main.i ON t (a) WHERE a > 0",
                    r#"CREATE UNIQUE INDEX IF NOT EXISTS "bank_a".i ON t (a) WHERE a > 0"#,
                ),
                (
                    "ALTER TABLE t ADD COLUMN c TEXT",
                    r#"ALTER TABLE "bank_a".t ADD COLUMN c TEXT"#,
                ),
                (
                    "ALTER TABLE t RENAME TO u",
                    r#"ALTER TABLE "bank_a".t RENAME TO u"#,
                ),
                (
                    "EXPLAIN QUERY PLAN SELECT * FROM t",
                    r#"EXPLAIN QUERY PLAN SELECT * FROM "bank_a".t"#,
                ),
            ],
        );
    }

    #[test]
    fn escapes_the_schema_name() {
        run_table(
            r#"we"ird"#,
            &[
                ("SELECT * FROM t", r#"SELECT * FROM "we""ird".t"#),
                ("SELECT * FROM main.t", r#"SELECT * FROM "we""ird".t"#),
            ],
        );
        run_table("bänk b", &[("DELETE FROM t", r#"DELETE FROM "bänk b".t"#)]);
    }

    #[test]
    fn refuses_what_it_cannot_qualify() {
        use QualifyError as E;
        let foreign = |name: &str, schema: &str| E::ForeignSchema {
            name: name.to_owned(),
            schema: schema.to_owned(),
        };
        let rows: &[(&str, QualifyError)] = &[
            ("SELECT * FROM other.t", foreign("other.t", "other")),
            ("SELECT * FROM temp.t", foreign("temp.t", "temp")),
            ("SELECT * FROM bank_a.t", foreign("bank_a.t", "bank_a")),
            (
                "INSERT INTO other.t VALUES (1)",
                foreign("other.t", "other"),
            ),
            ("SELECT other.t.a FROM t", foreign("other.t.a", "other")),
            ("CREATE TABLE temp.t (a)", foreign("temp.t", "temp")),
            ("SELECT * FROM a.b.c", E::TooManyParts("a.b.c".to_owned())),
            (
                "SELECT * FROM pragma_table_info('t')",
                E::TableFunction("pragma_table_info".to_owned()),
            ),
            (
                "SELECT * FROM pragma_database_list",
                E::TableFunction("pragma_database_list".to_owned()),
            ),
            (
                "SELECT * FROM main.json_each('[1]')",
                E::TableFunction("main.json_each".to_owned()),
            ),
            (
                "SELECT * FROM sqlite_dbpage('other')",
                E::TableFunction("sqlite_dbpage".to_owned()),
            ),
            (
                "CREATE INDEX i ON main.t (a)",
                E::QualifiedIndexTable("main.t".to_owned()),
            ),
            ("CREATE INDEX ON t (a)", E::UnnamedIndex),
            ("CREATE TEMP TABLE t (a)", E::Temporary),
            ("CREATE VIEW v AS SELECT * FROM t", E::UnsupportedStatement),
            (
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM u; END",
                E::UnsupportedStatement,
            ),
            ("DROP TABLE t", E::UnsupportedStatement),
            ("ATTACH DATABASE 'x' AS y", E::UnsupportedStatement),
            ("PRAGMA journal_mode", E::UnsupportedStatement),
            ("VACUUM", E::UnsupportedStatement),
            ("BEGIN", E::UnsupportedStatement),
            ("SELECT 1 UNION TABLE t", E::UnsupportedStatement),
            ("SELECT 1; SELECT 2", E::NotOneStatement(2)),
            ("", E::NotOneStatement(0)),
            // SQLite takes a string literal as a table name; sqlparser gives it no position.
            (
                "SELECT * FROM 'accounts'",
                E::NoPosition("'accounts'".to_owned()),
            ),
        ];
        let mut failures = Vec::new();
        for (sql, expected) in rows {
            let got = qualify(sql, S);
            if got.as_ref() != Err(expected) {
                failures.push(format!("{sql:?}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        for sql in [
            // SQLite reads END as an alias and would run the DELETE unqualified.
            "SELECT 1 END; DELETE FROM t",
            "PRAGMA journal_mode=WAL",
            "SELECT * FROM t INDEXED BY i",
            "DETACH y",
        ] {
            assert!(
                matches!(qualify(sql, S), Err(E::Unparsable(_))),
                "{sql}: {:?}",
                qualify(sql, S)
            );
        }
        assert_eq!(
            qualify("SELECT 1", ""),
            Err(E::InvalidSchema(String::new()))
        );
    }

    #[test]
    fn errors_read_well() {
        let message = |sql| qualify(sql, S).unwrap_err().to_string();
        assert_eq!(
            message("SELECT * FROM other.t"),
            "other.t names schema other: only main (the participant's own schema) may be named"
        );
        assert_eq!(
            message("SELECT * FROM pragma_table_info('t')"),
            "table-valued function pragma_table_info is not allowed"
        );
        assert!(message("SELEC 1").starts_with("does not parse as one sqlite statement: "));
    }

    #[test]
    fn locations_count_chars_from_one() {
        // sqlparser 0.63: lines and columns start at 1, columns count chars (not bytes).
        let sql = "SELECT 'é€𝄞',\n 'ß', x FROM t";
        let statement = parse_one(sql).unwrap();
        let text = Text::new(sql);
        let mut seen = Vec::new();
        let _ = statement.visit(&mut RelationSpy(&mut seen));
        let [ident] = seen.as_slice() else {
            panic!("{seen:?}")
        };
        // Line 2 is ` 'ß', x FROM t`: `t` is char 14 but byte 15 of the line.
        assert_eq!((ident.span.start.line, ident.span.start.column), (2, 14));
        let (start, end) = text.ident_range(ident).unwrap();
        assert_eq!(&sql[start..end], "t");
        assert_eq!(start, sql.len() - 1);
    }

    struct RelationSpy<'a>(&'a mut Vec<Ident>);

    impl Visitor for RelationSpy<'_> {
        type Break = ();
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            self.0.extend(
                relation
                    .0
                    .iter()
                    .filter_map(|part| part.as_ident().cloned()),
            );
            ControlFlow::Continue(())
        }
    }
}
