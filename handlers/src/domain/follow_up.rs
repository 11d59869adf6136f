//! "Retained until", followed to the end. A delete that leaves data recoverable for a while
//! (blob soft delete, a telemetry purge still inside its completion window, a notebook file
//! in share snapshots, which have no end date and get a re-check date instead) says so in its
//! certificate; the follow-up ledger remembers each such item and its date, and once every date
//! has passed the items are checked again and a final certificate version says either "fully
//! erased on <date>, verified" or names what is still there. Pure: the checks themselves run
//! through the ports (`functions::follow_up`: blob store, file share, the purge operation's
//! status; `functions::follow_up_workspace` for a soft-deleted workspace).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::report::FinalReport;
use super::request::RequestId;
use super::slice::{Item, ItemOutcome, ItemStatus, SliceResult};

/// One retained item, as the certificate listed it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerItem {
    pub slice_key: String,
    pub item: Item,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// For a telemetry item: the status locations of its purge operations (`x-ms-status-location`
    /// of the 202), polled again by the final check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purge_status: Vec<String>,
    /// `until` is only the date of the re-check, not the end of a retention: the item is in
    /// share snapshots, which last until someone deletes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recheck_only: bool,
}

/// How long Log Analytics may take to complete a purge ("purge requests are completed within 30
/// days", Azure Monitor "Manage personal data in Azure Monitor Logs"): the date by which a
/// purged table is promised erased.
pub const PURGE_WINDOW: time::Duration = time::Duration::days(30);

impl LedgerItem {
    /// A telemetry purge is re-checked by its operation's status, not by a date: the follow-up
    /// waits for the request's purges to end (certificate v2) and then asks each operation again.
    pub fn is_purge(&self) -> bool {
        matches!(self.item, Item::Telemetry { .. })
    }
}

/// The follow-up ledger entry of one request (`dsr-state/follow-up/<id>.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub request_id: RequestId,
    /// The certificate that said "retained until".
    pub certificate: String,
    pub items: Vec<LedgerItem>,
    /// When the final version was written; `None` while the follow-up is open.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub done_at: Option<OffsetDateTime>,
}

impl Ledger {
    /// The ledger entry for a certificate, if anything in it is retained (dry runs never are).
    pub fn for_report(report: &FinalReport, certificate: String) -> Option<Ledger> {
        let items = report
            .results
            .iter()
            .flat_map(|r| Self::entries(report.finished_at, r, &r.items))
            .collect();
        Self::of(report, certificate, items)
    }

    /// The ledger of `report` holding `items` (gathered a page at a time with
    /// [`Ledger::entries`]); `None` when nothing is retained or it is a dry run.
    pub fn of(report: &FinalReport, certificate: String, items: Vec<LedgerItem>) -> Option<Ledger> {
        (!report.dry_run && !items.is_empty()).then(|| Ledger {
            request_id: report.request_id.clone(),
            certificate,
            items,
            done_at: None,
        })
    }

    /// The ledger entries of some of `result`'s items (all of them, or one page of a paged
    /// result); `finished_at` is the report's.
    pub fn entries<'a>(
        finished_at: OffsetDateTime,
        result: &'a SliceResult,
        items: &'a [ItemOutcome],
    ) -> impl Iterator<Item = LedgerItem> + 'a {
        items.iter().filter_map(move |i| {
            let entry = |until, recheck_only| LedgerItem {
                slice_key: result.key.clone(),
                item: i.item.clone(),
                until,
                purge_status: vec![],
                recheck_only,
            };
            match (&i.status, &i.item) {
                (ItemStatus::RetainedUntil { until }, _) => Some(entry(*until, false)),
                (ItemStatus::InShareSnapshots { recheck_on, .. }, _) => {
                    Some(entry(*recheck_on, true))
                }
                // Purged telemetry stays queryable until the purge completes.
                (ItemStatus::Pending { requested_at, .. }, Item::Telemetry { .. }) => Some(entry(
                    requested_at.unwrap_or(finished_at) + PURGE_WINDOW,
                    false,
                )),
                _ => None,
            }
        })
    }

    /// Open, and every retention date has passed (purges excepted: see [`LedgerItem::is_purge`]).
    pub fn due(&self, now: OffsetDateTime) -> bool {
        self.done_at.is_none()
            && self
                .items
                .iter()
                .filter(|i| !i.is_purge())
                .all(|i| i.until <= now)
    }
}

/// What the re-check found for one item: the pieces still recoverable (empty = erased), or
/// `None` when this kind of item cannot be re-checked.
pub type Found = BTreeMap<(String, String), Option<Vec<String>>>;

/// Key of an item in [`Found`].
pub fn key(slice_key: &str, item: &Item) -> (String, String) {
    (slice_key.to_string(), item.label())
}

/// The final certificate version and its one-line statement. An item with nothing left becomes
/// "deleted, verified gone"; an item with something left fails, naming it (the promise of
/// erasure was not met, so the certificate must not read "completed"); an item that could not
/// be re-checked keeps "retained until" and is named in the statement.
pub fn final_version(
    latest: &FinalReport,
    ledger: &Ledger,
    found: &Found,
    now: OffsetDateTime,
) -> (FinalReport, String) {
    let mut still = Vec::new();
    let mut unchecked = Vec::new();
    let revised = latest.revised(now, |slice_key, item| {
        let l = ledger
            .items
            .iter()
            .find(|l| l.slice_key == slice_key && &l.item == item)?;
        match found.get(&key(slice_key, item)) {
            Some(Some(pieces)) if pieces.is_empty() => Some(ItemStatus::Deleted { verified: true }),
            Some(Some(pieces)) => {
                still.push(format!("{}: {}", item.label(), pieces.join("; ")));
                let when = if l.recheck_only {
                    "at its re-check due"
                } else {
                    "after its retention date"
                };
                Some(ItemStatus::Failed {
                    reason: format!(
                        "still recoverable {when} {}: {}",
                        l.until.date(),
                        pieces.join("; ")
                    ),
                })
            }
            _ => {
                unchecked.push(item.label());
                None
            }
        }
    });
    // "Fully erased" is about the whole certificate: an item that failed before the follow-up
    // (a refused purge, a delete that failed) is named too.
    let failed_before: Vec<String> = revised
        .results
        .iter()
        .flat_map(|r| r.items.iter().map(move |i| (r, i)))
        .filter(|(r, i)| {
            matches!(i.status, ItemStatus::Failed { .. })
                && !ledger
                    .items
                    .iter()
                    .any(|l| l.slice_key == r.key && l.item == i.item)
        })
        .map(|(_, i)| i.item.label())
        .collect();
    let statement = if still.is_empty() && unchecked.is_empty() && failed_before.is_empty() {
        format!(
            "fully erased on {}, verified: {} item(s) that were retained are no longer recoverable",
            now.date(),
            ledger.items.len()
        )
    } else {
        let mut parts = Vec::new();
        if !still.is_empty() {
            parts.push(format!(
                "still there on {}: {}",
                now.date(),
                still.join(" | ")
            ));
        }
        if !unchecked.is_empty() {
            parts.push(format!("not re-checkable: {}", unchecked.join(", ")));
        }
        if !failed_before.is_empty() {
            parts.push(format!("not erased (failed): {}", failed_before.join(", ")));
        }
        parts.join("; ")
    };
    (revised, statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::deadline::Regulation;
    use crate::domain::plan::ResourceType;
    use crate::domain::report::{Counts, FinalStatus, SliceSummary};
    use crate::domain::request::RequestKind;
    use crate::domain::slice::{ItemOutcome, SliceResult, SliceStatus};
    use crate::domain::workspace::WorkspaceId;
    use time::macros::datetime;

    const WS: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1";

    fn file(path: &str) -> Item {
        Item::File {
            account: "acct".into(),
            share: "code-1".into(),
            path: path.into(),
            size: 2,
        }
    }

    fn report(items: Vec<ItemOutcome>) -> FinalReport {
        let now = datetime!(2026-11-28 12:00 UTC);
        FinalReport {
            request_id: RequestId::parse("R-1").unwrap(),
            kind: RequestKind::Delete,
            status: FinalStatus::Completed,
            dry_run: false,
            regulation: Regulation::Gdpr,
            subject_object_id: "oid".into(),
            subject_log_id: "log".into(),
            received_at: now,
            deadline: now,
            finished_at: now,
            within_deadline: true,
            counts: Counts::default(),
            slices: vec![SliceSummary {
                key: "k".into(),
                workspace: WorkspaceId::parse(WS).unwrap(),
                resource_type: ResourceType::Notebooks,
                status: SliceStatus::Completed,
                reason: None,
                hold: None,
                counts: Counts::default(),
            }],
            results: vec![SliceResult {
                key: "k".into(),
                workspace: WorkspaceId::parse(WS).unwrap(),
                resource_type: ResourceType::Notebooks,
                status: SliceStatus::Completed,
                reason: None,
                notes: vec![],
                items,
                review: vec![],
                pages: None,
            }],
            items_merkle_root: None,
            derived_from_subject_data: None,
        }
    }

    /// A file in share snapshots enters the ledger on its re-check date, marked as a re-check
    /// (no retention end is claimed); a file deleted from a share without snapshots does not.
    #[test]
    fn a_file_in_share_snapshots_is_followed_up_on_its_recheck_date() {
        let recheck_on = datetime!(2026-12-28 12:00 UTC);
        let r = report(vec![
            ItemOutcome {
                item: file("Users/a/x.ipynb"),
                status: ItemStatus::InShareSnapshots {
                    snapshots: Some(2),
                    recheck_on,
                },
            },
            ItemOutcome {
                item: file("Users/a/y.ipynb"),
                status: ItemStatus::Deleted { verified: true },
            },
        ]);
        let ledger = Ledger::for_report(&r, "cert".into()).expect("a ledger entry");
        assert_eq!(ledger.items.len(), 1);
        let l = &ledger.items[0];
        assert!(l.recheck_only);
        assert_eq!(
            (l.item.clone(), l.until),
            (file("Users/a/x.ipynb"), recheck_on)
        );
        assert!(!ledger.due(recheck_on - time::Duration::seconds(1)));
        assert!(ledger.due(recheck_on));

        // Still in a snapshot: failed, naming it, with the re-check (not a retention) date.
        let mut found = Found::new();
        found.insert(
            key("k", &l.item),
            Some(vec!["share snapshot taken 2026-11-20T10:00:00Z".into()]),
        );
        let (fin, statement) = final_version(&r, &ledger, &found, recheck_on);
        let reason = match &fin.results[0].items[0].status {
            ItemStatus::Failed { reason } => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert!(
            reason.contains("at its re-check due 2026-12-28"),
            "{reason}"
        );
        assert!(!reason.contains("retention date"), "{reason}");
        assert!(statement.contains("share snapshot taken"), "{statement}");

        // No snapshot holds it any more: erased, verified.
        found.insert(key("k", &l.item), Some(vec![]));
        let (fin, statement) = final_version(&r, &ledger, &found, recheck_on);
        assert_eq!(
            fin.results[0].items[0].status,
            ItemStatus::Deleted { verified: true }
        );
        assert!(statement.starts_with("fully erased on"), "{statement}");
    }

    /// The status is stored in reports: its JSON form is part of the certificate format.
    #[test]
    fn the_share_snapshot_status_round_trips() {
        let s = ItemStatus::InShareSnapshots {
            snapshots: None,
            recheck_on: datetime!(2026-12-28 12:00 UTC),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "in_share_snapshots", "recheckOn": "2026-12-28T12:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<ItemStatus>(v).unwrap(), s);
    }
}
