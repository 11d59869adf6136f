//! Expired export bundles are removed and nothing else.

use super::*;

/// Export bundles are deleted by the sweep once their links have expired (what the lifecycle
/// rule does in Azure); before that, in a dry run, and in every other container, nothing goes.
#[tokio::test]
async fn expired_export_bundles_are_removed_and_nothing_else() {
    let e = env(HoldSet::default(), false).await;
    let state = e.svc.state();
    state.ensure_containers().await.unwrap();
    let acct = state.account.clone();
    let mut written = Vec::new();
    for (container, name) in [
        (azureml_dsr::state::EXPORTS, "EXP-1/manifest.json"),
        (azureml_dsr::state::EXPORTS, "EXP-1/jobs/run_1/out.bin"),
        (azureml_dsr::state::EXPORTS, "EXP-2/manifest.json"),
        (azureml_dsr::state::REPORTS, "EXP-1/report.json"),
        (azureml_dsr::state::AUDIT, "EXP-1.json"),
    ] {
        let b = BlobRef::new(acct.clone(), container, name);
        e.store
            .put(
                &b,
                bytes::Bytes::from_static(b"{}"),
                "application/json",
                azureml_dsr::ports::blob::Condition::None,
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        written.push(b);
    }
    let present = |b: &BlobRef| {
        let b = b.clone();
        let store = e.store.clone();
        async move { store.read_small(&b).await.is_ok() }
    };
    let days = e.svc.settings.export_link_days;

    // Links still valid: kept.
    let out = retention::run(&e.svc, &timer(false), e.now + Duration::days(days - 1))
        .await
        .unwrap();
    assert_eq!(out.expired_exports, 0);
    // Expired, but a dry run: counted, kept.
    let mut dry = e.svc.clone();
    dry.settings.retention_dry_run = true;
    let out = retention::run(&dry, &timer(false), e.now + Duration::days(days + 1))
        .await
        .unwrap();
    assert_eq!(out.expired_exports, 3);
    for b in &written {
        assert!(present(b).await, "{b:?} removed too early or by a dry run");
    }
    // Expired: the three export blobs go, the report and audit record stay.
    let out = retention::run(&e.svc, &timer(false), e.now + Duration::days(days + 1))
        .await
        .unwrap();
    assert_eq!(out.expired_exports, 3);
    for b in &written {
        let is_export = b.container == azureml_dsr::state::EXPORTS;
        assert_eq!(present(b).await, !is_export, "{b:?}");
    }
    // Again: nothing left to expire.
    let out = retention::run(&e.svc, &timer(false), e.now + Duration::days(days + 1))
        .await
        .unwrap();
    assert_eq!(out.expired_exports, 0);
}
