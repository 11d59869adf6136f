//! The plan: which slices (workspace x resource type) a request fans out to. Persisted before any
//! message is sent, so the aggregator always knows what "all slices are in" means.

use time::OffsetDateTime;

use super::deadline::{deadline, Regulation};
use super::holds::{HoldRef, HoldSet};
// Re-exported: `ResourceType` lived here before it got its own module (holds.rs needs it, and
// plan.rs needs holds.rs).
use super::request::{DsrRequest, RequestId, RequestKind};
pub use super::resource_type::ResourceType;
use super::subject::ResolvedSubject;
use super::workspace::WorkspaceId;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceSpec {
    pub key: String,
    pub workspace: WorkspaceId,
    pub resource_type: ResourceType,
    pub hold: Option<HoldRef>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub request_id: RequestId,
    #[serde(rename = "type")]
    pub kind: RequestKind,
    pub dry_run: bool,
    pub regulation: Regulation,
    pub subject: ResolvedSubject,
    pub subject_log_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// Retention sweeps: delete job history created before this instant.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub cutoff: Option<OffsetDateTime>,
    pub reply_to: Option<String>,
    /// SHA-256 of the original message: a reused requestId with other content is a conflict.
    pub request_sha256: String,
    pub slices: Vec<SliceSpec>,
    /// The request's `submittedBy`, for the separation of submitter and review approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

pub(crate) fn slice_key(workspace: &WorkspaceId, resource_type: ResourceType) -> String {
    format!("{}-{}", workspace.key(), resource_type.as_str())
}

impl Plan {
    /// One slice per workspace x resource type, holds applied (holds only matter for mutations).
    pub fn build(
        request: &DsrRequest,
        subject: ResolvedSubject,
        holds: &HoldSet,
        now: OffsetDateTime,
        request_sha256: String,
    ) -> Plan {
        let received_at = request.received_at.unwrap_or(now);
        let mut slices = Vec::new();
        for ws in &request.workspaces {
            for rt in ResourceType::ALL {
                let hold = if request.kind.mutates() {
                    holds.find(subject.object_id, ws, rt)
                } else {
                    None
                };
                slices.push(SliceSpec {
                    key: slice_key(ws, rt),
                    workspace: ws.clone(),
                    resource_type: rt,
                    hold,
                });
            }
        }
        Plan {
            request_id: request.request_id.clone(),
            kind: request.kind,
            dry_run: request.dry_run,
            regulation: request.regulation,
            subject_log_id: subject.log_id(),
            subject,
            received_at,
            deadline: deadline(request.regulation, received_at),
            cutoff: None,
            reply_to: request.reply_to.clone(),
            request_sha256,
            slices,
            submitted_by: request.submitted_by.clone(),
        }
    }

    /// A retention sweep of one workspace: its job history created before `cutoff`. No subject:
    /// the nil object id matches nobody, so only the age rule selects items.
    pub fn retention(
        request_id: RequestId,
        workspace: &WorkspaceId,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
        dry_run: bool,
        holds: &HoldSet,
    ) -> Plan {
        let subject = ResolvedSubject {
            object_id: uuid::Uuid::nil(),
            tenant_id: None,
            upn: None,
            display_name: None,
            notebook_aliases: vec![],
            notebook_alias_conflicts: 0,
        };
        let rt = ResourceType::Jobs;
        let hold = holds
            .holds
            .iter()
            .filter(|h| h.subject_object_id.is_none())
            .find(|h| {
                h.workspace.as_ref().is_none_or(|w| w == workspace)
                    && (h.resource_types.is_empty() || h.resource_types.contains(&rt))
            })
            .map(|h| HoldRef {
                id: h.id.clone(),
                reason: h.reason.clone(),
            });
        Plan {
            request_sha256: crate::domain::ids::sha256_hex(
                format!("{request_id}|{workspace}|{cutoff}").as_bytes(),
            ),
            request_id,
            kind: RequestKind::Retention,
            dry_run,
            regulation: Regulation::Gdpr,
            subject,
            subject_log_id: "retention".into(),
            received_at: now,
            deadline: now,
            cutoff: Some(cutoff),
            reply_to: None,
            submitted_by: None,
            slices: vec![SliceSpec {
                key: slice_key(workspace, rt),
                workspace: workspace.clone(),
                resource_type: rt,
                hold,
            }],
        }
    }

    pub fn slice(&self, key: &str) -> Option<&SliceSpec> {
        self.slices.iter().find(|s| s.key == key)
    }
}
