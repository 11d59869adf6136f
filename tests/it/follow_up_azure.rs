//! Issue 20, "retained until" followed to the end beyond blobs: share snapshots re-checked
//! through the Azure Files adapter against the Files stand-in (`stand_ins::files`), telemetry
//! purges re-checked through their operation's status, and a soft-deleted workspace checked
//! against ARM after its retention ends.

use std::sync::Arc;

use azureml_dsr::adapters::azure::files::{AzureFileShare, FILES_SCOPE};
use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::adapters::local::telemetry::LocalTelemetry;
use azureml_dsr::domain::follow_up::Ledger;
use azureml_dsr::domain::report::FinalReport;
use azureml_dsr::domain::slice::{Item, ItemStatus};
use azureml_dsr::functions::{
    follow_up, follow_up_workspace, intake, telemetry_purges, workspace_deleted, Delivery,
    Services, Settings,
};
use azureml_dsr::ports::blob::{BlobStore, BlobStoreExt};
use azureml_dsr::ports::file_share::FileShare;
use azureml_dsr::protocol::eventgrid::GridEvent;
use azureml_dsr::seed::{SeedOptions, SeedTruth};
use azureml_dsr::state::{AUDIT, REPORTS, STATE};
use azureml_dsr::wiring::local_services;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::stand_ins::files::FilesStandIn;
use crate::support;
use crate::support::azure::rest;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    bus: Arc<MemoryBus>,
    svc: Services,
    truth: SeedTruth,
}

async fn env() -> Env {
    let support::pipeline::Seeded {
        dir,
        paths,
        store,
        truth,
    } = support::pipeline::Seeded::new(
        &SeedOptions {
            users: 2,
            runs_per_user: 1,
            ..Default::default()
        },
        OffsetDateTime::now_utc(),
    )
    .await
    .with_directory();
    let bus = Arc::new(MemoryBus::new());
    let svc = local_services(&paths, store.clone(), bus.clone(), Settings::default());
    svc.state().put_scope(&truth.workspaces).await.unwrap();
    Env {
        _dir: dir,
        store,
        bus,
        svc,
        truth,
    }
}

async fn delete(e: &Env, id: &str, user: usize) {
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    let req = json!({"schemaVersion": "1.0", "requestId": id, "type": "delete", "dryRun": false,
        "subject": {"upn": e.truth.users[user].upn}, "scope": {"workspaces": ws}});
    intake::run(&e.svc, req.to_string().as_bytes(), &Delivery::default())
        .await
        .unwrap();
    support::pipeline::drive(&e.svc, &e.bus, 1).await;
}

async fn report(e: &Env, id: &str, version: &str) -> Option<FinalReport> {
    e.store
        .read_json(
            &e.svc
                .state()
                .blob(REPORTS, format!("{id}/certificate{version}.json")),
        )
        .await
        .unwrap()
}

async fn final_md(e: &Env, id: &str) -> String {
    let (b, _) = e
        .store
        .read_small(
            &e.svc
                .state()
                .blob(REPORTS, format!("{id}/certificate.final.md")),
        )
        .await
        .unwrap();
    String::from_utf8_lossy(&b).into_owned()
}

const SNAP: &str = "2026-11-20T10:00:00.0000000Z";

/// The adapter names a deleted file's share snapshots by the opaque value List Shares returned
/// (7 fractional digits), and stops naming a snapshot once it is deleted.
#[tokio::test]
async fn share_snapshots_are_rechecked_through_the_azure_files_adapter() {
    let f = FilesStandIn::start();
    let (acct, share) = ("mlwstore0", "code-391ff5ac-6576-460f-ba4d-7e03433c68b6");
    f.create_share(acct, share);
    f.put_file(acct, share, "Users/alice/nb.ipynb", b"{}");
    f.put_file(acct, share, "Users/bob/keep.ipynb", b"{}");
    f.add_snapshot(acct, share, SNAP);
    let files = AzureFileShare::new(rest(FILES_SCOPE), f.template());
    files
        .delete_file(acct, share, "Users/alice/nb.ipynb")
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        files
            .recoverable(acct, share, "Users/alice/nb.ipynb", now)
            .await
            .unwrap(),
        vec![format!("share snapshot taken {SNAP}")]
    );
    // A file the snapshot never held is not named.
    f.put_file(acct, share, "Users/alice/later.ipynb", b"{}");
    files
        .delete_file(acct, share, "Users/alice/later.ipynb")
        .await
        .unwrap();
    assert!(files
        .recoverable(acct, share, "Users/alice/later.ipynb", now)
        .await
        .unwrap()
        .is_empty());
    f.delete_snapshot(acct, share, SNAP);
    assert!(files
        .recoverable(acct, share, "Users/alice/nb.ipynb", now)
        .await
        .unwrap()
        .is_empty());
    // Every snapshot read carried the exact listed value.
    let snapshot_reads: Vec<String> = f
        .seen()
        .iter()
        .flat_map(|s| s.query.iter())
        .filter(|(k, _)| k == "sharesnapshot")
        .map(|(_, v)| v.clone())
        .collect();
    assert!(!snapshot_reads.is_empty());
    assert!(
        snapshot_reads.iter().all(|v| v == SNAP),
        "{snapshot_reads:?}"
    );
}

/// A notebooks delete through the pipeline against the Files stand-in, with a share snapshot
/// holding the person's files: the certificate says the files are retained in share snapshots
/// (no false "retained until": snapshots last until deleted) with a re-check date, the
/// aggregator enters them in the follow-up ledger by itself, and after that date the follow-up,
/// run through the Azure Files adapter, names the snapshot in the final certificate version
/// instead of "fully erased".
#[tokio::test]
async fn the_follow_up_names_a_share_snapshot_through_the_azure_files_adapter() {
    let mut e = env().await;
    let info = e.truth.infos[0].clone();
    let alice = e.truth.users[0].clone();
    let f = FilesStandIn::start();
    let (acct, share) = (info.storage_account.as_str(), info.file_share.as_str());
    f.create_share(acct, share);
    f.put_file(acct, share, &format!("Users/{}/a.ipynb", alice.key), b"{}");
    f.put_file(acct, share, &format!("Users/{}/b.ipynb", alice.key), b"{}");
    f.add_snapshot(acct, share, SNAP);
    // c.ipynb is written after the snapshot: once deleted, nothing keeps it.
    f.put_file(acct, share, &format!("Users/{}/c.ipynb", alice.key), b"{}");
    e.svc.files = Arc::new(AzureFileShare::new(rest(FILES_SCOPE), f.template()));
    let days = i64::from(e.svc.settings.share_snapshot_recheck_days);
    let before = OffsetDateTime::now_utc();
    delete(&e, "NB-FOLLOW", 0).await;
    let v1 = report(&e, "NB-FOLLOW", "").await.unwrap();
    let files: Vec<(String, Item)> = v1
        .results
        .iter()
        .flat_map(|r| r.items.iter().map(move |i| (r.key.clone(), i)))
        .filter(|(_, i)| matches!(i.item, Item::File { .. }))
        .inspect(|(_, i)| match &i.status {
            ItemStatus::InShareSnapshots {
                snapshots: Some(1),
                recheck_on,
            } => assert!(
                *recheck_on >= before + Duration::days(days)
                    && *recheck_on <= OffsetDateTime::now_utc() + Duration::days(days)
            ),
            other => panic!("a file deleted from a share with a snapshot: {other:?}"),
        })
        .map(|(k, i)| (k, i.item.clone()))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    // Gone from the live share all the same.
    assert!(f.files(acct, share).iter().all(|p| !p.contains(&alice.key)));
    let (md1, _) = e
        .store
        .read_small(&e.svc.state().blob(REPORTS, "NB-FOLLOW/certificate.md"))
        .await
        .unwrap();
    let md1 = String::from_utf8_lossy(&md1);
    assert!(
        md1.contains("retained in share snapshots (1 exist) until those snapshots are deleted; re-checked on"),
        "{md1}"
    );

    // The aggregator entered each file in the ledger, by itself, with its re-check date.
    let state = e.svc.state();
    let ledger: Ledger = state
        .store
        .read_json(&state.blob(STATE, "follow-up/NB-FOLLOW.json"))
        .await
        .unwrap()
        .expect("files in share snapshots are in the follow-up ledger");
    let in_ledger: Vec<(String, Item)> = ledger
        .items
        .iter()
        .filter(|l| matches!(l.item, Item::File { .. }))
        .inspect(|l| assert!(l.recheck_only, "{l:?}"))
        .map(|l| (l.slice_key.clone(), l.item.clone()))
        .collect();
    assert_eq!(in_ledger, files);

    // Before the re-check date: waiting (the telemetry purges complete meanwhile).
    let now = OffsetDateTime::now_utc();
    telemetry_purges::sweep(&e.svc, now).await.unwrap();
    let early = follow_up::sweep(&e.svc, now).await.unwrap();
    assert!(early.finalised.is_empty(), "{early:?}");
    let later = now + Duration::days(days + 1);
    let out = follow_up::sweep(&e.svc, later).await.unwrap();
    assert_eq!(out.finalised, vec!["NB-FOLLOW".to_string()], "{out:?}");
    assert_eq!(
        out.still_recoverable, 2,
        "a.ipynb and b.ipynb are in the snapshot"
    );
    let md = final_md(&e, "NB-FOLLOW").await;
    assert!(md.contains(&format!("share snapshot taken {SNAP}")), "{md}");
    assert!(md.contains("still recoverable at its re-check due"), "{md}");
    assert!(!md.contains("fully erased"), "{md}");
    let fin = report(&e, "NB-FOLLOW", ".final").await.unwrap();
    let statuses: Vec<&ItemStatus> = fin
        .results
        .iter()
        .flat_map(|r| r.items.iter())
        .filter(|i| matches!(i.item, Item::File { .. }))
        .map(|i| &i.status)
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| matches!(s, ItemStatus::Failed { .. }))
            .count(),
        2
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == &ItemStatus::Deleted { verified: true })
            .count(),
        1
    );
    let audit: Value = e
        .store
        .read_json(&state.blob(AUDIT, "requests/NB-FOLLOW.final.json"))
        .await
        .unwrap()
        .expect("the final audit record");
    let files_audit: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["item"].as_str().unwrap().starts_with("file "))
        .collect();
    assert_eq!(files_audit.len(), 3);
    assert!(files_audit
        .iter()
        .all(|i| i.get("recheckOn").is_some() && i.get("retainedUntil").is_none()));
}

/// Purged telemetry is in the ledger with its purge window; the final version says "fully
/// erased, verified" only after the purge operation's status, asked again, is `completed`.
#[tokio::test]
async fn a_purge_is_final_only_once_its_operation_reports_completed() {
    let e = env().await;
    delete(&e, "TEL-DONE", 0).await;
    let v1 = report(&e, "TEL-DONE", "").await.unwrap();
    let pending = v1
        .results
        .iter()
        .flat_map(|r| r.items.iter())
        .filter(|i| {
            matches!(i.item, Item::Telemetry { .. })
                && matches!(i.status, ItemStatus::Pending { .. })
        })
        .count();
    assert!(pending > 0, "the seed gives the subject telemetry rows");
    let state = e.svc.state();
    let ledger: Ledger = state
        .store
        .read_json(&state.blob(STATE, "follow-up/TEL-DONE.json"))
        .await
        .unwrap()
        .expect("the purge window is in the ledger");
    assert!(ledger
        .items
        .iter()
        .filter(|l| l.is_purge())
        .all(|l| !l.purge_status.is_empty() && l.until >= v1.finished_at + Duration::days(29)));

    // While the purges run, nothing is final.
    let now = OffsetDateTime::now_utc();
    let early = follow_up::sweep(&e.svc, now).await.unwrap();
    assert!(early.finalised.is_empty(), "{early:?}");
    assert!(report(&e, "TEL-DONE", ".final").await.is_none());

    // The purges complete (status polled by the timer), then the follow-up asks again.
    telemetry_purges::sweep(&e.svc, now).await.unwrap();
    let out = follow_up::sweep(&e.svc, now).await.unwrap();
    assert_eq!(out.finalised, vec!["TEL-DONE".to_string()], "{out:?}");
    assert_eq!(out.still_recoverable, 0);
    let md = final_md(&e, "TEL-DONE").await;
    assert!(md.contains("fully erased on"), "{md}");
    assert!(md.contains("verified"), "{md}");
}

#[tokio::test]
async fn a_purge_still_open_after_its_window_is_named_not_erased() {
    let mut e = env().await;
    // Purges that stay `pending` far longer than any test runs.
    e.svc.telemetry = Arc::new(LocalTelemetry::new(e.store.clone()).with_pending_polls(1_000));
    delete(&e, "TEL-SLOW", 0).await;
    let now = OffsetDateTime::now_utc();
    telemetry_purges::sweep(&e.svc, now).await.unwrap();
    assert!(follow_up::sweep(&e.svc, now)
        .await
        .unwrap()
        .finalised
        .is_empty());
    // After the purge window: the final version names the purges still running.
    let later = now + Duration::days(31);
    let out = follow_up::sweep(&e.svc, later).await.unwrap();
    assert_eq!(out.finalised, vec!["TEL-SLOW".to_string()], "{out:?}");
    assert!(out.still_recoverable > 0);
    let md = final_md(&e, "TEL-SLOW").await;
    assert!(md.contains("purge operation still pending"), "{md}");
    assert!(!md.contains("fully erased"), "{md}");
}

#[tokio::test]
async fn a_failed_purge_is_named_in_the_final_version() {
    let mut e = env().await;
    e.svc.telemetry = Arc::new(LocalTelemetry::new(e.store.clone()).with_failing_purges());
    delete(&e, "TEL-FAIL", 0).await;
    let now = OffsetDateTime::now_utc();
    telemetry_purges::sweep(&e.svc, now).await.unwrap();
    let out = follow_up::sweep(&e.svc, now).await.unwrap();
    assert_eq!(out.finalised, vec!["TEL-FAIL".to_string()], "{out:?}");
    let md = final_md(&e, "TEL-FAIL").await;
    assert!(md.contains("purge failed"), "{md}");
    assert!(!md.contains("fully erased"), "{md}");
}

// ------------------------------------------------------------ workspace soft delete

/// The derived Event Grid fixture of a soft delete, pointed at the seeded workspace.
fn delete_event(e: &Env, at: OffsetDateTime) -> GridEvent {
    crate::support::events::workspace_delete_event(&e.truth.workspaces[0], false, at)
}

async fn final_record(e: &Env) -> Option<Value> {
    e.store
        .read_json(&e.svc.state().blob(
            AUDIT,
            format!(
                "workspace-deletions/{}.final.json",
                e.truth.workspaces[0].key()
            ),
        ))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_soft_deleted_workspace_is_checked_after_its_retention_ends() {
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    let e = env().await;
    let ws = e.truth.workspaces[0].clone();
    let lcp = LocalControlPlane::new(e.store.clone());
    lcp.soft_delete_workspace(&ws).await.unwrap();
    let t0 = OffsetDateTime::now_utc();
    workspace_deleted::run(&e.svc, &delete_event(&e, t0), t0)
        .await
        .unwrap();
    let days = e.svc.settings.workspace_soft_delete_days as i64;

    // Inside the window: waiting.
    let early = follow_up::sweep(&e.svc, t0 + Duration::days(days - 1))
        .await
        .unwrap();
    assert_eq!(early.waiting, 1, "{early:?}");
    assert!(final_record(&e).await.is_none());

    // After it, still soft-deleted (simulated: the service has not purged it): named.
    let later = t0 + Duration::days(days + 1);
    let out = follow_up::sweep(&e.svc, later).await.unwrap();
    assert_eq!(out.finalised, vec![ws.to_string()], "{out:?}");
    assert_eq!(out.still_recoverable, 1);
    let rec = final_record(&e).await.unwrap();
    assert_eq!(rec["erased"], json!(false));
    assert!(rec["statement"]
        .as_str()
        .unwrap()
        .contains("still soft-deleted"));
    // Checked once: a later sweep leaves it alone.
    assert!(follow_up::sweep(&e.svc, later + Duration::days(1))
        .await
        .unwrap()
        .finalised
        .is_empty());
    assert!(azureml_dsr::functions::audit_trail::verify(&e.svc.state())
        .await
        .unwrap()
        .ok());
}

#[tokio::test]
async fn a_workspace_arm_no_longer_knows_after_its_retention_is_fully_erased() {
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    let e = env().await;
    let ws = e.truth.workspaces[0].clone();
    LocalControlPlane::new(e.store.clone())
        .soft_delete_workspace(&ws)
        .await
        .unwrap();
    let t0 = OffsetDateTime::now_utc();
    workspace_deleted::run(&e.svc, &delete_event(&e, t0), t0)
        .await
        .unwrap();
    // The service purges it at the end of the window: ARM answers 404.
    e.store
        .delete_container(
            azureml_dsr::adapters::local::control_plane::ARM_ACCOUNT,
            &LocalControlPlane::container(&ws),
        )
        .await
        .unwrap();
    let later = t0 + Duration::days(e.svc.settings.workspace_soft_delete_days as i64 + 1);
    let out = follow_up::sweep(&e.svc, later).await.unwrap();
    assert_eq!(out.finalised, vec![ws.to_string()], "{out:?}");
    assert_eq!(out.still_recoverable, 0);
    let rec = final_record(&e).await.unwrap();
    assert_eq!(rec["erased"], json!(true));
    assert!(rec["statement"]
        .as_str()
        .unwrap()
        .starts_with("fully erased on"));
    let _ = follow_up_workspace::PREFIX;
}
