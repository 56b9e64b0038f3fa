//! MySQL values as JSON, faithfully: numbers as numbers, DECIMAL as a
//! string (no precision lost), DATE as `YYYY-MM-DD`, DATETIME and TIMESTAMP
//! as ISO 8601 (TIMESTAMP in UTC, with `Z`: the session's time zone is
//! UTC), TIME as `[-]HH:MM:SS[.ffffff]`, JSON columns as JSON, text as
//! strings, and BIT, BLOB, BINARY and VARBINARY as base64.

use base64::Engine as _;
use mysql_async::Value as Mysql;
use mysql_async::consts::ColumnType;
use serde_json::Value;

/// The character set number of binary strings.
const BINARY_CHARSET: u16 = 63;

/// How one column's values are read, from its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Decimal,
    Date,
    DateTime,
    /// TIMESTAMP: a point in time, read in UTC.
    Timestamp,
    Json,
    Binary,
}

impl Kind {
    /// The kind of a column; `json` says the table declares it JSON (on
    /// MariaDB, a LONGTEXT with a `json_valid` check).
    pub fn of(column_type: ColumnType, charset: u16, json: bool) -> Kind {
        use ColumnType as T;
        match column_type {
            T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL => Kind::Decimal,
            T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => Kind::Date,
            T::MYSQL_TYPE_DATETIME | T::MYSQL_TYPE_DATETIME2 => Kind::DateTime,
            T::MYSQL_TYPE_TIMESTAMP | T::MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp,
            T::MYSQL_TYPE_JSON => Kind::Json,
            T::MYSQL_TYPE_BIT => Kind::Binary,
            _ if json => Kind::Json,
            T::MYSQL_TYPE_TINY_BLOB
            | T::MYSQL_TYPE_MEDIUM_BLOB
            | T::MYSQL_TYPE_LONG_BLOB
            | T::MYSQL_TYPE_BLOB
            | T::MYSQL_TYPE_STRING
            | T::MYSQL_TYPE_VAR_STRING
            | T::MYSQL_TYPE_VARCHAR
            | T::MYSQL_TYPE_GEOMETRY
                if charset == BINARY_CHARSET =>
            {
                Kind::Binary
            }
            _ => Kind::Plain,
        }
    }
}

/// Why a value could not be mapped (named in the entity's failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmappable(pub &'static str);

/// One value as JSON.
pub fn to_json(value: &Mysql, kind: Kind) -> Result<Value, Unmappable> {
    Ok(match value {
        Mysql::NULL => Value::Null,
        Mysql::Int(number) => Value::from(*number),
        Mysql::UInt(number) => Value::from(*number),
        Mysql::Float(number) => float(f64::from(*number)),
        Mysql::Double(number) => float(*number),
        Mysql::Date(year, month, day, hour, minute, second, micros) => {
            let date = format!("{year:04}-{month:02}-{day:02}");
            match kind {
                Kind::Date => Value::String(date),
                _ => {
                    let fraction = fraction(*micros);
                    let zone = if kind == Kind::Timestamp { "Z" } else { "" };
                    Value::String(format!(
                        "{date}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
                    ))
                }
            }
        }
        Mysql::Time(negative, days, hours, minutes, seconds, micros) => {
            let sign = if *negative { "-" } else { "" };
            let hours = u64::from(*days) * 24 + u64::from(*hours);
            let fraction = fraction(*micros);
            Value::String(format!(
                "{sign}{hours:02}:{minutes:02}:{seconds:02}{fraction}"
            ))
        }
        Mysql::Bytes(bytes) => match kind {
            Kind::Binary => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Kind::Json => serde_json::from_slice(bytes)
                .map_err(|_| Unmappable("a JSON column not valid JSON"))?,
            _ => Value::String(
                std::str::from_utf8(bytes)
                    .map_err(|_| Unmappable("a text column not valid UTF-8"))?
                    .to_owned(),
            ),
        },
    })
}

fn float(number: f64) -> Value {
    // JSON has no NaN or infinity (MySQL stores neither, but be safe).
    serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
}

fn fraction(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    }
}

/// A key or cursor as the entity id's text.
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// A stored cursor (as [`to_json`] made it) as a query parameter.
pub fn parameter(cursor: &Value) -> Mysql {
    match cursor {
        Value::Number(number) => {
            if let Some(value) = number.as_i64() {
                Mysql::Int(value)
            } else if let Some(value) = number.as_u64() {
                Mysql::UInt(value)
            } else {
                Mysql::Double(number.as_f64().unwrap_or_default())
            }
        }
        Value::String(text) => {
            // An ISO 8601 time as MySQL reads it: no `T`, no `Z`.
            let text = text.strip_suffix('Z').unwrap_or(text);
            let looks_like_time = text.len() >= 19 && text.as_bytes().get(10) == Some(&b'T');
            let text = if looks_like_time {
                text.replacen('T', " ", 1)
            } else {
                text.to_owned()
            };
            Mysql::Bytes(text.into_bytes())
        }
        Value::Bool(value) => Mysql::Int(i64::from(*value)),
        other => Mysql::Bytes(other.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Mysql, kind: Kind) -> Value {
        to_json(&value, kind).expect("mappable")
    }

    #[test]
    fn numbers_decimals_and_text_keep_their_meaning() {
        assert_eq!(map(Mysql::Int(-5), Kind::Plain), json!(-5));
        assert_eq!(map(Mysql::UInt(u64::MAX), Kind::Plain), json!(u64::MAX));
        assert_eq!(map(Mysql::Double(1.5), Kind::Plain), json!(1.5));
        assert_eq!(map(Mysql::Float(0.25), Kind::Plain), json!(0.25));
        // DECIMAL(30,10) keeps every digit, as text.
        let decimal = Mysql::Bytes(b"12345678901234567890.0123456789".to_vec());
        assert_eq!(
            map(decimal, Kind::Decimal),
            json!("12345678901234567890.0123456789")
        );
        assert_eq!(map(Mysql::Bytes("é".into()), Kind::Plain), json!("é"));
        assert_eq!(map(Mysql::NULL, Kind::Json), Value::Null);
        assert_eq!(
            to_json(&Mysql::Bytes(vec![0xff]), Kind::Plain),
            Err(Unmappable("a text column not valid UTF-8"))
        );
    }

    #[test]
    fn times_are_iso_8601() {
        let at = Mysql::Date(2026, 12, 6, 5, 4, 3, 0);
        assert_eq!(
            map(at.clone(), Kind::DateTime),
            json!("2026-12-06T05:04:03")
        );
        assert_eq!(
            map(at.clone(), Kind::Timestamp),
            json!("2026-12-06T05:04:03Z")
        );
        assert_eq!(map(at, Kind::Date), json!("2026-12-06"));
        let fine = Mysql::Date(2026, 1, 2, 3, 4, 5, 120);
        assert_eq!(
            map(fine, Kind::DateTime),
            json!("2026-01-02T03:04:05.000120")
        );
        assert_eq!(
            map(Mysql::Time(true, 1, 2, 3, 4, 0), Kind::Plain),
            json!("-26:03:04")
        );
    }

    #[test]
    fn binary_is_base64_and_json_is_json() {
        assert_eq!(
            map(Mysql::Bytes(vec![0, 1, 255]), Kind::Binary),
            json!("AAH/")
        );
        assert_eq!(
            map(Mysql::Bytes(br#"{"a":[1,true]}"#.to_vec()), Kind::Json),
            json!({"a": [1, true]})
        );
        assert!(to_json(&Mysql::Bytes(b"{".to_vec()), Kind::Json).is_err());
        assert_eq!(
            Kind::of(ColumnType::MYSQL_TYPE_BLOB, BINARY_CHARSET, false),
            Kind::Binary
        );
        assert_eq!(
            Kind::of(ColumnType::MYSQL_TYPE_BLOB, 45, false),
            Kind::Plain
        );
        assert_eq!(Kind::of(ColumnType::MYSQL_TYPE_BLOB, 45, true), Kind::Json);
        assert_eq!(
            Kind::of(ColumnType::MYSQL_TYPE_NEWDECIMAL, BINARY_CHARSET, false),
            Kind::Decimal
        );
    }

    #[test]
    fn stored_cursors_go_back_as_parameters_mysql_reads() {
        assert_eq!(parameter(&json!(42)), Mysql::Int(42));
        assert_eq!(
            parameter(&json!("2026-12-06T05:04:03.000120Z")),
            Mysql::Bytes(b"2026-12-06 05:04:03.000120".to_vec())
        );
        assert_eq!(parameter(&json!("abc")), Mysql::Bytes(b"abc".to_vec()));
        assert_eq!(id_text(&json!(7)), Some("7".to_owned()));
        assert_eq!(id_text(&Value::Null), None);
    }
}
