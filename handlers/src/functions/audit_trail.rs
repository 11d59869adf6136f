//! Writing and checking the chained audit trail (`domain::audit_chain`).
//!
//! Appends are serialised by the store, not by a lock: entry `n` is created with
//! If-None-Match `*`, so when aggregators of different requests append at once exactly one wins
//! each position and the others move on to the next one, linking to the winner's bytes. Every
//! chain write is a create, never an overwrite, so the trail works unchanged in the WORM
//! (time-based immutability) audit container. Only the head hint in the state account is
//! replaced, with If-Match, and it is only a hint: appends probe forward from it.
//!
//! A record is chained once: `chain-index/<hash of its name>.json` says where. Before appending,
//! a reservation (`audit-chain/pending/<hash of its name>.json`, in the state account: it is
//! replaced and removed, which the WORM container would refuse) records where the chain ended.
//! A crash between the append and the index leaves the reservation behind, so the redelivery
//! looks for its own record in the entries written since then and indexes that entry instead of
//! chaining the record a second time. A record chained twice anyway (a trail written before the
//! reservation, or edited) is reported by [`verify`] as a duplicate, with both positions.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::domain::audit_chain::{self, entry_name, ChainEntry, Finding, Head, GENESIS};
use crate::domain::ids::sha256_hex;
use crate::ports::blob::{BlobRef, BlobStoreExt, Condition, StoreError, StoreResult};
use crate::state::{StateStore, AUDIT, STATE};

/// The head hint, in the state account (replaceable; the audit container is not).
pub const HEAD_DOC: &str = "audit-chain/head.json";
const INDEX_PREFIX: &str = "chain-index/";
/// Reservations of records being appended (state account).
const PENDING_PREFIX: &str = "audit-chain/pending/";
/// Positions tried before giving up (each failed try means another append won that position).
const MAX_ATTEMPTS: usize = 256;

fn index_ref(state: &StateStore, name: &str) -> BlobRef {
    state.blob(
        AUDIT,
        format!("{INDEX_PREFIX}{}.json", &sha256_hex(name.as_bytes())[..40]),
    )
}

fn pending_ref(state: &StateStore, name: &str) -> BlobRef {
    state.blob(
        STATE,
        format!(
            "{PENDING_PREFIX}{}.json",
            &sha256_hex(name.as_bytes())[..40]
        ),
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IndexDoc {
    seq: u64,
}

/// A reservation: the chain held no entry of this record before position `from`.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingDoc {
    from: u64,
}

/// Record an audit document: append it to the chain, then keep its indexed copy at
/// `dsr-audit/<name>` (create-only, as before the chain). Idempotent per `name`. Returns the
/// chain position.
pub async fn record(
    state: &StateStore,
    name: &str,
    record: &serde_json::Value,
) -> StoreResult<u64> {
    let copy = state.blob(AUDIT, name);
    let index = index_ref(state, name);
    if let Some(IndexDoc { seq }) = state.store.read_json(&index).await? {
        state.store.create_json(&copy, record).await?;
        return Ok(seq);
    }
    let record_ref = format!("{AUDIT}/{name}");
    let pending = pending_ref(state, name);
    let seq = match state.store.read_json::<PendingDoc>(&pending).await? {
        // An earlier delivery got this far: its append may have landed.
        Some(PendingDoc { from }) => match find_since(state, from, &record_ref, record).await? {
            Some(seq) => seq,
            None => append(state, &record_ref, record).await?,
        },
        None => {
            // Entries before the hinted head were all written before this record was first
            // tried, so a later delivery need only look from there.
            let from = read_head(state).await?.map(|(h, _)| h.seq).unwrap_or(0);
            state
                .store
                .write_json(&pending, &PendingDoc { from })
                .await?;
            append(state, &record_ref, record).await?
        }
    };
    state.store.create_json(&index, &IndexDoc { seq }).await?;
    state.store.create_json(&copy, record).await?;
    // Only a hint for a crashed delivery; left behind it costs a scan, never a duplicate.
    let _ = state.store.delete(&pending).await;
    Ok(seq)
}

/// The position of an entry at or after `from` that holds this very record, if any.
async fn find_since(
    state: &StateStore,
    from: u64,
    record_ref: &str,
    record: &serde_json::Value,
) -> StoreResult<Option<u64>> {
    let hash = audit_chain::record_hash(record);
    let mut seq = from;
    while let Some(b) = read_entry(state, seq).await? {
        if let Ok(e) = serde_json::from_slice::<ChainEntry>(&b) {
            if e.record_ref == record_ref && e.record_sha256 == hash {
                return Ok(Some(seq));
            }
        }
        seq += 1;
    }
    Ok(None)
}

async fn read_entry(state: &StateStore, seq: u64) -> StoreResult<Option<Bytes>> {
    match state
        .store
        .read_small(&state.blob(AUDIT, entry_name(seq)))
        .await
    {
        Ok((b, _)) => Ok(Some(b)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The head hint and its ETag.
async fn read_head(state: &StateStore) -> StoreResult<Option<(Head, String)>> {
    match state.store.read_small(&state.blob(STATE, HEAD_DOC)).await {
        Ok((b, etag)) => Ok(serde_json::from_slice(&b).ok().map(|h| (h, etag))),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Append one entry; returns its position.
pub async fn append(
    state: &StateStore,
    record_ref: &str,
    record: &serde_json::Value,
) -> StoreResult<u64> {
    let hint = read_head(state).await?;
    // Start from the hinted entry (its bytes give the next link), or from the beginning.
    let (mut next, mut prev) = match &hint {
        Some((h, _)) => match read_entry(state, h.seq).await? {
            Some(b) => (h.seq + 1, sha256_hex(&b)),
            None => (0, GENESIS.to_string()),
        },
        None => (0, GENESIS.to_string()),
    };
    for _ in 0..MAX_ATTEMPTS {
        // Probe forward past entries written since the hint.
        while let Some(b) = read_entry(state, next).await? {
            prev = sha256_hex(&b);
            next += 1;
        }
        let entry = ChainEntry::new(next, prev.clone(), record_ref.to_string(), record.clone());
        let body =
            serde_json::to_vec_pretty(&entry).map_err(|e| StoreError::Other(e.to_string()))?;
        let sha = sha256_hex(&body);
        match state
            .store
            .put(
                &state.blob(AUDIT, entry_name(next)),
                Bytes::from(body),
                "application/json",
                Condition::IfNotExists,
                &BTreeMap::new(),
            )
            .await
        {
            Ok(_) => {
                advance_head(
                    state,
                    &hint,
                    Head {
                        seq: next,
                        sha256: sha,
                    },
                )
                .await?;
                return Ok(next);
            }
            // Another append took this position: link to it and try the next one.
            Err(StoreError::AlreadyExists(_)) | Err(StoreError::ConditionFailed(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Transient(format!(
        "audit chain: {MAX_ATTEMPTS} positions taken by concurrent appends"
    )))
}

/// Move the hint forward, only if nobody moved it since we read it (If-Match): a later append
/// that lost the race must not move it back.
async fn advance_head(
    state: &StateStore,
    read: &Option<(Head, String)>,
    head: Head,
) -> StoreResult<()> {
    let body = serde_json::to_vec(&head).map_err(|e| StoreError::Other(e.to_string()))?;
    let condition = match read {
        Some((_, etag)) => Condition::IfMatch(etag.clone()),
        None => Condition::IfNotExists,
    };
    match state
        .store
        .put(
            &state.blob(STATE, HEAD_DOC),
            Bytes::from(body),
            "application/json",
            condition,
            &BTreeMap::new(),
        )
        .await
    {
        Ok(_) | Err(StoreError::ConditionFailed(_)) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What `audit verify` found.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub entries: u64,
    pub roots_recomputed: u64,
    /// Export manifests no longer there to recompute (deleted with their bundle after the
    /// download link expired, as designed).
    pub expired_exports: u64,
    pub findings: Vec<Finding>,
    /// Audit documents with no chain entry (written before the chain existed): listed, not
    /// failures.
    pub unchained: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Walk the whole chain, recompute every certificate's and manifest's Merkle root, and check
/// every indexed copy against its chain entry.
pub async fn verify(state: &StateStore) -> StoreResult<Verification> {
    let listed = state
        .store
        .list_all(&state.account, AUDIT, audit_chain::CHAIN_PREFIX)
        .await?;
    let mut entries = Vec::with_capacity(listed.len());
    for item in listed {
        let (b, _) = state
            .store
            .read_small(&state.blob(AUDIT, &item.name))
            .await?;
        entries.push((item.name, b.to_vec()));
    }
    let head = read_head(state).await?.map(|(h, _)| h);
    let (mut findings, chain) = audit_chain::verify(&entries, head.as_ref());
    let mut out = Verification {
        entries: entries.len() as u64,
        ..Default::default()
    };
    let mut chained: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut first_at: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (&pos, e) in &chain {
        chained
            .entry(e.record_ref.as_str())
            .or_default()
            .insert(e.record_sha256.as_str());
        // Every record is chained once (`record` is idempotent per name): a second entry of the
        // same record is a redelivery that got through, or a copied-in entry.
        match first_at.get(&(e.record_ref.as_str(), e.record_sha256.as_str())) {
            Some(first) => findings.push(Finding {
                position: pos,
                problem: format!(
                    "record {} chained again (duplicate of position {first})",
                    e.record_ref
                ),
            }),
            None => {
                first_at.insert((e.record_ref.as_str(), e.record_sha256.as_str()), pos);
            }
        }
        // The root the record promised, against the root of the document as stored now.
        let (Some(root), Some(doc)) = (
            e.record.get("itemsMerkleRoot").and_then(|v| v.as_str()),
            e.record.get("report").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let Some(blob) = parse_ref(doc) else {
            findings.push(Finding {
                position: pos,
                problem: format!("names a report {doc:?} that is not a blob address"),
            });
            continue;
        };
        let problem = match state.store.read_json::<serde_json::Value>(&blob).await {
            Ok(Some(v)) => match crate::domain::merkle::items_root_of_document(&v) {
                Some(r) if r == root => None,
                Some(_) => Some(format!("report {doc}: items changed (Merkle root differs)")),
                None => Some(format!("report {doc}: has no items list")),
            },
            // Export bundles are deleted once their link expires (lifecycle rule): expected.
            Ok(None) if blob.container == crate::state::EXPORTS => {
                out.expired_exports += 1;
                continue;
            }
            Ok(None) => Some(format!("report {doc}: missing")),
            Err(e) => Some(format!("report {doc}: unreadable ({e})")),
        };
        out.roots_recomputed += 1;
        if let Some(problem) = problem {
            findings.push(Finding {
                position: pos,
                problem,
            });
        }
    }
    // Indexed copies: each must be the record some chain entry holds.
    for item in state.store.list_all(&state.account, AUDIT, "").await? {
        if item.name.starts_with(audit_chain::CHAIN_PREFIX) || item.name.starts_with(INDEX_PREFIX) {
            continue;
        }
        let key = format!("{AUDIT}/{}", item.name);
        let Some(hashes) = chained.get(key.as_str()) else {
            out.unchained.push(key);
            continue;
        };
        let copy: Option<serde_json::Value> = state
            .store
            .read_json(&state.blob(AUDIT, &item.name))
            .await
            .unwrap_or(None);
        let matches = copy
            .as_ref()
            .is_some_and(|c| hashes.contains(audit_chain::record_hash(c).as_str()));
        if !matches {
            let pos = chain
                .iter()
                .find(|(_, e)| e.record_ref == key)
                .map(|(p, _)| *p)
                .unwrap_or_default();
            findings.push(Finding {
                position: pos,
                problem: format!("copy {key} differs from its chained record (changed)"),
            });
        }
    }
    findings.sort_by_key(|f| f.position);
    out.findings = findings;
    Ok(out)
}

/// `account/container/name` (how reports are addressed in records) back into a [`BlobRef`].
fn parse_ref(s: &str) -> Option<BlobRef> {
    let mut parts = s.splitn(3, '/');
    let (a, c, n) = (parts.next()?, parts.next()?, parts.next()?);
    (!a.is_empty() && !c.is_empty() && !n.is_empty()).then(|| BlobRef::new(a, c, n))
}
