//! Where the pipeline keeps its state, exports, reports, audit trail and intake archive, and the
//! naming of every document. All writes that must happen once use create-if-absent
//! (If-None-Match `*`), which is what makes redelivered messages harmless (see `idempotency`).

use std::sync::Arc;

use time::OffsetDateTime;

use crate::domain::holds::HoldSet;
use crate::domain::plan::Plan;
use crate::domain::request::RequestId;
use crate::domain::slice::{ItemOutcome, SliceResult, SliceTask};
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, Condition, StoreError, StoreResult};

mod paged_inventory;
mod paged_result;
pub use paged_inventory::{InventoryPager, InventoryPages};

pub const STATE: &str = "dsr-state";
pub const EXPORTS: &str = "dsr-exports";
pub const REPORTS: &str = "dsr-reports";
pub const AUDIT: &str = "dsr-audit";
pub(crate) const ARCHIVE: &str = "dsr-intake-archive";
pub(crate) const CONTAINERS: [&str; 5] = [STATE, EXPORTS, REPORTS, AUDIT, ARCHIVE];
/// Legal holds, in [`STATE`].
pub const HOLDS_DOC: &str = "config/holds.json";
/// Telemetry purges of requests (`purges/<request>/<slice>/<id>.json`), in [`STATE`].
pub(crate) const PURGES_PREFIX: &str = "purges/";
/// Workspaces in scope, in [`STATE`].
pub(crate) const SCOPE_DOC: &str = "config/workspaces.json";

/// One inventory entry: the item, plus the resource document for management-plane items
/// (exported as JSON) or the records for telemetry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InventoryEntry {
    pub item: crate::domain::slice::Item,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<crate::domain::raw_json::RawJson>,
    /// For deletes, the SHA-256 of `doc` instead of the document: the product keeps no copy of
    /// what it erases, only proof of what it saw.
    #[serde(default, rename = "docSha256", skip_serializing_if = "Option::is_none")]
    pub doc_sha256: Option<String>,
    /// A legal hold on this one item (retention sweeps: a held person's jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<crate::domain::holds::HoldRef>,
}

/// Something discovery could not prove is the subject's (a display-name-only match), kept with
/// what it would take (the resource and its files, found with the same collateral checks) until
/// a person decides (`functions::review`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    pub review: crate::domain::review::ReviewItem,
    pub entries: Vec<InventoryEntry>,
}

impl InventoryEntry {
    /// What is stored for a request that does not export: the document (an ARM resource,
    /// telemetry rows) replaced by its SHA-256, so the state account holds no copy of the
    /// personal data being erased.
    pub(crate) fn strip_doc(&mut self) {
        if let Some(doc) = self.doc.take() {
            self.doc_sha256 = Some(crate::domain::ids::sha256_hex(doc.get().as_bytes()));
        }
    }
}

/// The frozen list of what a slice found, written once before anything is changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inventory {
    pub entries: Vec<InventoryEntry>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Display-name-only matches, for review: never processed with `entries`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// Set when `entries` are stored in pages instead of inline (`paged_inventory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<InventoryPages>,
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
pub(crate) type ContainersReady = Arc<tokio::sync::OnceCell<()>>;

impl StateStore {
    pub fn new(store: Arc<dyn BlobStore>, account: impl Into<String>) -> Self {
        Self {
            store,
            account: account.into(),
            containers_ready: Arc::default(),
        }
    }

    /// Share `memo` with other state stores over the same store and account.
    pub(crate) fn sharing_containers_ready(mut self, memo: ContainersReady) -> Self {
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

    pub(crate) fn plan_ref(&self, id: &RequestId) -> BlobRef {
        self.req(id, "plan.json")
    }
    pub(crate) fn report_ref(&self, id: &RequestId) -> BlobRef {
        self.req(id, "report.json")
    }
    pub(crate) fn completion_ref(&self, id: &RequestId, key: &str) -> BlobRef {
        self.req(id, &format!("completions/{key}.json"))
    }
    pub fn inventory_ref(&self, t: &SliceTask) -> BlobRef {
        self.req(&t.request_id, &format!("slices/{}/inventory.json", t.key))
    }
    pub(crate) fn chunk_ref(&self, t: &SliceTask, chunk: u32) -> BlobRef {
        self.result_page_ref(
            &t.request_id,
            &t.key,
            crate::domain::slice::PageSet::Chunks,
            chunk,
        )
    }
    pub(crate) fn result_ref(&self, id: &RequestId, key: &str) -> BlobRef {
        self.req(id, &format!("slices/{key}/result.json"))
    }
    pub(crate) fn workspace_inventory_ref(
        &self,
        ws: &crate::domain::workspace::WorkspaceId,
    ) -> BlobRef {
        self.blob(STATE, format!("inventory/workspaces/{}.json", ws.key()))
    }
    pub(crate) fn cleanup_ref(&self, ws: &crate::domain::workspace::WorkspaceId) -> BlobRef {
        self.blob(STATE, format!("cleanups/{}.json", ws.key()))
    }
    /// A telemetry purge of a request, kept until its certificate has been revised.
    pub(crate) fn purge_ref(&self, rec: &crate::domain::telemetry::PurgeRecord) -> BlobRef {
        self.blob(
            STATE,
            format!(
                "{PURGES_PREFIX}{}/{}/{}.json",
                rec.request_id,
                rec.slice_key,
                rec.name()
            ),
        )
    }

    /// Every purge record under `prefix` (`purges/` for all, `purges/<request>/<slice>/` for
    /// one slice), with the name it is stored under.
    pub(crate) async fn purge_records(
        &self,
        prefix: &str,
    ) -> StoreResult<Vec<(BlobRef, crate::domain::telemetry::PurgeRecord)>> {
        let mut out = Vec::new();
        for item in self.store.list_all(&self.account, STATE, prefix).await? {
            let r = self.blob(STATE, item.name);
            // Gone between listing and reading: a concurrent run closed it.
            if let Some(rec) = self.store.read_json(&r).await? {
                out.push((r, rec));
            }
        }
        Ok(out)
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
    pub async fn inventory(&self, t: &SliceTask) -> StoreResult<Option<Inventory>> {
        self.store.read_json(&self.inventory_ref(t)).await
    }
    pub async fn chunk(&self, t: &SliceTask, chunk: u32) -> StoreResult<Option<Vec<ItemOutcome>>> {
        self.store.read_json(&self.chunk_ref(t, chunk)).await
    }
    /// A slice's stored result: a paged one is its head (`StateStore::result_page` reads the
    /// items).
    pub async fn slice_result(
        &self,
        id: &RequestId,
        key: &str,
    ) -> StoreResult<Option<SliceResult>> {
        self.store.read_json(&self.result_ref(id, key)).await
    }

    /// Whether a slice's result is stored, without reading it (a heavy slice's result holds
    /// every item it processed; slice redeliveries and each completion only need to know).
    pub async fn has_slice_result(&self, id: &RequestId, key: &str) -> StoreResult<bool> {
        self.store.exists(&self.result_ref(id, key)).await
    }

    /// Keys of slices whose completion the aggregator has recorded.
    pub(crate) async fn completed_keys(&self, id: &RequestId) -> StoreResult<Vec<String>> {
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
    pub(crate) async fn record_workspace(
        &self,
        info: &crate::ports::control_plane::WorkspaceInfo,
    ) -> StoreResult<()> {
        self.store
            .write_json(&self.workspace_inventory_ref(&info.id), info)
            .await
    }

    /// Every workspace ever recorded.
    pub(crate) async fn known_workspaces(
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

    /// The legal holds (`dsr-state/config/holds.json`, managed with `azureml-dsr hold`). A
    /// missing document means no holds were ever configured; one that cannot be read or parsed
    /// is an error, never "no holds" (callers fail closed).
    pub async fn holds(&self) -> StoreResult<HoldSet> {
        Ok(self
            .store
            .read_json(&self.blob(STATE, HOLDS_DOC))
            .await?
            .unwrap_or_default())
    }

    /// The workspaces in scope (`dsr-state/config/workspaces.json`, managed with
    /// `azureml-dsr workspace`): intake accepts only these, retention sweeps cover them.
    pub async fn scope(&self) -> StoreResult<Vec<WorkspaceId>> {
        Ok(self
            .store
            .read_json(&self.blob(STATE, SCOPE_DOC))
            .await?
            .unwrap_or_default())
    }

    /// Change a configuration document with optimistic concurrency (If-Match on the version
    /// read, If-None-Match when absent), retrying when another writer got there first.
    pub(crate) async fn update_config<T, F>(&self, doc: &str, mut change: F) -> anyhow::Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Default,
        F: FnMut(&mut T) -> anyhow::Result<()>,
    {
        self.ensure_containers().await?;
        let blob = self.blob(STATE, doc);
        for _ in 0..8 {
            let (mut value, condition) = match self.store.read_small(&blob).await {
                Ok((bytes, etag)) => (
                    serde_json::from_slice::<T>(&bytes)
                        .map_err(|e| anyhow::anyhow!("{blob} is not valid: {e}"))?,
                    Condition::IfMatch(etag),
                ),
                Err(StoreError::NotFound(_)) => (T::default(), Condition::IfNotExists),
                Err(e) => return Err(e.into()),
            };
            change(&mut value)?;
            let body = serde_json::to_vec_pretty(&value)?;
            match self
                .store
                .put(
                    &blob,
                    bytes::Bytes::from(body),
                    "application/json",
                    condition,
                    &Default::default(),
                )
                .await
            {
                Ok(_) => return Ok(value),
                Err(StoreError::ConditionFailed(_) | StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("{blob}: too many concurrent changes, try again")
    }

    /// Replace the legal holds (tests and the CLI).
    pub async fn put_holds(&self, holds: &HoldSet) -> anyhow::Result<()> {
        self.update_config(HOLDS_DOC, |h: &mut HoldSet| {
            *h = holds.clone();
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Replace the workspace scope (tests, the seed and the CLI).
    pub async fn put_scope(&self, scope: &[WorkspaceId]) -> anyhow::Result<()> {
        self.update_config(SCOPE_DOC, |s: &mut Vec<WorkspaceId>| {
            *s = scope.to_vec();
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Archive an intake payload exactly as received (kept for audit, also when rejected).
    pub(crate) async fn archive_intake(
        &self,
        body: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<String> {
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
