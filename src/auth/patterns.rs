//! Channel patterns: exact names, or `*` matching any run of characters
//! (`session:*`, `team:42:*`, `*`).

/// True when `name` matches `pattern`.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    }; // no '*' at all
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

pub(crate) fn any_match(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn exact_and_wildcards() {
        assert!(matches("news", "news"));
        assert!(!matches("news", "news2"));
        assert!(matches("session:*", "session:abc"));
        assert!(matches("session:*", "session:"));
        assert!(!matches("session:*", "user:abc"));
        assert!(matches("*", "anything"));
        assert!(matches("team:*:jobs", "team:42:jobs"));
        assert!(!matches("team:*:jobs", "team:42:jobs:x"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "acb"));
        assert!(
            !matches("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
    }
}
