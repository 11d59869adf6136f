//! `workspace-deleted` (Event Grid): when Azure ML reports a workspace deleted
//! (`Microsoft.Resources.ResourceDeleteSuccess`, operation
//! `Microsoft.MachineLearningServices/workspaces/delete`), record it in the audit trail and clean
//! up what survives the workspace: its containers in the storage account and its telemetry.
//! A purge (`forceToPurge=true`) is cleaned at once; a soft delete only after the workspace's
//! soft-delete window, because it can be recovered until then (the retention sweep runs due
//! clean-ups, and cancels one if the workspace came back). A deleted workspace can no longer be
//! read, so the clean-up works from the inventory recorded on every DSR and sweep.
//! Containers another known workspace also uses are never deleted.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{FnError, Services};
use crate::domain::ids::short_hash;
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobStoreExt, DeleteOutcome};
use crate::ports::control_plane::{ControlPlaneError, WorkspaceInfo};
use crate::protocol::eventgrid::{GridEvent, RESOURCE_DELETE_SUCCESS};
use crate::state::AUDIT;

pub const WORKSPACE_DELETE: &str = "Microsoft.MachineLearningServices/workspaces/delete";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Ignored(String),
    Scheduled {
        workspace: String,
        due: OffsetDateTime,
    },
    CleanedUp {
        workspace: String,
    },
    NoInventory {
        workspace: String,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cleanup {
    pub workspace: WorkspaceId,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    pub purge: bool,
    pub event_id: String,
    pub info: WorkspaceInfo,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub outcome: Vec<String>,
}

pub async fn run(
    svc: &Services,
    event: &GridEvent,
    now: OffsetDateTime,
) -> Result<EventOutcome, FnError> {
    if event.event_type != RESOURCE_DELETE_SUCCESS {
        info!(event_type = %event.event_type, "workspace-deleted: not a resource deletion; ignored");
        return Ok(EventOutcome::Ignored(format!(
            "event type {}",
            event.event_type
        )));
    }
    let Some(data) = event.resource_action() else {
        return Err(FnError::BadRequest(
            "ResourceDeleteSuccess event without operationName/resourceUri".into(),
        ));
    };
    if !data.operation_name.eq_ignore_ascii_case(WORKSPACE_DELETE) {
        info!(operation = %data.operation_name, "workspace-deleted: not a workspace deletion; ignored");
        return Ok(EventOutcome::Ignored(format!(
            "operation {}",
            data.operation_name
        )));
    }
    if data
        .status
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("Succeeded"))
    {
        return Ok(EventOutcome::Ignored("deletion did not succeed".into()));
    }
    let Ok(ws) = WorkspaceId::parse(&data.resource_uri) else {
        return Ok(EventOutcome::Ignored("resource is not a workspace".into()));
    };
    let purge = data
        .http_request_url
        .as_deref()
        .is_some_and(|u| u.to_ascii_lowercase().contains("forcetopurge=true"));
    let state = svc.state();
    state.ensure_containers().await?;
    let at = event.time.unwrap_or(now);
    let audit = serde_json::json!({
        "event": "workspace_deleted", "workspace": ws.to_string(), "eventId": event.id, "purge": purge,
        "deletedAt": at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    let audit_name = format!(
        "workspace-deletions/{}-{}.json",
        ws.key(),
        short_hash(&[&event.id], 12)
    );
    state
        .store
        .create_json(&state.blob(AUDIT, audit_name), &audit)
        .await?;

    let Some(info) = state
        .store
        .read_json::<WorkspaceInfo>(&state.workspace_inventory_ref(&ws))
        .await?
    else {
        warn!(workspace = %ws.key(), "workspace-deleted: no inventory for this workspace; nothing known to clean");
        return Ok(EventOutcome::NoInventory {
            workspace: ws.to_string(),
        });
    };
    let due = if purge {
        at
    } else {
        at + time::Duration::days(svc.settings.workspace_soft_delete_days as i64)
    };
    let existing: Option<Cleanup> = state.store.read_json(&state.cleanup_ref(&ws)).await?;
    // Keep the earliest due date (a purge after a soft delete brings the clean-up forward).
    if existing
        .as_ref()
        .is_none_or(|c| !c.done && (due < c.due_at))
    {
        let c = Cleanup {
            workspace: ws.clone(),
            due_at: due,
            purge,
            event_id: event.id.clone(),
            info,
            done: false,
            outcome: vec![],
        };
        state.store.write_json(&state.cleanup_ref(&ws), &c).await?;
    }
    if due <= now {
        run_due_cleanups(svc, now).await?;
        return Ok(EventOutcome::CleanedUp {
            workspace: ws.to_string(),
        });
    }
    info!(workspace = %ws.key(), due = %due, "workspace-deleted: soft delete; clean-up scheduled after the recovery window");
    Ok(EventOutcome::Scheduled {
        workspace: ws.to_string(),
        due,
    })
}

/// Run every clean-up whose time has come. Returns the workspaces cleaned.
pub async fn run_due_cleanups(svc: &Services, now: OffsetDateTime) -> Result<Vec<String>, FnError> {
    let state = svc.state();
    let mut done = Vec::new();
    for item in state
        .store
        .list_all(&state.account, crate::state::STATE, "cleanups/")
        .await?
    {
        let blob = state.blob(crate::state::STATE, item.name);
        let Some(mut c) = state.store.read_json::<Cleanup>(&blob).await? else {
            continue;
        };
        if c.done || c.due_at > now {
            continue;
        }
        if !c.purge {
            // Recovered during the window? Then its data is live again: cancel.
            match svc.control.workspace(&c.workspace).await {
                Ok(_) => {
                    c.done = true;
                    c.outcome = vec!["cancelled: the workspace was recovered".into()];
                    state.store.write_json(&blob, &c).await?;
                    continue;
                }
                Err(ControlPlaneError::WorkspaceNotFound) => {}
                Err(e) => return Err(FnError::Transient(e.to_string())),
            }
        }
        c.outcome = clean(svc, &c.info).await?;
        c.done = true;
        state.store.write_json(&blob, &c).await?;
        state
            .store
            .create_json(
                &state.blob(
                    AUDIT,
                    format!("workspace-cleanups/{}.json", c.workspace.key()),
                ),
                &c,
            )
            .await?;
        info!(workspace = %c.workspace.key(), "workspace clean-up done");
        done.push(c.workspace.to_string());
    }
    Ok(done)
}

async fn clean(svc: &Services, info: &WorkspaceInfo) -> Result<Vec<String>, FnError> {
    let state = svc.state();
    let others: Vec<WorkspaceInfo> = state
        .known_workspaces()
        .await?
        .into_iter()
        .filter(|o| o.id != info.id)
        .collect();
    let mut notes = Vec::new();
    let mut containers = vec![
        info.artifact_container.clone(),
        info.blobstore_container.clone(),
    ];
    containers.dedup();
    // The notebooks share is Azure Files, not a blob container: emptied through the file port.
    if !info.file_share.is_empty() {
        let shared = others
            .iter()
            .any(|o| o.storage_account == info.storage_account && o.file_share == info.file_share);
        notes.push(if shared {
            format!(
                "{}/{} (file share): left in place, another workspace uses it",
                info.storage_account, info.file_share
            )
        } else {
            empty_share(svc, &info.storage_account, &info.file_share).await?
        });
    }
    for c in containers {
        let shared = others.iter().any(|o| {
            o.storage_account == info.storage_account
                && (o.artifact_container == c || o.blobstore_container == c)
        });
        if shared {
            notes.push(format!(
                "{}/{c}: left in place, another workspace uses it",
                info.storage_account
            ));
            continue;
        }
        let outcome = svc
            .store
            .delete_container(&info.storage_account, &c)
            .await?;
        notes.push(format!(
            "{}/{c}: {}",
            info.storage_account,
            match outcome {
                DeleteOutcome::Deleted => "deleted".to_string(),
                DeleteOutcome::NotFound => "already gone".to_string(),
                DeleteOutcome::Retained { until } => format!("deleted, retained until {until}"),
            }
        ));
    }
    // Any other azureml* container is reported, not deleted: nothing ties it to this workspace.
    for c in svc
        .store
        .list_containers(&info.storage_account, "azureml")
        .await?
    {
        notes.push(format!(
            "{}/{c}: left in place, not known to belong to this workspace",
            info.storage_account
        ));
    }
    match svc.telemetry.purge_workspace(info).await {
        Ok(s) => notes.push(format!("telemetry: {s:?}")),
        Err(e) => return Err(FnError::Transient(e.to_string())),
    }
    Ok(notes)
}

/// Delete every file of a workspace's notebooks share, then its emptied directories, deepest
/// first. The share itself stays (empty): deleting a share is a control-plane operation this
/// clean-up does not do. A missing share is reported as such; any other error fails the run so
/// it is retried, never reported as done.
async fn empty_share(svc: &Services, account: &str, share: &str) -> Result<String, FnError> {
    use crate::ports::file_share::{FileShareExt, ShareError};
    let fail = |e: ShareError| FnError::Transient(format!("{account}/{share} (file share): {e}"));
    let tree = match svc.files.list_tree(account, share, "").await {
        Ok(t) => t,
        Err(ShareError::ShareNotFound(_)) => {
            return Ok(format!(
                "{account}/{share} (file share): already gone (ShareNotFound)"
            ))
        }
        Err(e) => return Err(fail(e)),
    };
    for f in &tree.files {
        svc.files
            .delete_file(account, share, &f.path)
            .await
            .map_err(fail)?;
    }
    for d in &tree.directories {
        svc.files
            .delete_directory(account, share, d)
            .await
            .map_err(fail)?;
    }
    let retained = svc
        .files
        .retention(account, share)
        .await
        .map(|r| r.note(share))
        .unwrap_or_else(|e| Some(format!("share snapshots could not be checked: {e}")));
    Ok(format!(
        "{account}/{share} (file share): {} file(s) and {} folder(s) deleted, the empty share left in place{}",
        tree.files.len(),
        tree.directories.len(),
        retained.map(|n| format!("; {n}")).unwrap_or_default()
    ))
}
