//! The Azure ML management-plane port (ARM): the workspace and its jobs, model versions, data
//! versions and computes. Local adapter: ARM-shaped documents kept in the blob store; Azure
//! adapter: `management.azure.com` with paging, long-running deletes and throttling.

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::workspace::WorkspaceId;

/// What a workspace is connected to, read from the workspace resource and its datastores.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceInfo {
    pub id: WorkspaceId,
    /// Default storage account name (holds `azureml*` containers and the notebooks share).
    pub storage_account: String,
    /// Run history artifacts: `ExperimentRun/dcid.<run>/...`.
    pub artifact_container: String,
    /// Default datastore `workspaceblobstore`: `azureml-blobstore-<guid>`.
    pub blobstore_container: String,
    /// Notebooks and user files share `code-<guid>` (datastore `workspaceworkingdirectory`).
    pub file_share: String,
    pub app_insights: Option<String>,
    /// The Log Analytics workspace behind the Application Insights component.
    pub log_analytics_workspace: Option<String>,
    /// Log Analytics workspaces the ML workspace's diagnostic settings send to
    /// (`Microsoft.Insights/diagnosticSettings`, `properties.workspaceId`): where `Aml*` tables
    /// are.
    #[serde(default)]
    pub diagnostic_destinations: Vec<String>,
    /// Why the diagnostic settings could not be read, if they could not (telemetry then fails
    /// rather than reporting an empty search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic_settings_error: Option<String>,
    pub key_vault: Option<String>,
    /// ARM tags; `dsr-retention-days` overrides the job-history retention for this workspace.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// ARM `location` (the region): where the workspace's run-history data plane is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A datastore registered in a workspace (Datastores_List / Datastores_Get): what an asset URI
/// `azureml://…/datastores/<name>/paths/…` points into. Asset files are only ever looked for in
/// the workspace's own datastores.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Datastore {
    pub name: String,
    /// `AzureBlob`, `AzureFile`, `AzureDataLakeGen2`, …
    pub datastore_type: String,
    /// Storage account name, lower-case.
    pub account: String,
    /// Blob container or file share; empty when the type has neither.
    pub container: String,
}

impl WorkspaceInfo {
    /// Every Log Analytics workspace that may hold the workspace's telemetry, without
    /// duplicates (resource ids compared case-insensitively).
    pub(crate) fn log_analytics_destinations(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self
            .diagnostic_destinations
            .iter()
            .chain(self.log_analytics_workspace.iter())
        {
            if !d.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(d)) {
                out.push(d.clone());
            }
        }
        out
    }
}

impl Datastore {
    /// From an ARM datastore document (`name`, `properties.datastoreType`,
    /// `properties.accountName`, `properties.containerName` or `fileShareName`).
    pub(crate) fn from_arm(doc: &Value) -> Option<Datastore> {
        let s = |p: &str| doc.pointer(p).and_then(Value::as_str);
        let name = s("/name")?.to_string();
        let account = s("/properties/accountName")?.to_ascii_lowercase();
        let container = s("/properties/containerName")
            .or_else(|| s("/properties/fileShareName"))
            .unwrap_or_default()
            .to_string();
        Some(Datastore {
            name,
            datastore_type: s("/properties/datastoreType")
                .unwrap_or_default()
                .to_string(),
            account,
            container,
        })
    }

    /// The datastores every workspace has, as its workspace document describes them.
    pub fn defaults(info: &WorkspaceInfo) -> Vec<Datastore> {
        let mut out = vec![
            Datastore {
                name: "workspaceblobstore".into(),
                datastore_type: "AzureBlob".into(),
                account: info.storage_account.clone(),
                container: info.blobstore_container.clone(),
            },
            Datastore {
                name: "workspaceartifactstore".into(),
                datastore_type: "AzureBlob".into(),
                account: info.storage_account.clone(),
                container: info.artifact_container.clone(),
            },
        ];
        if !info.file_share.is_empty() {
            out.push(Datastore {
                name: "workspaceworkingdirectory".into(),
                datastore_type: "AzureFile".into(),
                account: info.storage_account.clone(),
                container: info.file_share.clone(),
            });
        }
        out
    }

    pub fn is_blob(&self) -> bool {
        self.datastore_type.eq_ignore_ascii_case("AzureBlob")
    }
}

/// A kind of ARM child resource of a workspace (a domain type: it travels in inventories).
pub use crate::domain::resource::ArmKind;

/// One page of resources (ARM `value` + `nextLink`).
#[derive(Debug, Clone, Default)]
pub struct ResourcePage {
    pub value: Vec<Value>,
    pub next_link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceDelete {
    Deleted,
    NotFound,
    /// The service refused (running job, lock): reported, never silently skipped.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("workspace not found")]
    WorkspaceNotFound,
    #[error("transient control-plane error: {0}")]
    Transient(String),
    #[error("control-plane error: {0}")]
    Other(String),
}

impl ControlPlaneError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ControlPlaneError::Transient(_))
    }
}

/// What ARM says about a workspace, for acting on a deletion event: the event is only a hint,
/// ARM is the authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceState {
    /// The workspace exists (any provisioning state but soft-deleted).
    Active,
    /// Soft-deleted (`provisioningState: SoftDeleted`): recoverable until its retention ends.
    SoftDeleted,
    /// ARM answers 404: neither live nor recoverable (purged, or never existed).
    Gone,
}

#[async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    async fn workspace(&self, ws: &WorkspaceId) -> Result<WorkspaceInfo, ControlPlaneError>;

    /// Whether the workspace exists, is soft-deleted or is gone. The default, for adapters that
    /// cannot tell soft-deleted from gone, answers `SoftDeleted` when the workspace cannot be
    /// read: a clean-up then waits out the recovery window instead of acting at once.
    async fn workspace_state(&self, ws: &WorkspaceId) -> Result<WorkspaceState, ControlPlaneError> {
        match self.workspace(ws).await {
            Ok(_) => Ok(WorkspaceState::Active),
            Err(ControlPlaneError::WorkspaceNotFound) => Ok(WorkspaceState::SoftDeleted),
            Err(e) => Err(e),
        }
    }

    /// Every datastore registered in the workspace. The default, for adapters that cannot list
    /// them, is the workspace's default datastores only.
    async fn datastores(&self, ws: &WorkspaceId) -> Result<Vec<Datastore>, ControlPlaneError> {
        Ok(Datastore::defaults(&self.workspace(ws).await?))
    }

    /// One page of resources of `kind`, ARM-shaped (`id`, `name`, `systemData`, `properties`),
    /// as ARM returns them: a job's `systemData.createdBy` is a display name, and who created
    /// it is only in run history (`ports::run_history`).
    async fn list(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        next_link: Option<String>,
    ) -> Result<ResourcePage, ControlPlaneError>;

    /// Whether one resource still exists (ARM: GET answers 200, or 404), to verify a delete
    /// directly rather than by listing again.
    async fn exists(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<bool, ControlPlaneError>;

    /// Delete one resource by its ARM id (long-running operations are awaited).
    async fn delete(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<ResourceDelete, ControlPlaneError>;

    /// Every online and batch deployment of the workspace, ARM-shaped (`id`, `name`,
    /// `properties.model`), for lineage impact (`domain::lineage`): ARM lists them per endpoint
    /// (`onlineEndpoints/<e>/deployments`, `batchEndpoints/<e>/deployments`). The default
    /// refuses: a control plane that cannot list them must not report "no deployments".
    async fn deployments(&self, ws: &WorkspaceId) -> Result<Vec<Value>, ControlPlaneError> {
        let _ = ws;
        Err(ControlPlaneError::Other(
            "this control plane cannot list deployments".into(),
        ))
    }

    /// Every resource of `kind`, following `nextLink`.
    async fn list_all(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
    ) -> Result<Vec<Value>, ControlPlaneError> {
        let mut out = Vec::new();
        let mut next = None;
        loop {
            let page = self.list(ws, kind, next).await?;
            out.extend(page.value);
            match page.next_link {
                Some(n) => next = Some(n),
                None => return Ok(out),
            }
        }
    }
}
