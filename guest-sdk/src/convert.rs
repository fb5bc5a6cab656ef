//! Reading [`Value`]s as Rust types: the [`FromValue`] trait, its implementations for the
//! standard types, and [`ConversionError`].

use std::fmt;

use crate::{Date, Datetime, Time, Timestamp, Value};

/// A Rust type a SQL [`Value`] can be read as, e.g. with [`Row::get`](crate::Row::get).
///
/// | target | accepts |
/// |---|---|
/// | `i64` | `int64`; a `decimal` with no fractional part |
/// | `i8` … `i32`, `u8` … `u64` | as `i64`, when the value fits (checked) |
/// | `f64` | `float64`, `int64`, `decimal` |
/// | `bool` | `boolean`; `int64` 0 or 1 (MySQL and SQLite have no boolean type) |
/// | `String` | `text`, and the text of a `decimal`, `uuid` or `json` |
/// | `Vec<u8>` | `bytes` |
/// | [`serde_json::Value`] | `json`, or `text` holding a JSON document (SQLite) |
/// | [`Date`], [`Time`], [`Datetime`], [`Timestamp`] | the same case |
/// | [`Value`] | anything, `NULL` included |
/// | `Option<T>` | `NULL` as `None`, anything `T` accepts as `Some` |
///
/// Every target but `Option<T>` and [`Value`] refuses `NULL` with [`ConversionError::Null`].
pub trait FromValue: Sized {
    /// Reads `value` as `Self`.
    fn from_value(value: &Value) -> Result<Self, ConversionError>;
}

/// Why a [`Value`] could not be read as a Rust type. [`Row::get`](crate::Row::get) wraps it
/// in [`Error::Column`](crate::Error::Column) with the column's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversionError {
    /// The value is `NULL` and the target cannot hold it; read an `Option<T>` instead.
    Null,
    /// The value is of another type.
    WrongType {
        /// The value's case ([`Value::kind`]).
        found: &'static str,
        /// What the target reads.
        expected: &'static str,
    },
    /// The value has the right type but does not fit the target, e.g. 300 as a `u8`.
    OutOfRange {
        /// The value, as text.
        value: String,
        /// The target type.
        target: &'static str,
    },
    /// The value has the right type but cannot be parsed, e.g. text that is not JSON.
    Invalid {
        /// What the value should have been.
        expected: &'static str,
        /// Why it is not.
        reason: String,
    },
}

impl ConversionError {
    /// `Null` for `NULL`, else `WrongType`: the error for a value a target does not accept.
    pub fn unexpected(value: &Value, expected: &'static str) -> ConversionError {
        match value {
            Value::Null => ConversionError::Null,
            other => ConversionError::WrongType {
                found: other.kind(),
                expected,
            },
        }
    }

    /// Writes the error as a sentence about `subject` ("column `x` is NULL").
    pub(crate) fn describe(&self, subject: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversionError::Null => write!(f, "{subject} is NULL"),
            ConversionError::WrongType { found, expected } => {
                write!(f, "{subject} is {found}, expected {expected}")
            }
            ConversionError::OutOfRange { value, target } => {
                write!(f, "{subject} holds {value}, which does not fit in {target}")
            }
            ConversionError::Invalid { expected, reason } => {
                write!(f, "{subject} is not valid {expected}: {reason}")
            }
        }
    }
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe("value", f)
    }
}

impl std::error::Error for ConversionError {}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        Ok(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Int64(v) => Ok(*v),
            Value::Decimal(text) => integral_decimal(text),
            other => Err(ConversionError::unexpected(other, "int64")),
        }
    }
}

/// An `i64` from decimal text with no fractional part ("42", "-7.00").
fn integral_decimal(text: &str) -> Result<i64, ConversionError> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.bytes().all(|b| b == b'0')
        && let Ok(v) = whole.parse()
    {
        return Ok(v);
    }
    Err(ConversionError::OutOfRange {
        value: text.to_owned(),
        target: "i64",
    })
}

macro_rules! from_value_narrowed {
    ($($t:ty),+) => {
        $(impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self, ConversionError> {
                let wide = i64::from_value(value)?;
                <$t>::try_from(wide).map_err(|_| ConversionError::OutOfRange {
                    value: wide.to_string(),
                    target: stringify!($t),
                })
            }
        })+
    };
}

from_value_narrowed!(i8, i16, i32, u8, u16, u32, u64);

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Float64(v) => Ok(*v),
            Value::Int64(v) => Ok(*v as f64),
            Value::Decimal(text) => text.parse().map_err(|_| ConversionError::Invalid {
                expected: "decimal",
                reason: format!("`{text}`"),
            }),
            other => Err(ConversionError::unexpected(other, "float64")),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Boolean(v) => Ok(*v),
            Value::Int64(0) => Ok(false),
            Value::Int64(1) => Ok(true),
            Value::Int64(v) => Err(ConversionError::OutOfRange {
                value: v.to_string(),
                target: "bool",
            }),
            other => Err(ConversionError::unexpected(other, "boolean")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Text(s) | Value::Decimal(s) | Value::Uuid(s) | Value::Json(s) => Ok(s.clone()),
            other => Err(ConversionError::unexpected(other, "text")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Bytes(b) => Ok(b.clone()),
            other => Err(ConversionError::unexpected(other, "bytes")),
        }
    }
}

impl FromValue for serde_json::Value {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Json(text) | Value::Text(text) => {
                serde_json::from_str(text).map_err(|e| ConversionError::Invalid {
                    expected: "JSON",
                    reason: e.to_string(),
                })
            }
            other => Err(ConversionError::unexpected(other, "json")),
        }
    }
}

macro_rules! from_value_case {
    ($($t:ident($name:literal)),+) => {
        $(impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self, ConversionError> {
                match value {
                    Value::$t(v) => Ok(*v),
                    other => Err(ConversionError::unexpected(other, $name)),
                }
            }
        })+
    };
}

from_value_case!(Date("date"), Time("time"), Datetime("datetime"));

impl FromValue for Timestamp {
    fn from_value(value: &Value) -> Result<Self, ConversionError> {
        match value {
            Value::Timestamp(micros) => Ok(Timestamp(*micros)),
            other => Err(ConversionError::unexpected(other, "timestamp")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_json() {
        assert_eq!(i64::from_value(&Value::decimal("-7.00")), Ok(-7));
        assert!(i64::from_value(&Value::decimal("12.50")).is_err());
        assert_eq!(f64::from_value(&Value::decimal("12.50")), Ok(12.5));
        assert_eq!(
            String::from_value(&Value::decimal("12.50")).unwrap(),
            "12.50"
        );
        let doc = serde_json::json!({"a": [1, 2]});
        assert_eq!(
            serde_json::Value::from_value(&Value::json(&doc)).unwrap(),
            doc
        );
        assert_eq!(
            serde_json::Value::from_value(&Value::from("{"))
                .unwrap_err()
                .to_string(),
            "value is not valid JSON: EOF while parsing an object at line 1 column 1"
        );
        assert_eq!(bool::from_value(&Value::Int64(1)), Ok(true));
        assert_eq!(
            Date::from_value(&Value::date(2024, 1, 31))
                .unwrap()
                .to_string(),
            "2024-01-31"
        );
    }
}
