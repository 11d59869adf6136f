//! `retention-sweep` (timer): when job-history retention is enabled, for every workspace in
//! scope, delete job history older than the retention period through the same slice workers and
//! aggregator a DSR uses (a request of type `retention`, with its own report and audit record);
//! then, always, run workspace clean-ups that have come due. Deleting every user's old jobs is
//! the widest deletion this product makes, so it is guarded: off unless enabled, at least
//! [`MIN_JOB_RETENTION_DAYS`](crate::settings::MIN_JOB_RETENTION_DAYS), the first sweep after
//! enabling is a dry run (`RETDRY-…`), a workspace tag may only lengthen retention, and a sweep
//! that would delete more than a configured share of a workspace's jobs deletes nothing. One request per workspace per UTC day (`RET-<yyyymmdd>-<workspace key>`): a second
//! run the same day replays the fan-out, which is harmless (deterministic MessageIds, frozen
//! inventories), and resumes a sweep a crash interrupted. Large sweeps continue through the
//! slice's continuation messages, so each invocation stays bounded. Last, export bundles whose
//! links have expired are deleted (what the storage account's lifecycle rule does in Azure).
//! Every run also sends telemetry purges that wait for the rate limit and polls the open ones
//! to the end, writing a new certificate version when a request's purges have all ended
//! (`functions::telemetry_purges`).

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{intake::fan_out, workspace_deleted, FnError, Services};
use crate::domain::plan::Plan;
use crate::domain::request::RequestId;
use crate::ports::blob::BlobStoreExt;
use crate::ports::control_plane::ControlPlaneError;
use crate::protocol::timer::TimerInfo;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredState {
    pub requests: usize,
    pub archived_payloads: usize,
    /// Lifecycle documents of requests rejected at intake (they never get a report).
    pub rejected_lifecycles: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    pub planned: Vec<String>,
    pub resumed: Vec<String>,
    pub skipped: Vec<String>,
    /// Job-history retention is not enabled: no job was considered.
    pub job_history_disabled: bool,
    pub cleanups: Vec<String>,
    /// Export-area blobs deleted (or, in a dry run, that would be) because their links expired.
    pub expired_exports: usize,
    /// Blobs whose staged, never committed blocks were discarded (a crashed archive build).
    pub discarded_blocks: usize,
    /// Cancels remembered for a request that never arrived, forgotten after their time.
    pub expired_pending_cancels: usize,
    /// Finished requests whose working state was removed, and intake archive entries removed.
    pub expired_state: ExpiredState,
    /// Telemetry purges sent, polled and ended; certificates revised.
    pub purges: super::telemetry_purges::PurgeSweep,
    /// "Retained until" items re-checked after their date; final certificate versions written.
    pub follow_ups: super::follow_up::FollowUpSweep,
    /// Deadline warnings sent to the ticketing system (request, warning).
    pub deadline_warnings: Vec<(String, crate::domain::lifecycle::WarningKind)>,
}

/// Retention for one workspace: the app's setting, or its `dsr-retention-days` tag when that is
/// longer. A tag never shortens retention (anyone who can tag a workspace could otherwise have
/// its whole history swept).
pub fn retention_days(svc: &Services, info: &crate::ports::control_plane::WorkspaceInfo) -> u32 {
    let setting = svc.settings.retention_days;
    let tag = info.tags.get("dsr-retention-days").map(String::as_str);
    let days = effective_retention_days(setting, tag);
    if days == setting && tag.is_some_and(|t| t.trim() != setting.to_string()) {
        warn!(workspace = %info.id.key(), setting, "retention-sweep: a dsr-retention-days tag that is not a longer retention is ignored");
    }
    days
}

/// The app's setting, or a workspace tag's value when it is a longer one.
pub(crate) fn effective_retention_days(setting: u32, tag: Option<&str>) -> u32 {
    tag.and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&t| t > setting)
        .unwrap_or(setting)
}

/// What the first sweep after enabling recorded (`dsr-state/config/job-retention.json`): later
/// sweeps with the same retention delete; a new retention (or re-enabling) dry-runs again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunRecord {
    pub retention_days: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

pub const DRY_RUN_DOC: &str = "config/job-retention.json";

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
    let record_ref = state.blob(crate::state::STATE, DRY_RUN_DOC);
    let enabled = svc.settings.job_retention_enabled;
    // The first sweep after enabling (or after the retention changed) only reports.
    let first_run = if enabled {
        let seen: Option<DryRunRecord> = state.store.read_json(&record_ref).await?;
        seen.is_none_or(|r| r.retention_days != svc.settings.retention_days)
    } else {
        if let Err(e) = state.store.delete(&record_ref).await {
            if !matches!(e, crate::ports::blob::StoreError::NotFound(_)) {
                return Err(e.into());
            }
        }
        false
    };
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
        if !enabled {
            // Workspaces are still recorded (workspace-deletion clean-ups need them).
            continue;
        }
        let days = retention_days(svc, &info);
        let cutoff = now - time::Duration::days(days as i64);
        let id = format!(
            "{}-{:04}{:02}{:02}-{}",
            if first_run { "RETDRY" } else { "RET" },
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
            svc.settings.retention_dry_run || first_run,
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
    if first_run {
        let record = DryRunRecord {
            retention_days: svc.settings.retention_days,
            at: now,
        };
        state.store.write_json(&record_ref, &record).await?;
        info!(retention_days = record.retention_days, "retention-sweep: first sweep after enabling job-history retention ran as a dry run; the next one deletes");
    }
    out.job_history_disabled = !enabled;
    out.cleanups = workspace_deleted::run_due_cleanups(svc, now).await?;
    out.purges = super::telemetry_purges::sweep(svc, now).await?;
    out.follow_ups = super::follow_up::sweep(svc, now).await?;
    out.expired_exports = expire_exports(svc, now).await?;
    out.expired_state = expire_request_state(svc, now).await?;
    out.discarded_blocks = discard_stale_blocks(svc).await?;
    out.expired_pending_cancels = super::control::cancel::expire_pending(svc, now).await?;
    out.deadline_warnings = super::lifecycle::send_deadline_warnings(svc, now).await?;
    Ok(out)
}

/// How long a staged block may wait for its commit before the sweep discards it: an archive
/// build commits within one function invocation (minutes), so a day-old block is a crash's.
pub const STALE_BLOCK_HOURS: i64 = 24;

/// Staged blocks of archive builds that never committed, in the state account. (Azure discards
/// them itself after a week; the local file store keeps them until this.)
async fn discard_stale_blocks(svc: &Services) -> Result<usize, FnError> {
    let state = svc.state();
    let n = state
        .store
        .discard_stale_blocks(&state.account, time::Duration::hours(STALE_BLOCK_HOURS))
        .await?;
    if n > 0 {
        info!(
            blobs = n,
            "retention-sweep: stale uncommitted blocks discarded"
        );
    }
    Ok(n)
}

/// The working state of a request holds what its slices found; once the request is finished
/// (its `report.json` exists) and `state_retention_days` have passed, it goes — the report in
/// `dsr-reports`, the certificate and the audit record stay. A request without a report is in
/// progress and is never touched, however old. The intake archive (raw payloads, with UPNs and
/// names) goes after the same number of days. A retention dry run counts without deleting.
pub(crate) async fn expire_request_state(
    svc: &Services,
    now: OffsetDateTime,
) -> Result<ExpiredState, FnError> {
    let state = svc.state();
    let cutoff = now - time::Duration::days(svc.settings.state_retention_days.into());
    let dry = svc.settings.retention_dry_run;
    let mut out = ExpiredState::default();
    // Finished before the cutoff: the report is written once, when the request finishes.
    let mut expired = Vec::new();
    let mut lifecycles = Vec::new();
    let mut marker = None;
    loop {
        let page = state
            .store
            .list_page(
                &state.account,
                crate::state::STATE,
                "requests/",
                marker,
                1000,
            )
            .await?;
        for item in page.items {
            if let Some(id) = item
                .name
                .strip_prefix("requests/")
                .and_then(|r| r.strip_suffix("/report.json"))
            {
                if !id.contains('/') && item.last_modified.is_some_and(|m| m < cutoff) {
                    expired.push(id.to_string());
                }
            } else if let Some(id) = item
                .name
                .strip_prefix("requests/")
                .and_then(|r| r.strip_suffix("/lifecycle.json"))
            {
                if !id.contains('/') && item.last_modified.is_some_and(|m| m < cutoff) {
                    lifecycles.push(id.to_string());
                }
            }
        }
        match page.next {
            Some(n) => marker = Some(n),
            None => break,
        }
    }
    for id in &expired {
        let names: Vec<String> = state
            .store
            .list_all(
                &state.account,
                crate::state::STATE,
                &format!("requests/{id}/"),
            )
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        if !dry {
            for chunk in names.chunks(256) {
                for outcome in state
                    .store
                    .delete_many(&state.account, crate::state::STATE, chunk)
                    .await?
                {
                    // Gone already (a concurrent sweep) is what this wants.
                    match outcome {
                        Ok(_) | Err(crate::ports::blob::StoreError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        out.requests += 1;
    }
    // A request rejected at intake has a lifecycle (received -> rejected) and nothing else: it
    // goes after the same number of days since it last changed.
    for id in lifecycles.iter().filter(|id| !expired.contains(id)) {
        let Ok(rid) = RequestId::parse(id) else {
            continue;
        };
        let rejected = super::lifecycle::load(&state, &rid)
            .await?
            .is_some_and(|l| l.state == crate::domain::lifecycle::RequestState::Rejected);
        if rejected && state.plan(&rid).await?.is_none() {
            if !dry {
                match state
                    .store
                    .delete(&super::lifecycle::lifecycle_ref(&state, &rid))
                    .await
                {
                    Ok(_) | Err(crate::ports::blob::StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            out.rejected_lifecycles += 1;
        }
    }
    let mut marker = None;
    loop {
        let page = state
            .store
            .list_page(&state.account, crate::state::ARCHIVE, "", marker, 1000)
            .await?;
        let names: Vec<String> = page
            .items
            .into_iter()
            .filter(|i| i.last_modified.is_some_and(|m| m < cutoff))
            .map(|i| i.name)
            .collect();
        out.archived_payloads += names.len();
        if !dry && !names.is_empty() {
            for outcome in state
                .store
                .delete_many(&state.account, crate::state::ARCHIVE, &names)
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
    if out != ExpiredState::default() {
        info!(
            requests = out.requests,
            archived = out.archived_payloads,
            days = svc.settings.state_retention_days,
            dry_run = dry,
            "retention-sweep: expired request state removed"
        );
    }
    Ok(out)
}

/// Export bundles are copies of personal data: once their download links have expired
/// (`export_link_days` after they were written) nothing should keep them. In Azure the state
/// account's lifecycle rule (`infra/modules/storage-state.bicep`, same number of days) deletes
/// them about once a day; the sweep does the same, so the embedded default, and a deployment
/// whose rule was removed, keep no export past its links. Only the export container is
/// touched; reports, audit records and the intake archive are not. A retention dry run counts
/// without deleting. A blob with no modification time is kept.
pub(crate) async fn expire_exports(svc: &Services, now: OffsetDateTime) -> Result<usize, FnError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_lengthens_retention_and_never_shortens_it() {
        assert_eq!(effective_retention_days(180, None), 180);
        assert_eq!(effective_retention_days(180, Some("400")), 400);
        for shorter in ["1", "0", "179", "-5", "soon", ""] {
            assert_eq!(
                effective_retention_days(180, Some(shorter)),
                180,
                "{shorter}"
            );
        }
    }

    #[test]
    fn the_guard_trips_above_the_share() {
        use crate::functions::discovery::blast_radius_guard;
        assert!(blast_radius_guard(20, 100, 20).is_none());
        assert!(blast_radius_guard(21, 100, 20).is_some());
        assert!(blast_radius_guard(0, 0, 20).is_none());
        assert!(blast_radius_guard(1, 1, 100).is_none());
    }
}
