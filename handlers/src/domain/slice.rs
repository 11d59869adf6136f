//! Slices: the unit of work of one function (one workspace x one resource type), the items a
//! slice finds, and what happened to each of them.

use time::OffsetDateTime;

use super::holds::HoldRef;
use super::plan::{Plan, ResourceType, SliceSpec};
use super::request::{RequestId, RequestKind};
use super::subject::ResolvedSubject;
use super::workspace::WorkspaceId;

/// The message a slice function receives (and sends to itself to continue in chunks).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceTask {
    pub request_id: RequestId,
    #[serde(rename = "type")]
    pub kind: RequestKind,
    pub dry_run: bool,
    pub subject: ResolvedSubject,
    pub workspace: WorkspaceId,
    pub resource_type: ResourceType,
    pub key: String,
    pub hold: Option<HoldRef>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub cutoff: Option<OffsetDateTime>,
    /// Index of the chunk of the slice's inventory this message processes.
    #[serde(default)]
    pub chunk: u32,
}

impl SliceTask {
    pub(crate) fn from_plan(plan: &Plan, spec: &SliceSpec) -> SliceTask {
        SliceTask {
            request_id: plan.request_id.clone(),
            kind: plan.kind,
            dry_run: plan.dry_run,
            subject: plan.subject.clone(),
            workspace: spec.workspace.clone(),
            resource_type: spec.resource_type,
            key: spec.key.clone(),
            hold: spec.hold.clone(),
            cutoff: plan.cutoff,
            chunk: 0,
        }
    }

    /// Deterministic MessageId: a redelivered sender cannot create a second copy.
    pub fn message_id(&self) -> String {
        format!("{}/{}/{}", self.request_id, self.key, self.chunk)
    }
}

/// Sent to the aggregator when a slice has its final result stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceCompletion {
    pub request_id: RequestId,
    pub key: String,
}

impl SliceCompletion {
    pub fn message_id(&self) -> String {
        format!("{}/{}/done", self.request_id, self.key)
    }
}

/// Something a slice found that belongs to the subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Item {
    /// A blob (run logs and outputs, model and data files, notebooks).
    #[serde(rename_all = "camelCase")]
    Blob {
        account: String,
        container: String,
        name: String,
        size: u64,
    },
    /// A file in the workspace's Azure Files share (notebooks and user files), by its path
    /// from the share root.
    #[serde(rename_all = "camelCase")]
    File {
        account: String,
        share: String,
        path: String,
        size: u64,
    },
    /// A management-plane resource (job, model version, data version, compute). The kind is
    /// parsed, not a string: an inventory naming an unknown kind does not load.
    #[serde(rename_all = "camelCase")]
    Resource {
        resource_type: super::resource::ArmKind,
        id: String,
    },
    /// Telemetry records of the subject in one table.
    #[serde(rename_all = "camelCase")]
    Telemetry {
        table: String,
        records: u64,
        /// The Log Analytics workspace (resource id) the records are in; absent in
        /// inventories written before several destinations were searched.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<String>,
    },
}

impl Item {
    /// `account/container/name` of a blob item (`account/share/path` of a file): how stored
    /// files are keyed in manifests and checks.
    pub fn blob_key(&self) -> Option<String> {
        match self {
            Item::File {
                account,
                share,
                path,
                ..
            } => Some(format!("{account}/{share}/{path}")),
            Item::Blob {
                account,
                container,
                name,
                ..
            } => Some(format!("{account}/{container}/{name}")),
            _ => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Item::Blob {
                account,
                container,
                name,
                ..
            } => format!("blob {account}/{container}/{name}"),
            Item::File {
                account,
                share,
                path,
                ..
            } => format!("file {account}/{share}/{path}"),
            Item::Resource { resource_type, id } => format!("{resource_type} {id}"),
            Item::Telemetry {
                table,
                records,
                destination,
            } => match destination.as_deref().and_then(|d| d.rsplit('/').next()) {
                Some(la) => format!("telemetry {table} in {la} ({records} records)"),
                None => format!("telemetry {table} ({records} records)"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ItemStatus {
    Exported {
        path: String,
        sha256: String,
        size: u64,
        #[serde(rename = "contentType")]
        content_type: String,
    },
    /// Gone; `verified` once a re-list confirmed it.
    Deleted {
        verified: bool,
    },
    RetainedUntil {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// Deleted from the live Azure Files share, which had snapshots when it was deleted: a
    /// snapshot taken while the file existed still holds it until that snapshot is deleted.
    /// Share snapshots have no expiry of their own, so there is no "retained until" date: the
    /// follow-up re-checks every snapshot on `recheck_on` (`DSR_SHARE_SNAPSHOT_RECHECK_DAYS`
    /// after the delete).
    InShareSnapshots {
        /// The share's snapshots after the delete; `None` when they could not be listed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshots: Option<u32>,
        #[serde(rename = "recheckOn", with = "time::serde::rfc3339")]
        recheck_on: OffsetDateTime,
    },
    Held {
        hold: String,
        reason: String,
    },
    Skipped {
        reason: String,
    },
    WouldExport,
    WouldDelete,
    /// Waiting for an asynchronous operation (a telemetry purge), requested at `requested_at`.
    Pending {
        operation: String,
        #[serde(
            default,
            rename = "requestedAt",
            skip_serializing_if = "Option::is_none",
            with = "time::serde::rfc3339::option"
        )]
        requested_at: Option<OffsetDateTime>,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemOutcome {
    pub item: Item,
    #[serde(flatten)]
    pub status: ItemStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceStatus {
    Completed,
    Failed,
}

/// The final, stored result of one slice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceResult {
    pub key: String,
    pub workspace: WorkspaceId,
    pub resource_type: ResourceType,
    pub status: SliceStatus,
    pub reason: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    pub items: Vec<ItemOutcome>,
    /// What may be the subject's but is not proven (display-name-only assets): listed for a
    /// person's review, untouched until approved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub review: Vec<super::review::ReviewItem>,
    /// Where a heavy slice's items are when they are not inline (`items` is then empty): pages
    /// of at most one chunk each, in item order, beside the result (`state::paged_result`).
    /// Only the state's copy has it; a certificate or manifest always lists its items inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<ItemPages>,
}

/// A paged slice result's item pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemPages {
    /// Which of the slice's page sets holds them.
    pub set: PageSet,
    pub pages: u32,
    /// Items over all pages.
    pub items: u64,
}

/// A slice's stored pages of outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageSet {
    /// The chunks' own outcomes, final as processed (exports, dry runs, holds).
    Chunks,
    /// The chunks' outcomes after the slice's deletes were checked.
    Verified,
}

impl SliceResult {
    /// Items in the result, inline or paged.
    pub fn item_count(&self) -> u64 {
        self.pages
            .as_ref()
            .map_or(self.items.len() as u64, |p| p.items)
    }
}
