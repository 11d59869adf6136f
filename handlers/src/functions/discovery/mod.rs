//! Discovery: what belongs to the subject in one workspace, per resource type. Pure decisions
//! (who matches) live in `domain::subject`; this module walks the ports. `discover` picks the
//! resource type's walk: [`jobs`] (jobs, their run folders, schedules), [`assets`] (models and
//! data, and the collateral rules for their files), [`compute`], [`notebooks`], [`telemetry`].
//! The helpers here (entries, blob listings, run-history look-ups) are shared by them.
//!
//! Collateral protection: files behind a model or data asset are only looked for in the
//! workspace's own blob datastores (never another workspace's, never the service's state
//! account), and only taken when no asset or job of another user is in or over the same folder;
//! a job's folders are named by the job's and its child runs' names and data container ids.
//!
//! Attribution: a job is the subject's only when its run-history record names the subject's
//! object id (`domain::attribution`); ARM's `systemData.createdBy` of a job is a display name
//! and is never used. A job whose creator cannot be established is left untouched and listed.

mod assets;
mod compute;
mod jobs;
mod notebooks;
mod telemetry;

pub use assets::{resolve_uri, Location};
pub use jobs::blast_radius_guard;

use serde_json::Value;

use super::{FnError, Services};
use crate::domain::attribution::RunRecord;
use crate::domain::plan::ResourceType;
use crate::domain::raw_json::RawJson;
use crate::domain::slice::{Item, SliceTask};
use crate::ports::blob::BlobStoreExt;
use crate::ports::control_plane::{ArmKind, ControlPlaneError, WorkspaceInfo};
use crate::ports::run_history::RunHistoryError;
use crate::state::{Inventory, InventoryEntry, InventoryPager};

/// A discovery failure that retrying cannot fix (the slice fails with this reason).
#[derive(Debug)]
pub enum DiscoveryError {
    Permanent(String),
    Retry(FnError),
}

impl From<FnError> for DiscoveryError {
    fn from(e: FnError) -> Self {
        match e {
            // A fault every delivery would repeat: fail the slice now (see `FnError`'s mappings).
            FnError::BadRequest(m) => DiscoveryError::Permanent(m),
            e => DiscoveryError::Retry(e),
        }
    }
}
impl From<crate::ports::blob::StoreError> for DiscoveryError {
    fn from(e: crate::ports::blob::StoreError) -> Self {
        DiscoveryError::Retry(e.into())
    }
}
impl From<ControlPlaneError> for DiscoveryError {
    fn from(e: ControlPlaneError) -> Self {
        match e {
            ControlPlaneError::WorkspaceNotFound => {
                DiscoveryError::Permanent("workspace not found".into())
            }
            other => DiscoveryError::Retry(other.into()),
        }
    }
}

/// What a slice finds. Entries that `pager` has not taken (all but a request's jobs, which are
/// stored page by page as they are found) are in the returned inventory's `entries`.
pub async fn discover(
    svc: &Services,
    task: &SliceTask,
    pager: &mut InventoryPager,
) -> Result<Inventory, DiscoveryError> {
    let ws = svc.control.workspace(&task.workspace).await?;
    svc.state().record_workspace(&ws).await?;
    match task.resource_type {
        ResourceType::Jobs => jobs::jobs(svc, task, &ws, pager).await,
        ResourceType::Models => {
            assets::assets(
                svc,
                task,
                &ws,
                ArmKind::ModelVersion,
                "/properties/modelUri",
            )
            .await
        }
        ResourceType::Data => {
            assets::assets(svc, task, &ws, ArmKind::DataVersion, "/properties/dataUri").await
        }
        ResourceType::Compute => compute::compute(svc, task).await,
        ResourceType::Notebooks => notebooks::notebooks(svc, task, &ws).await,
        ResourceType::Telemetry => telemetry::telemetry(svc, task, &ws).await,
    }
}

fn resource_entry(kind: ArmKind, doc: &Value) -> Option<InventoryEntry> {
    let id = doc.get("id")?.as_str()?.to_string();
    Some(InventoryEntry {
        item: Item::Resource {
            resource_type: kind,
            id,
        },
        doc: Some(RawJson::of(doc)),
        doc_sha256: None,
        hold: None,
    })
}

async fn blobs_under(
    svc: &Services,
    account: &str,
    container: &str,
    prefix: &str,
    out: &mut Vec<InventoryEntry>,
) -> Result<(), DiscoveryError> {
    match svc.store.list_all(account, container, prefix).await {
        Ok(items) => {
            out.extend(items.into_iter().map(|b| InventoryEntry {
                item: Item::Blob {
                    account: account.into(),
                    container: container.into(),
                    name: b.name,
                    size: b.size,
                },
                doc: None,
                doc_sha256: None,
                hold: None,
            }));
            Ok(())
        }
        Err(crate::ports::blob::StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A resource name that can be used as one path segment.
fn safe_segment(n: &str) -> bool {
    crate::domain::subject::valid_alias(n) && !n.contains('/')
}

/// What run history says about one listed job: its record, or why it has none (404, or an
/// answer that is not one). A throttled or failing service is a retry, never "nobody's".
async fn job_run(
    svc: &Services,
    ws: &WorkspaceInfo,
    name: &str,
) -> Result<Result<RunRecord, String>, DiscoveryError> {
    match svc.run_history.run(ws, name).await {
        Ok(Some(r)) => Ok(Ok(r)),
        Ok(None) => Ok(Err("run history has no record of it".into())),
        Err(RunHistoryError::Transient(m)) => Err(DiscoveryError::Retry(FnError::Transient(
            crate::logging::redact(&format!("run history: {m}")),
        ))),
        Err(RunHistoryError::Other(m)) => Ok(Err(crate::logging::redact(&format!(
            "run history could not be read: {m}"
        )))),
    }
}
