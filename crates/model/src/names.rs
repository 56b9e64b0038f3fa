//! The bounds of names (CONTRACT.md §7): organizations, keys, collections
//! and connections, whichever way the name arrives (HTTP or the operator's
//! commands).

/// Longest name, in characters.
pub const MAX_NAME_LEN: usize = 255;

/// `name` trimmed, when that is 1 to [`MAX_NAME_LEN`] characters.
pub fn display_name(name: &str) -> Option<&str> {
    let name = name.trim();
    (!name.is_empty() && name.chars().count() <= MAX_NAME_LEN).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Demo "), Some("Demo"));
        assert_eq!(display_name("   "), None);
        assert_eq!(display_name(&"é".repeat(255)).map(str::len), Some(510));
        assert_eq!(display_name(&"é".repeat(256)), None);
    }
}
