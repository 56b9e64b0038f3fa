//! Content hashing of entities.
//!
//! Counting inserted/updated/unchanged entities compares the hash of a stable
//! serialization. `serde_json` without the `preserve_order` feature keeps
//! object keys sorted, so equal JSON values always serialize to the same
//! bytes, whatever order the source produced the keys in. BLAKE3 is used
//! because it hashes several GB/s on one core, so hashing never bounds a sync.

/// BLAKE3 digest of an entity's canonical JSON serialization.
pub type ContentHash = [u8; 32];

pub fn content_hash(payload: &serde_json::Value) -> ContentHash {
    let mut hasher = blake3::Hasher::new();
    // Writing JSON into a hasher cannot fail: the writer never errors.
    let _ = serde_json::to_writer(&mut HashWriter(&mut hasher), payload);
    *hasher.finalize().as_bytes()
}

/// A payload's canonical serialization and its [`content_hash`], made in one
/// pass: the worker hashes and stores the same bytes.
pub fn canonical_json(payload: &serde_json::Value) -> serde_json::Result<(String, ContentHash)> {
    let mut json = serde_json::to_string(payload)?;
    // Serializing grows the buffer by doubling: a payload just over a power
    // of two would hold twice its size until it is committed.
    json.shrink_to_fit();
    let hash = *blake3::hash(json.as_bytes()).as_bytes();
    Ok((json, hash))
}

struct HashWriter<'a>(&'a mut blake3::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_is_what_the_hash_covers() {
        let payload = json!({"b": [1, "x\u{e9}"], "a": {"d": null, "c": 1.5}});
        let Ok((json, hash)) = canonical_json(&payload) else {
            panic!("a JSON value always serializes");
        };
        assert_eq!(json, "{\"a\":{\"c\":1.5,\"d\":null},\"b\":[1,\"x\u{e9}\"]}");
        assert_eq!(hash, content_hash(&payload));
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a": 2, "b": [1, 2]}))
        );
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a": 1, "b": [2, 1]}))
        );
    }
}
