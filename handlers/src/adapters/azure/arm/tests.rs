//! Unit tests of `adapters::azure::arm`.

use super::*;

#[test]
fn owned_ids_only() {
    let ws = WorkspaceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w").unwrap();
    let b = ws.to_string();
    let o = |k, id: String| AzureMlControlPlane::owned(&ws, k, &id);
    assert!(o(ArmKind::Job, format!("{b}/jobs/j1")));
    assert!(o(ArmKind::Job, format!("{}/JOBS/j1", b.to_uppercase())));
    assert!(o(ArmKind::ModelVersion, format!("{b}/models/m/versions/2")));
    assert!(o(ArmKind::DataVersion, format!("{b}/data/d/versions/1")));
    assert!(o(ArmKind::Compute, format!("{b}/computes/ci")));
    assert!(!o(ArmKind::Job, format!("{b}/jobs/..")));
    assert!(!o(ArmKind::Job, format!("{b}/jobs/a/b")));
    assert!(!o(ArmKind::Job, format!("{b}2/jobs/j")));
    assert!(!o(ArmKind::Job, format!("{b}/computes/j")));
    assert!(!o(ArmKind::Job, format!("{b}/jobs/j?x=1")));
    assert!(!o(ArmKind::Job, b.clone()));
}

#[test]
fn cursor_round_trip() {
    let c = Cursor {
        containers_next: Some("https://x/next".into()),
        pending: VecDeque::from(vec!["a".into(), "b/c".into()]),
        versions_next: None,
    };
    let d = Cursor::decode(&c.encode()).unwrap();
    assert_eq!(d.pending, c.pending);
    assert!(Cursor::decode("https://x").is_err());
}

#[test]
fn last_segment_of_ids() {
    assert_eq!(
        last_segment(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/acct"
        )
        .as_deref(),
        Some("acct")
    );
    assert_eq!(last_segment(""), None);
}
