//! The functions, one module each, named as in `functions/` (the public contract). Each takes
//! decoded trigger input and the wired [`Services`]; the protocol layer (`app`) decodes the host's
//! envelope and maps [`FnError`] to HTTP statuses.

pub mod aggregate;
pub mod discovery;
pub mod intake;
pub mod retention;
pub mod slice;
pub mod workspace_deleted;

use std::sync::Arc;

use crate::domain::holds::HoldSet;
use crate::ports::blob::BlobStore;
use crate::ports::bus::MessageBus;
use crate::ports::control_plane::ControlPlane;
use crate::ports::directory::Directory;
use crate::ports::run_history::RunHistory;
use crate::ports::telemetry::TelemetryStore;
use crate::state::StateStore;

/// Tunables, read and validated by [`crate::settings`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Storage account holding state, exports, reports, audit and the intake archive.
    pub state_account: String,
    /// Must equal the queues' maxDeliveryCount: on the last delivery a failing slice is recorded
    /// as failed (so the request completes as partially_failed) instead of being dead-lettered.
    pub max_delivery_count: u32,
    /// Items per slice invocation; larger slices continue through continuation messages.
    pub chunk_size: usize,
    /// Concurrent storage operations per invocation.
    pub concurrency: usize,
    /// Lifetime of the export link in the result message (at most 7 days).
    pub export_link_days: i64,
    /// The job-history sweep deletes every user's jobs older than `retention_days`: it runs only
    /// when enabled explicitly, and its first run after enabling is a dry run.
    pub job_retention_enabled: bool,
    /// Job history older than this is swept (a workspace tag `dsr-retention-days` may lengthen
    /// it, never shorten it).
    pub retention_days: u32,
    /// Blast-radius guard: a sweep that would delete more than this share (percent) of a
    /// workspace's jobs deletes nothing and reports instead.
    pub job_retention_max_share_pct: u32,
    /// Retention sweeps report what they would delete and change nothing.
    pub retention_dry_run: bool,
    /// Azure ML keeps a soft-deleted workspace recoverable this long (1-14 days, default 14):
    /// its leftovers are cleaned only after that.
    pub workspace_soft_delete_days: u32,
    /// Deletes request Log Analytics purges; when off, telemetry is reported as not purged.
    pub telemetry_purge_enabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            state_account: "dsrstate".into(),
            max_delivery_count: 10,
            chunk_size: 2000,
            concurrency: 16,
            export_link_days: 7,
            job_retention_enabled: false,
            retention_days: 365,
            job_retention_max_share_pct: 20,
            retention_dry_run: false,
            workspace_soft_delete_days: 14,
            telemetry_purge_enabled: true,
        }
    }
}

/// Everything a function needs, behind ports.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn BlobStore>,
    pub bus: Arc<dyn MessageBus>,
    pub directory: Arc<dyn Directory>,
    pub control: Arc<dyn ControlPlane>,
    pub telemetry: Arc<dyn TelemetryStore>,
    /// Who created each job, and its child runs (ARM knows neither).
    pub run_history: Arc<dyn RunHistory>,
    pub settings: Settings,
    /// Whether the state containers exist yet, shared by every [`StateStore`] this hands out so a
    /// process creates them once (`Default::default()` when building `Services`).
    pub state_containers: crate::state::ContainersReady,
}

impl Services {
    pub fn state(&self) -> StateStore {
        StateStore::new(self.store.clone(), self.settings.state_account.clone())
            .sharing_containers_ready(self.state_containers.clone())
    }

    /// The legal holds as they are now (read from the state account on every call, so a hold
    /// placed with the CLI applies at once). Unreadable is an error, never "no holds".
    pub async fn holds(&self) -> Result<HoldSet, FnError> {
        let state = self.state();
        state.ensure_containers().await?;
        state
            .holds()
            .await
            .map_err(|e| FnError::Transient(format!("legal holds unreadable: {e}")))
    }

    /// The workspaces in scope, from the state account.
    pub async fn scope(&self) -> Result<Vec<crate::domain::workspace::WorkspaceId>, FnError> {
        let state = self.state();
        state.ensure_containers().await?;
        state
            .scope()
            .await
            .map_err(|e| FnError::Transient(format!("workspace scope unreadable: {e}")))
    }
}

/// Delivery facts from the trigger metadata that functions act on.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub message_id: Option<String>,
    pub delivery_count: u32,
    pub enqueued_time: Option<time::OffsetDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum FnError {
    /// The payload can never be processed (the host would not send it): 4xx.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Worth retrying: the invocation fails and the message is redelivered.
    #[error("transient: {0}")]
    Transient(String),
}

impl From<crate::ports::blob::StoreError> for FnError {
    fn from(e: crate::ports::blob::StoreError) -> Self {
        FnError::Transient(e.to_string())
    }
}
impl From<crate::ports::bus::BusError> for FnError {
    fn from(e: crate::ports::bus::BusError) -> Self {
        FnError::Transient(e.to_string())
    }
}
