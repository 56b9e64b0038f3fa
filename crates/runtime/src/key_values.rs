//! Settings that map names to numbers (`limits.max_running_jobs_per_source_type`,
//! `limits.source_requests_per_second`): a TOML table, or one string of
//! `name=value` pairs separated by commas, as environment variables give it
//! (`http_json=20,postgres=8`).

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Deserialize;

/// Deserializes a table or a `name=value,...` string into a map.
pub fn key_values<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: FromStr + Deserialize<'de>,
    V::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw<V> {
        Table(BTreeMap<String, V>),
        Text(String),
    }
    match Raw::<V>::deserialize(deserializer)? {
        Raw::Table(table) => Ok(table),
        Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
    }
}

/// Reads `name=value,name=value`; blanks around either are ignored, an
/// empty string is an empty map.
pub fn parse<V>(text: &str) -> Result<BTreeMap<String, V>, String>
where
    V: FromStr,
    V::Err: std::fmt::Display,
{
    let mut map = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not name=value"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{pair:?} has no name"));
        }
        let value = value
            .trim()
            .parse()
            .map_err(|error| format!("{pair:?}: {error}"))?;
        if map.insert(name.to_owned(), value).is_some() {
            return Err(format!("{name:?} is given twice"));
        }
    }
    Ok(map)
}

/// A connector's short name: lowercase letters, digits and underscores.
pub fn is_short_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A host name, or `*.` and a domain: lowercase labels of letters, digits
/// and hyphens.
pub fn is_host_pattern(pattern: &str) -> bool {
    let host = pattern.strip_prefix("*.").unwrap_or(pattern);
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::{is_host_pattern, is_short_name, parse};

    #[test]
    fn names_and_patterns_are_checked() {
        assert!(is_short_name("http_json"));
        assert!(!is_short_name("HTTP"));
        assert!(is_host_pattern("api.example.com"));
        assert!(is_host_pattern("*.example.org"));
        assert!(!is_host_pattern("*"));
        assert!(!is_host_pattern("a..b"));
        assert!(!is_host_pattern("api.example.com:80"));
    }

    #[test]
    fn pairs_are_read_and_bad_ones_named() {
        let caps = parse::<u32>(" http_json=20, postgres = 8 ,").expect("valid pairs");
        assert_eq!(caps.get("http_json"), Some(&20));
        assert_eq!(caps.get("postgres"), Some(&8));
        assert!(parse::<u32>("").expect("empty").is_empty());
        assert!(parse::<u32>("http_json").is_err());
        assert!(parse::<u32>("=3").is_err());
        assert!(parse::<u32>("a=x").is_err());
        assert!(parse::<u32>("a=1,a=2").is_err());
        let rates = parse::<f64>("api.example.com=10,*.example.org=2.5").expect("rates");
        assert_eq!(rates.get("*.example.org"), Some(&2.5));
    }
}
