//! The functions, one module each, named as in `functions/` (the public contract). Each takes
//! decoded trigger input and the wired [`Services`]; the protocol layer (`app`) decodes the host's
//! envelope and maps [`FnError`] to HTTP statuses.

pub mod aggregate;
pub mod archive;
pub mod audit_trail;
pub mod control;
pub mod discovery;
pub mod follow_up;
pub mod follow_up_workspace;
pub mod intake;
pub mod lifecycle;
pub mod lineage;
pub mod retention;
pub mod review;
pub mod slice;
pub mod telemetry_purges;
pub mod workspace_deleted;

use std::sync::Arc;

use crate::domain::holds::HoldSet;
use crate::ports::blob::BlobStore;
use crate::ports::bus::MessageBus;
use crate::ports::control_plane::ControlPlane;
use crate::ports::directory::Directory;
use crate::ports::file_share::FileShare;
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
    /// A finished request's working state (plan, inventories, chunks, completions) and every
    /// intake archive entry are removed this many days later; the report, the certificate and
    /// the audit record stay.
    pub state_retention_days: u32,
    /// Azure ML keeps a soft-deleted workspace recoverable this long (1-14 days, default 14):
    /// its leftovers are cleaned only after that.
    pub workspace_soft_delete_days: u32,
    /// A notebook file deleted while its share has snapshots is re-checked this many days
    /// later (default 30): share snapshots last until deleted, so there is no date to wait for.
    pub share_snapshot_recheck_days: u32,
    /// Deletes request Log Analytics purges; when off, telemetry is reported as not purged.
    pub telemetry_purge_enabled: bool,
    /// Days before an open request's deadline that the timer warns the ticketing system.
    pub deadline_warning_days: u32,
    /// Review approvals must come from someone other than the request's submitter.
    pub review_separate_approver: bool,
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
            state_retention_days: 90,
            workspace_soft_delete_days: 14,
            share_snapshot_recheck_days: 30,
            telemetry_purge_enabled: true,
            deadline_warning_days: 7,
            review_separate_approver: false,
        }
    }
}

/// Everything a function needs, behind ports.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn BlobStore>,
    /// The workspaces' Azure Files shares (notebooks and user files).
    pub files: Arc<dyn FileShare>,
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

impl FnError {
    /// Whether retrying (a redelivery) cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, FnError::BadRequest(_))
    }
}

// Each port error maps to the host's two outcomes deliberately: permanent where the fault is
// known to repeat on every delivery, transient where a later delivery can succeed, and
// transient for unclassified faults (`Other`: a 403 while a role assignment propagates heals;
// redelivery is bounded by maxDeliveryCount, and a slice records failure on its last one).

impl From<crate::ports::blob::StoreError> for FnError {
    fn from(e: crate::ports::blob::StoreError) -> Self {
        use crate::ports::blob::StoreError as E;
        match e {
            // A name the store refuses is refused on every delivery.
            E::InvalidName(_) => FnError::BadRequest(e.to_string()),
            // Compare-and-swap loops (`StateStore::update_config`) and create-if-absent helpers
            // handle these; one that reaches a function is a write that will lose again.
            E::ConditionFailed(_) | E::AlreadyExists(_) => FnError::BadRequest(e.to_string()),
            // A document another function writes may not be there yet (a message overtaking
            // the write it follows); expected absences are handled where they occur.
            E::NotFound(_) => FnError::Transient(e.to_string()),
            E::Transient(_) | E::RetriesSpent { .. } => FnError::Transient(e.to_string()),
            E::Other(_) => FnError::Transient(e.to_string()),
        }
    }
}

impl From<crate::ports::bus::BusError> for FnError {
    fn from(e: crate::ports::bus::BusError) -> Self {
        use crate::ports::bus::BusError as E;
        match e {
            // The message itself is malformed (id, schedule): the same message fails again.
            E::Invalid(_) => FnError::BadRequest(e.to_string()),
            E::Transient(_) | E::Other(_) => FnError::Transient(e.to_string()),
        }
    }
}

impl From<crate::ports::control_plane::ControlPlaneError> for FnError {
    fn from(e: crate::ports::control_plane::ControlPlaneError) -> Self {
        use crate::ports::control_plane::ControlPlaneError as E;
        match e {
            // A deleted workspace stays deleted for longer than the delivery window.
            E::WorkspaceNotFound => FnError::BadRequest(e.to_string()),
            E::Transient(_) | E::Other(_) => FnError::Transient(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::blob::StoreError;
    use crate::ports::bus::BusError;
    use crate::ports::control_plane::ControlPlaneError;

    fn permanent(e: impl Into<FnError>) -> bool {
        e.into().is_permanent()
    }

    #[test]
    fn store_invalid_name_is_permanent() {
        assert!(permanent(StoreError::InvalidName("a/../b".into())));
    }
    #[test]
    fn store_condition_failed_is_permanent() {
        assert!(permanent(StoreError::ConditionFailed("x".into())));
    }
    #[test]
    fn store_already_exists_is_permanent() {
        assert!(permanent(StoreError::AlreadyExists("x".into())));
    }
    #[test]
    fn store_not_found_is_transient() {
        assert!(!permanent(StoreError::NotFound("x".into())));
    }
    #[test]
    fn store_transient_is_transient() {
        assert!(!permanent(StoreError::Transient("503".into())));
    }
    #[test]
    fn store_retries_spent_is_transient_and_keeps_its_cause() {
        let e = StoreError::RetriesSpent {
            what: "put a/b/c: HTTP 503".into(),
            source: "Server Busy".into(),
        };
        assert!(e.is_transient());
        assert_eq!(
            std::error::Error::source(&e).map(|s| s.to_string()),
            Some("Server Busy".to_string())
        );
        assert!(!permanent(e));
    }
    #[test]
    fn store_other_is_transient() {
        assert!(!permanent(StoreError::Other("403".into())));
    }
    #[test]
    fn bus_invalid_is_permanent() {
        assert!(permanent(BusError::Invalid("MessageId too long".into())));
    }
    #[test]
    fn bus_transient_and_other_are_transient() {
        assert!(!permanent(BusError::Transient("503".into())));
        assert!(!permanent(BusError::Other("401".into())));
    }
    #[test]
    fn control_plane_workspace_not_found_is_permanent() {
        assert!(permanent(ControlPlaneError::WorkspaceNotFound));
    }
    #[test]
    fn control_plane_transient_and_other_are_transient() {
        assert!(!permanent(ControlPlaneError::Transient("429".into())));
        assert!(!permanent(ControlPlaneError::Other("403".into())));
    }
}
