//! Retention sweeps and the workspace-deletion hook, driven directly with an in-memory bus:
//! exactly the job history past retention is deleted, twice in a row gives the same state,
//! holds and dry run are honoured, and workspace deletions are cleaned at the right time.

use std::collections::BTreeMap;
use std::sync::Arc;

use azureml_dsr::adapters::local::control_plane::ARM_ACCOUNT;
use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::holds::{HoldSet, LegalHold};
use azureml_dsr::domain::report::FinalStatus;
use azureml_dsr::functions::workspace_deleted::{self, EventOutcome};
use azureml_dsr::functions::{intake, retention, Delivery, Services, Settings};
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt};
use azureml_dsr::protocol::eventgrid::GridEvent;
use azureml_dsr::protocol::timer::TimerInfo;
use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::support;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    bus: Arc<MemoryBus>,
    svc: Services,
    truth: SeedTruth,
    now: OffsetDateTime,
}

/// A sweep environment with job-history retention enabled and its first (dry) run already
/// acknowledged, so a sweep deletes; the guards have tests of their own below.
async fn env(holds: HoldSet, dry_run: bool) -> Env {
    let e = env_with(holds, dry_run, 100).await;
    let record = retention::DryRunRecord {
        retention_days: e.svc.settings.retention_days,
        at: e.now,
    };
    let state = e.svc.state();
    state.ensure_containers().await.unwrap();
    state
        .store
        .write_json(&state.blob("dsr-state", retention::DRY_RUN_DOC), &record)
        .await
        .unwrap();
    e
}

async fn env_with(holds: HoldSet, dry_run: bool, max_share_pct: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let store = local_store(&paths);
    let now = OffsetDateTime::now_utc();
    let truth = seed(
        &store,
        &SeedOptions {
            users: 4,
            runs_per_user: 6,
            history_days: 400,
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    let bus = Arc::new(MemoryBus::new());
    let settings = Settings {
        job_retention_enabled: true,
        retention_days: 180,
        job_retention_max_share_pct: max_share_pct,
        retention_dry_run: dry_run,
        chunk_size: 7,
        ..Default::default()
    };
    let svc = local_services(&paths, store.clone(), bus.clone(), settings);
    svc.state().put_scope(&truth.workspaces).await.unwrap();
    svc.state().put_holds(&holds).await.unwrap();
    Env {
        _dir: dir,
        store,
        bus,
        svc,
        truth,
        now,
    }
}

fn timer(past_due: bool) -> TimerInfo {
    TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: past_due,
    }
}

async fn drive(e: &Env) {
    support::pipeline::drive(&e.svc, &e.bus, 1).await
}

async fn snapshot(e: &Env) -> BTreeMap<String, String> {
    let accounts = [
        e.truth.infos[0].storage_account.as_str(),
        ARM_ACCOUNT,
        "telemetrylocal",
    ];
    support::pipeline::snapshot(e.store.as_ref(), &accounts).await
}

/// Jobs (by name) created before the cutoff.
fn old_jobs(e: &Env) -> Vec<String> {
    let cutoff = e.now - Duration::days(180);
    e.truth
        .job_created
        .iter()
        .filter(|(_, t)| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
                < cutoff
        })
        .map(|(id, _)| id.rsplit('/').next().unwrap().to_string())
        .collect()
}

fn belongs_to_job(key: &str, job: &str) -> bool {
    key.contains(&format!("/ExperimentRun/dcid.{job}/"))
        || key.contains(&format!("/azureml/{job}/"))
        || key.ends_with(&format!("/jobs/{job}.json"))
}

#[tokio::test]
async fn sweep_deletes_exactly_the_expired_job_history_and_is_idempotent() {
    let e = env(HoldSet::default(), false).await;
    let before = snapshot(&e).await;
    let old = old_jobs(&e);
    assert!(
        !old.is_empty() && old.len() < e.truth.job_created.len(),
        "the seed has both old and recent jobs"
    );
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert_eq!(out.planned.len(), 1);
    drive(&e).await;
    let after = snapshot(&e).await;
    for (k, v) in &before {
        let expired = old.iter().any(|j| belongs_to_job(k, j));
        if expired {
            assert!(!after.contains_key(k), "expired {k} survived");
        } else if !k.starts_with("armlocal/")
            || k.contains("/jobs/")
            || k.contains("/models/")
            || k.contains("/data/")
            || k.contains("/computes/")
        {
            assert_eq!(after.get(k), Some(v), "{k} changed");
        }
    }
    let id = out.planned[0].clone();
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.status, FinalStatus::Completed);
    assert_eq!(report.counts.deleted, report.counts.verified_gone);
    assert!(e
        .store
        .read_small(&BlobRef::new(
            "dsrstate",
            "dsr-audit",
            format!("requests/{id}.json")
        ))
        .await
        .is_ok());

    // Twice in a row: the same state, still one report and one result message.
    let again = retention::run(&e.svc, &timer(true), e.now).await.unwrap();
    assert_eq!(again.resumed, vec![id.clone()]);
    drive(&e).await;
    assert_eq!(snapshot(&e).await, after);
    assert_eq!(
        e.bus
            .sent()
            .iter()
            .filter(|m| m.queue == "dsr-results"
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
            .count(),
        1
    );
}

#[tokio::test]
async fn sweep_honours_holds_and_dry_run() {
    // Dry run: nothing changes.
    let e = env(HoldSet::default(), true).await;
    let before = snapshot(&e).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    assert_eq!(snapshot(&e).await, before);

    // A person under legal hold keeps their old jobs; everyone else's expire.
    let e0 = env(HoldSet::default(), false).await;
    let bob = e0.truth.user("bob").unwrap().object_id;
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-1".into(),
            reason: "litigation".into(),
            subject_object_id: Some(bob),
            workspace: None,
            resource_types: vec![],
        }],
    };
    let e = env(holds, false).await;
    let before = snapshot(&e).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let after = snapshot(&e).await;
    let bobs_jobs: Vec<String> = e
        .truth
        .resources_of("bob")
        .into_iter()
        .filter(|r| r.contains("/jobs/"))
        .map(|r| r.rsplit('/').next().unwrap().to_string())
        .collect();
    let old = old_jobs(&e);
    let mut held = 0;
    for k in before.keys() {
        if let Some(j) = old.iter().find(|j| belongs_to_job(k, j)) {
            if bobs_jobs.contains(j) {
                assert!(after.contains_key(k), "held {k} was deleted");
                held += 1;
            } else {
                assert!(!after.contains_key(k), "{k} survived");
            }
        }
    }
    assert!(held > 0, "bob has expired jobs in the seed");

    // A workspace-wide hold: nothing is deleted.
    let ws = e0.truth.workspaces[0].clone();
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-2".into(),
            reason: "audit".into(),
            subject_object_id: None,
            workspace: Some(ws),
            resource_types: vec![],
        }],
    };
    let e = env(holds, false).await;
    let before = snapshot(&e).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    assert_eq!(snapshot(&e).await, before);
}

/// The derived Event Grid fixture, pointed at the seeded workspace.
fn delete_event(e: &Env, purge: bool, at: OffsetDateTime) -> GridEvent {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/functions-host/derived-eventgrid-aml-workspace-delete-request.json"
    ))
    .unwrap();
    let ws = &e.truth.workspaces[0];
    let raw = raw
        .replace("{subscription-id}", ws.subscription())
        .replace("{resource-group}", ws.resource_group())
        .replace("{workspace-name}", ws.name())
        .replace(
            "2025-01-02T03:04:05.6789012Z",
            &at.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        );
    let mut v: Value = serde_json::from_str(&raw).unwrap();
    let mut ev = v["Data"]["eventGridEvent"].take();
    if purge {
        let url = ev["data"]["httpRequest"]["url"]
            .as_str()
            .unwrap()
            .to_string();
        ev["data"]["httpRequest"]["url"] = json!(format!("{url}&forceToPurge=true"));
    }
    ev["id"] = json!(format!("evt-{purge}-{}", at.unix_timestamp()));
    GridEvent::from_value(&ev).unwrap()
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

// ---------------------------------------------------------------- guards of the job-history sweep

#[tokio::test]
async fn the_job_history_sweep_is_off_unless_enabled() {
    let mut e = env(HoldSet::default(), false).await;
    e.svc.settings.job_retention_enabled = false;
    let before = snapshot(&e).await;
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert!(out.job_history_disabled);
    assert!(out.planned.is_empty() && out.resumed.is_empty());
    drive(&e).await;
    assert_eq!(snapshot(&e).await, before);
}

#[tokio::test]
async fn the_first_sweep_after_enabling_only_reports_then_the_next_deletes() {
    let e = env_with(HoldSet::default(), false, 100).await;
    let before = snapshot(&e).await;
    let first = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert_eq!(first.planned.len(), 1);
    assert!(first.planned[0].starts_with("RETDRY-"), "{first:?}");
    drive(&e).await;
    assert_eq!(
        snapshot(&e).await,
        before,
        "the first sweep changed something"
    );
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&first.planned[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(report.dry_run);
    assert!(
        report.counts.items > 0,
        "the dry run reports what it would delete"
    );
    // The next sweep deletes.
    let second = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert!(
        second.planned.iter().any(|id| id.starts_with("RET-")),
        "{second:?}"
    );
    drive(&e).await;
    assert_ne!(snapshot(&e).await, before);
}

#[tokio::test]
async fn a_sweep_that_would_delete_too_large_a_share_deletes_nothing() {
    let e = env_with(HoldSet::default(), false, 20).await;
    // Acknowledge the first run so this one would delete.
    let state = e.svc.state();
    state.ensure_containers().await.unwrap();
    state
        .store
        .write_json(
            &state.blob("dsr-state", retention::DRY_RUN_DOC),
            &retention::DryRunRecord {
                retention_days: 180,
                at: e.now,
            },
        )
        .await
        .unwrap();
    let old = old_jobs(&e);
    assert!(
        old.len() * 100 > e.truth.job_created.len() * 20,
        "the seed expires more than 20% of the jobs"
    );
    let before = snapshot(&e).await;
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    assert_eq!(
        snapshot(&e).await,
        before,
        "the guard let a deletion through"
    );
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&out.planned[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.counts.deleted, 0);
    assert!(report.counts.held > 0);
    assert!(
        report.results.iter().any(|r| r
            .notes
            .iter()
            .any(|n| n.contains("DSR_JOB_RETENTION_MAX_SHARE"))),
        "the report does not say why"
    );
}

// ---------------------------------------------------------------- request state expiry

/// A finished request's working state (plan, inventories, chunks, completions) and the intake
/// archive go `state_retention_days` after the request finished; the report, the certificate
/// and the audit record stay; a request still in progress is kept however old it is.
#[tokio::test]
async fn finished_request_state_and_archived_payloads_expire_reports_and_audit_stay() {
    let e = env(HoldSet::default(), false).await;
    // The identity directory intake resolves subjects in.
    std::fs::write(
        LocalPaths::new(e._dir.path()).directory(),
        serde_json::to_vec(&e.truth.directory()).unwrap(),
    )
    .unwrap();
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    let upn = |u: &str| e.truth.user(u).unwrap().upn.clone();
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let done = json!({"schemaVersion": "1.0", "requestId": "OLD-1", "type": "delete",
        "subject": {"upn": upn("alice")}, "scope": {"workspaces": ws}});
    intake::run(&e.svc, done.to_string().as_bytes(), &d)
        .await
        .unwrap();
    drive(&e).await;
    // Planned, never driven: in progress.
    let open = json!({"schemaVersion": "1.0", "requestId": "OPEN-1", "type": "export",
        "subject": {"upn": upn("bob")}, "scope": {"workspaces": ws}});
    intake::run(&e.svc, open.to_string().as_bytes(), &d)
        .await
        .unwrap();
    let state = e.svc.state();
    let under = |prefix: &'static str| {
        let state = state.clone();
        async move {
            state
                .store
                .list_all("dsrstate", "dsr-state", prefix)
                .await
                .unwrap()
                .len()
        }
    };
    assert!(under("requests/OLD-1/").await > 2);
    let days = i64::from(e.svc.settings.state_retention_days);

    // Not yet due: nothing goes.
    let out = retention::run(&e.svc, &timer(false), e.now + Duration::days(days - 1))
        .await
        .unwrap();
    assert_eq!(out.expired_state, retention::ExpiredState::default());

    let out = retention::run(&e.svc, &timer(false), e.now + Duration::days(days + 1))
        .await
        .unwrap();
    assert_eq!(out.expired_state.requests, 1, "{out:?}");
    assert!(out.expired_state.archived_payloads >= 2, "{out:?}");
    assert_eq!(
        under("requests/OLD-1/").await,
        0,
        "the finished request's state is gone"
    );
    assert!(
        under("requests/OPEN-1/").await > 0,
        "a request in progress is kept"
    );
    let archive = state
        .store
        .list_all("dsrstate", "dsr-intake-archive", "")
        .await
        .unwrap();
    assert!(
        archive.is_empty(),
        "archived payloads are gone: {archive:?}"
    );
    for (container, name) in [("dsr-audit", "requests/OLD-1.json")] {
        assert!(
            state
                .store
                .read_small(&BlobRef::new("dsrstate", container, name))
                .await
                .is_ok(),
            "{container}/{name} must stay"
        );
    }
    assert!(
        !state
            .store
            .list_all("dsrstate", "dsr-reports", "OLD-1/")
            .await
            .unwrap()
            .is_empty(),
        "the deletion certificate stays"
    );
}

/// Issue 14, item 6: while a per-person hold exists in the workspace, an expired job whose
/// creator run history cannot tell (a run record without an object id) is not swept: it is
/// kept as held, and the report says why; the other expired jobs of its owner still go.
#[tokio::test]
async fn an_expired_job_of_unknown_creator_is_kept_while_a_person_is_held_and_reported() {
    use azureml_dsr::adapters::local::run_history::LocalRunHistory;
    use azureml_dsr::domain::slice::{Item, ItemStatus};
    let e0 = env(HoldSet::default(), false).await;
    let bob = e0.truth.user("bob").unwrap().object_id;
    drop(e0);
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-BOB".into(),
            reason: "litigation".into(),
            subject_object_id: Some(bob),
            workspace: None,
            resource_types: vec![],
        }],
    };
    let e = env(holds, false).await;
    let ws = e.truth.workspaces[0].clone();
    let old = old_jobs(&e);
    let alices: Vec<String> = e
        .truth
        .resources_of("alice")
        .into_iter()
        .filter(|r| r.contains("/jobs/"))
        .map(|r| r.rsplit('/').next().unwrap().to_string())
        .filter(|j| old.contains(j))
        .collect();
    assert!(alices.len() >= 2, "alice has expired jobs: {alices:?}");
    let unknown = alices[0].clone();
    // Its run record names nobody: a display name and a UPN, no object id.
    LocalRunHistory::new(e.store.clone())
        .put_run(
            &ws,
            &json!({"runId": unknown, "rootRunId": unknown, "dataContainerId": format!("dcid.{unknown}"),
                    "status": "Completed",
                    "createdBy": {"userName": "Alice Example", "upn": "alice@contoso.com", "userObjectId": null}}),
        )
        .await
        .unwrap();
    let before = snapshot(&e).await;
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let after = snapshot(&e).await;
    let mut kept = 0;
    for k in before.keys() {
        if belongs_to_job(k, &unknown) {
            assert!(
                after.contains_key(k),
                "{k} of the unknown creator's job was swept"
            );
            kept += 1;
        } else if belongs_to_job(k, &alices[1]) {
            assert!(!after.contains_key(k), "{k} (alice's, known) survived");
        }
    }
    assert!(kept > 0);
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&out.planned[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    let job = report
        .results
        .iter()
        .flat_map(|r| &r.items)
        .find(|o| matches!(&o.item, Item::Resource { id, .. } if id.ends_with(&format!("/jobs/{unknown}"))))
        .expect("the job is in the report");
    match &job.status {
        ItemStatus::Held { hold, reason } => {
            assert_eq!(hold, "LH-BOB");
            assert!(reason.contains("creator is unknown"), "{reason}");
        }
        other => panic!("not held: {other:?}"),
    }
}
