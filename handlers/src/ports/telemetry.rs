//! The telemetry port: the subject's records in the workspace's Application Insights / Log
//! Analytics tables (`AmlRunEvent` and friends). Export = query; delete = purge, which in Azure
//! is asynchronous (operation id, up to 30 days) and therefore may be reported as pending.

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::subject::ResolvedSubject;
use crate::ports::control_plane::WorkspaceInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeStatus {
    Completed { removed: u64 },
    Pending { operation_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("transient telemetry error: {0}")]
    Transient(String),
    #[error("telemetry error: {0}")]
    Other(String),
}

#[async_trait]
pub trait TelemetryStore: Send + Sync + 'static {
    /// The subject's records, by table.
    async fn query(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<(String, Vec<Value>)>, TelemetryError>;

    /// Remove every record of a deleted workspace (its telemetry outlives it).
    async fn purge_workspace(&self, ws: &WorkspaceInfo) -> Result<PurgeStatus, TelemetryError>;

    /// Purge the subject's records from every table.
    async fn purge(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<(String, PurgeStatus)>, TelemetryError>;
}
