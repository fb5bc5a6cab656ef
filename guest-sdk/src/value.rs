//! Building [`Value`]s: `From` conversions for statement parameters, constructors for the
//! SQL types Rust has no standard type for, and the [`params!`](crate::params) macro.

use std::fmt;
use std::num::TryFromIntError;

use crate::{Date, Datetime, Time, Value};

/// A point in time as UTC microseconds since the Unix epoch: a `timestamptz` value.
///
/// Use it as a parameter (`Value::from(Timestamp(micros))`) or read a `timestamp` column
/// with `row.get::<Timestamp>("at")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Value {
    /// An exact decimal from its base-10 text, e.g. `Value::decimal("12.50")`.
    ///
    /// The host validates the text; a malformed one fails the statement with
    /// [`Error::BadParameter`](crate::Error::BadParameter).
    pub fn decimal(text: impl Into<String>) -> Value {
        Value::Decimal(text.into())
    }

    /// A UUID from its canonical hyphenated text.
    pub fn uuid(text: impl Into<String>) -> Value {
        Value::Uuid(text.into())
    }

    /// A JSON document, e.g. `Value::json(&serde_json::json!({"a": 1}))`.
    pub fn json(document: &serde_json::Value) -> Value {
        Value::Json(document.to_string())
    }

    /// A JSON document from its text (the host validates it).
    pub fn json_text(text: impl Into<String>) -> Value {
        Value::Json(text.into())
    }

    /// A calendar date (the host validates it).
    pub fn date(year: i32, month: u8, day: u8) -> Value {
        Value::Date(Date { year, month, day })
    }

    /// A time of day (the host validates it).
    pub fn time(hour: u8, minute: u8, second: u8, nanosecond: u32) -> Value {
        Value::Time(Time {
            hour,
            minute,
            second,
            nanosecond,
        })
    }

    /// A date and time of day without a time zone.
    pub fn datetime(date: Date, time: Time) -> Value {
        Value::Datetime(Datetime { date, time })
    }

    /// A `timestamptz` from UTC microseconds since the Unix epoch.
    pub fn timestamp(micros: i64) -> Value {
        Value::Timestamp(micros)
    }

    /// The name of this value's case, as used in error messages: `null`, `boolean`,
    /// `int64`, `float64`, `text`, `bytes`, `decimal`, `date`, `time`, `datetime`,
    /// `timestamp`, `uuid` or `json`.
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
            Value::Datetime(_) => "datetime",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
        }
    }

    /// Whether this is SQL `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

macro_rules! from_lossless {
    ($case:ident($inner:ty): $($t:ty),+) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$case(<$inner>::from(v))
            }
        })+
    };
}

from_lossless!(Int64(i64): i8, i16, i32, i64, u8, u16, u32);
from_lossless!(Float64(f64): f32, f64);
from_lossless!(Boolean(bool): bool);
from_lossless!(Text(String): &str, &String, String);
from_lossless!(Bytes(Vec<u8>): &[u8], Vec<u8>);

/// `u64` values above `i64::MAX` have no SQL `int64`: converting one fails instead of
/// wrapping.
impl TryFrom<u64> for Value {
    type Error = TryFromIntError;
    fn try_from(v: u64) -> Result<Value, TryFromIntError> {
        i64::try_from(v).map(Value::Int64)
    }
}

/// `usize` values above `i64::MAX` have no SQL `int64`: converting one fails instead of
/// wrapping.
impl TryFrom<usize> for Value {
    type Error = TryFromIntError;
    fn try_from(v: usize) -> Result<Value, TryFromIntError> {
        i64::try_from(v).map(Value::Int64)
    }
}

/// `None` becomes SQL `NULL`.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<Date> for Value {
    fn from(v: Date) -> Value {
        Value::Date(v)
    }
}

impl From<Time> for Value {
    fn from(v: Time) -> Value {
        Value::Time(v)
    }
}

impl From<Datetime> for Value {
    fn from(v: Datetime) -> Value {
        Value::Datetime(v)
    }
}

impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Value {
        Value::Timestamp(v.0)
    }
}

/// ISO 8601: `2024-01-31`.
impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// ISO 8601: `13:45:00`, with a fraction only when there is one (`13:45:00.250000000`).
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)?;
        if self.nanosecond != 0 {
            write!(f, ".{:09}", self.nanosecond)?;
        }
        Ok(())
    }
}

/// ISO 8601 without a zone: `2024-01-31T13:45:00`.
impl fmt::Display for Datetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}T{}", self.date, self.time)
    }
}

/// Statement parameters: `params![5, "k", None::<i64>]` is a `Vec<Value>` built with
/// [`Value::from`], ready for [`Participant::execute`](crate::Participant::execute) and
/// [`Participant::query`](crate::Participant::query). `params![]` is no parameters.
///
/// A type with a fallible conversion (`u64`, `usize`) must be converted first:
/// `Value::try_from(n)?`.
#[macro_export]
macro_rules! params {
    ($($param:expr),* $(,)?) => {
        <::std::vec::Vec<$crate::Value>>::from([$($crate::Value::from($param)),*])
    };
}
