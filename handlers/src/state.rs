//! Where the pipeline keeps its state, exports, reports, audit trail and intake archive, and the
//! naming of every document. All writes that must happen once use create-if-absent
//! (If-None-Match `*`), which is what makes redelivered messages harmless (see `idempotency`).

use std::sync::Arc;

use time::OffsetDateTime;

use crate::domain::plan::Plan;
use crate::domain::report::FinalReport;
use crate::domain::request::RequestId;
use crate::domain::slice::{ItemOutcome, SliceResult, SliceTask};
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, StoreResult};

pub const STATE: &str = "dsr-state";
pub const EXPORTS: &str = "dsr-exports";
pub const REPORTS: &str = "dsr-reports";
pub const AUDIT: &str = "dsr-audit";
pub const ARCHIVE: &str = "dsr-intake-archive";
pub const CONTAINERS: [&str; 5] = [STATE, EXPORTS, REPORTS, AUDIT, ARCHIVE];

/// One inventory entry: the item, plus the resource document for management-plane items
/// (exported as JSON) or the records for telemetry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InventoryEntry {
    pub item: crate::domain::slice::Item,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<serde_json::Value>,
    /// A legal hold on this one item (retention sweeps: a held person's jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<crate::domain::holds::HoldRef>,
}

/// The frozen list of what a slice found, written once before anything is changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inventory {
    pub entries: Vec<InventoryEntry>,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Clone)]
pub struct StateStore {
    pub store: Arc<dyn BlobStore>,
    pub account: String,
    /// Set once the state containers are known to exist: every intake would otherwise pay five
    /// create-container round trips.
    containers_ready: ContainersReady,
}

/// A memo that the state containers exist, shareable between [`StateStore`]s of one store.
pub type ContainersReady = Arc<tokio::sync::OnceCell<()>>;

impl StateStore {
    pub fn new(store: Arc<dyn BlobStore>, account: impl Into<String>) -> Self {
        Self {
            store,
            account: account.into(),
            containers_ready: Arc::default(),
        }
    }

    /// Share `memo` with other state stores over the same store and account.
    pub fn sharing_containers_ready(mut self, memo: ContainersReady) -> Self {
        self.containers_ready = memo;
        self
    }

    /// Create the state containers if this store has not done so yet (idempotent; a failure is
    /// not remembered, so the next call tries again).
    pub async fn ensure_containers(&self) -> StoreResult<()> {
        self.containers_ready
            .get_or_try_init(|| async {
                for c in CONTAINERS {
                    self.store.create_container(&self.account, c).await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    pub fn blob(&self, container: &str, name: impl Into<String>) -> BlobRef {
        BlobRef::new(self.account.clone(), container, name)
    }

    fn req(&self, id: &RequestId, rest: &str) -> BlobRef {
        self.blob(STATE, format!("requests/{id}/{rest}"))
    }

    pub fn plan_ref(&self, id: &RequestId) -> BlobRef {
        self.req(id, "plan.json")
    }
    pub fn report_ref(&self, id: &RequestId) -> BlobRef {
        self.req(id, "report.json")
    }
    pub fn completion_ref(&self, id: &RequestId, key: &str) -> BlobRef {
        self.req(id, &format!("completions/{key}.json"))
    }
    pub fn inventory_ref(&self, t: &SliceTask) -> BlobRef {
        self.req(&t.request_id, &format!("slices/{}/inventory.json", t.key))
    }
    pub fn chunk_ref(&self, t: &SliceTask, chunk: u32) -> BlobRef {
        self.req(
            &t.request_id,
            &format!("slices/{}/chunks/{chunk:06}.json", t.key),
        )
    }
    pub fn result_ref(&self, id: &RequestId, key: &str) -> BlobRef {
        self.req(id, &format!("slices/{key}/result.json"))
    }
    pub fn workspace_inventory_ref(&self, ws: &crate::domain::workspace::WorkspaceId) -> BlobRef {
        self.blob(STATE, format!("inventory/workspaces/{}.json", ws.key()))
    }
    pub fn cleanup_ref(&self, ws: &crate::domain::workspace::WorkspaceId) -> BlobRef {
        self.blob(STATE, format!("cleanups/{}.json", ws.key()))
    }
    pub fn audit_ref(&self, id: &RequestId) -> BlobRef {
        self.blob(AUDIT, format!("requests/{id}.json"))
    }
    pub fn export_prefix(id: &RequestId) -> String {
        format!("{id}/")
    }

    pub async fn plan(&self, id: &RequestId) -> StoreResult<Option<Plan>> {
        self.store.read_json(&self.plan_ref(id)).await
    }
    pub async fn report(&self, id: &RequestId) -> StoreResult<Option<FinalReport>> {
        self.store.read_json(&self.report_ref(id)).await
    }
    pub async fn inventory(&self, t: &SliceTask) -> StoreResult<Option<Inventory>> {
        self.store.read_json(&self.inventory_ref(t)).await
    }
    pub async fn chunk(&self, t: &SliceTask, chunk: u32) -> StoreResult<Option<Vec<ItemOutcome>>> {
        self.store.read_json(&self.chunk_ref(t, chunk)).await
    }
    pub async fn slice_result(
        &self,
        id: &RequestId,
        key: &str,
    ) -> StoreResult<Option<SliceResult>> {
        self.store.read_json(&self.result_ref(id, key)).await
    }

    /// Keys of slices whose completion the aggregator has recorded.
    pub async fn completed_keys(&self, id: &RequestId) -> StoreResult<Vec<String>> {
        let prefix = format!("requests/{id}/completions/");
        Ok(self
            .store
            .list_all(&self.account, STATE, &prefix)
            .await?
            .into_iter()
            .filter_map(|i| {
                i.name
                    .strip_prefix(&prefix)
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect())
    }

    /// Remember what a workspace is connected to: once it is deleted it can no longer be read.
    pub async fn record_workspace(
        &self,
        info: &crate::ports::control_plane::WorkspaceInfo,
    ) -> StoreResult<()> {
        self.store
            .write_json(&self.workspace_inventory_ref(&info.id), info)
            .await
    }

    /// Every workspace ever recorded.
    pub async fn known_workspaces(
        &self,
    ) -> StoreResult<Vec<crate::ports::control_plane::WorkspaceInfo>> {
        let mut out = Vec::new();
        for item in self
            .store
            .list_all(&self.account, STATE, "inventory/workspaces/")
            .await?
        {
            if let Some(info) = self.store.read_json(&self.blob(STATE, item.name)).await? {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Archive an intake payload exactly as received (kept for audit, also when rejected).
    pub async fn archive_intake(&self, body: &[u8], now: OffsetDateTime) -> StoreResult<String> {
        let sha = crate::domain::ids::sha256_hex(body);
        let name = format!("{}/{sha}.bin", now.date());
        let blob = self.blob(ARCHIVE, name.clone());
        match self
            .store
            .put(
                &blob,
                bytes::Bytes::copy_from_slice(body),
                "application/octet-stream",
                crate::ports::blob::Condition::IfNotExists,
                &Default::default(),
            )
            .await
        {
            Ok(_) | Err(crate::ports::blob::StoreError::AlreadyExists(_)) => Ok(name),
            Err(e) => Err(e),
        }
    }
}
