//! Merkle roots over a certificate's or manifest's items, so a third party holding the document
//! can recompute one hash and compare it with the root recorded in the (chained) audit trail.
//!
//! The tree is RFC 6962 §2.1 (Certificate Transparency), chosen because it is specified
//! precisely and has independent implementations:
//!
//! - leaf hash  = SHA-256(0x00 ‖ leaf bytes)
//! - node hash  = SHA-256(0x01 ‖ left ‖ right)
//! - root of n > 1 leaves = node(root of the first k, root of the rest), k the largest power of
//!   two below n (an odd leaf is promoted, never duplicated: duplicating would let two lists
//!   share a root)
//! - root of no leaves = SHA-256 of the empty string.
//!
//! Leaf bytes of an item are its canonical JSON: the item exactly as it appears in the document's
//! `results[*].items[*]` (document order: slice by slice, item by item), with object keys sorted
//! by their UTF-8 bytes, no insignificant whitespace, strings escaped as JSON requires and
//! non-ASCII left as UTF-8. In Python:
//! `json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`
//! (items hold only strings, booleans and integers, so number formatting cannot differ).
//! docs/tamper-evidence.md walks through a recomputation.

use sha2::{Digest, Sha256};

use super::report::FinalReport;

pub(crate) type Hash = [u8; 32];

/// Canonical JSON bytes of a value (see the module doc). `serde_json::Value` keeps object keys
/// in a sorted map (this crate does not enable `preserve_order`), so serialising through it
/// sorts them.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    serde_json::to_vec(&v)
}

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 6962 Merkle Tree Hash over already-hashed leaves.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The leaf hashes of a report's items, in document order.
pub fn item_leaves(report: &FinalReport) -> Result<Vec<Hash>, serde_json::Error> {
    report
        .results
        .iter()
        .flat_map(|r| &r.items)
        .map(|i| canonical_json(i).map(|b| leaf_hash(&b)))
        .collect()
}

/// Hex Merkle root over a report's items.
pub fn items_root(report: &FinalReport) -> Result<String, serde_json::Error> {
    Ok(hex::encode(root(&item_leaves(report)?)))
}

/// The same root as [`root`], computed leaf by leaf in O(log n) memory (a report's items are
/// read a page at a time). It keeps the roots of complete subtrees, largest first, merging two
/// of equal size as soon as they exist; at the end it folds them from the right, which is
/// exactly RFC 6962's split at the largest power of two below n.
#[derive(Debug, Default, Clone)]
pub struct RootBuilder {
    /// (subtree root, leaves under it); sizes are distinct powers of two, decreasing.
    stack: Vec<(Hash, u64)>,
}

impl RootBuilder {
    pub fn push(&mut self, leaf: Hash) {
        let mut top = (leaf, 1u64);
        while let Some(&(left, size)) = self.stack.last() {
            if size != top.1 {
                break;
            }
            self.stack.pop();
            top = (node_hash(&left, &top.0), size * 2);
        }
        self.stack.push(top);
    }

    /// Add an item (its canonical JSON is the leaf).
    pub fn push_item<T: serde::Serialize>(&mut self, item: &T) -> Result<(), serde_json::Error> {
        self.push(leaf_hash(&canonical_json(item)?));
        Ok(())
    }

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => Sha256::digest([]).into(),
            Some(&(last, _)) => it.fold(last, |right, (left, _)| node_hash(left, &right)),
        }
    }
}

/// The same root computed from the stored JSON document itself (as a third party would: no
/// typed model, just `results[*].items[*]`). `None` when the document has no such shape.
pub fn items_root_of_document(doc: &serde_json::Value) -> Option<String> {
    let results = doc.get("results")?.as_array()?;
    let mut leaves = Vec::new();
    for r in results {
        for item in r.get("items")?.as_array()? {
            leaves.push(leaf_hash(&serde_json::to_vec(item).ok()?));
        }
    }
    Some(hex::encode(root(&leaves)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn known_answer_matches_an_independent_implementation() {
        // Computed with Python's hashlib (docs/tamper-evidence.md, "recompute"), not with this
        // code: leaves "0".."4" (five, so the odd leaf is promoted).
        assert_eq!(
            hex::encode(root(&leaves(5))),
            "b6748f6ed7a99de7da84fd97e1a3bac6fab8999f4a43695cab9528a2de431147"
        );
    }

    #[test]
    fn order_and_content_change_the_root() {
        let l = leaves(4);
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_ne!(root(&l), root(&swapped));
        assert_ne!(root(&l), root(&l[..3]));
        // A promoted odd leaf is not the same tree as a duplicated one.
        let dup = vec![l[0], l[1], l[2], l[2]];
        assert_ne!(root(&l[..3]), root(&dup));
    }

    #[test]
    fn the_streamed_root_is_the_recursive_one_for_every_size() {
        for n in 0..=70 {
            let l = leaves(n);
            let mut b = RootBuilder::default();
            for h in &l {
                b.push(*h);
            }
            assert_eq!(b.root(), root(&l), "{n} leaves");
        }
        let mut b = RootBuilder::default();
        for h in leaves(5) {
            b.push(h);
        }
        assert_eq!(
            hex::encode(b.root()),
            "b6748f6ed7a99de7da84fd97e1a3bac6fab8999f4a43695cab9528a2de431147"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v = serde_json::json!({"b": 1, "a": {"d": "é", "c": true}});
        assert_eq!(
            String::from_utf8(canonical_json(&v).unwrap()).unwrap(),
            r#"{"a":{"c":true,"d":"é"},"b":1}"#
        );
    }
}
