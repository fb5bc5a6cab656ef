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
//! - table-valued functions are left alone when on [`TABLE_FUNCTIONS`] and refused otherwise
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
    Expr, FromTable, Ident, ObjectName, Query, Select, SelectItem, SelectItemQualifiedWildcardKind,
    SetExpr, Statement, TableFactor, TableObject, Visit, Visitor,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Location;

/// Table-valued functions a statement may use; they are not tables and stay unqualified.
pub const TABLE_FUNCTIONS: &[&str] = &[
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
    #[error("{0} is not allowed in FROM")]
    UnsupportedTableFactor(&'static str),
    #[error("CREATE INDEX needs a name")]
    UnnamedIndex,
    #[error("CREATE INDEX takes its table unqualified (qualify the index name): {0}")]
    QualifiedIndexTable(String),
    #[error("cannot locate {0} in the statement text")]
    NoPosition(String),
    #[error("invalid schema name {0:?}")]
    InvalidSchema(String),
}

/// Rewrites `sql` so every table it names lives in `schema`. The text is spliced, not re-printed.
pub fn qualify(sql: &str, schema: &str) -> Result<String, QualifyError> {
    if schema.is_empty() || schema.contains('\0') {
        return Err(QualifyError::InvalidSchema(schema.to_owned()));
    }
    let statement = parse_one(sql)?;
    let mut finder = TableFinder {
        text: Text::new(sql),
        quoted_schema: quote_identifier(schema),
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

/// `name` as a double-quoted SQLite identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn parse_one(sql: &str) -> Result<Statement, QualifyError> {
    let mut statements = Parser::parse_sql(&SQLiteDialect {}, sql)
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

impl TableFinder<'_> {
    /// The identifier parts of a name; other kinds of parts are not table names.
    fn parts<'n>(&self, name: &'n ObjectName) -> Result<Vec<&'n Ident>, QualifyError> {
        name.0
            .iter()
            .map(|part| {
                part.as_ident()
                    .ok_or_else(|| QualifyError::NoPosition(name.to_string()))
            })
            .collect()
    }

    fn start_of(&self, name: &ObjectName) -> Result<usize, QualifyError> {
        let first = self.parts(name)?[0];
        Ok(self.text.ident_range(first)?.0)
    }

    fn in_cte_scope(&self, ident: &Ident) -> bool {
        let name = ident.value.to_ascii_lowercase();
        self.cte_scopes.iter().flatten().any(|cte| *cte == name)
    }

    /// Qualifies the object `name`: `"<schema>".` before an unqualified name, `main`
    /// replaced by `"<schema>"`, any other qualifier refused.
    fn qualify_name(&mut self, name: &ObjectName) -> Result<(), QualifyError> {
        match self.parts(name)?.as_slice() {
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
        let parts = self.parts(name)?;
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
                let parts = self.parts(name)?;
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
            _ => Err(QualifyError::UnsupportedTableFactor(
                "a FROM item other than a table, a subquery or a join",
            )),
        }
    }

    /// The table part of a column reference or qualified wildcard (`t` in `t.c`, `main.t` in
    /// `main.t.c` or `main.t.*`): a `main` qualifier is mapped, other schemas are refused.
    fn column_table(
        &mut self,
        table_parts: &[&Ident],
        whole: &dyn std::fmt::Display,
    ) -> Result<(), QualifyError> {
        match table_parts {
            [] | [_] => Ok(()),
            [schema, _] => self.map_main(schema, whole),
            _ => Err(QualifyError::TooManyParts(whole.to_string())),
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
        for item in &select.projection {
            if let SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) = item
            {
                let result = self
                    .parts(name)
                    .and_then(|parts| self.column_table(&parts, name));
                if let Err(error) = result {
                    return ControlFlow::Break(error);
                }
            }
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
            Expr::CompoundIdentifier(parts) => {
                let table_parts: Vec<&Ident> =
                    parts[..parts.len().saturating_sub(1)].iter().collect();
                let whole = ObjectName::from(parts.clone());
                break_on_error(self.column_table(&table_parts, &whole))
            }
            _ => ControlFlow::Continue(()),
        }
    }
}
