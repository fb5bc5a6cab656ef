//! Query results: [`Rows`] over the host's row set, and [`Row`] with typed column access.

use crate::{Column, Error, FromValue, RowSet, Value};

/// The rows a [`Participant::query`](crate::Participant::query) returned, with their
/// columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    set: RowSet,
}

impl Rows {
    /// The result columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.set.columns
    }

    /// The index of the column named `name` (see [`Row::get`] for how names match).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        column_index(&self.set.columns, name)
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.set.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.set.rows.is_empty()
    }

    /// The row at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Row<'_>> {
        self.set.rows.get(index).map(|values| self.row(values))
    }

    /// The first row, if there is one.
    pub fn first(&self) -> Option<Row<'_>> {
        self.get(0)
    }

    /// The rows, in order.
    pub fn iter(&self) -> RowsIter<'_> {
        RowsIter {
            columns: &self.set.columns,
            rows: self.set.rows.iter(),
        }
    }

    /// The host's row set, unwrapped.
    pub fn into_row_set(self) -> RowSet {
        self.set
    }

    fn row<'a>(&'a self, values: &'a [Value]) -> Row<'a> {
        Row {
            columns: &self.set.columns,
            values,
        }
    }
}

impl From<RowSet> for Rows {
    fn from(set: RowSet) -> Rows {
        Rows { set }
    }
}

impl<'a> IntoIterator for &'a Rows {
    type Item = Row<'a>;
    type IntoIter = RowsIter<'a>;
    fn into_iter(self) -> RowsIter<'a> {
        self.iter()
    }
}

/// An iterator over the [`Row`]s of [`Rows`].
#[derive(Debug, Clone)]
pub struct RowsIter<'a> {
    columns: &'a [Column],
    rows: std::slice::Iter<'a, Vec<Value>>,
}

impl<'a> Iterator for RowsIter<'a> {
    type Item = Row<'a>;
    fn next(&mut self) -> Option<Row<'a>> {
        let columns = self.columns;
        self.rows.next().map(|values| Row { columns, values })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl ExactSizeIterator for RowsIter<'_> {}

/// One row of [`Rows`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    columns: &'a [Column],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The value of the column named `name`, read as `T`.
    ///
    /// Names match exactly, or else ignoring ASCII case (PostgreSQL folds unquoted names
    /// to lower case, MySQL keeps them); the first match wins. Fails with
    /// [`Error::NoColumn`] when no column matches and [`Error::Column`] when the value
    /// cannot be read as `T` (read `Option<T>` for a column that may be `NULL`).
    ///
    /// ```no_run
    /// # fn f(row: wasmtx_guest::Row<'_>) -> Result<(), wasmtx_guest::Error> {
    /// let balance: i64 = row.get("balance")?;
    /// let note: Option<String> = row.get("note")?;
    /// # Ok(()) }
    /// ```
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T, Error> {
        let index = column_index(self.columns, name).ok_or_else(|| Error::NoColumn {
            name: name.to_owned(),
            columns: self.columns.iter().map(|c| c.name.clone()).collect(),
        })?;
        self.get_index(index)
    }

    /// The value of the column at `index` (from 0), read as `T`.
    pub fn get_index<T: FromValue>(&self, index: usize) -> Result<T, Error> {
        let value = self.values.get(index).ok_or(Error::NoColumnIndex {
            index,
            count: self.values.len(),
        })?;
        T::from_value(value).map_err(|error| Error::Column {
            column: self
                .columns
                .get(index)
                .map_or_else(|| index.to_string(), |c| c.name.clone()),
            error,
        })
    }

    /// The raw value of the column named `name`, if there is one.
    pub fn value(&self, name: &str) -> Option<&'a Value> {
        column_index(self.columns, name).and_then(|i| self.values.get(i))
    }

    /// The row's values, in column order.
    pub fn values(&self) -> &'a [Value] {
        self.values
    }

    /// The result columns, in order.
    pub fn columns(&self) -> &'a [Column] {
        self.columns
    }
}

/// The index of the column named `name`: an exact match, else one ignoring ASCII case.
fn column_index(columns: &[Column], name: &str) -> Option<usize> {
    columns.iter().position(|c| c.name == name).or_else(|| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConversionError, params};

    fn rows() -> Rows {
        let column = |name: &str, type_name: &str| Column {
            name: name.into(),
            type_name: type_name.into(),
        };
        Rows::from(RowSet {
            columns: vec![
                column("id", "TEXT"),
                column("balance", "BIGINT"),
                column("note", "TEXT"),
            ],
            rows: vec![
                params!["alice", 300, None::<&str>],
                params!["bob", -1, "hi"],
            ],
        })
    }

    #[test]
    fn typed_getters() {
        let rows = rows();
        assert_eq!(rows.len(), 2);
        let row = rows.first().unwrap();
        assert_eq!(row.get::<String>("id").unwrap(), "alice");
        assert_eq!(row.get::<i64>("BALANCE").unwrap(), 300);
        assert_eq!(row.get::<i32>("balance").unwrap(), 300);
        assert_eq!(row.get::<f64>("balance").unwrap(), 300.0);
        assert_eq!(row.get::<Option<String>>("note").unwrap(), None);
        assert_eq!(row.get_index::<u16>(1).unwrap(), 300);
        let notes: Vec<Option<String>> = rows.iter().map(|r| r.get("note").unwrap()).collect();
        assert_eq!(notes, [None, Some("hi".to_owned())]);
    }

    #[test]
    fn errors_read_well() {
        let rows = rows();
        let alice = rows.first().unwrap();
        let bob = rows.get(1).unwrap();
        let message = |e: Error| e.to_string();
        assert_eq!(
            message(alice.get::<i64>("x").unwrap_err()),
            "no column named `x` (columns: id, balance, note)"
        );
        assert_eq!(
            message(alice.get::<i64>("id").unwrap_err()),
            "column `id` is text, expected int64"
        );
        assert_eq!(
            message(alice.get::<String>("note").unwrap_err()),
            "column `note` is NULL"
        );
        assert_eq!(
            message(alice.get::<u8>("balance").unwrap_err()),
            "column `balance` holds 300, which does not fit in u8"
        );
        assert_eq!(
            message(bob.get::<u64>("balance").unwrap_err()),
            "column `balance` holds -1, which does not fit in u64"
        );
        assert_eq!(
            message(alice.get_index::<i64>(7).unwrap_err()),
            "no column at index 7 (the row has 3)"
        );
        assert!(matches!(
            alice.get::<bool>("note"),
            Err(Error::Column {
                error: ConversionError::Null,
                ..
            })
        ));
    }
}
