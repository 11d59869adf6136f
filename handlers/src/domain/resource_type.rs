//! The six kinds of a person's data in a workspace, each handled by its own slice function and
//! queue. Its own module because both plans and legal holds name it (`plan` uses `holds`).

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Jobs,
    Models,
    Data,
    Compute,
    Notebooks,
    Telemetry,
}

impl ResourceType {
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Jobs,
        ResourceType::Models,
        ResourceType::Data,
        ResourceType::Compute,
        ResourceType::Notebooks,
        ResourceType::Telemetry,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ResourceType::Jobs => "jobs",
            ResourceType::Models => "models",
            ResourceType::Data => "data",
            ResourceType::Compute => "compute",
            ResourceType::Notebooks => "notebooks",
            ResourceType::Telemetry => "telemetry",
        }
    }

    /// The function that handles this slice (folder name under `functions/`).
    pub(crate) fn function_name(&self) -> String {
        format!("slice-{}", self.as_str())
    }

    /// The queue that triggers that function.
    pub fn queue(&self) -> String {
        format!("dsr-slice-{}", self.as_str())
    }

    pub(crate) fn from_function(name: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.function_name() == name)
    }
}
