//! Parsing a statement text with sqlparser, all of it.
//!
//! `Parser::parse_sql` stops at a bare `END` where it expects the end of a statement and
//! returns the statements before it, silently dropping the rest of the text: it reads
//! `SELECT 1 END; COMMIT` as `SELECT 1`, while SQLite reads `END` as a column alias and runs
//! both statements. The statement policy and the SQLite qualifier must see every statement
//! the database will run, so they parse with [`parse_whole`], which refuses leftover text.

use sqlparser::ast::Statement;
use sqlparser::dialect::Dialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The statements of `sql`, or an error if any of the text is not part of one.
pub(crate) fn parse_whole(dialect: &dyn Dialect, sql: &str) -> Result<Vec<Statement>, ParserError> {
    let mut parser = Parser::new(dialect).try_with_sql(sql)?;
    let statements = parser.parse_statements()?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return parser.expected("end of statement", rest);
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};

    #[test]
    fn text_after_a_bare_end_is_an_error_not_dropped() {
        let dialects: [&dyn Dialect; 3] =
            [&PostgreSqlDialect {}, &MySqlDialect {}, &SQLiteDialect {}];
        for dialect in dialects {
            let error = parse_whole(dialect, "SELECT 1 END; COMMIT").unwrap_err();
            assert_eq!(
                error.to_string(),
                "sql parser error: Expected: end of statement, found: END at Line: 1, Column: 10"
            );
            assert_eq!(parse_whole(dialect, "SELECT 1; ; -- x").unwrap().len(), 1);
            assert_eq!(
                parse_whole(dialect, "SELECT CASE WHEN a THEN 1 END FROM t")
                    .unwrap()
                    .len(),
                1
            );
        }
    }
}
