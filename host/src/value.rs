//! SQL values and result sets as the host sees them, independent of WIT bindings and of
//! any one database driver. `script::convert` maps them to and from the WIT types; each
//! participant file maps them to and from its driver.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// One SQL value, parameter or result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int64(i64),
    Float64(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Exact base-10 text, already validated.
    Decimal(String),
    Date(NaiveDate),
    Time(NaiveTime),
    /// Date and time without a time zone.
    DateTime(NaiveDateTime),
    /// UTC microseconds since the Unix epoch.
    Timestamp(i64),
    Uuid(uuid::Uuid),
    /// JSON document text, already validated.
    Json(String),
}

impl Value {
    /// The name of this value's case, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "float64",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Decimal(_) => "decimal",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::DateTime(_) => "datetime",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
        }
    }

    /// An estimate of the bytes this value occupies, used for result-size limits.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::Text(s) | Value::Decimal(s) | Value::Json(s) => s.len() + 8,
            Value::Bytes(b) => b.len() + 8,
            _ => 16,
        }
    }
}

/// A result column: its name and the database's name for its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_name: String,
}

/// The rows a query returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// Bounds on what one query may return; a query past either fails with a limit error
/// instead of buffering without end.
#[derive(Debug, Clone, Copy)]
pub struct ResultLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
}

impl ResultLimits {
    /// Counts rows into a result and fails once either bound is passed.
    pub fn tracker(self) -> ResultTracker {
        ResultTracker {
            limits: self,
            rows: 0,
            bytes: 0,
        }
    }
}

/// Running totals of one query's result, checked against its [`ResultLimits`].
#[derive(Debug)]
pub struct ResultTracker {
    limits: ResultLimits,
    rows: usize,
    bytes: usize,
}

impl ResultTracker {
    /// Accounts for one more row; `Err` carries the message of the limit it passed.
    pub fn add_row(&mut self, row: &[Value]) -> Result<(), String> {
        self.rows += 1;
        self.bytes += row.iter().map(Value::approx_size).sum::<usize>();
        if self.rows > self.limits.max_rows {
            return Err(format!(
                "the query returned more than {} rows (limits.max_result_rows)",
                self.limits.max_rows
            ));
        }
        if self.bytes > self.limits.max_bytes {
            return Err(format!(
                "the query returned more than {} bytes (limits.max_result_bytes)",
                self.limits.max_bytes
            ));
        }
        Ok(())
    }
}
