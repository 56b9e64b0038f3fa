//! What the CLI prints: on a terminal, tables of the fields that matter;
//! piped (or with `--json`), the API's response body as it is.

use comfy_table::Table;
use serde_json::Value;

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    /// Only the object's id (a collection's readable id).
    Id,
}

/// A field of an object as table text.
fn cell(value: &Value, path: &str) -> String {
    let mut current = value;
    for part in path.split('.') {
        current = &current[part];
    }
    match current {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Prints `body` (the API's answer): as it is for JSON, else the objects
/// (one, or a list) as a table of `columns` (dotted paths).
pub fn print(format: Format, body: &str, columns: &[&str]) {
    if format == Format::Json {
        println!("{}", body.trim_end());
        return;
    }
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        println!("{}", body.trim_end());
        return;
    };
    if format == Format::Id {
        let items = match &value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            let id = item.get("readable_id").or_else(|| item.get("id"));
            println!("{}", id.and_then(Value::as_str).unwrap_or(""));
        }
        return;
    }
    let rows: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(columns.iter().map(|c| c.rsplit('.').next().unwrap_or(c)));
    for row in rows {
        table.add_row(columns.iter().map(|column| cell(row, column)));
    }
    println!("{table}");
}
