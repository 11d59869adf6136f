//! The report as a JSON document written a page at a time. A certificate or manifest lists
//! every item inline, and a heavy subject's million items must never be one buffer, so the
//! aggregator writes the document as frames around the items. The pieces concatenate to
//! exactly `serde_json::to_vec(&report)` (checked below): the bytes the audit record hashes do
//! not depend on how the report was written, and a reader sees the same document as before.

use super::report::FinalReport;
use super::slice::SliceResult;

/// What comes before and after a list: `open` ends with the list's `[`, `close` starts with
/// its `]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub open: Vec<u8>,
    pub close: Vec<u8>,
}

/// Between two results, and between two items.
pub const SEPARATOR: &[u8] = b",";

/// The document around its `results`. The results given are left out.
pub fn report_frame(report: &FinalReport) -> Result<Frame, String> {
    split(
        &to_vec(&report.clone_without_results())?,
        br#""results":[]"#,
    )
}

/// One result around its `items` (inline or paged: neither is written here).
pub fn result_frame(result: &SliceResult) -> Result<Frame, String> {
    split(&to_vec(&result.clone_without_items())?, br#""items":[]"#)
}

/// One item as it appears in the document.
pub fn item_bytes(item: &super::slice::ItemOutcome) -> Result<Vec<u8>, String> {
    to_vec(item)
}

fn to_vec<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(v).map_err(|e| format!("report serialisation: {e}"))
}

/// Split at the first `"key":[]`. Inside a JSON string a `"` is always escaped, so the marker
/// can only be the key itself; fields serialised before it cannot hold it as a key either
/// (checked by the tests with hostile text).
fn split(doc: &[u8], marker: &[u8]) -> Result<Frame, String> {
    let at = doc
        .windows(marker.len())
        .position(|w| w == marker)
        .ok_or("report serialisation: list marker not found")?;
    let cut = at + marker.len() - 1;
    Ok(Frame {
        open: doc[..cut].to_vec(),
        close: doc[cut..].to_vec(),
    })
}

impl FinalReport {
    /// The report's head fields, `results` empty.
    fn clone_without_results(&self) -> FinalReport {
        FinalReport {
            request_id: self.request_id.clone(),
            kind: self.kind,
            status: self.status,
            dry_run: self.dry_run,
            regulation: self.regulation,
            subject_object_id: self.subject_object_id.clone(),
            subject_log_id: self.subject_log_id.clone(),
            received_at: self.received_at,
            deadline: self.deadline,
            finished_at: self.finished_at,
            within_deadline: self.within_deadline,
            counts: self.counts.clone(),
            slices: self.slices.clone(),
            results: Vec::new(),
            items_merkle_root: self.items_merkle_root.clone(),
            derived_from_subject_data: self.derived_from_subject_data.clone(),
        }
    }
}

impl SliceResult {
    /// The result's head fields, `items` empty and no page list.
    fn clone_without_items(&self) -> SliceResult {
        SliceResult {
            key: self.key.clone(),
            workspace: self.workspace.clone(),
            resource_type: self.resource_type,
            status: self.status,
            reason: self.reason.clone(),
            notes: self.notes.clone(),
            items: Vec::new(),
            review: self.review.clone(),
            pages: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::deadline::Regulation;
    use crate::domain::plan::ResourceType;
    use crate::domain::report::{Counts, FinalStatus};
    use crate::domain::request::{RequestId, RequestKind};
    use crate::domain::slice::{Item, ItemOutcome, ItemStatus, SliceStatus};
    use crate::domain::workspace::WorkspaceId;
    use time::macros::datetime;

    const WS: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";

    fn blob(n: usize) -> ItemOutcome {
        ItemOutcome {
            item: Item::Blob {
                account: "a".into(),
                container: "c".into(),
                name: format!("ExperimentRun/dcid.r/\"items\":[] {n}.txt"),
                size: n as u64,
            },
            status: ItemStatus::Deleted { verified: true },
        }
    }

    fn result(key: &str, items: Vec<ItemOutcome>) -> SliceResult {
        SliceResult {
            key: key.into(),
            workspace: WorkspaceId::parse(WS).unwrap(),
            resource_type: ResourceType::Jobs,
            status: SliceStatus::Completed,
            // Hostile text before the list in each frame.
            reason: Some(r#"x","items":[],"results":[]"#.into()),
            notes: vec![r#""items":[]"#.into()],
            items,
            review: vec![],
            pages: None,
        }
    }

    fn report(results: Vec<SliceResult>) -> FinalReport {
        let now = datetime!(2026-12-02 12:00 UTC);
        FinalReport {
            request_id: RequestId::parse("R-1").unwrap(),
            kind: RequestKind::Delete,
            status: FinalStatus::Completed,
            dry_run: false,
            regulation: Regulation::Gdpr,
            subject_object_id: r#""results":[]"#.into(),
            subject_log_id: "log".into(),
            received_at: now,
            deadline: now,
            finished_at: now,
            within_deadline: true,
            counts: Counts::default(),
            slices: vec![],
            results,
            items_merkle_root: Some("00".into()),
            derived_from_subject_data: None,
        }
    }

    /// What the aggregator does: frame, then each result's frame around its items.
    fn streamed(r: &FinalReport) -> Vec<u8> {
        let frame = report_frame(r).unwrap();
        let mut out = frame.open.clone();
        for (i, res) in r.results.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(SEPARATOR);
            }
            let f = result_frame(res).unwrap();
            out.extend_from_slice(&f.open);
            for (j, item) in res.items.iter().enumerate() {
                if j > 0 {
                    out.extend_from_slice(SEPARATOR);
                }
                out.extend_from_slice(&item_bytes(item).unwrap());
            }
            out.extend_from_slice(&f.close);
        }
        out.extend_from_slice(&frame.close);
        out
    }

    #[test]
    fn the_pieces_are_the_serialised_report_byte_for_byte() {
        for r in [
            report(vec![]),
            report(vec![result("k0", vec![])]),
            report(vec![
                result("k1", (0..3).map(blob).collect()),
                result("k2", vec![]),
                result("k3", vec![blob(9)]),
            ]),
        ] {
            assert_eq!(
                String::from_utf8(streamed(&r)).unwrap(),
                String::from_utf8(serde_json::to_vec(&r).unwrap()).unwrap()
            );
        }
    }

    #[test]
    fn a_paged_head_is_written_without_its_page_list() {
        let mut paged = result("k", vec![]);
        paged.pages = Some(crate::domain::slice::ItemPages {
            set: crate::domain::slice::PageSet::Verified,
            pages: 2,
            items: 3,
        });
        let f = result_frame(&paged).unwrap();
        let text = String::from_utf8([f.open, f.close].concat()).unwrap();
        assert!(!text.contains("pages"), "{text}");
        assert!(text.ends_with(r#""items":[]}"#), "{text}");
    }
}
