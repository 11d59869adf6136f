//! Reports: the export manifest, the deletion certificate, the audit record and the result
//! message, all built from the plan and the stored slice results (pure functions).

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::deadline::Regulation;
use super::plan::{Plan, ResourceType};
use super::request::{RequestId, RequestKind};
use super::slice::{ItemStatus, SliceResult, SliceStatus};
use super::workspace::WorkspaceId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalStatus {
    Completed,
    /// Everything else is done, but one or more telemetry purges are still running in Log
    /// Analytics (asynchronous, up to 30 days). When they end, a new certificate version says
    /// `completed` or `partially_failed`.
    CompletedPurgePending,
    PartiallyFailed,
    /// Every slice finished and nothing failed, but something that may be the subject's could
    /// not be attributed (a job whose creator run history cannot tell) and was left untouched:
    /// the report's notes list it for a person to decide.
    NeedsReview,
    Rejected,
    /// Stopped on the ticketing system's request: items reached before the cancel carry their
    /// outcome, the rest are listed as skipped (cancelled, not deleted / not exported).
    Cancelled,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub items: u64,
    pub exported: u64,
    pub bytes_exported: u64,
    pub deleted: u64,
    pub verified_gone: u64,
    pub retained: u64,
    pub held: u64,
    pub skipped: u64,
    pub would_export: u64,
    pub would_delete: u64,
    pub pending: u64,
    pub failed: u64,
}

impl Counts {
    pub fn add(&mut self, status: &ItemStatus) {
        self.items += 1;
        match status {
            ItemStatus::Exported { size, .. } => {
                self.exported += 1;
                self.bytes_exported += size;
            }
            ItemStatus::Deleted { verified } => {
                self.deleted += 1;
                if *verified {
                    self.verified_gone += 1;
                }
            }
            ItemStatus::RetainedUntil { .. } | ItemStatus::InShareSnapshots { .. } => {
                self.retained += 1
            }
            ItemStatus::Held { .. } => self.held += 1,
            ItemStatus::Skipped { .. } => self.skipped += 1,
            ItemStatus::WouldExport => self.would_export += 1,
            ItemStatus::WouldDelete => self.would_delete += 1,
            ItemStatus::Pending { .. } => self.pending += 1,
            ItemStatus::Failed { .. } => self.failed += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceSummary {
    pub key: String,
    pub workspace: WorkspaceId,
    pub resource_type: ResourceType,
    pub status: SliceStatus,
    pub reason: Option<String>,
    pub hold: Option<String>,
    pub counts: Counts,
}

/// The report written once per request: export manifest or deletion certificate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalReport {
    pub request_id: RequestId,
    #[serde(rename = "type")]
    pub kind: RequestKind,
    pub status: FinalStatus,
    pub dry_run: bool,
    pub regulation: Regulation,
    /// The subject's Entra object id: the report is evidence for the privacy team (never logged).
    pub subject_object_id: String,
    pub subject_log_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub within_deadline: bool,
    pub counts: Counts,
    pub slices: Vec<SliceSummary>,
    /// Every item with its outcome (the certificate's or manifest's body).
    pub results: Vec<SliceResult>,
    /// RFC 6962 Merkle root over `results[*].items[*]` (leaf encoding: `domain::merkle`), also
    /// kept in the chained audit record so a changed item is visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_merkle_root: Option<String>,
    /// Lineage impact: jobs, models and deployments derived from the subject's data assets and
    /// jobs (`domain::lineage`); nothing in it is deleted. Absent for retention sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from_subject_data: Option<super::lineage::Lineage>,
}

impl FinalReport {
    /// The blob keys (`account/container/name`) the report lists, sorted, duplicates kept (a
    /// manifest listing an item twice is a defect the checks must see).
    pub fn blob_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .results
            .iter()
            .flat_map(|r| &r.items)
            .filter_map(|o| o.item.blob_key())
            .collect();
        keys.sort();
        keys
    }
}

/// True when every planned slice has a stored result.
pub(crate) fn all_slices_in(plan: &Plan, completed: &[String]) -> bool {
    plan.slices
        .iter()
        .all(|s| completed.iter().any(|c| c == &s.key))
}

/// Builds a report from its slice results one at a time, in plan order (the report is then the
/// same whichever order completions arrived in), a paged result's items a page at a time
/// (`SliceResult::pages`): counts, status and the Merkle root need nothing else, so a subject's million items are never held at once.
/// The report it returns holds the results as given: inline items stay inline, a paged
/// result stays a head.
pub(crate) struct ReportBuilder<'p> {
    plan: &'p Plan,
    total: Counts,
    slices: Vec<SliceSummary>,
    results: Vec<SliceResult>,
    merkle: super::merkle::RootBuilder,
    merkle_ok: bool,
    cancelled_skip: bool,
}

impl<'p> ReportBuilder<'p> {
    pub fn new(plan: &'p Plan) -> Self {
        Self {
            plan,
            total: Counts::default(),
            slices: Vec::with_capacity(plan.slices.len()),
            results: Vec::with_capacity(plan.slices.len()),
            merkle: Default::default(),
            merkle_ok: true,
            cancelled_skip: false,
        }
    }

    /// The next slice's result (plan order). Its inline items are taken in here; a paged
    /// result's follow through [`ReportBuilder::items`].
    pub fn slice(&mut self, mut r: SliceResult) {
        self.slices.push(SliceSummary {
            key: r.key.clone(),
            workspace: r.workspace.clone(),
            resource_type: r.resource_type,
            status: r.status,
            reason: r.reason.clone(),
            hold: self
                .plan
                .slice(&r.key)
                .and_then(|s| s.hold.as_ref().map(|h| h.id.clone())),
            counts: Counts::default(),
        });
        let inline = std::mem::take(&mut r.items);
        self.items(&inline);
        r.items = inline;
        self.results.push(r);
    }

    /// Items of the last slice given, in order.
    pub fn items(&mut self, items: &[super::slice::ItemOutcome]) {
        let Some(summary) = self.slices.last_mut() else {
            return;
        };
        for i in items {
            summary.counts.add(&i.status);
            self.total.add(&i.status);
            if self.merkle_ok && self.merkle.push_item(i).is_err() {
                self.merkle_ok = false;
            }
            self.cancelled_skip |= super::lifecycle::is_cancelled_skip(&i.status);
        }
    }

    /// Whether a cancel cut the work short: a slice that never started because of it, or an
    /// item it left unreached (seen in any page). Neither: the cancel came too late to stop
    /// anything.
    pub fn cancel_cut_short(&self) -> bool {
        self.cancelled_skip
            || self.results.iter().any(|r| {
                r.notes
                    .iter()
                    .any(|n| n == super::lifecycle::CANCELLED_BEFORE_START)
            })
    }

    pub fn finish(self, finished_at: OffsetDateTime) -> FinalReport {
        let plan = self.plan;
        FinalReport {
            request_id: plan.request_id.clone(),
            kind: plan.kind,
            status: final_status(&self.results, &self.total),
            dry_run: plan.dry_run,
            regulation: plan.regulation,
            subject_object_id: plan.subject.object_id.to_string(),
            subject_log_id: plan.subject_log_id.clone(),
            received_at: plan.received_at,
            deadline: plan.deadline,
            finished_at,
            within_deadline: finished_at <= plan.deadline,
            counts: self.total,
            slices: self.slices,
            results: self.results,
            items_merkle_root: self.merkle_ok.then(|| hex::encode(self.merkle.root())),
            derived_from_subject_data: None,
        }
    }
}

/// Failed if anything failed; otherwise pending while a telemetry purge runs; else completed.
fn final_status(results: &[SliceResult], total: &Counts) -> FinalStatus {
    let unattributed = results.iter().any(|r| {
        r.notes
            .iter()
            .any(|n| n.starts_with(super::attribution::UNATTRIBUTED_NOTE))
            || r.review.iter().any(|i| i.decision.is_none())
    });
    if results.iter().any(|r| r.status == SliceStatus::Failed) || total.failed > 0 {
        FinalStatus::PartiallyFailed
    } else if unattributed {
        // What a person must decide outranks a purge the service will finish by itself.
        FinalStatus::NeedsReview
    } else if total.pending > 0 {
        FinalStatus::CompletedPurgePending
    } else {
        FinalStatus::Completed
    }
}

impl FinalReport {
    /// The purges still open: (operation, requested at).
    pub(crate) fn pending_operations(&self) -> Vec<(String, Option<OffsetDateTime>)> {
        self.results
            .iter()
            .flat_map(|r| &r.items)
            .filter_map(|i| match &i.status {
                ItemStatus::Pending {
                    operation,
                    requested_at,
                } => Some((operation.clone(), *requested_at)),
                _ => None,
            })
            .collect()
    }

    /// A new version of the report with the items' statuses replaced by `update` (the outcome
    /// of telemetry purges that ended), counts and status recomputed, revised at `at`.
    pub fn revised(
        &self,
        at: OffsetDateTime,
        mut update: impl FnMut(&str, &super::slice::Item) -> Option<ItemStatus>,
    ) -> FinalReport {
        let mut r = self.clone();
        let mut total = Counts::default();
        for (res, summary) in r.results.iter_mut().zip(r.slices.iter_mut()) {
            let mut c = Counts::default();
            for i in &mut res.items {
                if let Some(s) = update(&res.key, &i.item) {
                    i.status = s;
                }
                c.add(&i.status);
                total.add(&i.status);
            }
            summary.counts = c;
        }
        // A cancelled request stays cancelled whatever its purges end as.
        if r.status != FinalStatus::Cancelled {
            r.status = final_status(&r.results, &total);
        }
        r.counts = total;
        r.finished_at = at;
        r.within_deadline = at <= r.deadline;
        r.items_merkle_root = super::merkle::items_root(&r).ok();
        r
    }
}

/// The status line of a report: "completed — telemetry purge pending (operation …, requested
/// …)" while purges run; `pending` are the open purges (a paged report's head does not hold
/// its items: see [`FinalReport::pending_operations`]).
pub(crate) fn status_line(r: &FinalReport, pending: &[(String, Option<OffsetDateTime>)]) -> String {
    match r.status {
        FinalStatus::Completed
        | FinalStatus::PartiallyFailed
        | FinalStatus::Rejected
        | FinalStatus::Cancelled
        | FinalStatus::NeedsReview => format!("{:?}", r.status),
        FinalStatus::CompletedPurgePending => {
            let ops: Vec<String> = pending
                .iter()
                .map(|(op, at)| match at {
                    Some(t) => format!("operation {op}, requested {t}"),
                    None => format!("operation {op}"),
                })
                .collect();
            format!("completed — telemetry purge pending ({})", ops.join("; "))
        }
    }
}

/// The message for the ticketing system (topic `dsr-results`). No personal data beyond the
/// ticket's own id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResultMessage {
    pub schema_version: String,
    pub request_id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<RequestKind>,
    pub status: FinalStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub deadline: Option<OffsetDateTime>,
    /// Where the report (certificate or manifest) is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Time-limited link to the export bundle, where the store can issue one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

fn status_word(s: &ItemStatus) -> String {
    match s {
        ItemStatus::Exported { sha256, size, .. } => format!(
            "exported ({size} bytes, sha256 {})",
            &sha256[..sha256.len().min(12)]
        ),
        ItemStatus::Deleted { verified: true } => "deleted, verified gone".into(),
        ItemStatus::Deleted { verified: false } => "deleted".into(),
        ItemStatus::RetainedUntil { until } => {
            format!("deleted; physically retained until {}", until.date())
        }
        // No end date to promise: a share snapshot lasts until someone deletes it.
        ItemStatus::InShareSnapshots {
            snapshots: Some(n),
            recheck_on,
        } => format!(
            "deleted from the share; retained in share snapshots ({n} exist) until those snapshots are deleted; re-checked on {}",
            recheck_on.date()
        ),
        ItemStatus::InShareSnapshots {
            snapshots: None,
            recheck_on,
        } => format!(
            "deleted from the share; its snapshots could not be listed, so it may be retained in them until they are deleted; re-checked on {}",
            recheck_on.date()
        ),
        ItemStatus::Held { hold, reason } => format!("held ({hold}: {reason})"),
        ItemStatus::Skipped { reason } => format!("skipped: {reason}"),
        ItemStatus::WouldExport => "would export (dry run)".into(),
        ItemStatus::WouldDelete => "would delete (dry run)".into(),
        ItemStatus::Pending {
            operation,
            requested_at: Some(t),
        } => format!("pending (operation {operation}, requested {t})"),
        ItemStatus::Pending {
            operation,
            requested_at: None,
        } => format!("pending (operation {operation})"),
        ItemStatus::Failed { reason } => format!("FAILED: {reason}"),
    }
}

/// The "Needs review" section: every item listed for a person's review, with its evidence and
/// the decision taken on it (who, when, why), if any.
fn render_review(s: &mut String, r: &FinalReport) {
    let items: Vec<&super::review::ReviewItem> =
        r.results.iter().flat_map(|res| &res.review).collect();
    if items.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Needs review\n\nNot acted on until a person approves (`azureml-dsr review approve {} <item>... --reason ...`).\n\n| Item | Resource | Evidence | Files | Decision |\n|---|---|---|---|---|",
        r.request_id
    );
    for i in items {
        let decision = match &i.decision {
            None => "pending".to_string(),
            Some(d) => format!(
                "{} by {} at {}: {}",
                if d.approved { "approved" } else { "rejected" },
                d.by,
                d.at,
                d.reason.replace('|', "/")
            ),
        };
        let _ = writeln!(
            s,
            "| {} | {} {} | {} | {} | {} |",
            i.id, i.resource_type, i.resource_id, i.evidence, i.files, decision
        );
    }
}

/// Human-readable summary (Markdown) of an export manifest or a deletion certificate.
pub fn render_markdown(r: &FinalReport) -> String {
    let mut s = markdown_head(r, &r.pending_operations());
    for res in &r.results {
        if res.items.is_empty() {
            continue;
        }
        s.push_str(&markdown_slice_title(res));
        for i in &res.items {
            s.push_str(&markdown_item(i));
        }
        s.push('\n');
    }
    s.push_str(&markdown_tail(r));
    s
}

/// The Markdown up to the item list: [`render_markdown`] is this, then per slice with items
/// [`markdown_slice_title`], a [`markdown_item`] line per item and a blank line, then
/// [`markdown_tail`]; the aggregator writes the same pieces a page at a time.
pub(crate) fn markdown_head(
    r: &FinalReport,
    pending: &[(String, Option<OffsetDateTime>)],
) -> String {
    let mut s = String::new();
    let title = match (r.kind, r.dry_run) {
        (_, true) => "Dry run report",
        (RequestKind::Export, _) => "Data export manifest",
        (RequestKind::Delete, _) => "Certificate of deletion",
        (RequestKind::Retention, _) => "Retention sweep report",
    };
    let _ = writeln!(s, "# {title}: {}\n", r.request_id);
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| Status | {} |", status_line(r, pending));
    let _ = writeln!(s, "| Regulation | {:?} |", r.regulation);
    let _ = writeln!(s, "| Subject (Entra object id) | {} |", r.subject_object_id);
    let _ = writeln!(s, "| Received | {} |", r.received_at);
    let _ = writeln!(
        s,
        "| Deadline | {} ({}) |",
        r.deadline,
        if r.within_deadline { "met" } else { "MISSED" }
    );
    let _ = writeln!(s, "| Finished | {} |", r.finished_at);
    let c = &r.counts;
    let _ = writeln!(
        s,
        "| Items | {} found; {} exported ({} bytes); {} deleted ({} verified gone); {} retained; {} held; {} skipped; {} pending; {} failed |",
        c.items, c.exported, c.bytes_exported, c.deleted, c.verified_gone, c.retained, c.held, c.skipped, c.pending, c.failed
    );
    if r.dry_run {
        let _ = writeln!(
            s,
            "| Dry run | would export {}, would delete {}; nothing was changed |",
            c.would_export, c.would_delete
        );
    }
    let _ = writeln!(
        s,
        "\n## Slices\n\n| Workspace | Resource | Status | Items | Note |\n|---|---|---|---|---|"
    );
    for sl in &r.slices {
        let note = match (&sl.reason, &sl.hold) {
            (Some(reason), _) => reason.clone(),
            (None, Some(h)) => format!("legal hold {h}"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:?} | {} | {} |",
            sl.workspace.name(),
            sl.resource_type.as_str(),
            sl.status,
            sl.counts.items,
            note
        );
    }
    render_review(&mut s, r);
    let _ = writeln!(s, "\n## Items\n");
    s
}

/// The heading of a slice's items in the Markdown.
pub(crate) fn markdown_slice_title(res: &SliceResult) -> String {
    format!(
        "### {} / {}\n\n",
        res.workspace.name(),
        res.resource_type.as_str()
    )
}

/// One item's line in the Markdown.
pub(crate) fn markdown_item(i: &super::slice::ItemOutcome) -> String {
    format!("- `{}` — {}\n", i.item.label(), status_word(&i.status))
}

/// What follows the items: the lineage impact, if traced.
pub(crate) fn markdown_tail(r: &FinalReport) -> String {
    r.derived_from_subject_data
        .as_ref()
        .map(super::lineage::render)
        .unwrap_or_default()
}
