//! Every response a test receives through [`super::TestApp`] is checked
//! against the served OpenAPI description: its status must be documented
//! for the operation, and its JSON body must validate against the schema
//! documented for that status. So the description stays true wherever the
//! suite goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

/// (path template, method, status).
type ResponseKey = (String, String, String);

struct Description {
    root: Value,
    /// Compiled response schemas (none when the response has no JSON body).
    validators: Mutex<HashMap<ResponseKey, Option<Arc<jsonschema::Validator>>>>,
}

fn description() -> &'static Description {
    static DESCRIPTION: OnceLock<Description> = OnceLock::new();
    DESCRIPTION.get_or_init(|| Description {
        root: serde_json::from_str(syncway_api::openapi_json()).expect("the served description"),
        validators: Mutex::new(HashMap::new()),
    })
}

/// The documented path template `path` (no query) falls under.
pub fn template_of(paths: &serde_json::Map<String, Value>, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut best: Option<(usize, &String)> = None;
    for template in paths.keys() {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let fits = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') {
                !segment.is_empty()
            } else {
                literal += 1;
                part == segment
            }
        });
        // The most literal template wins (`/dead-letters/redrive` over a
        // `{id}` sibling).
        if fits && best.is_none_or(|(count, _)| literal > count) {
            best = Some((literal, template));
        }
    }
    best.map(|(_, template)| template.clone())
}

/// Follows a `$ref` within the description.
fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            root.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"))
        }
        None => value,
    }
}

/// Checks one response; panics (failing the test) when it does not match
/// the description. Operations the description does not have (a method
/// the route does not serve, an unknown path) are not checked here.
pub fn check(method: &str, path: &str, status: u16, body: &Value) {
    let description = description();
    let root = &description.root;
    let Some(paths) = root["paths"].as_object() else {
        panic!("the description has no paths");
    };
    let path = path.split('?').next().unwrap_or(path);
    let Some(template) = template_of(paths, path) else {
        return;
    };
    let method = method.to_ascii_lowercase();
    let Some(operation) = paths[&template].get(&method) else {
        return;
    };
    let status_text = status.to_string();
    let key = (template.clone(), method.clone(), status_text.clone());
    let validator = {
        let mut validators = description
            .validators
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        validators
            .entry(key)
            .or_insert_with(|| {
                let responses = &operation["responses"];
                let response = responses
                    .get(&status_text)
                    .or_else(|| responses.get("default"))
                    .unwrap_or_else(|| {
                        panic!("{method} {template} answered {status}, which it does not document")
                    });
                let response = resolve(root, response);
                let schema = response.pointer("/content/application~1json/schema")?;
                // The schema inside a document holding the components, so
                // that its `$ref`s resolve.
                let document = json!({
                    "components": root["components"],
                    "allOf": [schema],
                });
                Some(Arc::new(
                    jsonschema::draft202012::new(&document)
                        .unwrap_or_else(|e| panic!("schema of {method} {template} {status}: {e}")),
                ))
            })
            .clone()
    };
    if let Some(validator) = validator {
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} answered {status} with a body its documented schema refuses:\n{}\nbody: {body}",
            errors.join("\n")
        );
    }
}
