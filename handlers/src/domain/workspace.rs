//! Azure ML workspace identity: a parsed, normalised ARM resource id.

use std::fmt;

use super::ids::short_hash;

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}`.
/// Cannot hold anything else.
///
/// ARM ids are case-insensitive, so equality, ordering and hashing compare the normalised
/// (lower-cased) id: a hold, a scope entry or a duplicate spelled in another case is the same
/// workspace. The original spelling is kept for display and for calls to ARM.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkspaceId {
    subscription: String,
    resource_group: String,
    name: String,
}

impl WorkspaceId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim().trim_end_matches('/');
        if trimmed.len() > 512 {
            return Err("workspace id is longer than 512 characters".into());
        }
        let parts: Vec<&str> = trimmed.split('/').collect();
        // ["", "subscriptions", sub, "resourceGroups", rg, "providers", "Microsoft.MachineLearningServices", "workspaces", name]
        let ok = parts.len() == 9
            && parts[0].is_empty()
            && parts[1].eq_ignore_ascii_case("subscriptions")
            && parts[3].eq_ignore_ascii_case("resourceGroups")
            && parts[5].eq_ignore_ascii_case("providers")
            && parts[6].eq_ignore_ascii_case("Microsoft.MachineLearningServices")
            && parts[7].eq_ignore_ascii_case("workspaces");
        if !ok {
            return Err(
                "workspace must be an ARM id /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}"
                    .into(),
            );
        }
        let (sub, rg, name) = (parts[2], parts[4], parts[8]);
        let valid = |v: &str| {
            v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && v.len() <= 90
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
        };
        if !valid(sub) || !valid(rg) || !valid(name) {
            return Err(
                "workspace id has an empty or invalid subscription, resource group or name".into(),
            );
        }
        Ok(Self {
            subscription: sub.to_ascii_lowercase(),
            resource_group: rg.to_string(),
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn subscription(&self) -> &str {
        &self.subscription
    }
    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// Stable 12-hex key (ARM ids are case-insensitive, so hashed lowercased).
    pub fn key(&self) -> String {
        short_hash(&[&self.to_string().to_ascii_lowercase()], 12)
    }

    /// What identifies the workspace, whatever the case it was written in.
    fn normalised(&self) -> (String, String, String) {
        (
            self.subscription.to_ascii_lowercase(),
            self.resource_group.to_ascii_lowercase(),
            self.name.to_ascii_lowercase(),
        )
    }
}

impl PartialEq for WorkspaceId {
    fn eq(&self, other: &Self) -> bool {
        self.normalised() == other.normalised()
    }
}

impl Eq for WorkspaceId {}

impl std::hash::Hash for WorkspaceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.normalised().hash(state)
    }
}

impl PartialOrd for WorkspaceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WorkspaceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.normalised().cmp(&other.normalised())
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

impl TryFrom<String> for WorkspaceId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<WorkspaceId> for String {
    fn from(w: WorkspaceId) -> String {
        w.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let a = WorkspaceId::parse("/subscriptions/ABC/resourceGroups/rg/providers/microsoft.machinelearningservices/Workspaces/ws1/").unwrap();
        let b = WorkspaceId::parse("/subscriptions/abc/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.name(), "ws1");
    }

    #[test]
    fn equality_ignores_case_as_arm_does() {
        let a = WorkspaceId::parse("/subscriptions/s/resourceGroups/RG-ML/providers/Microsoft.MachineLearningServices/workspaces/MLW-0").unwrap();
        let b = WorkspaceId::parse("/subscriptions/s/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/mlw-0").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        let set: std::collections::HashSet<_> = [a.clone(), b].into_iter().collect();
        assert_eq!(set.len(), 1);
        // The spelling is kept for display.
        assert!(a.to_string().ends_with("/workspaces/MLW-0"));
    }

    #[test]
    fn rejects_other_resources_and_traversal() {
        for bad in [
            "",
            "ws1",
            "/subscriptions/a/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x",
            "/subscriptions/a/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/..",
            "/subscriptions/a/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/*",
            "/subscriptions/a/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/jobs/x",
        ] {
            assert!(WorkspaceId::parse(bad).is_err(), "{bad}");
        }
    }
}
