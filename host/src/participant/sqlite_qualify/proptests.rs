//! Properties of the SQLite qualifier over hostile SQL: it never panics, and a statement it
//! qualifies is one statement, as SQLite reads it, whose every table reference is qualified
//! with the participant's schema (or is a CTE, a table-valued function, the temporary
//! catalog, or the table of a `CREATE INDEX`, which SQLite resolves in the index's schema).
//! The output is re-parsed and walked here, not taken from the qualifier's own walk.

use std::collections::HashSet;
use std::ops::ControlFlow;

use proptest::prelude::*;
use sqlparser::ast::{Expr, Ident, ObjectName, Query, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::SQLiteDialect;

use super::{TABLE_FUNCTIONS, qualify};
use crate::dialect::Dialect;
use crate::fuzzing::sql::{server_view, statement};
use crate::sql_parse::parse_whole;

/// Participant names, including ones that need quoting and one the generator also writes.
const SCHEMAS: &[&str] = &["bank_a", "b", "we\"ird", "bänk b", "x"];

/// Every name of a re-parsed statement that could denote a table.
#[derive(Default)]
struct Names {
    relations: Vec<ObjectName>,
    cte_names: HashSet<String>,
    table_functions: HashSet<String>,
    /// Tables of `CREATE INDEX`, which SQLite looks up in the index's schema.
    index_tables: Vec<ObjectName>,
    column_paths: Vec<Vec<Ident>>,
}

impl Visitor for Names {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        if let Statement::CreateIndex(index) = statement {
            self.index_tables.push(index.table_name.clone());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let ctes = query.with.iter().flat_map(|with| &with.cte_tables);
        self.cte_names
            .extend(ctes.map(|cte| cte.alias.name.value.to_ascii_lowercase()));
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, table_factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = table_factor
        {
            self.table_functions
                .insert(name.to_string().to_ascii_lowercase());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.push(relation.clone());
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr {
            self.column_paths.push(parts.clone());
        }
        ControlFlow::Continue(())
    }
}

/// Why `qualified` (the qualifier's output for `schema`) could reach outside `schema`.
fn escape(qualified: &str, schema: &str) -> Option<String> {
    let statements = server_view(Dialect::Sqlite, qualified).statements.len();
    if statements != 1 {
        return Some(format!("SQLite reads {statements} statements"));
    }
    let statement = match parse_whole(&SQLiteDialect {}, qualified).as_deref() {
        Ok([statement]) => statement.clone(),
        other => return Some(format!("it does not re-parse as one statement: {other:?}")),
    };
    let mut names = Names::default();
    let _ = statement.visit(&mut names);
    let is_schema = |ident: &Ident| ident.value == schema && ident.quote_style == Some('"');
    for relation in &names.relations {
        let parts: Vec<&Ident> = relation
            .0
            .iter()
            .filter_map(|part| part.as_ident())
            .collect();
        let allowed = match parts.as_slice() {
            [qualifier, _] => is_schema(qualifier),
            [name] => {
                let lowered = name.value.to_ascii_lowercase();
                names.cte_names.contains(&lowered)
                    || (names.table_functions.contains(&lowered)
                        && TABLE_FUNCTIONS.contains(&lowered.as_str()))
                    || matches!(
                        lowered.as_str(),
                        "sqlite_temp_master" | "sqlite_temp_schema"
                    )
                    || names.index_tables.contains(relation)
            }
            _ => false,
        };
        if !allowed || parts.len() != relation.0.len() {
            return Some(format!("it names table {relation}"));
        }
    }
    for path in &names.column_paths {
        if path.len() > 2 && !is_schema(&path[0]) {
            return Some(format!(
                "it names column {}",
                ObjectName::from(path.clone())
            ));
        }
    }
    None
}

proptest! {
    #![proptest_config(crate::fuzzing::config(20_000))]

    #[test]
    fn qualified_statements_name_only_their_schema(
        sql in statement(),
        schema in prop::sample::select(SCHEMAS),
    ) {
        if let Ok(qualified) = qualify(&sql, schema)
            && let Some(why) = escape(&qualified, schema)
        {
            return Err(TestCaseError::fail(format!(
                "{sql:?} qualified for {schema:?} as {qualified:?}, but {why}"
            )));
        }
    }

    #[test]
    fn any_schema_name_is_taken_or_refused_without_a_panic(
        sql in statement(),
        schema in "\\PC{0,12}",
    ) {
        if let Ok(qualified) = qualify(&sql, &schema) {
            prop_assert!(escape(&qualified, &schema).is_none(), "{qualified:?}");
        }
    }
}
