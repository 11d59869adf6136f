//! Kinds of Azure ML management-plane resources a slice can find and delete. A kind travels in
//! inventories and reports as one of four fixed strings and parses back into exactly one of
//! them: an unknown kind is a parse error, never a guess (a guess could turn into a delete of
//! another kind of resource).

use std::fmt;

/// A kind of ARM child resource of a workspace.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ArmKind {
    #[serde(rename = "job")]
    Job,
    #[serde(rename = "modelVersion")]
    ModelVersion,
    #[serde(rename = "dataVersion")]
    DataVersion,
    #[serde(rename = "compute")]
    Compute,
    /// A workspace schedule (ARM `workspaces/schedules`): it keeps submitting jobs as its
    /// creator until deleted.
    #[serde(rename = "schedule")]
    Schedule,
}

impl ArmKind {
    pub const ALL: [ArmKind; 5] = [
        ArmKind::Job,
        ArmKind::ModelVersion,
        ArmKind::DataVersion,
        ArmKind::Compute,
        ArmKind::Schedule,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ArmKind::Job => "job",
            ArmKind::ModelVersion => "modelVersion",
            ArmKind::DataVersion => "dataVersion",
            ArmKind::Compute => "compute",
            ArmKind::Schedule => "schedule",
        }
    }

    /// The kind named exactly `s`; anything else is `None`.
    pub fn parse(s: &str) -> Option<ArmKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ArmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_kinds_do_not_parse() {
        for k in ArmKind::ALL {
            let s = serde_json::to_string(&k).unwrap();
            assert_eq!(s, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<ArmKind>(&s).unwrap(), k);
            assert_eq!(ArmKind::parse(k.as_str()), Some(k));
        }
        for bad in [
            "",
            "Compute",
            "datastore",
            "workspace",
            "storageAccount",
            "jobs",
        ] {
            assert!(ArmKind::parse(bad).is_none(), "{bad}");
            assert!(serde_json::from_str::<ArmKind>(&format!("\"{bad}\"")).is_err());
        }
    }
}
