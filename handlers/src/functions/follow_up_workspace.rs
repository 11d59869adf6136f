//! "Retained until" for a soft-deleted workspace. Azure ML soft-deletes a workspace by default:
//! its run history, models, data, notebooks and endpoints stay recoverable for a retention
//! period (14 days by default) and are deleted by the service when it ends (Learn, "Workspace
//! soft deletion", `concept-soft-delete`). When the workspace-deleted function sees a soft
//! delete, it enters the workspace here with that date; after the date the retention sweep asks
//! ARM again (`Workspaces_Get` through the control-plane port) and appends a final record to the
//! audit trail (`dsr-audit/workspace-deletions/<workspace>.final.json`): "fully erased on
//! <date>, verified" only when ARM no longer knows the workspace (404); a workspace still
//! soft-deleted, or recovered, is named instead.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::follow_up::FollowUpSweep;
use super::{FnError, Services};
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobRef, BlobStoreExt};
use crate::ports::control_plane::WorkspaceState;
use crate::state::{StateStore, STATE};

pub const PREFIX: &str = "follow-up-workspaces/";

/// One soft-deleted workspace awaiting the end of its recovery window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceFollowUp {
    pub workspace: WorkspaceId,
    #[serde(with = "time::serde::rfc3339")]
    pub deleted_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// The audit record of the deletion (`dsr-audit/workspace-deletions/…`).
    pub deletion_record: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub done_at: Option<OffsetDateTime>,
}

fn entry_ref(state: &StateStore, ws: &WorkspaceId) -> BlobRef {
    state.blob(STATE, format!("{PREFIX}{}.json", ws.key()))
}

/// Enter a soft-deleted workspace (create-only: a redelivered or repeated event keeps the first
/// entry and its date).
pub async fn record(
    state: &StateStore,
    ws: &WorkspaceId,
    deleted_at: OffsetDateTime,
    until: OffsetDateTime,
    deletion_record: &str,
) -> Result<(), FnError> {
    let entry = WorkspaceFollowUp {
        workspace: ws.clone(),
        deleted_at,
        until,
        deletion_record: deletion_record.to_string(),
        done_at: None,
    };
    state
        .store
        .create_json(&entry_ref(state, ws), &entry)
        .await?;
    Ok(())
}

/// The final statement for what ARM reports after the retention date; `true` when erased.
pub fn statement(
    arm: WorkspaceState,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> (bool, String) {
    match arm {
        WorkspaceState::Gone => (
            true,
            format!(
                "fully erased on {}, verified: Azure ML no longer knows the workspace (Workspaces_Get answers 404) after its soft-delete retention ended on {}",
                now.date(),
                until.date()
            ),
        ),
        WorkspaceState::SoftDeleted => (
            false,
            format!(
                "still there on {}: the workspace is still soft-deleted, and recoverable with its run history, models, data and notebooks, after its retention date {}",
                now.date(),
                until.date()
            ),
        ),
        WorkspaceState::Active => (
            false,
            format!(
                "still there on {}: the workspace was recovered and exists again, with the data it held",
                now.date()
            ),
        ),
    }
}

/// Re-check every entry whose date has passed.
pub async fn sweep(
    svc: &Services,
    state: &StateStore,
    now: OffsetDateTime,
) -> Result<FollowUpSweep, FnError> {
    let mut out = FollowUpSweep::default();
    for item in state.store.list_all(&state.account, STATE, PREFIX).await? {
        let at = state.blob(STATE, item.name);
        let Some(entry) = state.store.read_json::<WorkspaceFollowUp>(&at).await? else {
            continue;
        };
        if entry.done_at.is_some() {
            continue;
        }
        if entry.until > now {
            out.waiting += 1;
            continue;
        }
        let arm = match svc.control.workspace_state(&entry.workspace).await {
            Ok(s) => s,
            Err(e) => {
                // Asked again on the next run; never read as "gone".
                warn!(workspace = %entry.workspace.key(), error = %crate::logging::redact(&e.to_string()), "follow-up: workspace state unreadable");
                out.waiting += 1;
                continue;
            }
        };
        let (erased, statement) = statement(arm, entry.until, now);
        let rfc = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let record = serde_json::json!({
            "event": "workspace_deletion_followed_up",
            "version": "final",
            "workspace": entry.workspace.to_string(),
            "deletedAt": rfc(entry.deleted_at),
            "retainedUntil": rfc(entry.until),
            "checkedAt": rfc(now),
            "armState": format!("{arm:?}"),
            "erased": erased,
            "statement": statement,
            "basedOn": entry.deletion_record,
        });
        super::audit_trail::record(
            state,
            &format!("workspace-deletions/{}.final.json", entry.workspace.key()),
            &record,
        )
        .await?;
        if !erased {
            out.still_recoverable += 1;
        }
        out.finalised.push(entry.workspace.to_string());
        let done = WorkspaceFollowUp {
            done_at: Some(now),
            ..entry
        };
        state.store.write_json(&at, &done).await?;
        info!(workspace = %done.workspace.key(), erased, "follow-up: soft-deleted workspace checked after its retention date");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_workspace_arm_no_longer_knows_is_erased() {
        let until = time::macros::datetime!(2026-01-15 00:00 UTC);
        let now = time::macros::datetime!(2026-01-16 00:00 UTC);
        let (ok, s) = statement(WorkspaceState::Gone, until, now);
        assert!(
            ok && s.starts_with("fully erased on 2026-01-16, verified"),
            "{s}"
        );
        let (ok, s) = statement(WorkspaceState::SoftDeleted, until, now);
        assert!(!ok && s.contains("still soft-deleted"), "{s}");
        let (ok, s) = statement(WorkspaceState::Active, until, now);
        assert!(!ok && s.contains("recovered"), "{s}");
    }
}
