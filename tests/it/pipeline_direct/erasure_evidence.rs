//! What a delete keeps as evidence: hashes, not copies; a blob that survived is failed, not verified.

use super::*;

/// A delete keeps no copy of what it erases: its frozen inventories hold the SHA-256 of each ARM
/// document and telemetry record set, never the document; an export keeps the documents (they
/// are what it exports).
#[tokio::test]
async fn a_delete_keeps_hashes_not_copies_of_what_it_erases() {
    let e = env(HoldSet::default(), 100).await;
    submit(&e, request(&e, "COPY-DEL", "delete", "alice", false), 1).await;
    submit(&e, request(&e, "COPY-EXP", "export", "bob", false), 1).await;
    let state = e.svc.state();
    for (id, export) in [("COPY-DEL", false), ("COPY-EXP", true)] {
        let docs = state
            .store
            .list_all("dsrstate", "dsr-state", &format!("requests/{id}/slices/"))
            .await
            .unwrap()
            .into_iter()
            // The head, and the pages a larger inventory keeps its entries in.
            .filter(|i| i.name.ends_with("/inventory.json") || i.name.contains("/inventory-pages/"))
            .collect::<Vec<_>>();
        assert!(!docs.is_empty());
        let (mut with_doc, mut with_hash) = (0, 0);
        for i in docs {
            let inv: serde_json::Value = state
                .store
                .read_json(&BlobRef::new("dsrstate", "dsr-state", i.name))
                .await
                .unwrap()
                .unwrap();
            let entries = inv
                .as_array()
                .or_else(|| inv["entries"].as_array())
                .unwrap();
            for entry in entries {
                with_doc += entry.get("doc").is_some() as usize;
                with_hash += entry.get("docSha256").is_some() as usize;
            }
        }
        if export {
            assert!(
                with_doc > 0 && with_hash == 0,
                "{id}: {with_doc}/{with_hash}"
            );
        } else {
            assert!(
                with_doc == 0 && with_hash > 0,
                "{id}: {with_doc}/{with_hash}"
            );
        }
    }
}

/// A store whose deletes of one job's run folder report success and do nothing (a silently
/// failing delete).
struct SilentDeletes {
    inner: Arc<dyn BlobStore>,
    marker: String,
}

impl SilentDeletes {
    fn lies_about(&self, name: &str) -> bool {
        name.contains(&self.marker)
    }
}

/// Lies in single deletes and in batches (one by one through its own `delete`, so the batch lies
/// about the same names).
#[async_trait::async_trait]
impl BlobLayer for SilentDeletes {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn kind(&self) -> &'static str {
        "silent-deletes"
    }
    async fn delete(&self, b: &BlobRef) -> StoreResult<DeleteOutcome> {
        if self.lies_about(&b.name) {
            return Ok(DeleteOutcome::Deleted);
        }
        self.inner.delete(b).await
    }
    async fn delete_many(
        &self,
        a: &str,
        c: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        azureml_dsr::ports::blob::delete_one_by_one(self, a, c, names).await
    }
}

/// "Verified gone" means each item was checked directly: a blob whose delete silently did
/// nothing is reported failed, even though its job resource is gone and discovery would no
/// longer find its folder.
#[tokio::test]
async fn a_blob_that_survived_its_delete_is_reported_failed_not_verified() {
    let mut e = env(HoldSet::default(), 100).await;
    let alice = e.truth.user("alice").unwrap().key.clone();
    let job = e
        .truth
        .resources_of(&alice)
        .into_iter()
        .find(|id| id.contains("/jobs/"))
        .expect("alice has a job")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    e.svc.store = Arc::new(SilentDeletes {
        inner: e.store.clone(),
        marker: format!("dcid.{job}/"),
    });
    submit(&e, request(&e, "VERIFY-1", "delete", "alice", false), 1).await;
    let r = report(&e, "VERIFY-1").await;
    let survivors: Vec<_> = r
        .results
        .iter()
        .flat_map(|s| s.items.iter())
        .filter(|o| {
            o.item
                .blob_key()
                .is_some_and(|k| k.contains(&format!("dcid.{job}/")))
        })
        .collect();
    assert!(!survivors.is_empty(), "the job has run-history files");
    for o in survivors {
        assert!(
            matches!(&o.status, ItemStatus::Failed { reason } if reason.contains("still listed")),
            "{:?} {:?}",
            o.item,
            o.status
        );
    }
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
    // Everything else of hers was checked and is gone.
    assert!(r.counts.verified_gone > 0);
}
