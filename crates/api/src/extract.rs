//! Request parsing with the contract's 422 bodies: path UUIDs, query
//! parameters and JSON bodies. Handlers take raw parts and parse them here,
//! so that every malformed input names its location and none becomes a 500.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ApiError, FieldError, Result};

/// The raw (undecoded) path parameters; a path that is not valid UTF-8
/// is a 422 like any other malformed parameter.
pub struct PathParams(RawPathParams);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::invalid(&["path"], "Path is not valid UTF-8", "string_unicode")
            })?;
        // No parameter can hold a NUL (Postgres text cannot): refused here
        // for every route, not left to fail as a 500 in a query.
        if let Some((name, _)) = params.iter().find(|(_, value)| value.contains('\0')) {
            return Err(ApiError::invalid(
                &["path", name],
                "Input should not contain a NUL character",
                "string_type",
            ));
        }
        Ok(PathParams(params))
    }
}

impl PathParams {
    /// The named parameter ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
            .unwrap_or_default()
    }
}

/// A UUID path parameter, in any case and any of the usual spellings.
pub fn path_uuid(params: &PathParams, name: &str) -> Result<Uuid> {
    let raw = params.get(name);
    Uuid::parse_str(raw).map_err(|error| {
        ApiError::invalid(
            &["path", name],
            format!("Input should be a valid UUID, {error}"),
            "uuid_parsing",
        )
    })
}

/// Query parameters, decoded once; typed accessors report 422s.
#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> Result<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
            .map_err(|_| {
                ApiError::invalid(&["query"], "Query string is not valid", "query_parsing")
            })?;
        // No parameter can hold a NUL (Postgres text cannot): refused here,
        // not left to fail as a 500 in a query.
        if let Some((name, _)) = pairs.iter().find(|(_, value)| value.contains('\0')) {
            return Err(ApiError::invalid(
                &["query", name],
                "Input should not contain a NUL character",
                "string_type",
            ));
        }
        Ok(QueryParams(pairs))
    }

    /// The last value given for `name` (repeated parameters: last wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every parameter given, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Every value given for `name`, in order (`a=1&a=2`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// true/false/1/0/yes/no/on/off, in any case.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ApiError::invalid(
                &["query", name],
                "Input should be a valid boolean, unable to interpret input",
                "bool_parsing",
            )),
        }
    }

    /// An integer within `min..=max`.
    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let value: i64 = raw.trim().parse().map_err(|_| {
            ApiError::invalid(
                &["query", name],
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
            )
        })?;
        if value < min {
            return Err(ApiError::invalid(
                &["query", name],
                format!("Input should be greater than or equal to {min}"),
                "greater_than_equal",
            ));
        }
        if value > max {
            return Err(ApiError::invalid(
                &["query", name],
                format!("Input should be less than or equal to {max}"),
                "less_than_equal",
            ));
        }
        Ok(value)
    }
}

/// Whether `value` holds a NUL in a string or a key; `at` is left at the
/// first one's place.
fn holds_nul(value: &Value, at: &mut Vec<Value>) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
            at.push(index.into());
            let found = holds_nul(item, at);
            if !found {
                at.pop();
            }
            found
        }),
        Value::Object(map) => map.iter().any(|(key, item)| {
            at.push(key.as_str().into());
            let found = key.contains('\0') || holds_nul(item, at);
            if !found {
                at.pop();
            }
            found
        }),
        _ => false,
    }
}

/// Parses a JSON body into `T`, reporting where it is wrong.
pub fn json_body<T: DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::invalid(&["body"], "Could not read the request body", "body_read")
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(&["body"], "Field required", "missing"));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::Validation(vec![FieldError {
            loc: vec!["body".into(), error.column().into()],
            msg: format!("JSON decode error: {error}"),
            kind: "json_invalid".into(),
        }])
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            &["body"],
            "Input should be a valid dictionary or object",
            "model_attributes_type",
        ));
    }
    // No string syncway stores can hold a NUL (Postgres text and jsonb
    // cannot): refused here, naming where it is, not left to fail as a 500.
    let mut at = vec![Value::from("body")];
    if holds_nul(&value, &mut at) {
        return Err(ApiError::Validation(vec![FieldError {
            loc: at,
            msg: "Input should not contain a NUL character".into(),
            kind: "string_type".into(),
        }]));
    }
    serde_path_to_error::deserialize(&value).map_err(|error| {
        let mut loc: Vec<Value> = vec!["body".into()];
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => loc.push(key.as_str().into()),
                serde_path_to_error::Segment::Seq { index } => loc.push((*index).into()),
                _ => {}
            }
        }
        let message = error.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let kind = if let Some(field) = missing_field(&message) {
            loc.push(field.into());
            "missing"
        } else if message.starts_with("unknown field") {
            "extra_forbidden"
        } else {
            "type_error"
        };
        ApiError::Validation(vec![FieldError {
            loc,
            msg: message,
            kind: kind.into(),
        }])
    })
}

/// For optional fields that may be left out but, when given, must not be
/// `null` (`#[serde(default, deserialize_with = "non_null")]`).
pub fn non_null<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// An optional integer that may also be written as a number with no
/// fraction (`30.0`), as JSON Schema and Airweave's pydantic models accept.
pub fn integer<'de, D>(deserializer: D) -> std::result::Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(value) = number.as_i64() {
        return Ok(Some(value));
    }
    match number.as_f64() {
        // Within ±2^53 every integral float is exact.
        Some(value) if value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_992.0 => {
            Ok(Some(value as i64))
        }
        _ => Err(D::Error::custom(format!(
            "Input should be a valid integer, got {number}"
        ))),
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_the_contract_spellings_in_any_case() {
        for (raw, expected) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("On", true),
            ("false", false),
            ("False", false),
            ("0", false),
            ("NO", false),
            ("off", false),
        ] {
            let query = QueryParams::parse(Some(&format!("b={raw}"))).unwrap();
            assert_eq!(query.bool("b", !expected).ok(), Some(expected), "{raw}");
        }
        let query = QueryParams::parse(Some("b=maybe")).unwrap();
        assert!(matches!(
            query.bool("b", false),
            Err(ApiError::Validation(_))
        ));
        assert_eq!(QueryParams::default().bool("b", true).ok(), Some(true));
    }

    #[test]
    fn integers_are_bounded() {
        let query = QueryParams::parse(Some("a=0&b=1001&c=x&d=50")).unwrap();
        assert!(query.int("a", 1, 1, 1000).is_err());
        assert!(query.int("b", 1, 1, 1000).is_err());
        assert!(query.int("c", 1, 1, 1000).is_err());
        assert_eq!(query.int("d", 1, 1, 1000).ok(), Some(50));
        assert_eq!(query.int("e", 100, 1, 1000).ok(), Some(100));
    }

    #[test]
    fn missing_fields_are_named() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            name: String,
        }
        let Err(ApiError::Validation(errors)) = json_body::<Body>(Ok(Bytes::from_static(b"{}")))
        else {
            panic!("expected a validation error");
        };
        assert_eq!(
            errors[0].loc,
            vec![Value::from("body"), Value::from("name")]
        );
        assert_eq!(errors[0].kind, "missing");
    }
}
