//! Local run history: run documents in the run-history API's own shape (model `Run`, with
//! `createdBy` as model `User`) kept in the blob store under account `runhistorylocal`,
//! container `ws-<workspace key>`: `runs/<runId>.json`, and an empty marker
//! `children/<parentRunId>/<runId>` per child so a run's children are listed without reading
//! every run. Children are paged like the service (`continuationToken`), a few at a time, so
//! the paging path is exercised locally too.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, Condition, StoreError};
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::run_history::*;

pub const RUN_HISTORY_ACCOUNT: &str = "runhistorylocal";
/// Children per page: small on purpose (see the module doc).
const PAGE: usize = 2;

pub struct LocalRunHistory {
    store: Arc<dyn BlobStore>,
}

fn map(e: StoreError) -> RunHistoryError {
    if e.is_transient() {
        RunHistoryError::Transient(e.to_string())
    } else {
        RunHistoryError::Other(e.to_string())
    }
}

/// A run id that names exactly one blob.
fn valid_run_id(id: &str) -> bool {
    crate::domain::subject::valid_alias(id)
        && !id.contains('/')
        && crate::adapters::local::fs_blob::validate_name(id).is_ok()
}

impl LocalRunHistory {
    pub fn new(store: Arc<dyn BlobStore>) -> Self {
        Self { store }
    }

    pub fn container(ws: &crate::domain::workspace::WorkspaceId) -> String {
        format!("ws-{}", ws.key())
    }

    /// Write (seed) a run document; its parent's child marker too when it has a `parentRunId`.
    pub(crate) async fn put_run(
        &self,
        ws: &crate::domain::workspace::WorkspaceId,
        doc: &Value,
    ) -> Result<(), RunHistoryError> {
        let container = Self::container(ws);
        let id = doc
            .get("runId")
            .and_then(Value::as_str)
            .filter(|i| valid_run_id(i))
            .ok_or_else(|| RunHistoryError::Other("run without a valid runId".into()))?;
        self.store
            .create_container(RUN_HISTORY_ACCOUNT, &container)
            .await
            .map_err(map)?;
        self.store
            .write_json(
                &BlobRef::new(
                    RUN_HISTORY_ACCOUNT,
                    container.clone(),
                    format!("runs/{id}.json"),
                ),
                doc,
            )
            .await
            .map_err(map)?;
        if let Some(parent) = doc.get("parentRunId").and_then(Value::as_str) {
            if !valid_run_id(parent) {
                return Err(RunHistoryError::Other(
                    "run with an invalid parentRunId".into(),
                ));
            }
            self.store
                .put(
                    &BlobRef::new(
                        RUN_HISTORY_ACCOUNT,
                        container,
                        format!("children/{parent}/{id}"),
                    ),
                    Bytes::new(),
                    "application/octet-stream",
                    Condition::None,
                    &BTreeMap::new(),
                )
                .await
                .map_err(map)?;
        }
        Ok(())
    }
}

#[async_trait]
impl RunHistory for LocalRunHistory {
    async fn run(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
    ) -> Result<Option<RunRecord>, RunHistoryError> {
        if !valid_run_id(run_id) {
            return Ok(None);
        }
        let doc = self
            .store
            .read_json::<Value>(&BlobRef::new(
                RUN_HISTORY_ACCOUNT,
                Self::container(&ws.id),
                format!("runs/{run_id}.json"),
            ))
            .await;
        match doc {
            Ok(Some(d)) => Ok(RunRecord::from_doc(d)),
            Ok(None) | Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(map(e)),
        }
    }

    async fn children(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
        next: Option<String>,
    ) -> Result<RunPage, RunHistoryError> {
        if !valid_run_id(run_id) {
            return Ok(RunPage::default());
        }
        let container = Self::container(&ws.id);
        let markers = match self
            .store
            .list_all(
                RUN_HISTORY_ACCOUNT,
                &container,
                &format!("children/{run_id}/"),
            )
            .await
        {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => return Ok(RunPage::default()),
            Err(e) => return Err(map(e)),
        };
        let start: usize = match next {
            Some(t) => t
                .parse()
                .map_err(|_| RunHistoryError::Other("not a continuation token".into()))?,
            None => 0,
        };
        let mut value = Vec::new();
        for m in markers.iter().skip(start).take(PAGE) {
            let child = m.name.rsplit('/').next().unwrap_or_default();
            if let Some(r) = self.run(ws, child).await? {
                value.push(r);
            }
        }
        let end = start + PAGE;
        Ok(RunPage {
            value,
            next: (end < markers.len()).then(|| end.to_string()),
        })
    }
}
