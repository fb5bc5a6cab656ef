//! Conversion between the WIT types of `wasmtx:script/types` and the host's [`Value`],
//! [`RowSet`] and errors. Guest values are untrusted: every date, decimal, uuid and JSON
//! text is validated here, and a bad one becomes a `bad-parameter` error.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::bindings::wasmtx::script::types as wit;
use crate::dialect::Dialect;
use crate::participant::StatementError;
use crate::value::{RowSet, Value};

pub fn dialect_to_wit(dialect: Dialect) -> wit::Dialect {
    match dialect {
        Dialect::Postgres => wit::Dialect::Postgres,
        Dialect::Mysql => wit::Dialect::Mysql,
        Dialect::Sqlite => wit::Dialect::Sqlite,
    }
}

/// A guest value as a host value; `position` (1-based) names the parameter in errors.
pub fn value_from_wit(value: wit::Value, position: usize) -> Result<Value, StatementError> {
    let bad = |what: String| StatementError::BadParameter(format!("parameter {position}: {what}"));
    Ok(match value {
        wit::Value::Null => Value::Null,
        wit::Value::Boolean(b) => Value::Boolean(b),
        wit::Value::Int64(i) => Value::Int64(i),
        wit::Value::Float64(f) => Value::Float64(f),
        wit::Value::Text(s) => Value::Text(s),
        wit::Value::Bytes(b) => Value::Bytes(b),
        wit::Value::Decimal(s) => {
            s.parse::<bigdecimal::BigDecimal>()
                .map_err(|_| bad(format!("`{}` is not a decimal number", clip(&s))))?;
            Value::Decimal(s)
        }
        wit::Value::Date(d) => {
            Value::Date(date_from_wit(d).ok_or_else(|| bad("not a valid date".into()))?)
        }
        wit::Value::Time(t) => {
            Value::Time(time_from_wit(t).ok_or_else(|| bad("not a valid time".into()))?)
        }
        wit::Value::Datetime(dt) => {
            let date = date_from_wit(dt.date).ok_or_else(|| bad("not a valid date".into()))?;
            let time = time_from_wit(dt.time).ok_or_else(|| bad("not a valid time".into()))?;
            Value::DateTime(NaiveDateTime::new(date, time))
        }
        wit::Value::Timestamp(micros) => {
            chrono::DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| bad("timestamp out of range".into()))?;
            Value::Timestamp(micros)
        }
        wit::Value::Uuid(s) => Value::Uuid(
            s.parse()
                .map_err(|_| bad(format!("`{}` is not a UUID", clip(&s))))?,
        ),
        wit::Value::Json(s) => {
            serde_json::from_str::<serde::de::IgnoredAny>(&s)
                .map_err(|e| bad(format!("not valid JSON: {e}")))?;
            Value::Json(s)
        }
    })
}

/// Converts all parameters, stopping at the first bad one.
pub fn params_from_wit(params: Vec<wit::Value>) -> Result<Vec<Value>, StatementError> {
    params
        .into_iter()
        .enumerate()
        .map(|(i, v)| value_from_wit(v, i + 1))
        .collect()
}

pub fn value_to_wit(value: Value) -> wit::Value {
    match value {
        Value::Null => wit::Value::Null,
        Value::Boolean(b) => wit::Value::Boolean(b),
        Value::Int64(i) => wit::Value::Int64(i),
        Value::Float64(f) => wit::Value::Float64(f),
        Value::Text(s) => wit::Value::Text(s),
        Value::Bytes(b) => wit::Value::Bytes(b),
        Value::Decimal(s) => wit::Value::Decimal(s),
        Value::Date(d) => wit::Value::Date(date_to_wit(d)),
        Value::Time(t) => wit::Value::Time(time_to_wit(t)),
        Value::DateTime(dt) => wit::Value::Datetime(wit::Datetime {
            date: date_to_wit(dt.date()),
            time: time_to_wit(dt.time()),
        }),
        Value::Timestamp(micros) => wit::Value::Timestamp(micros),
        Value::Uuid(u) => wit::Value::Uuid(u.hyphenated().to_string()),
        Value::Json(s) => wit::Value::Json(s),
    }
}

pub fn row_set_to_wit(rows: RowSet) -> wit::RowSet {
    wit::RowSet {
        columns: rows
            .columns
            .into_iter()
            .map(|c| wit::Column {
                name: c.name,
                type_name: c.type_name,
            })
            .collect(),
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value_to_wit).collect())
            .collect(),
    }
}

pub fn error_to_wit(err: StatementError) -> wit::Error {
    match err {
        StatementError::Forbidden(m) => wit::Error::Forbidden(m),
        StatementError::Database(db) => wit::Error::Database(wit::DatabaseError {
            code: db.code,
            message: db.message,
        }),
        StatementError::LimitExceeded(m) => wit::Error::LimitExceeded(m),
        StatementError::BadParameter(m) => wit::Error::BadParameter(m),
    }
}

fn date_from_wit(d: wit::Date) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(d.year, d.month.into(), d.day.into())
}

fn time_from_wit(t: wit::Time) -> Option<NaiveTime> {
    NaiveTime::from_hms_nano_opt(
        t.hour.into(),
        t.minute.into(),
        t.second.into(),
        t.nanosecond,
    )
    .filter(|_| t.nanosecond < 1_000_000_000)
}

fn date_to_wit(d: NaiveDate) -> wit::Date {
    use chrono::Datelike;
    wit::Date {
        year: d.year(),
        month: d.month() as u8,
        day: d.day() as u8,
    }
}

fn time_to_wit(t: NaiveTime) -> wit::Time {
    use chrono::Timelike;
    wit::Time {
        hour: t.hour() as u8,
        minute: t.minute() as u8,
        second: t.second() as u8,
        nanosecond: t.nanosecond(),
    }
}

/// The start of untrusted text, for messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod proptests;
