//! Cleaning after a workspace is deleted: soft delete waits out the recovery window, purges at
//! once, forged or recovered events change nothing, shared containers are kept.

use super::*;

/// The derived Event Grid fixture, pointed at the seeded workspace.
fn delete_event(e: &Env, purge: bool, at: OffsetDateTime) -> GridEvent {
    crate::support::events::workspace_delete_event(&e.truth.workspaces[0], purge, at)
}

/// Purge the workspace in the local ARM: it answers 404 from now on.
async fn delete_workspace_resource(e: &Env) {
    let c = azureml_dsr::adapters::local::control_plane::LocalControlPlane::container(
        &e.truth.workspaces[0],
    );
    e.store.delete_container(ARM_ACCOUNT, &c).await.unwrap();
}

/// Soft-delete the workspace in the local ARM: recoverable, `provisioningState: SoftDeleted`.
async fn soft_delete_workspace_resource(e: &Env) {
    azureml_dsr::adapters::local::control_plane::LocalControlPlane::new(e.store.clone())
        .soft_delete_workspace(&e.truth.workspaces[0])
        .await
        .unwrap();
}

/// The names of the blobs left in the workspace's artifact container (`azureml`).
async fn artifact_blobs(e: &Env) -> Vec<String> {
    let info = &e.truth.infos[0];
    e.store
        .list_all(&info.storage_account, &info.artifact_container, "")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect()
}

/// The workspace's own blob containers are gone; the shared artifact container stays, emptied
/// of the workspace's run folders; its notebooks share (modelled locally as a container) is
/// emptied through the file-share port and left in place, as in Azure.
async fn assert_emptied(e: &Env) {
    let info = &e.truth.infos[0];
    let mut left = containers(e).await;
    left.sort();
    let mut kept = vec![info.artifact_container.clone(), info.file_share.clone()];
    kept.sort();
    assert_eq!(
        left, kept,
        "the workspace's containers are gone; the shared artifact container and the share are left"
    );
    assert!(
        artifact_blobs(e).await.is_empty(),
        "the artifact container holds none of the workspace's run folders"
    );
    assert!(
        e.store
            .list_all(&info.storage_account, &info.file_share, "")
            .await
            .unwrap()
            .is_empty(),
        "and the share holds no file"
    );
}

async fn containers(e: &Env) -> Vec<String> {
    e.store
        .list_containers(&e.truth.infos[0].storage_account, "")
        .await
        .unwrap()
}

#[tokio::test]
async fn soft_delete_is_cleaned_after_the_recovery_window_and_purge_at_once() {
    let e = env(HoldSet::default(), false).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap(); // records the inventory
    drive(&e).await;
    let before = containers(&e).await;
    assert_eq!(before.len(), 3);
    soft_delete_workspace_resource(&e).await;
    let out = workspace_deleted::run(&e.svc, &delete_event(&e, false, e.now), e.now)
        .await
        .unwrap();
    assert!(matches!(out, EventOutcome::Scheduled { .. }), "{out:?}");
    assert_eq!(
        containers(&e).await,
        before,
        "nothing deleted during the recovery window"
    );
    assert!(
        workspace_deleted::run_due_cleanups(&e.svc, e.now + Duration::days(13))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(containers(&e).await, before);
    let cleaned = workspace_deleted::run_due_cleanups(
        &e.svc,
        e.now + Duration::days(14) + Duration::minutes(1),
    )
    .await
    .unwrap();
    assert_eq!(cleaned.len(), 1);
    assert_emptied(&e).await;
    assert!(
        e.store
            .list_containers("telemetrylocal", "")
            .await
            .unwrap()
            .is_empty(),
        "and its telemetry"
    );
    let audit = e
        .store
        .list_all("dsrstate", "dsr-audit", "workspace-")
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "deletion and clean-up recorded: {audit:?}");

    // Purge: at once.
    let e = env(HoldSet::default(), false).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    delete_workspace_resource(&e).await;
    let out = workspace_deleted::run(&e.svc, &delete_event(&e, true, e.now), e.now)
        .await
        .unwrap();
    assert!(matches!(out, EventOutcome::CleanedUp { .. }), "{out:?}");
    assert_emptied(&e).await;
}

/// The event is a hint, ARM decides: a purge event for a workspace ARM still has (forged, or
/// stale after a re-creation) deletes nothing, now or later.
#[tokio::test]
async fn a_forged_delete_event_for_a_live_workspace_deletes_nothing() {
    let e = env(HoldSet::default(), false).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let before = snapshot(&e).await;
    let out = workspace_deleted::run(&e.svc, &delete_event(&e, true, e.now), e.now)
        .await
        .unwrap();
    assert!(matches!(out, EventOutcome::Ignored(_)), "{out:?}");
    assert!(
        workspace_deleted::run_due_cleanups(&e.svc, e.now + Duration::days(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(snapshot(&e).await, before);
}

/// `forceToPurge` is read from ARM, not from the event: a purge claim for a workspace ARM holds
/// as soft-deleted (recoverable) waits out the recovery window, and a recovery cancels it.
#[tokio::test]
async fn a_purge_claim_for_a_soft_deleted_workspace_waits_for_the_window() {
    let e = env(HoldSet::default(), false).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let before = snapshot(&e).await;
    soft_delete_workspace_resource(&e).await;
    let out = workspace_deleted::run(&e.svc, &delete_event(&e, true, e.now), e.now)
        .await
        .unwrap();
    assert!(matches!(out, EventOutcome::Scheduled { .. }), "{out:?}");
    let lcp = azureml_dsr::adapters::local::control_plane::LocalControlPlane::new(e.store.clone());
    lcp.recover_workspace(&e.truth.workspaces[0]).await.unwrap();
    assert!(
        workspace_deleted::run_due_cleanups(&e.svc, e.now + Duration::days(15))
            .await
            .unwrap()
            .is_empty(),
        "recovered during the window: cancelled"
    );
    // Everything but the workspace document itself (soft-deleted, then recovered) is as before.
    let unchanged = |s: BTreeMap<String, String>| -> BTreeMap<String, String> {
        s.into_iter()
            .filter(|(k, _)| !k.ends_with("/workspace.json"))
            .collect()
    };
    assert!(unchanged(snapshot(&e).await) == unchanged(before));
}

/// The artifact container (`azureml`) is shared by every workspace of a storage account,
/// including workspaces this service does not know: a purge removes only the deleted
/// workspace's run folders from it, never the container or anyone else's runs.
#[tokio::test]
async fn a_purge_keeps_the_shared_artifact_container_and_other_workspaces_runs() {
    let e = env(HoldSet::default(), false).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let info = &e.truth.infos[0];
    let foreign = BlobRef::new(
        info.storage_account.clone(),
        info.artifact_container.clone(),
        "ExperimentRun/dcid.another-workspaces-run/logs/std_log.txt",
    );
    e.store
        .write_json(&foreign, &json!({"not": "ours"}))
        .await
        .unwrap();
    assert!(artifact_blobs(&e).await.len() > 1);
    delete_workspace_resource(&e).await;
    let out = workspace_deleted::run(&e.svc, &delete_event(&e, true, e.now), e.now)
        .await
        .unwrap();
    assert!(matches!(out, EventOutcome::CleanedUp { .. }), "{out:?}");
    assert_eq!(
        artifact_blobs(&e).await,
        vec![foreign.name.clone()],
        "only the other workspace's run is left"
    );
    assert!(containers(&e).await.contains(&info.artifact_container));
}

#[tokio::test]
async fn a_recovered_workspace_is_not_cleaned_and_other_events_change_nothing() {
    let e = env(HoldSet::default(), false).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let before = snapshot(&e).await;
    // Soft delete, then recovered (the workspace resource is still there when the window ends).
    workspace_deleted::run(&e.svc, &delete_event(&e, false, e.now), e.now)
        .await
        .unwrap();
    assert!(
        workspace_deleted::run_due_cleanups(&e.svc, e.now + Duration::days(15))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(snapshot(&e).await, before);
    // Unrelated events: a storage account deletion, an Azure ML run event, both schemas.
    for name in [
        "msdocs-eventgrid-rg-resource-delete-success.json",
        "msdocs-eventgrid-aml-run-completed.json",
        "msdocs-eventgrid-aml-run-completed.cloudevent.json",
    ] {
        let raw: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../tests/fixtures/functions-host/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let ev = GridEvent::from_value(&raw).unwrap();
        let out = workspace_deleted::run(&e.svc, &ev, e.now).await.unwrap();
        assert!(matches!(out, EventOutcome::Ignored(_)), "{name}: {out:?}");
    }
    assert_eq!(snapshot(&e).await, before);
    // Malformed: a delete event without its data.
    let bad = GridEvent::from_value(
        &json!({"id": "x", "eventType": "Microsoft.Resources.ResourceDeleteSuccess", "data": {}}),
    )
    .unwrap();
    assert!(workspace_deleted::run(&e.svc, &bad, e.now).await.is_err());
    assert_eq!(snapshot(&e).await, before);
}
