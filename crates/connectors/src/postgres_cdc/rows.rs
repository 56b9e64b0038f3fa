//! Rows as entities, the same whether read from the snapshot or from the
//! stream: values arrive as Postgres's text output (the session runs in
//! UTC with ISO dates, so both paths print alike) and are mapped by type:
//! booleans, integers, floats and JSON as JSON, numeric as a number when it
//! is an integer that fits, otherwise (and everything else) as text. The id
//! is `schema.table:` and the key's text, or for a composite key the JSON
//! array of its texts. Also the snapshot's visibility test and the cursor.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pgoutput::Datum;

/// A table's columns in order: name, type oid, part of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub schema: String,
    pub name: String,
    pub columns: Vec<(String, u32, bool)>,
}

impl Shape {
    /// The id prefix of this table's entities.
    pub fn prefix(&self) -> String {
        format!("{}.{}:", self.schema, self.name)
    }

    /// The entity id of a row (its key columns' values), if the key is whole.
    pub fn entity_id(&self, values: &[Datum]) -> Option<String> {
        let key: Vec<&str> = self
            .columns
            .iter()
            .zip(values)
            .filter(|((_, _, key), _)| *key)
            .map(|(_, value)| match value {
                Datum::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect::<Option<_>>()?;
        match key.as_slice() {
            [] => None,
            [one] => Some(format!("{}{one}", self.prefix())),
            many => Some(format!("{}{}", self.prefix(), Value::from(many.to_vec()))),
        }
    }

    /// The row as JSON; `None` when a value is missing (unchanged TOAST).
    pub fn payload(&self, values: &[Datum]) -> Option<Value> {
        let mut row = Map::new();
        for ((name, oid, _), value) in self.columns.iter().zip(values) {
            let value = match value {
                Datum::Null => Value::Null,
                Datum::Unchanged => return None,
                Datum::Text(text) => to_json(text, *oid),
            };
            row.insert(name.clone(), value);
        }
        Some(Value::Object(row))
    }
}

/// A row read with every column as text (`col::text`), as the stream's
/// values are.
pub fn datums(row: &tokio_postgres::Row, columns: usize) -> Vec<Datum> {
    (0..columns)
        .map(|i| match row.get::<_, Option<String>>(i) {
            Some(text) => Datum::Text(text),
            None => Datum::Null,
        })
        .collect()
}

const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;

/// One value's text as JSON, by its type.
pub fn to_json(text: &str, oid: u32) -> Value {
    let parsed = match oid {
        BOOL => Some(Value::Bool(text == "t")),
        INT2 | INT4 | INT8 | OID => text.parse::<i64>().ok().map(Value::from),
        NUMERIC => text.parse::<i64>().ok().map(Value::from),
        FLOAT4 | FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        JSON | JSONB => serde_json::from_str(text).ok(),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

/// The snapshot a full sync read (`pg_current_snapshot()`'s text): a
/// transaction it saw must not be applied again from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    running: Vec<u64>,
}

impl Snapshot {
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let running = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|xid| xid.parse().ok())
                .collect::<Option<_>>()?,
        };
        Some(Snapshot {
            xmin,
            xmax,
            running,
        })
    }

    /// The transactions running when it was taken.
    pub fn running(&self) -> &[u64] {
        &self.running
    }

    /// Whether the transaction `xid` (32 bits, as the stream gives it; read
    /// in the epoch nearest the snapshot's) had committed when the
    /// snapshot was taken.
    pub fn saw(&self, xid: u32) -> bool {
        let epoch = self.xmax & !0xFFFF_FFFF;
        let mut full = epoch | u64::from(xid);
        if full > self.xmax + (1 << 31) {
            full = full.saturating_sub(1 << 32);
        }
        full < self.xmin || (full < self.xmax && !self.running.contains(&full))
    }
}

/// Where the stream stands, as stored between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The slot the position belongs to.
    pub slot: String,
    /// Everything committed before this LSN is stored.
    pub lsn: String,
    /// Whether the full sync that started the stream finished.
    pub complete: bool,
    /// The full sync's snapshot, while the stream may still hold
    /// transactions it saw (those committing before `snapshot_lsn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_lsn: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(keys: &[bool]) -> Shape {
        Shape {
            schema: "public".into(),
            name: "items".into(),
            columns: keys
                .iter()
                .enumerate()
                .map(|(i, key)| (format!("c{i}"), INT4, *key))
                .collect(),
        }
    }

    fn text(values: &[&str]) -> Vec<Datum> {
        values.iter().map(|v| Datum::Text((*v).into())).collect()
    }

    #[test]
    fn ids_name_the_table_and_the_key() {
        assert_eq!(
            shape(&[true, false]).entity_id(&text(&["7", "x"])),
            Some("public.items:7".into())
        );
        assert_eq!(
            shape(&[true, true]).entity_id(&text(&["7", "a\"b"])),
            Some(r#"public.items:["7","a\"b"]"#.into())
        );
        assert_eq!(shape(&[true]).entity_id(&[Datum::Null]), None);
        assert_eq!(shape(&[false]).entity_id(&text(&["1"])), None);
    }

    #[test]
    fn values_map_by_type() {
        assert_eq!(to_json("t", BOOL), json!(true));
        assert_eq!(to_json("-12", INT8), json!(-12));
        assert_eq!(to_json("12.50", NUMERIC), json!("12.50"));
        assert_eq!(
            to_json("99999999999999999999", NUMERIC),
            json!("99999999999999999999")
        );
        assert_eq!(to_json("42", NUMERIC), json!(42));
        assert_eq!(to_json("1.5", FLOAT8), json!(1.5));
        assert_eq!(to_json("NaN", FLOAT8), json!("NaN"));
        assert_eq!(to_json(r#"{"a": [1]}"#, JSONB), json!({"a": [1]}));
        assert_eq!(
            to_json("2026-12-06 05:04:03+00", 1184),
            json!("2026-12-06 05:04:03+00")
        );
        assert_eq!(
            shape(&[true, false]).payload(&[Datum::Text("1".into()), Datum::Null]),
            Some(json!({"c0": 1, "c1": null}))
        );
        assert_eq!(
            shape(&[true, false]).payload(&[Datum::Text("1".into()), Datum::Unchanged]),
            None
        );
    }

    #[test]
    fn the_snapshot_saw_what_committed_before_it() {
        let snapshot = Snapshot::parse("100:110:102,105").expect("a snapshot");
        assert!(snapshot.saw(99));
        assert!(snapshot.saw(101));
        assert!(!snapshot.saw(102));
        assert!(!snapshot.saw(105));
        assert!(!snapshot.saw(110));
        assert!(!snapshot.saw(200));
        // Across an epoch: xids are read near the snapshot's.
        let wrapped = Snapshot::parse("4294967290:4294967300:").expect("a snapshot");
        assert!(wrapped.saw(4294967295));
        assert!(!wrapped.saw(5));
        assert!(wrapped.saw(3));
        assert_eq!(Snapshot::parse("1:2"), None);
        assert_eq!(Snapshot::parse("1:x:"), None);
    }
}
