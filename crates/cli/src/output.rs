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
    println!("{}", render(format, body, columns));
}

/// What [`print`] prints, without the final newline.
pub fn render(format: Format, body: &str, columns: &[&str]) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return body.trim_end().to_owned();
    };
    let rows: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match format {
        Format::Json => body.trim_end().to_owned(),
        Format::Id => rows
            .iter()
            .map(|item| {
                let id = item.get("readable_id").or_else(|| item.get("id"));
                id.and_then(Value::as_str).unwrap_or("").to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Human => {
            let mut table = Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header(columns.iter().map(|c| c.rsplit('.').next().unwrap_or(c)));
            for row in rows {
                table.add_row(columns.iter().map(|column| cell(row, column)));
            }
            table.to_string()
        }
    }
}
