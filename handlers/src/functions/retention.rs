//! `retention-sweep` (timer): for every workspace in scope, delete job history older than the
//! retention period through the same slice workers and aggregator a DSR uses (a request of type
//! `retention`, with its own report and audit record), then run workspace clean-ups that have
//! come due. One request per workspace per UTC day (`RET-<yyyymmdd>-<workspace key>`): a second
//! run the same day replays the fan-out, which is harmless (deterministic MessageIds, frozen
//! inventories), and resumes a sweep a crash interrupted. Large sweeps continue through the
//! slice's continuation messages, so each invocation stays bounded. Last, export bundles whose
//! links have expired are deleted (what the storage account's lifecycle rule does in Azure).

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{intake::fan_out, workspace_deleted, FnError, Services};
use crate::domain::plan::Plan;
use crate::domain::request::RequestId;
use crate::ports::blob::BlobStoreExt;
use crate::ports::control_plane::ControlPlaneError;
use crate::protocol::timer::TimerInfo;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    pub planned: Vec<String>,
    pub resumed: Vec<String>,
    pub skipped: Vec<String>,
    pub cleanups: Vec<String>,
    /// Export-area blobs deleted (or, in a dry run, that would be) because their links expired.
    pub expired_exports: usize,
}

/// Retention for one workspace: its `dsr-retention-days` tag, else the default.
pub fn retention_days(svc: &Services, info: &crate::ports::control_plane::WorkspaceInfo) -> u32 {
    info.tags
        .get("dsr-retention-days")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|d| *d > 0)
        .unwrap_or(svc.settings.retention_days)
}

pub async fn run(
    svc: &Services,
    timer: &TimerInfo,
    now: OffsetDateTime,
) -> Result<SweepOutcome, FnError> {
    if timer.is_past_due {
        warn!("retention-sweep: a scheduled run was missed (IsPastDue); catching up now");
    }
    let state = svc.state();
    state.ensure_containers().await?;
    let mut out = SweepOutcome::default();
    let holds = svc.holds().await?;
    for ws in &svc.scope().await? {
        let info = match svc.control.workspace(ws).await {
            Ok(i) => i,
            Err(ControlPlaneError::WorkspaceNotFound) => {
                warn!(workspace = %ws.key(), "retention-sweep: workspace not found; skipped");
                out.skipped.push(ws.to_string());
                continue;
            }
            Err(e) => return Err(FnError::Transient(e.to_string())),
        };
        state.record_workspace(&info).await?;
        let days = retention_days(svc, &info);
        let cutoff = now - time::Duration::days(days as i64);
        let id = format!(
            "RET-{:04}{:02}{:02}-{}",
            now.year(),
            now.month() as u8,
            now.day(),
            ws.key()
        );
        let request_id = RequestId::parse(&id).map_err(FnError::Transient)?;
        if let Some(plan) = state.plan(&request_id).await? {
            fan_out(svc, &plan).await?;
            out.resumed.push(id);
            continue;
        }
        let plan = Plan::retention(
            request_id,
            ws,
            cutoff,
            now,
            svc.settings.retention_dry_run,
            &holds,
        );
        if state
            .store
            .create_json(&state.plan_ref(&plan.request_id), &plan)
            .await?
        {
            fan_out(svc, &plan).await?;
            info!(request = %plan.request_id, retention_days = days, dry_run = plan.dry_run, "retention-sweep: planned");
            out.planned.push(id);
        } else {
            out.resumed.push(id);
        }
    }
    out.cleanups = workspace_deleted::run_due_cleanups(svc, now).await?;
    out.expired_exports = expire_exports(svc, now).await?;
    Ok(out)
}

/// Export bundles are copies of personal data: once their download links have expired
/// (`export_link_days` after they were written) nothing should keep them. In Azure the state
/// account's lifecycle rule (`infra/modules/storage-state.bicep`, same number of days) deletes
/// them about once a day; the sweep does the same, so the embedded default, and a deployment
/// whose rule was removed, keep no export past its links. Only the export container is
/// touched; reports, audit records and the intake archive are not. A retention dry run counts
/// without deleting. A blob with no modification time is kept.
pub async fn expire_exports(svc: &Services, now: OffsetDateTime) -> Result<usize, FnError> {
    let state = svc.state();
    let cutoff = now - time::Duration::days(svc.settings.export_link_days);
    let mut expired = 0;
    let mut marker = None;
    loop {
        // Page by page (an export area can be large), deleting each page's expired blobs in
        // one batch call.
        let page = state
            .store
            .list_page(&state.account, crate::state::EXPORTS, "", marker, 1000)
            .await?;
        let names: Vec<String> = page
            .items
            .into_iter()
            .filter(|item| item.last_modified.is_some_and(|m| m < cutoff))
            .map(|item| item.name)
            .collect();
        expired += names.len();
        if !svc.settings.retention_dry_run && !names.is_empty() {
            for outcome in state
                .store
                .delete_many(&state.account, crate::state::EXPORTS, &names)
                .await?
            {
                outcome?;
            }
        }
        match page.next {
            Some(n) => marker = Some(n),
            None => break,
        }
    }
    if expired > 0 {
        info!(
            count = expired,
            link_days = svc.settings.export_link_days,
            dry_run = svc.settings.retention_dry_run,
            "retention-sweep: expired export bundles removed"
        );
    }
    Ok(expired)
}
