//! The telemetry port: the subject's records in the Log Analytics workspaces an Azure ML
//! workspace sends its logs to (`AmlRunEvent` and friends). Export = query; delete = purge,
//! which in Azure is asynchronous (operation id, up to 30 days), not idempotent and
//! rate-limited. The port therefore splits a purge into steps the caller persists between:
//! [`TelemetryStore::purge_plan`] (what to send), [`TelemetryStore::send_purge`] (one POST,
//! never retried automatically) and [`TelemetryStore::poll_purge`] (its status, by a later timer
//! run).

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::raw_json::RawJson;
use crate::domain::subject::ResolvedSubject;
use crate::ports::control_plane::WorkspaceInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeStatus {
    Completed { removed: u64 },
    Pending { operation_id: String },
}

/// The subject's rows of one table in one Log Analytics workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRows {
    /// Log Analytics workspace resource id (`local` in local mode).
    pub destination: String,
    pub table: String,
    /// Each row a JSON object (column name to value), kept as text: only the export file and
    /// the purge filter's key lookup read them.
    pub rows: Vec<RawJson>,
}

/// The purges that would remove the subject's rows of one table in one destination: purge
/// request bodies (`{table, filters}`), or why none can address them.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPurge {
    pub destination: String,
    pub table: String,
    pub bodies: Result<Vec<Value>, String>,
}

/// What one purge POST got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeSend {
    /// 202: the operation and where to poll it.
    Accepted {
        operation_id: String,
        status_url: String,
    },
    /// Not sent now (rate limit: the process's budget or the service's 429); send later.
    Deferred { reason: String },
}

/// The status of an accepted purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgePoll {
    Pending,
    Completed,
    Failed { reason: String },
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
    /// The subject's records, by destination and table.
    async fn query(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<TelemetryRows>, TelemetryError>;

    /// Remove every record of a deleted workspace (its telemetry outlives it).
    async fn purge_workspace(&self, ws: &WorkspaceInfo) -> Result<PurgeStatus, TelemetryError>;

    /// The purges that would remove the subject's records (only where records exist: the
    /// purge budget is scarce).
    async fn purge_plan(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<PlannedPurge>, TelemetryError>;

    /// Send one purge, once. An error is a refusal or an unknown outcome (the caller records
    /// it; it does not resend automatically).
    async fn send_purge(
        &self,
        destination: &str,
        body: &Value,
    ) -> Result<PurgeSend, TelemetryError>;

    /// The status of an accepted purge.
    async fn poll_purge(&self, status_url: &str) -> Result<PurgePoll, TelemetryError>;
}

/// The purges that would remove `subject`'s rows found by a query: one plan per table the
/// identity map covers (`domain::telemetry`), every adapter's answer to `plan_purges`.
pub(crate) fn plan_purges(
    found: Vec<TelemetryRows>,
    subject: &ResolvedSubject,
) -> Vec<PlannedPurge> {
    let oid = subject.object_id.to_string();
    found
        .into_iter()
        .filter_map(|t| {
            let col = crate::domain::telemetry::identity_column(&t.table)?;
            Some(PlannedPurge {
                bodies: crate::domain::telemetry::purge_bodies(col, &t.rows, &oid),
                destination: t.destination,
                table: t.table,
            })
        })
        .collect()
}
