//! The audit trail as a hash chain: every audit record is appended as one chain entry
//! `dsr-audit/chain/<seq, 12 digits>.json` holding the record, the SHA-256 of the record's
//! canonical JSON, and the SHA-256 of the previous entry's stored bytes. Changing, removing or
//! reordering an entry breaks a link that a later entry fixed, so [`verify`] finds it and names
//! the position — also in a copy of the trail taken outside the WORM container.
//!
//! Pure: the I/O (conditional appends, the head hint, reading back) is in
//! `functions::audit_trail`.

use std::collections::BTreeMap;

use super::ids::sha256_hex;
use super::merkle::canonical_json;

/// `prevSha256` of entry 0.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Chain entries live under this prefix of the audit container.
pub const CHAIN_PREFIX: &str = "chain/";

/// Blob name of entry `seq` (zero-padded so name order is chain order).
pub fn entry_name(seq: u64) -> String {
    format!("{CHAIN_PREFIX}{seq:012}.json")
}

/// The position a blob name stands for, if it is a chain entry name.
pub fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(CHAIN_PREFIX)?.strip_suffix(".json")?;
    (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// One link of the chain, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainEntry {
    pub seq: u64,
    /// Hex SHA-256 of the previous entry's stored bytes ([`GENESIS`] for entry 0).
    pub prev_sha256: String,
    /// Where the record's indexed copy is kept (`dsr-audit/requests/<id>.json`, …).
    pub record_ref: String,
    /// Hex SHA-256 of the record's canonical JSON (`domain::merkle::canonical_json`).
    pub record_sha256: String,
    pub record: serde_json::Value,
}

impl ChainEntry {
    pub fn new(
        seq: u64,
        prev_sha256: String,
        record_ref: String,
        record: serde_json::Value,
    ) -> Self {
        let record_sha256 = record_hash(&record);
        Self {
            seq,
            prev_sha256,
            record_ref,
            record_sha256,
            record,
        }
    }
}

/// Hex SHA-256 of a record's canonical JSON.
pub fn record_hash(record: &serde_json::Value) -> String {
    sha256_hex(&canonical_json(record).unwrap_or_default())
}

/// What verification found wrong, with the chain position it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub position: u64,
    pub problem: String,
}

/// The trail's last known head, kept apart from the chain (the state account) so removing the
/// newest entries is visible too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub seq: u64,
    pub sha256: String,
}

/// Walk the chain: `entries` are (blob name, stored bytes) as listed. Returns the findings (empty
/// when the chain is intact) and the parsed entries by position.
pub fn verify(
    entries: &[(String, Vec<u8>)],
    head: Option<&Head>,
) -> (Vec<Finding>, BTreeMap<u64, ChainEntry>) {
    let mut findings = Vec::new();
    let mut by_pos: BTreeMap<u64, (&[u8], Option<ChainEntry>)> = BTreeMap::new();
    for (name, bytes) in entries {
        let Some(pos) = seq_of(name) else {
            continue;
        };
        let parsed = match serde_json::from_slice::<ChainEntry>(bytes) {
            Ok(e) => Some(e),
            Err(e) => {
                findings.push(Finding {
                    position: pos,
                    problem: format!("entry is not a chain entry ({e})"),
                });
                None
            }
        };
        by_pos.insert(pos, (bytes.as_slice(), parsed));
    }
    let last = by_pos.keys().next_back().copied();
    if let Some(last) = last {
        for pos in 0..=last {
            if !by_pos.contains_key(&pos) {
                findings.push(Finding {
                    position: pos,
                    problem: "entry missing (removed)".into(),
                });
            }
        }
    }
    let mut ok = BTreeMap::new();
    for (&pos, (_, parsed)) in &by_pos {
        let Some(e) = parsed else { continue };
        if e.seq != pos {
            findings.push(Finding {
                position: pos,
                problem: format!("entry says it is position {} (reordered or moved)", e.seq),
            });
        }
        if record_hash(&e.record) != e.record_sha256 {
            findings.push(Finding {
                position: pos,
                problem: "record does not match its recorded hash (changed)".into(),
            });
        }
        let expected_prev = if pos == 0 {
            Some(GENESIS.to_string())
        } else {
            by_pos.get(&(pos - 1)).map(|(b, _)| sha256_hex(b))
        };
        if let Some(prev) = expected_prev {
            if prev != e.prev_sha256 {
                findings.push(Finding {
                    position: pos,
                    problem: format!(
                        "link to position {} broken: that entry was changed, replaced or reordered",
                        pos.saturating_sub(1)
                    ),
                });
            }
        }
        ok.insert(pos, e.clone());
    }
    if let Some(h) = head {
        match by_pos.get(&h.seq) {
            None => findings.push(Finding {
                position: h.seq,
                problem: "the recorded head entry is missing (newest entries removed)".into(),
            }),
            Some((b, _)) if sha256_hex(b) != h.sha256 => findings.push(Finding {
                position: h.seq,
                problem: "entry differs from the recorded head (changed)".into(),
            }),
            Some(_) => {}
        }
    }
    findings.sort_by_key(|f| f.position);
    (findings, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `n` entries as stored (pretty JSON, like the store writes).
    fn chain(n: u64) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        let mut prev = GENESIS.to_string();
        for seq in 0..n {
            let e = ChainEntry::new(
                seq,
                prev.clone(),
                format!("dsr-audit/requests/R{seq}.json"),
                serde_json::json!({"requestId": format!("R{seq}"), "status": "completed"}),
            );
            let bytes = serde_json::to_vec_pretty(&e).unwrap();
            prev = sha256_hex(&bytes);
            out.push((entry_name(seq), bytes));
        }
        out
    }

    fn head_of(c: &[(String, Vec<u8>)]) -> Head {
        let (name, bytes) = c.last().unwrap();
        Head {
            seq: seq_of(name).unwrap(),
            sha256: sha256_hex(bytes),
        }
    }

    fn positions(f: &[Finding]) -> Vec<u64> {
        let mut p: Vec<u64> = f.iter().map(|f| f.position).collect();
        p.dedup();
        p
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(6);
        let (f, ok) = verify(&c, Some(&head_of(&c)));
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(ok.len(), 6);
    }

    #[test]
    fn a_changed_record_is_named() {
        let mut c = chain(6);
        let head = head_of(&c);
        let mut e: ChainEntry = serde_json::from_slice(&c[3].1).unwrap();
        e.record["status"] = serde_json::json!("partially_failed");
        c[3].1 = serde_json::to_vec_pretty(&e).unwrap();
        let (f, _) = verify(&c, Some(&head));
        assert_eq!(positions(&f), vec![3, 4], "{f:?}");
        // Rehashing the record to hide the change still breaks the next link.
        e.record_sha256 = record_hash(&e.record);
        c[3].1 = serde_json::to_vec_pretty(&e).unwrap();
        let (f, _) = verify(&c, Some(&head));
        assert_eq!(positions(&f), vec![4], "{f:?}");
        assert!(f[0].problem.contains("position 3"), "{f:?}");
    }

    #[test]
    fn a_removed_record_is_named_whether_or_not_the_rest_is_renumbered() {
        let c = chain(6);
        let head = head_of(&c);
        let mut gap = c.clone();
        gap.remove(2);
        let (f, _) = verify(&gap, Some(&head));
        assert!(
            f.iter()
                .any(|f| f.position == 2 && f.problem.contains("missing")),
            "{f:?}"
        );
        // Renumbered so there is no gap: the link at 2 no longer matches.
        let mut renum: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, (_, b)) in gap.iter().enumerate() {
            let mut e: ChainEntry = serde_json::from_slice(b).unwrap();
            e.seq = i as u64;
            renum.push((entry_name(i as u64), serde_json::to_vec_pretty(&e).unwrap()));
        }
        let (f, _) = verify(&renum, Some(&head));
        assert_eq!(f.first().map(|f| f.position), Some(2), "{f:?}");
    }

    #[test]
    fn a_reordered_record_is_named() {
        let mut c = chain(6);
        let head = head_of(&c);
        let (a, b) = (c[2].1.clone(), c[3].1.clone());
        c[2].1 = b;
        c[3].1 = a;
        let (f, _) = verify(&c, Some(&head));
        assert_eq!(f.first().map(|f| f.position), Some(2), "{f:?}");
        assert!(f.iter().any(|f| f.problem.contains("reordered")), "{f:?}");
    }

    #[test]
    fn removing_the_newest_entry_is_seen_through_the_head() {
        let mut c = chain(4);
        let head = head_of(&c);
        c.pop();
        let (f, _) = verify(&c, Some(&head));
        assert_eq!(positions(&f), vec![3], "{f:?}");
    }

    #[test]
    fn entry_names_sort_in_chain_order() {
        assert!(entry_name(9) < entry_name(10));
        assert_eq!(seq_of(&entry_name(42)), Some(42));
        assert_eq!(seq_of("chain/42.json"), None);
        assert_eq!(seq_of("requests/x.json"), None);
    }
}
