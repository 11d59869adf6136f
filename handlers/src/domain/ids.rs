//! Short, stable identifiers derived by hashing: used in blob names, message ids and logs so that
//! no personal data or unbounded user text ends up in a URL, a MessageId or a log line.

use sha2::{Digest, Sha256};

/// First `n` hex characters of SHA-256 over `parts` joined with a separator byte.
pub(crate) fn short_hash(parts: &[&str], n: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    let hex = hex::encode(h.finalize());
    hex[..n.min(hex.len())].to_string()
}

/// Full hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_stable_and_separates_parts() {
        assert_eq!(short_hash(&["a", "b"], 12), short_hash(&["a", "b"], 12));
        assert_ne!(short_hash(&["ab", ""], 12), short_hash(&["a", "b"], 12));
        assert_eq!(short_hash(&["x"], 12).len(), 12);
    }
}
