//! URLs as they may appear in errors and logs: without userinfo or query
//! values, which is where credentials travel.

/// `text` (a URL, or a libpq `key=value` connection string) with its
/// userinfo, query values and `password=` values replaced by `***`.
pub fn url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(parsed) if parsed.has_host() => redact_parsed(parsed),
        _ => redact_text(text),
    }
}

/// A parsed URL, redacted.
pub fn parsed(url: &url::Url) -> String {
    redact_parsed(url.clone())
}

fn redact_parsed(mut url: url::Url) -> String {
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("***");
        let _ = url.set_password(None);
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(key, _)| key.into_owned()).collect();
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        for key in keys {
            pairs.append_pair(&key, "***");
        }
    }
    url.set_fragment(None);
    url.to_string()
}

/// Not a URL with a host: cut userinfo by hand and mask `password=...`.
fn redact_text(text: &str) -> String {
    let mut out = text.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.replace_range(scheme_end + 3..scheme_end + 3 + at, "***");
        }
        if let Some(query) = out.find('?') {
            out.truncate(query);
            out.push_str("?***");
        }
    }
    out.split_whitespace()
        .map(|word| match word.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn credentials_never_survive_redaction() {
        for (text, kept) in [
            (
                "https://user:hunter2@api.example/items?api_key=hunter2&page=2",
                "api.example/items",
            ),
            (
                "postgres://reader:hunter2@db.example:5432/shop",
                "db.example:5432/shop",
            ),
            ("amqp://guest:hunter2@127.0.0.1:5672/%2f", "127.0.0.1:5672"),
            ("host=db user=x password=hunter2 dbname=shop", "dbname=shop"),
            (
                "postgres://reader:hunter2@/shop?host=/tmp&password=hunter2",
                "/shop",
            ),
        ] {
            let redacted = url(text);
            assert!(!redacted.contains("hunter2"), "{text} -> {redacted}");
            assert!(redacted.contains(kept), "{text} -> {redacted}");
        }
        assert_eq!(
            url("https://api.example/a?x=1"),
            "https://api.example/a?x=***"
        );
    }
}
