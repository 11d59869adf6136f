//! Local Azure ML control plane: ARM-shaped documents (as in the Azure REST API spec examples)
//! kept in the blob store under account `armlocal`, container `ws-<workspace key>`:
//! `workspace.json`, `jobs/<name>.json`, `models/<name>/<version>.json`,
//! `data/<name>/<version>.json`, `computes/<name>.json`,
//! `onlineEndpoints/<endpoint>/deployments/<name>.json` (and `batchEndpoints/…`), and datastores beyond the three
//! defaults as `datastores/<name>.json`. Paging mirrors ARM's `nextLink`.
//! Keeping them in the blob store means the same control plane runs on the local store and on
//! Azurite, and a before/after comparison of the store covers management-plane state too.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, DeleteOutcome, StoreError};
use crate::ports::control_plane::*;

pub const ARM_ACCOUNT: &str = "armlocal";
const PAGE: u32 = 100;
/// Documents of a page read at once.
const READ_CONCURRENCY: usize = 32;

pub struct LocalControlPlane {
    store: Arc<dyn BlobStore>,
}

impl LocalControlPlane {
    pub fn new(store: Arc<dyn BlobStore>) -> Self {
        Self { store }
    }

    pub fn container(ws: &WorkspaceId) -> String {
        format!("ws-{}", ws.key())
    }

    fn prefix(kind: ArmKind) -> &'static str {
        match kind {
            ArmKind::Job => "jobs/",
            ArmKind::ModelVersion => "models/",
            ArmKind::DataVersion => "data/",
            ArmKind::Compute => "computes/",
            ArmKind::Schedule => "schedules/",
        }
    }

    /// Blob name for an ARM id of a child resource of `ws`; `None` for anything else.
    pub fn blob_name(ws: &WorkspaceId, kind: ArmKind, id: &str) -> Option<String> {
        let base = ws.to_string();
        if id.len() <= base.len()
            || !id.is_char_boundary(base.len())
            || !id[..base.len()].eq_ignore_ascii_case(&base)
        {
            return None;
        }
        let rest: Vec<&str> = id[base.len()..]
            .trim_start_matches('/')
            .split('/')
            .collect();
        let ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && crate::adapters::local::fs_blob::validate_name(s).is_ok()
        };
        match (kind, rest.as_slice()) {
            (ArmKind::Job, ["jobs", n]) if ok(n) => Some(format!("jobs/{n}.json")),
            (ArmKind::Compute, ["computes", n]) if ok(n) => Some(format!("computes/{n}.json")),
            (ArmKind::Schedule, ["schedules", n]) if ok(n) => Some(format!("schedules/{n}.json")),
            (ArmKind::ModelVersion, ["models", n, "versions", v]) if ok(n) && ok(v) => {
                Some(format!("models/{n}/{v}.json"))
            }
            (ArmKind::DataVersion, ["data", n, "versions", v]) if ok(n) && ok(v) => {
                Some(format!("data/{n}/{v}.json"))
            }
            _ => None,
        }
    }

    /// Write (seed) a resource document.
    pub async fn put_resource(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        doc: &Value,
    ) -> Result<(), ControlPlaneError> {
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ControlPlaneError::Other("resource without id".into()))?;
        let name = Self::blob_name(ws, kind, id)
            .ok_or_else(|| ControlPlaneError::Other(format!("id not under workspace: {id}")))?;
        self.store
            .create_container(ARM_ACCOUNT, &Self::container(ws))
            .await
            .map_err(map_err)?;
        self.store
            .write_json(&BlobRef::new(ARM_ACCOUNT, Self::container(ws), name), doc)
            .await
            .map_err(map_err)
    }

    /// Soft-delete a workspace, as Azure ML does by default: it stays readable to ARM as
    /// `provisioningState: SoftDeleted` (and to nothing else) until it is purged or recovered.
    pub async fn soft_delete_workspace(&self, ws: &WorkspaceId) -> Result<(), ControlPlaneError> {
        let blob = Self::workspace_blob(ws);
        let mut doc = self
            .store
            .read_json::<Value>(&blob)
            .await
            .map_err(map_err)?
            .ok_or(ControlPlaneError::WorkspaceNotFound)?;
        doc["provisioningState"] = Value::String(SOFT_DELETED.into());
        self.store.write_json(&blob, &doc).await.map_err(map_err)
    }

    /// Recover a soft-deleted workspace.
    pub async fn recover_workspace(&self, ws: &WorkspaceId) -> Result<(), ControlPlaneError> {
        let blob = Self::workspace_blob(ws);
        let mut doc = self
            .store
            .read_json::<Value>(&blob)
            .await
            .map_err(map_err)?
            .ok_or(ControlPlaneError::WorkspaceNotFound)?;
        if let Some(o) = doc.as_object_mut() {
            o.remove("provisioningState");
        }
        self.store.write_json(&blob, &doc).await.map_err(map_err)
    }

    /// Register (seed) a datastore beyond the defaults, ARM-shaped (`name`, `properties`).
    pub async fn put_datastore(
        &self,
        ws: &WorkspaceId,
        doc: &Value,
    ) -> Result<(), ControlPlaneError> {
        let name = doc
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| {
                crate::adapters::local::fs_blob::validate_name(n).is_ok() && !n.contains('/')
            })
            .ok_or_else(|| ControlPlaneError::Other("datastore without a valid name".into()))?;
        self.store
            .write_json(
                &BlobRef::new(
                    ARM_ACCOUNT,
                    Self::container(ws),
                    format!("{DATASTORES}{name}.json"),
                ),
                doc,
            )
            .await
            .map_err(map_err)
    }

    /// The registered (non-default) datastore documents of a workspace.
    pub(crate) async fn datastore_documents(
        &self,
        ws: &WorkspaceId,
    ) -> Result<Vec<Value>, ControlPlaneError> {
        let container = Self::container(ws);
        let items = match self
            .store
            .list_all(ARM_ACCOUNT, &container, DATASTORES)
            .await
        {
            Ok(i) => i,
            Err(StoreError::NotFound(_)) => return Ok(vec![]),
            Err(e) => return Err(map_err(e)),
        };
        let mut out = Vec::new();
        for i in items {
            if let Some(doc) = self
                .store
                .read_json::<Value>(&BlobRef::new(ARM_ACCOUNT, container.clone(), i.name))
                .await
                .map_err(map_err)?
            {
                out.push(doc);
            }
        }
        Ok(out)
    }

    fn workspace_blob(ws: &WorkspaceId) -> BlobRef {
        BlobRef::new(ARM_ACCOUNT, Self::container(ws), "workspace.json")
    }

    pub async fn put_workspace(&self, info: &WorkspaceInfo) -> Result<(), ControlPlaneError> {
        self.store
            .create_container(ARM_ACCOUNT, &Self::container(&info.id))
            .await
            .map_err(map_err)?;
        self.store
            .write_json(
                &BlobRef::new(ARM_ACCOUNT, Self::container(&info.id), "workspace.json"),
                info,
            )
            .await
            .map_err(map_err)
    }
}

fn map_err(e: StoreError) -> ControlPlaneError {
    if e.is_transient() {
        ControlPlaneError::Transient(e.to_string())
    } else {
        ControlPlaneError::Other(e.to_string())
    }
}

/// Where registered datastores beyond the defaults are kept in a workspace's container.
const DATASTORES: &str = "datastores/";

/// The provisioning state ARM reports for a soft-deleted workspace.
pub(crate) const SOFT_DELETED: &str = "SoftDeleted";

#[async_trait]
impl ControlPlane for LocalControlPlane {
    async fn workspace(&self, ws: &WorkspaceId) -> Result<WorkspaceInfo, ControlPlaneError> {
        let doc = self
            .store
            .read_json::<Value>(&Self::workspace_blob(ws))
            .await
            .map_err(map_err)?
            .ok_or(ControlPlaneError::WorkspaceNotFound)?;
        // A soft-deleted workspace refuses every operation, as in Azure.
        if doc.get("provisioningState").and_then(Value::as_str) == Some(SOFT_DELETED) {
            return Err(ControlPlaneError::WorkspaceNotFound);
        }
        serde_json::from_value(doc)
            .map_err(|e| ControlPlaneError::Other(format!("workspace document: {e}")))
    }

    async fn datastores(&self, ws: &WorkspaceId) -> Result<Vec<Datastore>, ControlPlaneError> {
        let mut out = Datastore::defaults(&self.workspace(ws).await?);
        out.extend(
            self.datastore_documents(ws)
                .await?
                .iter()
                .filter_map(Datastore::from_arm),
        );
        Ok(out)
    }

    async fn workspace_state(&self, ws: &WorkspaceId) -> Result<WorkspaceState, ControlPlaneError> {
        let doc = self
            .store
            .read_json::<Value>(&Self::workspace_blob(ws))
            .await
            .map_err(map_err)?;
        Ok(match doc {
            None => WorkspaceState::Gone,
            Some(d) if d.get("provisioningState").and_then(Value::as_str) == Some(SOFT_DELETED) => {
                WorkspaceState::SoftDeleted
            }
            Some(_) => WorkspaceState::Active,
        })
    }

    /// `onlineEndpoints/<e>/deployments/<d>.json` and `batchEndpoints/<e>/deployments/<d>.json`.
    async fn deployments(&self, ws: &WorkspaceId) -> Result<Vec<Value>, ControlPlaneError> {
        let container = Self::container(ws);
        let mut out = Vec::new();
        for prefix in ["onlineEndpoints/", "batchEndpoints/"] {
            let items = match self.store.list_all(ARM_ACCOUNT, &container, prefix).await {
                Ok(i) => i,
                Err(StoreError::NotFound(_)) => return Err(ControlPlaneError::WorkspaceNotFound),
                Err(e) => return Err(map_err(e)),
            };
            for item in items {
                if !item.name.contains("/deployments/") {
                    continue;
                }
                let blob = BlobRef::new(ARM_ACCOUNT, container.clone(), item.name);
                if let Some(doc) = self
                    .store
                    .read_json::<Value>(&blob)
                    .await
                    .map_err(map_err)?
                {
                    out.push(doc);
                }
            }
        }
        Ok(out)
    }

    async fn list(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        next_link: Option<String>,
    ) -> Result<ResourcePage, ControlPlaneError> {
        let container = Self::container(ws);
        let page = self
            .store
            .list_page(ARM_ACCOUNT, &container, Self::prefix(kind), next_link, PAGE)
            .await;
        let page = match page {
            Ok(p) => p,
            Err(StoreError::NotFound(_)) => return Err(ControlPlaneError::WorkspaceNotFound),
            Err(e) => return Err(map_err(e)),
        };
        // The documents of a page are read concurrently (in page order): one round trip each
        // is inherent to this stand-in, a sequential wait for each is not.
        let docs: Vec<Option<Value>> = futures::stream::iter(page.items)
            .map(|item| {
                let blob = BlobRef::new(ARM_ACCOUNT, container.clone(), item.name);
                async move { self.store.read_json::<Value>(&blob).await }
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
            .map_err(map_err)?;
        // Deleted between list and read: skip, as ARM would not return it either.
        let value: Vec<Value> = docs.into_iter().flatten().collect();
        Ok(ResourcePage {
            value,
            next_link: page.next,
        })
    }

    async fn exists(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<bool, ControlPlaneError> {
        let Some(name) = Self::blob_name(ws, kind, id) else {
            return Err(ControlPlaneError::Other(format!(
                "not a {} of this workspace",
                kind.as_str()
            )));
        };
        let blob = BlobRef::new(ARM_ACCOUNT, Self::container(ws), name);
        Ok(self
            .store
            .read_json::<Value>(&blob)
            .await
            .map_err(map_err)?
            .is_some())
    }

    async fn delete(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<ResourceDelete, ControlPlaneError> {
        let Some(name) = Self::blob_name(ws, kind, id) else {
            return Ok(ResourceDelete::Refused(format!(
                "not a {} of this workspace",
                kind.as_str()
            )));
        };
        let blob = BlobRef::new(ARM_ACCOUNT, Self::container(ws), name);
        if kind == ArmKind::Job {
            if let Some(doc) = self
                .store
                .read_json::<Value>(&blob)
                .await
                .map_err(map_err)?
            {
                let status = doc
                    .pointer("/properties/status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if matches!(
                    status,
                    "Running" | "Preparing" | "Queued" | "Starting" | "Finalizing"
                ) {
                    return Ok(ResourceDelete::Refused(format!(
                        "job is {status}; cancel it first"
                    )));
                }
            }
        }
        match self.store.delete(&blob).await.map_err(map_err)? {
            DeleteOutcome::NotFound => Ok(ResourceDelete::NotFound),
            _ => Ok(ResourceDelete::Deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_only_inside_the_workspace() {
        let ws = WorkspaceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w").unwrap();
        let base = ws.to_string();
        assert_eq!(
            LocalControlPlane::blob_name(&ws, ArmKind::Job, &format!("{base}/jobs/j1")).as_deref(),
            Some("jobs/j1.json")
        );
        assert_eq!(
            LocalControlPlane::blob_name(
                &ws,
                ArmKind::ModelVersion,
                &format!("{base}/models/m/versions/2")
            )
            .as_deref(),
            Some("models/m/2.json")
        );
        assert!(
            LocalControlPlane::blob_name(&ws, ArmKind::Job, &format!("{base}/jobs/..")).is_none()
        );
        assert!(
            LocalControlPlane::blob_name(&ws, ArmKind::Job, &format!("{base}/jobs/a/b")).is_none()
        );
        assert!(
            LocalControlPlane::blob_name(&ws, ArmKind::Job, &format!("{base}2/jobs/j")).is_none()
        );
        assert!(
            LocalControlPlane::blob_name(&ws, ArmKind::Compute, &format!("{base}/jobs/j"))
                .is_none()
        );
    }
}
