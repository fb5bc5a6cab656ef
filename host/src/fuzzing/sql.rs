//! Hostile SQL for the statement policy's and the SQLite qualifier's properties, and an
//! independent reading of SQL text the way the database servers split it.
//!
//! Statements come from a small grammar of statement shapes whose holes are filled with
//! table references (schema qualifiers, CTE names, table functions), expressions (string
//! literals that hide `;` and keywords, comments, placeholders) and keywords in any case,
//! separated by spaces, newlines and comments; then a few mutations insert, delete or
//! duplicate characters and inject `;`, quotes, comment openers and control keywords.
//!
//! [`server_view`] is written from the servers' lexical rules, not from sqlparser, so a
//! property can compare what the policy allowed with what the server would execute.

use proptest::prelude::*;

use crate::dialect::Dialect;

/// A hostile statement text: grammar shapes, token soup or arbitrary characters, mutated.
pub(crate) fn statement() -> impl Strategy<Value = String> {
    let mutations = prop_oneof![3 => Just(0usize), 2 => 1usize..3, 1 => 3usize..6];
    let built = (prop::collection::vec(any::<u32>(), 96), mutations)
        .prop_map(|(picks, mutations)| build(&mut Picks::new(&picks), mutations));
    prop_oneof![
        8 => built,
        1 => "\\PC{0,48}",
        1 => "[ -~\\n]{0,48}",
    ]
}

/// Choices drawn from a list of numbers: shrinking the list towards zeros makes the first,
/// simplest choice everywhere.
struct Picks<'a> {
    picks: &'a [u32],
    next: usize,
}

impl<'a> Picks<'a> {
    fn new(picks: &'a [u32]) -> Self {
        Picks { picks, next: 0 }
    }

    /// A number below `n` (0 once the list is used up).
    fn below(&mut self, n: usize) -> usize {
        let pick = self.picks.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        pick as usize % n.max(1)
    }

    fn one_of<'t>(&mut self, items: &[&'t str]) -> &'t str {
        items[self.below(items.len())]
    }
}

/// Statement shapes of the transaction's work. `{T}` is a table reference, `{E}` an
/// expression, `{C}` a CTE name, `{S}` a statement of work; every other word in capitals is a
/// keyword and gets a random case.
const WORK_SHAPES: &[&str] = &[
    "SELECT {E} FROM {T} WHERE {E}",
    "SELECT * FROM {T} JOIN {T} ON {E}",
    "SELECT {E} , {E} FROM {T} , {T}",
    "WITH {C} AS ( SELECT {E} FROM {T} ) SELECT * FROM {T}",
    "WITH RECURSIVE {C} ( n ) AS ( SELECT 1 UNION ALL SELECT n FROM {T} ) SELECT * FROM {T}",
    "WITH {C} AS ( SELECT 1 ) INSERT INTO {T} SELECT * FROM {T}",
    "INSERT INTO {T} VALUES ( {E} , {E} )",
    "INSERT INTO {T} ( a ) SELECT {E} FROM {T}",
    "REPLACE INTO {T} VALUES ( {E} )",
    "UPDATE {T} SET a = {E} WHERE {E}",
    "UPDATE {T} SET a = {E} FROM {T} WHERE {E}",
    "DELETE FROM {T} WHERE {E}",
    "DELETE FROM {T} RETURNING *",
    "VALUES ( {E} )",
    "CREATE TABLE {T} ( a INTEGER REFERENCES {T} ( a ) , b TEXT )",
    "CREATE TABLE {T} AS SELECT * FROM {T}",
    "CREATE INDEX i ON {T} ( a )",
    "CREATE INDEX {T} ON t ( a )",
    "ALTER TABLE {T} ADD COLUMN c TEXT",
    "ALTER TABLE {T} RENAME TO u",
    "EXPLAIN {S}",
    "EXPLAIN QUERY PLAN {S}",
    "EXPLAIN ANALYZE {S}",
    "{S} ; {S}",
    "{S} ;",
];

/// Statements that control the transaction, the session or the connection.
const CONTROL_SHAPES: &[&str] = &[
    "BEGIN",
    "BEGIN IMMEDIATE",
    "BEGIN WORK",
    "START TRANSACTION",
    "COMMIT",
    "COMMIT WORK",
    "END",
    "END TRANSACTION",
    "ROLLBACK",
    "ROLLBACK TO s",
    "ROLLBACK TO SAVEPOINT s",
    "ABORT",
    "SAVEPOINT s",
    "RELEASE s",
    "RELEASE SAVEPOINT s",
    "XA START 'x'",
    "XA END 'x'",
    "XA PREPARE 'x'",
    "XA COMMIT 'x'",
    "XA RECOVER",
    "PREPARE TRANSACTION 'x'",
    "COMMIT PREPARED 'x'",
    "ROLLBACK PREPARED 'x'",
    "SET x = 1",
    "SET LOCAL x = 1",
    "SET @a = 1",
    "SET TRANSACTION READ ONLY",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SET autocommit = 0",
    "RESET ALL",
    "DISCARD ALL",
    "USE db",
    "ATTACH DATABASE 'f' AS y",
    "ATTACH 'f' AS {C}",
    "DETACH y",
    "DETACH DATABASE y",
    "PRAGMA journal_mode = WAL",
    "PRAGMA {T}",
    "VACUUM",
    "LOCK TABLES {T} WRITE",
    "LOCK TABLE {T}",
    "CREATE TEMP TABLE {T} ( a )",
    "CREATE TEMPORARY VIEW v AS SELECT 1",
    "LISTEN c",
    "NOTIFY c",
    "DO 1",
    "CALL p ( )",
];

const TABLES: &[&str] = &[
    "t",
    "accounts",
    "main.t",
    "MAIN.t",
    "main . t",
    "other.t",
    "\"b\".t",
    "temp.t",
    "TEMP.t",
    "bank_a.t",
    "`t`",
    "[t]",
    "\"t\"",
    "\"main\".\"t\"",
    "\"ma\"\"in\".t",
    "x",
    "X",
    "sqlite_master",
    "sqlite_temp_master",
    "json_each ( '[1]' )",
    "main.json_each ( '[1]' )",
    "generate_series ( 1 , 3 )",
    "pragma_table_info ( 't' )",
    "pragma_database_list",
    "t AS x",
    "main.t AS m",
    "( SELECT * FROM t )",
    "( SELECT * FROM other.t )",
    "'accounts'",
    "a.b.c",
    "t /* other. */",
    "\"t\"\"; COMMIT; --\"",
];

const EXPRESSIONS: &[&str] = &[
    "1",
    "a",
    "t.a",
    "x.a",
    "main.t.a",
    "other.t.a",
    "'x'",
    "'it''s; COMMIT'",
    "'; COMMIT; --'",
    "'/*'",
    "'--'",
    "\"a\"",
    "\"a\"\"; COMMIT\"",
    "`a`",
    "[a; COMMIT]",
    "?",
    "?1",
    "$1",
    ":a",
    "a + 1",
    "0x10",
    "0X1F",
    "NULL",
    "X'10'",
    "E'\\'; COMMIT; --'",
    "'\\'; COMMIT; --'",
    "\"\\\"; COMMIT; --\"",
    "$$ ; COMMIT $$",
    "$a$ ; COMMIT $a$",
    "count ( * )",
    "load_extension ( 'x' )",
    "pg_read_file ( 'x' )",
    "set_config ( 'a' , 'b' , false )",
    "@a := 1",
    "a IN ( SELECT a FROM {T} )",
    "( SELECT a FROM {T} )",
    "EXISTS ( SELECT 1 FROM {T} )",
    "CASE WHEN a THEN 'BEGIN' ELSE 'COMMIT' END",
    "a -- COMMIT\n",
    "a /* ; COMMIT */",
    "a #; COMMIT\n",
    "a --; COMMIT\n",
];

const CTE_NAMES: &[&str] = &["x", "X", "t", "accounts", "main", "\"x\""];

/// What separates tokens besides a single space; the comments are read differently by the
/// dialects (`#` on MySQL only, `/* /* */` nests on PostgreSQL only).
const SEPARATORS: &[&str] = &[
    "\n",
    "\t",
    "  ",
    "/**/",
    "/* c */",
    "-- c\n",
    "/* ; */",
    "/* COMMIT; */",
    "#c\n",
    "/* /* */",
];

/// Characters a mutation inserts.
const CHARACTERS: &[&str] = &[
    ";", "'", "\"", "`", "-", "/", "*", "$", "\\", "[", "]", "(", ")", "#", "!", " ", "\n", "é",
    "\0", ".", "?", ":", "@", "M",
];

/// Snippets a mutation injects.
const SNIPPETS: &[&str] = &[
    "; COMMIT",
    "; COMMIT; ",
    ";",
    "/*",
    "*/",
    "/*!",
    "/*M!",
    "-- ",
    "--",
    "#",
    "'",
    "$$",
    "$a$",
    "E'",
    " ATTACH ",
    " PRAGMA ",
    " BEGIN ",
    " XA ",
    " SAVEPOINT ",
    " SET ",
    " RELEASE ",
    " COMMIT ",
    "other.",
    "main.",
    "\"b\".",
    "temp.",
    "WITH x AS (SELECT 1) ",
    "EXPLAIN ",
];

/// Words a token soup is made of.
const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "WITH",
    "AS",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "CREATE",
    "TABLE",
    "INDEX",
    "ON",
    "ALTER",
    "EXPLAIN",
    "BEGIN",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "XA",
    "PREPARE",
    "TRANSACTION",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "DATABASE",
    "TEMP",
    "main",
    "other",
    "t",
    "x",
    ".",
    ",",
    "(",
    ")",
    ";",
    "*",
    "1",
    "'s'",
    "\"i\"",
    "?",
    "$1",
    "=",
];

/// A statement from the grammar or a token soup, with `mutations` mutations.
fn build(picks: &mut Picks, mutations: usize) -> String {
    let mut sql = match picks.below(8) {
        0 => token_soup(picks),
        1 | 2 => {
            let shape = picks.one_of(CONTROL_SHAPES);
            expand(picks, shape, 3)
        }
        _ => {
            let shape = picks.one_of(WORK_SHAPES);
            expand(picks, shape, 3)
        }
    };
    for _ in 0..mutations {
        mutate(picks, &mut sql);
    }
    sql
}

fn token_soup(picks: &mut Picks) -> String {
    let count = 1 + picks.below(12);
    let mut out = String::new();
    for i in 0..count {
        if i > 0 {
            out.push_str(separator(picks));
        }
        let token = picks.one_of(TOKENS);
        out.push_str(&random_case(picks, token));
    }
    out
}

/// A single space two times in three, otherwise another separator.
fn separator(picks: &mut Picks) -> &'static str {
    match picks.below(3) {
        0 => picks.one_of(SEPARATORS),
        _ => " ",
    }
}

/// Fills the holes of `template`; `depth` bounds nested statements and subqueries.
fn expand(picks: &mut Picks, template: &str, depth: usize) -> String {
    let mut out = String::new();
    for (i, word) in template.split(' ').enumerate() {
        if i > 0 {
            out.push_str(separator(picks));
        }
        match word {
            "{T}" => out.push_str(&expand_hole(picks, TABLES, depth)),
            "{E}" => out.push_str(&expand_hole(picks, EXPRESSIONS, depth)),
            "{C}" => out.push_str(picks.one_of(CTE_NAMES)),
            "{S}" if depth > 0 => {
                let shape = picks.one_of(WORK_SHAPES);
                out.push_str(&expand(picks, shape, depth - 1));
            }
            "{S}" => out.push_str("SELECT 1"),
            keyword if keyword.chars().all(|c| c.is_ascii_uppercase()) => {
                out.push_str(&random_case(picks, keyword));
            }
            other => out.push_str(other),
        }
    }
    out
}

fn expand_hole(picks: &mut Picks, items: &[&str], depth: usize) -> String {
    let item = picks.one_of(items);
    if item.contains('{') && depth > 0 {
        expand(picks, item, depth - 1)
    } else if item.contains('{') {
        "1".to_owned()
    } else {
        item.to_owned()
    }
}

/// `word` in upper, lower or mixed case.
fn random_case(picks: &mut Picks, word: &str) -> String {
    match picks.below(4) {
        0 | 1 => word.to_owned(),
        2 => word.to_ascii_lowercase(),
        _ => word
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
    }
}

/// One mutation at a character boundary: insert a character or a snippet, delete or
/// duplicate a few characters.
fn mutate(picks: &mut Picks, sql: &mut String) {
    let boundaries: Vec<usize> = sql
        .char_indices()
        .map(|(i, _)| i)
        .chain([sql.len()])
        .collect();
    let at_index = picks.below(boundaries.len());
    let at = boundaries[at_index];
    let until = boundaries[(at_index + 1 + picks.below(4)).min(boundaries.len() - 1)];
    match picks.below(4) {
        0 => sql.insert_str(at, picks.one_of(CHARACTERS)),
        1 => sql.insert_str(at, picks.one_of(SNIPPETS)),
        2 => sql.replace_range(at..until, ""),
        _ => {
            let copy = sql[at..until].to_owned();
            sql.insert_str(at, &copy);
        }
    }
}

/// A token of SQL text as a server reads it; literals and comments are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A bare word (keyword or unquoted identifier), in ASCII upper case.
    Word(String),
    /// A quoted identifier or a literal.
    Quoted,
    /// Any other character.
    Punct(char),
}

/// SQL text as the server splits it: the non-empty statements between top-level `;`.
#[derive(Debug)]
pub(crate) struct ServerView {
    pub(crate) statements: Vec<Vec<Token>>,
    /// A MySQL/MariaDB executable comment (`/*! */`, `/*M! */`): its text is run.
    pub(crate) executable_comment: bool,
}

/// Reads `sql` by the lexical rules of `dialect`'s server (PostgreSQL with
/// `standard_conforming_strings = on`, MySQL with backslash escapes, SQLite).
pub(crate) fn server_view(dialect: Dialect, sql: &str) -> ServerView {
    let chars: Vec<char> = sql.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut view = ServerView {
        statements: Vec::new(),
        executable_comment: false,
    };
    let mut current = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let next = at(i + 1);
        match c {
            ';' => {
                if !current.is_empty() {
                    view.statements.push(std::mem::take(&mut current));
                }
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '-' if next == Some('-') && dash_comment(dialect, at(i + 2)) => {
                i = line_end(&chars, i);
            }
            '#' if dialect == Dialect::Mysql => i = line_end(&chars, i),
            '/' if next == Some('*') => {
                if dialect == Dialect::Mysql
                    && (at(i + 2) == Some('!')
                        || (matches!(at(i + 2), Some('M' | 'm')) && at(i + 3) == Some('!')))
                {
                    view.executable_comment = true;
                }
                i = block_comment_end(dialect, &chars, i);
            }
            '\'' => {
                let backslashes = dialect == Dialect::Mysql;
                i = quoted_end(&chars, i, '\'', backslashes);
                current.push(Token::Quoted);
            }
            '"' => {
                let backslashes = dialect == Dialect::Mysql;
                i = quoted_end(&chars, i, '"', backslashes);
                current.push(Token::Quoted);
            }
            '`' if dialect != Dialect::Postgres => {
                i = quoted_end(&chars, i, '`', false);
                current.push(Token::Quoted);
            }
            '[' if dialect == Dialect::Sqlite => {
                i = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map_or(chars.len(), |end| i + end + 1);
                current.push(Token::Quoted);
            }
            '$' if dialect == Dialect::Postgres => {
                i = match dollar_quote_end(&chars, i) {
                    Some(end) => {
                        current.push(Token::Quoted);
                        end
                    }
                    None => {
                        current.push(Token::Punct('$'));
                        i + 1
                    }
                };
            }
            c if word_start(dialect, c) => {
                let end = (i..chars.len())
                    .find(|&j| !word_continue(chars[j]))
                    .unwrap_or(chars.len());
                let word: String = chars[i..end].iter().collect();
                if dialect == Dialect::Postgres
                    && word.eq_ignore_ascii_case("e")
                    && at(end) == Some('\'')
                {
                    i = quoted_end(&chars, end, '\'', true);
                    current.push(Token::Quoted);
                } else {
                    current.push(Token::Word(word.to_ascii_uppercase()));
                    i = end;
                }
            }
            other => {
                current.push(Token::Punct(other));
                i += 1;
            }
        }
    }
    if !current.is_empty() {
        view.statements.push(current);
    }
    view
}

/// Whether `--` starts a comment: always, except on MySQL, where whitespace, a control
/// character or the end of the text must follow it.
fn dash_comment(dialect: Dialect, after: Option<char>) -> bool {
    dialect != Dialect::Mysql || after.is_none_or(|c| c.is_whitespace() || c.is_control())
}

fn line_end(chars: &[char], from: usize) -> usize {
    chars[from..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(chars.len(), |end| from + end + 1)
}

/// The end of the block comment starting at `from`. PostgreSQL nests them; elsewhere the
/// first `*/` closes it.
fn block_comment_end(dialect: Dialect, chars: &[char], from: usize) -> usize {
    let nests = dialect == Dialect::Postgres;
    let mut depth = 1;
    let mut i = from + 2;
    while i < chars.len() {
        let next = chars.get(i + 1).copied();
        if nests && chars[i] == '/' && next == Some('*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && next == Some('/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The end of the quoted text starting at `from`: a doubled quote stands for itself, and
/// with `backslashes` a backslash escapes the next character.
fn quoted_end(chars: &[char], from: usize, quote: char, backslashes: bool) -> usize {
    let mut i = from + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if backslashes => i += 2,
            c if c == quote && chars.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The end of a PostgreSQL dollar-quoted string (`$tag$ ... $tag$`) starting at `from`, or
/// None if the `$` starts none (`$1` is a parameter).
fn dollar_quote_end(chars: &[char], from: usize) -> Option<usize> {
    let tag_end = (from + 1..chars.len())
        .find(|&j| !(chars[j] == '_' || chars[j].is_alphanumeric() || !chars[j].is_ascii()))?;
    let tag = &chars[from..=tag_end];
    if chars[tag_end] != '$' || tag.get(1).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    let body = tag_end + 1;
    Some(
        (body..chars.len())
            .find(|&j| chars[j..].starts_with(tag))
            .map_or(chars.len(), |end| end + tag.len()),
    )
}

fn word_start(dialect: Dialect, c: char) -> bool {
    c.is_ascii_alphabetic()
        || c == '_'
        || !c.is_ascii()
        || (dialect == Dialect::Mysql && c.is_ascii_digit())
}

fn word_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

impl ServerView {
    /// The bare words of the statement at `index`.
    pub(crate) fn words(&self, index: usize) -> Vec<&str> {
        self.statements[index]
            .iter()
            .filter_map(|token| match token {
                Token::Word(word) => Some(word.as_str()),
                _ => None,
            })
            .collect()
    }
}
