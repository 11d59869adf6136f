//! Issue 20, audit chain: a crash between a chain append and its index write must not let the
//! redelivery chain the record a second time, and a record chained twice is reported by
//! `audit verify`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use azureml_dsr::adapters::local::memory_blob::MemoryBlobStore;
use azureml_dsr::domain::audit_chain::{entry_name, ChainEntry};
use azureml_dsr::functions::audit_trail;
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt, StoreError, StoreResult};
use azureml_dsr::ports::blob_layer::BlobLayer;
use azureml_dsr::state::{StateStore, AUDIT};
use bytes::Bytes;
use serde_json::json;

/// The process dies right after the chain append: the first write of a `chain-index/` entry
/// fails (and nothing after it runs).
struct CrashBeforeIndex {
    inner: Arc<dyn BlobStore>,
    armed: AtomicBool,
}

#[async_trait]
impl BlobLayer for CrashBeforeIndex {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        content_type: &str,
        condition: azureml_dsr::ports::blob::Condition,
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        if blob.name.starts_with("chain-index/") && self.armed.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Transient(
                "process killed before the index write".into(),
            ));
        }
        self.inner
            .put(blob, body, content_type, condition, metadata)
            .await
    }
}

async fn entries(state: &StateStore) -> Vec<ChainEntry> {
    let mut out = Vec::new();
    let mut seq = 0;
    while let Ok((b, _)) = state
        .store
        .read_small(&state.blob(AUDIT, entry_name(seq)))
        .await
    {
        out.push(serde_json::from_slice(&b).unwrap());
        seq += 1;
    }
    out
}

#[tokio::test]
async fn a_redelivery_after_a_crash_before_the_index_chains_the_record_once() {
    let mem: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let state = StateStore::new(mem.clone(), "stateacct");
    state.ensure_containers().await.unwrap();
    audit_trail::record(&state, "requests/A.json", &json!({"requestId": "A"}))
        .await
        .unwrap();

    // First delivery of B: appended, then killed before its index is written.
    let rec = json!({"requestId": "B", "status": "completed"});
    let state_crash = StateStore::new(
        Arc::new(CrashBeforeIndex {
            inner: mem.clone(),
            armed: AtomicBool::new(true),
        }),
        "stateacct",
    );
    let first = audit_trail::record(&state_crash, "requests/B.json", &rec).await;
    assert!(
        first.is_err(),
        "the simulated crash must stop the first delivery"
    );
    // Meanwhile another request's record is appended after B's entry.
    audit_trail::record(&state, "requests/C.json", &json!({"requestId": "C"}))
        .await
        .unwrap();

    // Redelivery of B, on a healthy store.
    let seq = audit_trail::record(&state, "requests/B.json", &rec)
        .await
        .unwrap();
    let chain = entries(&state).await;
    let b_positions: Vec<u64> = chain
        .iter()
        .filter(|e| e.record_ref == "dsr-audit/requests/B.json")
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        b_positions,
        vec![1],
        "B chained once, at its first position"
    );
    assert_eq!(
        seq, 1,
        "the redelivery indexes the entry the crashed delivery wrote"
    );
    assert_eq!(chain.len(), 3);
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
    // A second redelivery changes nothing either.
    assert_eq!(
        audit_trail::record(&state, "requests/B.json", &rec)
            .await
            .unwrap(),
        1
    );
    assert_eq!(entries(&state).await.len(), 3);
}

#[tokio::test]
async fn verify_reports_a_record_chained_twice_with_both_positions() {
    let mem: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let state = StateStore::new(mem, "stateacct");
    state.ensure_containers().await.unwrap();
    let rec = json!({"requestId": "D"});
    audit_trail::record(&state, "requests/D.json", &rec)
        .await
        .unwrap();
    audit_trail::record(&state, "requests/E.json", &json!({"requestId": "E"}))
        .await
        .unwrap();
    // A trail from before the reservation existed: the same record appended a second time.
    audit_trail::append(&state, "dsr-audit/requests/D.json", &rec)
        .await
        .unwrap();
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(!v.ok());
    assert_eq!(v.findings.len(), 1, "{:?}", v.findings);
    assert_eq!(v.findings[0].position, 2);
    assert!(
        v.findings[0].problem.contains("duplicate of position 0"),
        "{:?}",
        v.findings
    );
}
