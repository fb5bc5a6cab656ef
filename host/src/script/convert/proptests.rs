//! Properties of the value conversion at the WIT boundary over arbitrary guest values: dates
//! and times out of range, decimals that are not numbers, invalid uuids and JSON, NaN and
//! infinite floats, huge strings. A guest value becomes a host value or a typed
//! `bad-parameter` error naming its position, never a panic; a valid value round-trips.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use proptest::prelude::*;

use super::{params_from_wit, value_from_wit, value_to_wit, wit};
use crate::participant::StatementError;
use crate::value::Value;

fn wit_date() -> impl Strategy<Value = wit::Date> {
    let year = prop_oneof![any::<i32>(), -300_000i32..300_000];
    let month = prop_oneof![any::<u8>(), 0u8..14];
    let day = prop_oneof![any::<u8>(), 0u8..33];
    (year, month, day).prop_map(|(year, month, day)| wit::Date { year, month, day })
}

fn wit_time() -> impl Strategy<Value = wit::Time> {
    let nanosecond = prop_oneof![
        any::<u32>(),
        999_999_990u32..1_000_000_010,
        Just(1_999_999_999)
    ];
    (0u8..64, 0u8..64, 0u8..64, nanosecond).prop_map(|(hour, minute, second, nanosecond)| {
        wit::Time {
            hour,
            minute,
            second,
            nanosecond,
        }
    })
}

/// Text that is sometimes a number, sometimes almost one, and sometimes anything.
fn decimal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-+]?[0-9]{0,6}(\\.[0-9]{0,6})?([eE][-+]?[0-9]{0,24})?",
        prop::sample::select(
            &[
                "NaN",
                "inf",
                "-Infinity",
                "",
                ".",
                "1e",
                "0x10",
                "1_000",
                "١٢"
            ][..]
        )
        .prop_map(str::to_owned),
        "\\PC{0,16}",
    ]
}

fn uuid_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u128>().prop_map(|bits| uuid::Uuid::from_u128(bits).hyphenated().to_string()),
        any::<u128>().prop_map(|bits| uuid::Uuid::from_u128(bits).braced().to_string()),
        any::<u128>().prop_map(|bits| uuid::Uuid::from_u128(bits).simple().to_string()),
        "[0-9a-fA-FgG{}-]{0,40}",
        "\\PC{0,40}",
    ]
}

fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\[\\]{}\",:0-9a-z ]{0,24}",
        (1usize..200_000).prop_map(|depth| "[".repeat(depth)),
        (1usize..2_000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        "\\PC{0,24}",
    ]
}

/// Short text, or occasionally a huge one.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "\\PC{0,32}",
        1 => (0usize..4 << 20).prop_map(|len| "x".repeat(len)),
    ]
}

fn wit_value() -> impl Strategy<Value = wit::Value> {
    prop_oneof![
        Just(wit::Value::Null),
        any::<bool>().prop_map(wit::Value::Boolean),
        any::<i64>().prop_map(wit::Value::Int64),
        any::<f64>().prop_map(wit::Value::Float64),
        text().prop_map(wit::Value::Text),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(wit::Value::Bytes),
        decimal_text().prop_map(wit::Value::Decimal),
        wit_date().prop_map(wit::Value::Date),
        wit_time().prop_map(wit::Value::Time),
        (wit_date(), wit_time())
            .prop_map(|(date, time)| wit::Value::Datetime(wit::Datetime { date, time })),
        any::<i64>().prop_map(wit::Value::Timestamp),
        uuid_text().prop_map(wit::Value::Uuid),
        json_text().prop_map(wit::Value::Json),
    ]
}

/// Valid host values, as a participant's driver would produce them.
fn host_value() -> impl Strategy<Value = Value> {
    let date = (-262_000i32..262_000, 1u32..13, 1u32..29)
        .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).expect("a valid date"));
    let time = (0u32..24, 0u32..60, 0u32..60, 0u32..1_000_000_000)
        .prop_map(|(h, m, s, n)| NaiveTime::from_hms_nano_opt(h, m, s, n).expect("a valid time"));
    let micros_range = DateTime::<chrono::Utc>::MIN_UTC.timestamp_micros()
        ..=DateTime::<chrono::Utc>::MAX_UTC.timestamp_micros();
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::Int64),
        any::<f64>().prop_map(Value::Float64),
        "\\PC{0,32}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
        "-?[0-9]{1,20}(\\.[0-9]{1,20})?".prop_map(Value::Decimal),
        date.clone().prop_map(Value::Date),
        time.clone().prop_map(Value::Time),
        (date, time).prop_map(|(d, t)| Value::DateTime(NaiveDateTime::new(d, t))),
        micros_range.prop_map(Value::Timestamp),
        any::<u128>().prop_map(|bits| Value::Uuid(uuid::Uuid::from_u128(bits))),
        "\\{\"[a-z]{0,8}\": \\[[1-9][0-9]{0,7}, null, true\\]\\}".prop_map(Value::Json),
    ]
}

/// Whether a host value came from exactly this guest value (uuids are normalized, floats
/// compare by bits so NaN counts).
fn same(value: &Value, original: &wit::Value) -> bool {
    match (value_to_wit(value.clone()), original) {
        (wit::Value::Float64(a), wit::Value::Float64(b)) => a.to_bits() == b.to_bits(),
        (wit::Value::Uuid(a), wit::Value::Uuid(b)) => {
            uuid::Uuid::parse_str(&a).ok() == uuid::Uuid::parse_str(b).ok()
        }
        (back, original) => format!("{back:?}") == format!("{original:?}"),
    }
}

fn same_host(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float64(a), Value::Float64(b)) => a.to_bits() == b.to_bits(),
        (a, b) => a == b,
    }
}

proptest! {
    #![proptest_config(crate::fuzzing::config(5_000))]

    #[test]
    fn a_guest_value_is_taken_or_refused_as_a_bad_parameter(
        value in wit_value(),
        position in 1usize..100,
    ) {
        let shown = format!("{value:?}");
        match value_from_wit(value.clone(), position) {
            Ok(host) => prop_assert!(same(&host, &value), "{shown:.200} came back different"),
            Err(StatementError::BadParameter(message)) => {
                let prefix = format!("parameter {position}: ");
                prop_assert!(message.starts_with(&prefix), "{message}");
                prop_assert!(message.len() < 400, "the message carries the value: {message:.400}");
            }
            Err(other) => prop_assert!(false, "{shown:.200}: not a bad-parameter error: {other:?}"),
        }
    }

    #[test]
    fn parameters_are_refused_at_the_first_bad_one(
        values in prop::collection::vec(wit_value(), 0..6),
    ) {
        let first_bad = values
            .iter()
            .position(|value| value_from_wit(value.clone(), 1).is_err());
        match (params_from_wit(values.clone()), first_bad) {
            (Ok(params), None) => prop_assert_eq!(params.len(), values.len()),
            (Err(StatementError::BadParameter(message)), Some(index)) => {
                let prefix = format!("parameter {}: ", index + 1);
                prop_assert!(message.starts_with(&prefix), "{message}");
            }
            (got, expected) => prop_assert!(false, "{got:?}, expected a refusal at {expected:?}"),
        }
    }

    #[test]
    fn a_host_value_round_trips(value in host_value()) {
        let back = value_from_wit(value_to_wit(value.clone()), 1);
        prop_assert!(
            back.as_ref().is_ok_and(|back| same_host(back, &value)),
            "{value:?} came back as {back:?}"
        );
    }
}
