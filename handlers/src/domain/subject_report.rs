//! The report the person receives inside their export archive (issue 17): the request's facts
//! and the person's own items with their outcome (SHA-256 and size of what was exported), and
//! nothing else. The operator's stored report also holds search notes, review candidates with
//! their evidence, legal-hold text, error strings and lineage: any of those can name another
//! person's jobs, assets or display name, so here they appear only as the archive's "left out"
//! categories with counts ([`super::archive::Planner`]), exactly as `index.html` tells them.
//!
//! Written piece by piece (a head, one piece per item, one per left-out line), like the
//! archive's manifest: the same input gives the same bytes, so the caller counts them, then
//! writes them, and a report of 100,000 items is never one buffer. Pure.

use std::fmt::Write as _;

use super::archive::LeftOut;
use super::report::{Counts, FinalReport, FinalStatus};
use super::slice::{Item, ItemOutcome, ItemStatus, SliceResult, SliceStatus};

/// Schema of `report/export-report.json` inside the archive.
pub const SUBJECT_REPORT_SCHEMA: &str = "dsr-subject-report/1.0";

/// An item's outcome as the person is told it: no hold text, no error text (the privacy team's
/// stored report has them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SubjectStatus {
    #[serde(rename_all = "camelCase")]
    Exported {
        sha256: String,
        size: u64,
        content_type: String,
    },
    Deleted {
        verified: bool,
    },
    RetainedUntil {
        #[serde(with = "time::serde::rfc3339")]
        until: time::OffsetDateTime,
    },
    /// Deleted from the live file share, still in its share snapshots until those are deleted.
    #[serde(rename_all = "camelCase")]
    InShareSnapshots {
        #[serde(with = "time::serde::rfc3339")]
        recheck_on: time::OffsetDateTime,
    },
    /// Kept under a legal hold (the hold's id and text are the organisation's).
    Held,
    /// Not exported; the reason is the service's own wording about the person's item.
    Skipped {
        reason: String,
    },
    WouldExport,
    WouldDelete,
    Pending,
    /// Could not be exported (the error's text stays with the privacy team).
    Failed,
}

impl From<&ItemStatus> for SubjectStatus {
    fn from(s: &ItemStatus) -> Self {
        match s {
            ItemStatus::Exported {
                sha256,
                size,
                content_type,
                ..
            } => SubjectStatus::Exported {
                sha256: sha256.clone(),
                size: *size,
                content_type: content_type.clone(),
            },
            ItemStatus::Deleted { verified } => SubjectStatus::Deleted {
                verified: *verified,
            },
            ItemStatus::RetainedUntil { until } => SubjectStatus::RetainedUntil { until: *until },
            ItemStatus::InShareSnapshots { recheck_on, .. } => SubjectStatus::InShareSnapshots {
                recheck_on: *recheck_on,
            },
            ItemStatus::Held { .. } => SubjectStatus::Held,
            ItemStatus::Skipped { reason } => SubjectStatus::Skipped {
                reason: reason.clone(),
            },
            ItemStatus::WouldExport => SubjectStatus::WouldExport,
            ItemStatus::WouldDelete => SubjectStatus::WouldDelete,
            ItemStatus::Pending { .. } => SubjectStatus::Pending,
            ItemStatus::Failed { .. } => SubjectStatus::Failed,
        }
    }
}

impl SubjectStatus {
    fn words(&self) -> String {
        match self {
            SubjectStatus::Exported { sha256, size, .. } => {
                format!("exported ({size} bytes, SHA-256 {sha256})")
            }
            SubjectStatus::Deleted { verified: true } => "deleted, verified gone".into(),
            SubjectStatus::Deleted { verified: false } => "deleted".into(),
            SubjectStatus::RetainedUntil { until } => {
                format!(
                    "deleted; kept by the storage's retention until {}",
                    until.date()
                )
            }
            SubjectStatus::InShareSnapshots { recheck_on } => format!(
                "deleted from the file share; kept in the share's snapshots until those are deleted (checked again on {})",
                recheck_on.date()
            ),
            SubjectStatus::Held => "kept under a legal hold".into(),
            SubjectStatus::Skipped { reason } => format!("not exported: {reason}"),
            SubjectStatus::WouldExport => "would be exported (a dry run)".into(),
            SubjectStatus::WouldDelete => "would be deleted (a dry run)".into(),
            SubjectStatus::Pending => "still being processed".into(),
            SubjectStatus::Failed => {
                "could not be exported (the privacy team has the details)".into()
            }
        }
    }
}

/// One of the person's items: where it was found and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectItem {
    pub workspace: String,
    pub resource_type: super::plan::ResourceType,
    pub item: Item,
    #[serde(flatten)]
    pub outcome: SubjectStatus,
}

/// One searched part (workspace and resource type): its outcome and counts, no free text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectPart {
    pub workspace: String,
    pub resource_type: super::plan::ResourceType,
    pub searched_completely: bool,
    pub under_legal_hold: bool,
    pub counts: Counts,
}

/// `report/export-report.json`, as a reader parses it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectReport {
    #[serde(flatten)]
    pub head: SubjectHead,
    pub items: Vec<SubjectItem>,
    pub left_out: Vec<LeftOut>,
}

/// The request's facts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectHead {
    pub schema: String,
    pub request_id: String,
    pub status: FinalStatus,
    pub dry_run: bool,
    pub regulation: super::deadline::Regulation,
    /// The person's own Entra object id.
    pub subject_object_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: time::OffsetDateTime,
    pub within_deadline: bool,
    pub counts: Counts,
    pub parts: Vec<SubjectPart>,
    /// Jobs, models and deployments found to derive from the person's data: counted only
    /// (they can be other people's work).
    pub derived_from_your_data: usize,
}

/// The head of the report (parts are one per slice: a few dozen).
pub fn head(report: &FinalReport) -> SubjectHead {
    SubjectHead {
        schema: SUBJECT_REPORT_SCHEMA.into(),
        request_id: report.request_id.to_string(),
        status: report.status,
        dry_run: report.dry_run,
        regulation: report.regulation,
        subject_object_id: report.subject_object_id.clone(),
        received_at: report.received_at,
        deadline: report.deadline,
        finished_at: report.finished_at,
        within_deadline: report.within_deadline,
        counts: report.counts.clone(),
        parts: report
            .slices
            .iter()
            .map(|s| SubjectPart {
                workspace: s.workspace.name().to_string(),
                resource_type: s.resource_type,
                searched_completely: s.status == SliceStatus::Completed,
                under_legal_hold: s.hold.is_some(),
                counts: s.counts.clone(),
            })
            .collect(),
        derived_from_your_data: report
            .derived_from_subject_data
            .as_ref()
            .map_or(0, |l| l.derived.len()),
    }
}

/// One of the person's items, as the report lists it.
pub fn subject_item(r: &SliceResult, o: &ItemOutcome) -> SubjectItem {
    SubjectItem {
        workspace: r.workspace.name().to_string(),
        resource_type: r.resource_type,
        item: o.item.clone(),
        outcome: SubjectStatus::from(&o.status),
    }
}

fn items(report: &FinalReport) -> impl Iterator<Item = SubjectItem> + '_ {
    report
        .results
        .iter()
        .flat_map(|r| r.items.iter().map(move |o| subject_item(r, o)))
}

/// A list entry of the JSON (`first`: no comma before it).
pub fn list_item<T: serde::Serialize>(first: bool, v: &T) -> Result<Vec<u8>, String> {
    super::archive::list_item(first, v, "subject report")
}

/// `report/export-report.json` piece by piece; parses as [`SubjectReport`]. It is
/// [`json_opening`], a [`list_item`] per item, then [`json_closing`]: the archive writes the
/// same pieces a page of items at a time.
pub fn json_pieces<'a>(
    report: &'a FinalReport,
    left_out: &'a [LeftOut],
) -> impl Iterator<Item = Result<Vec<u8>, String>> + 'a {
    std::iter::once(json_opening(report))
        .chain(
            items(report)
                .enumerate()
                .map(|(i, e)| list_item(i == 0, &e)),
        )
        .chain(json_closing(left_out))
}

/// The JSON up to the first item.
pub fn json_opening(report: &FinalReport) -> Result<Vec<u8>, String> {
    // The head as an object, its closing brace replaced by the lists that follow.
    let mut b =
        serde_json::to_vec_pretty(&head(report)).map_err(|e| format!("subject report: {e}"))?;
    if b.pop() != Some(b'}') {
        return Err("subject report: the head is not an object".into());
    }
    while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
        b.pop();
    }
    b.extend_from_slice(b",\n  \"items\": [");
    Ok(b)
}

/// The JSON after the last item.
pub fn json_closing(left_out: &[LeftOut]) -> impl Iterator<Item = Result<Vec<u8>, String>> + '_ {
    std::iter::once(Ok(b"\n  ],\n  \"leftOut\": [".to_vec()))
        .chain(
            left_out
                .iter()
                .enumerate()
                .map(|(i, l)| list_item(i == 0, l)),
        )
        .chain(std::iter::once(Ok(b"\n  ]\n}\n".to_vec())))
}

fn md_cell(s: &str) -> String {
    s.replace('|', "/").replace(['\n', '\r'], " ")
}

/// `report/export-report.md` piece by piece: the same facts, to read. [`markdown_opening`],
/// a [`markdown_item`] per item, then [`markdown_closing`].
pub fn markdown_pieces<'a>(
    report: &'a FinalReport,
    left_out: &'a [LeftOut],
) -> impl Iterator<Item = String> + 'a {
    std::iter::once(markdown_opening(report))
        .chain(items(report).map(|i| markdown_item(&i)))
        .chain(markdown_closing(left_out))
}

/// The Markdown up to the first item.
pub fn markdown_opening(report: &FinalReport) -> String {
    let h = head(report);
    let mut s = String::new();
    let _ = writeln!(s, "# Your data export: {}\n", h.request_id);
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| Status | {:?} |", h.status);
    let _ = writeln!(s, "| Regulation | {:?} |", h.regulation);
    let _ = writeln!(s, "| You (Entra object id) | {} |", h.subject_object_id);
    let _ = writeln!(s, "| Received | {} |", h.received_at);
    let _ = writeln!(
        s,
        "| Deadline | {} ({}) |",
        h.deadline,
        if h.within_deadline { "met" } else { "missed" }
    );
    let _ = writeln!(s, "| Finished | {} |", h.finished_at);
    let c = &h.counts;
    let _ = writeln!(
        s,
        "| Items | {} found; {} exported ({} bytes); {} held; {} not exported; {} still being processed; {} failed |",
        c.items, c.exported, c.bytes_exported, c.held, c.skipped, c.pending, c.failed
    );
    if h.derived_from_your_data > 0 {
        let _ = writeln!(
            s,
            "| Derived work | {} job(s), model(s) or deployment(s) were found to use your data; they are not listed here (they may be other people's work) |",
            h.derived_from_your_data
        );
    }
    let _ = writeln!(
        s,
        "\n## What was searched\n\n| Workspace | Kind | Searched completely | Under legal hold | Items |\n|---|---|---|---|---|"
    );
    for p in &h.parts {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            md_cell(&p.workspace),
            p.resource_type.as_str(),
            if p.searched_completely { "yes" } else { "no" },
            if p.under_legal_hold { "yes" } else { "no" },
            p.counts.items
        );
    }
    s.push_str("\n## Your items\n\n");
    s
}

/// One item's line in the Markdown.
pub fn markdown_item(i: &SubjectItem) -> String {
    format!(
        "- {} / {}: `{}` — {}\n",
        md_cell(&i.workspace),
        i.resource_type.as_str(),
        i.item.label().replace('`', "'"),
        i.outcome.words()
    )
}

/// The Markdown after the last item.
pub fn markdown_closing(left_out: &[LeftOut]) -> impl Iterator<Item = String> + '_ {
    let left_head = if left_out.is_empty() {
        String::new()
    } else {
        "\n## Left out of this archive\n\n".to_string()
    };
    std::iter::once(left_head).chain(
        left_out
            .iter()
            .map(|l| format!("- {} — {}\n", md_cell(&l.item), md_cell(&l.reason))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces joined parse as [`SubjectReport`] (the flattened head included).
    #[test]
    fn json_pieces_parse() {
        let r: FinalReport = serde_json::from_value(serde_json::json!({
            "requestId": "T-1", "type": "export", "status": "completed", "dryRun": false,
            "regulation": "gdpr", "subjectObjectId": "oid", "subjectLogId": "log",
            "receivedAt": "2026-11-28T12:00:00Z", "deadline": "2026-12-28T12:00:00Z",
            "finishedAt": "2026-11-28T13:00:00Z", "withinDeadline": true,
            "counts": Counts::default(), "slices": [], "results": []
        }))
        .unwrap();
        let left = vec![LeftOut {
            item: "1 note(s)".into(),
            reason: "other".into(),
        }];
        let bytes: Vec<u8> = json_pieces(&r, &left)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .concat();
        let parsed: SubjectReport = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed.head.request_id, "T-1");
        assert!(parsed.items.is_empty());
        assert_eq!(parsed.left_out, left);
    }
}
