//! A run-history decorator that reads each run record once per process for a short while
//! instead of once per slice invocation (issue 19: the Azure twin counted 74 run-history reads
//! for one export of 13 runs, the same runs read by every slice of the request).
//!
//! Why that is safe: run history is read only by discovery, to learn who created a run
//! (`createdBy` and `dataContainerId`, fixed when the run is created). A record this young is
//! what the next slice would have read; a run run history did not know yet stays unknown for
//! the TTL, which sends its job to review, never to deletion; a run deleted meanwhile is found
//! gone by the slice's own ARM and storage calls, which are not cached. A run's *children* are
//! not cached: a running pipeline can add a step at any moment, and a delete must not miss it.
//! At most [`MAX_ENTRIES`] records are kept, so a heavy user's 10,000 runs do not grow memory,
//! each as its compact JSON text (a parsed document takes several times its text: issue 19's
//! peak RSS), parsed again when it is used.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::ttl_cache::Slots;
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::run_history::{RunHistory, RunHistoryError, RunPage, RunRecord};

/// How long a run record is reused.
pub const RUN_TTL: Duration = Duration::from_secs(60);
/// Records kept at most (each entry holds one run document).
pub const MAX_ENTRIES: usize = 4_096;

pub struct CachedRunHistory {
    inner: Arc<dyn RunHistory>,
    /// A record's `Run` document, as text; `None` for a run run history does not know.
    runs: Slots<Option<Arc<str>>>,
}

impl CachedRunHistory {
    pub fn new(inner: Arc<dyn RunHistory>) -> Self {
        Self::with_ttl(inner, RUN_TTL)
    }

    pub fn with_ttl(inner: Arc<dyn RunHistory>, ttl: Duration) -> Self {
        CachedRunHistory {
            inner,
            runs: Slots::bounded(ttl, MAX_ENTRIES),
        }
    }

    fn key(ws: &WorkspaceInfo, run_id: &str) -> String {
        // ARM ids are case-insensitive; run ids are not.
        format!("{}|{run_id}", ws.id.to_string().to_ascii_lowercase())
    }
}

#[async_trait]
impl RunHistory for CachedRunHistory {
    async fn run(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
    ) -> Result<Option<RunRecord>, RunHistoryError> {
        let kept = self
            .runs
            .get_or_try(&Self::key(ws, run_id), || async {
                let run = self.inner.run(ws, run_id).await?;
                Ok(run.map(|r| Arc::from(r.doc.to_string())))
            })
            .await?;
        // Every adapter builds its records with `RunRecord::from_doc`, so the text is the
        // whole record; text that no longer parses (it cannot: it was serialised here) would
        // read as a run with no record, which sends its job to review, never to deletion.
        Ok(kept.and_then(|doc| {
            serde_json::from_str(&doc)
                .ok()
                .and_then(RunRecord::from_doc)
        }))
    }

    async fn children(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
        next: Option<String>,
    ) -> Result<RunPage, RunHistoryError> {
        self.inner.children(ws, run_id, next).await
    }
    // `descendants` keeps the port's default, walking the uncached `children`.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workspace::WorkspaceId;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";

    /// Counts the reads that reach it; the first `fail` reads of a run fail.
    struct Counting {
        reads: AtomicUsize,
        pages: AtomicUsize,
        fail: AtomicUsize,
    }

    fn record(id: &str) -> RunRecord {
        RunRecord::from_doc(serde_json::json!({
            "runId": id,
            "dataContainerId": format!("dcid.{id}"),
            "createdBy": {"userObjectId": "00000000-0000-0000-0000-0000000000a1", "userName": "A"},
        }))
        .unwrap()
    }

    #[async_trait]
    impl RunHistory for Counting {
        async fn run(
            &self,
            _: &WorkspaceInfo,
            run_id: &str,
        ) -> Result<Option<RunRecord>, RunHistoryError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(RunHistoryError::Transient("503".into()));
            }
            Ok((run_id != "gone").then(|| record(run_id)))
        }
        async fn children(
            &self,
            _: &WorkspaceInfo,
            run_id: &str,
            next: Option<String>,
        ) -> Result<RunPage, RunHistoryError> {
            self.pages.fetch_add(1, Ordering::SeqCst);
            if run_id != "p" {
                return Ok(RunPage::default());
            }
            Ok(match next.as_deref() {
                None => RunPage {
                    value: vec![record(&format!("{run_id}_a"))],
                    next: Some("p2".into()),
                },
                _ => RunPage {
                    value: vec![record(&format!("{run_id}_b"))],
                    next: None,
                },
            })
        }
    }

    fn ws() -> WorkspaceInfo {
        serde_json::from_value(serde_json::json!({
            "id": WorkspaceId::parse(WS).unwrap(),
            "storageAccount": "st",
            "artifactContainer": "azureml",
            "blobstoreContainer": "azureml-blobstore-x",
            "fileShare": "code-x",
            "appInsights": null,
            "logAnalyticsWorkspace": null,
            "keyVault": null,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn runs_are_read_once_children_always_errors_are_not_kept_and_entries_expire() {
        let inner = Arc::new(Counting {
            reads: AtomicUsize::new(0),
            pages: AtomicUsize::new(0),
            fail: AtomicUsize::new(1),
        });
        let c = CachedRunHistory::with_ttl(inner.clone(), Duration::from_millis(200));
        let ws = ws();
        // The first read fails; the error is not kept.
        assert!(c.run(&ws, "r1").await.is_err());
        let (a, b) = tokio::join!(c.run(&ws, "r1"), c.run(&ws, "r1"));
        // What is kept is the whole record: the same as run history's, fields and document.
        assert_eq!(a.unwrap(), Some(record("r1")));
        assert_eq!(b.unwrap(), Some(record("r1")));
        assert_eq!(inner.reads.load(Ordering::SeqCst), 2);
        // A run run history does not know stays unknown for the TTL (one read).
        assert!(c.run(&ws, "gone").await.unwrap().is_none());
        assert!(c.run(&ws, "gone").await.unwrap().is_none());
        assert_eq!(inner.reads.load(Ordering::SeqCst), 3);
        // A run's children are read every time (a running pipeline can add a step).
        for _ in 0..2 {
            let d = c.descendants(&ws, "p").await.unwrap();
            let ids: Vec<_> = d.iter().map(|r| r.run_id.as_str()).collect();
            assert_eq!(ids, ["p_a", "p_b"]);
        }
        // p's two pages and the (empty) children of p_a and p_b, on both walks.
        assert_eq!(inner.pages.load(Ordering::SeqCst), 8);
        tokio::time::sleep(Duration::from_millis(250)).await;
        c.run(&ws, "r1").await.unwrap();
        assert_eq!(
            inner.reads.load(Ordering::SeqCst),
            4,
            "expired entries are read again"
        );
    }
}
