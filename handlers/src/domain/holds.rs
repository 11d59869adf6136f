//! Legal holds (GDPR Art. 17(3) exceptions): data under hold is never deleted, and the report
//! says so. A hold names a subject, a workspace, resource types, or any combination.

use uuid::Uuid;

use super::resource_type::ResourceType;
use super::workspace::WorkspaceId;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegalHold {
    pub id: String,
    pub reason: String,
    #[serde(default)]
    pub subject_object_id: Option<Uuid>,
    #[serde(default)]
    pub workspace: Option<WorkspaceId>,
    /// Empty: every resource type.
    #[serde(default)]
    pub resource_types: Vec<ResourceType>,
}

/// The hold a slice is under, copied into plans, messages and reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HoldRef {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct HoldSet {
    pub holds: Vec<LegalHold>,
}

impl LegalHold {
    /// Whether the hold reaches data of `resource_type` in `workspace`, whoever it names (the one
    /// place the workspace and type parts of a hold are matched).
    pub fn covers(&self, workspace: &WorkspaceId, resource_type: ResourceType) -> bool {
        self.workspace.as_ref().is_none_or(|w| w == workspace)
            && (self.resource_types.is_empty() || self.resource_types.contains(&resource_type))
    }

    /// The reference copied into plans, messages and reports.
    pub fn reference(&self) -> HoldRef {
        HoldRef {
            id: self.id.clone(),
            reason: self.reason.clone(),
        }
    }
}

impl HoldSet {
    /// The first hold covering this subject's data of `resource_type` in `workspace`.
    pub fn find(
        &self,
        subject: Uuid,
        workspace: &WorkspaceId,
        resource_type: ResourceType,
    ) -> Option<HoldRef> {
        self.holds
            .iter()
            .find(|h| {
                h.subject_object_id.is_none_or(|s| s == subject)
                    && h.covers(workspace, resource_type)
            })
            .map(LegalHold::reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_scopes_combine() {
        let ws = WorkspaceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/a").unwrap();
        let other = WorkspaceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/b").unwrap();
        let alice = Uuid::from_u128(1);
        let set = HoldSet {
            holds: vec![LegalHold {
                id: "H1".into(),
                reason: "litigation".into(),
                subject_object_id: Some(alice),
                workspace: Some(ws.clone()),
                resource_types: vec![ResourceType::Models],
            }],
        };
        assert!(set.find(alice, &ws, ResourceType::Models).is_some());
        assert!(set.find(alice, &ws, ResourceType::Jobs).is_none());
        assert!(set.find(alice, &other, ResourceType::Models).is_none());
        assert!(set
            .find(Uuid::from_u128(2), &ws, ResourceType::Models)
            .is_none());
    }

    #[test]
    fn a_hold_covers_its_workspace_in_any_case() {
        // ARM ids are case-insensitive: a request naming the held workspace in another case
        // must not slip past the hold.
        let held = WorkspaceId::parse("/subscriptions/s/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/Mlw-A").unwrap();
        let asked = WorkspaceId::parse("/subscriptions/S/resourceGroups/rg/providers/microsoft.machinelearningservices/workspaces/mlw-a").unwrap();
        let set = HoldSet {
            holds: vec![LegalHold {
                id: "H1".into(),
                reason: "litigation".into(),
                subject_object_id: None,
                workspace: Some(held),
                resource_types: vec![],
            }],
        };
        assert!(set
            .find(Uuid::from_u128(1), &asked, ResourceType::Jobs)
            .is_some());
    }
}
