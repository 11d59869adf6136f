//! Issue 20 end to end: the tamper-evident audit trail (hash chain + Merkle roots, concurrent
//! appends against Azurite and the local store), the "retained until" follow-up, and lineage
//! impact. The pipeline is driven directly over the in-memory bus (`support::pipeline`).

use crate::support;

use std::sync::Arc;

use azureml_dsr::adapters::azure::blob::AzureBlobStore;
use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::audit_chain::{entry_name, ChainEntry};
use azureml_dsr::functions::audit_trail;
use azureml_dsr::functions::{intake, Delivery, Services, Settings};
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt, Condition};
use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
use azureml_dsr::state::{StateStore, AUDIT, REPORTS};
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use serde_json::json;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    bus: Arc<MemoryBus>,
    svc: Services,
    truth: SeedTruth,
}

async fn env_with(settings: Settings) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let store = local_store(&paths);
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 2,
        ..Default::default()
    };
    let truth = seed(&store, &opts, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    std::fs::write(
        paths.directory(),
        serde_json::to_vec(&truth.directory()).unwrap(),
    )
    .unwrap();
    let bus = Arc::new(MemoryBus::new());
    let svc = local_services(&paths, store.clone(), bus.clone(), settings);
    svc.state().put_scope(&truth.workspaces).await.unwrap();
    Env {
        dir,
        store,
        bus,
        svc,
        truth,
    }
}

async fn submit(e: &Env, id: &str, kind: &str, user: &str) {
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    let body = json!({"schemaVersion": "1.0", "requestId": id, "type": kind, "dryRun": false,
        "subject": {"upn": e.truth.user(user).unwrap().upn}, "scope": {"workspaces": ws}});
    intake::run(
        &e.svc,
        body.to_string().as_bytes(),
        &Delivery {
            delivery_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    support::pipeline::drive(&e.svc, &e.bus, 1).await;
}

/// `n` writers appending `each` records at once; the chain must hold every record exactly
/// once, at consecutive positions, with every link intact.
async fn concurrent_appends(state: StateStore, n: usize, each: usize) {
    state.ensure_containers().await.unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|w| {
            let state = state.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let rec = json!({"requestId": format!("W{w}-{i}"), "status": "completed"});
                    audit_trail::record(&state, &format!("requests/W{w}-{i}.json"), &rec)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
    assert_eq!(v.entries, (n * each) as u64);
    let mut refs = Vec::new();
    for seq in 0..(n * each) as u64 {
        let (b, _) = state
            .store
            .read_small(&state.blob(AUDIT, entry_name(seq)))
            .await
            .unwrap();
        let e: ChainEntry = serde_json::from_slice(&b).unwrap();
        refs.push(e.record_ref);
    }
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), n * each, "every record chained exactly once");
    assert!(v.unchained.is_empty(), "{:?}", v.unchained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_chain_concurrent_appends_against_azurite_form_one_chain() {
    let az = support::azurite::Azurite::start(&["dsrstate"]);
    let store: Arc<dyn BlobStore> = Arc::new(AzureBlobStore::azurite(&az.base_url));
    concurrent_appends(StateStore::new(store, "dsrstate"), 8, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_chain_concurrent_appends_on_the_local_store_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&LocalPaths::new(dir.path()));
    concurrent_appends(StateStore::new(store, "dsrstate"), 8, 5).await;
}

async fn overwrite(store: &dyn BlobStore, b: &BlobRef, body: Vec<u8>) {
    store
        .put(
            b,
            body.into(),
            "application/json",
            Condition::None,
            &Default::default(),
        )
        .await
        .unwrap();
}

/// A trail copied out of the WORM container (the local store allows overwrites): verify passes
/// untouched and names the position of a changed, a removed and a reordered record, and of a
/// certificate whose items were changed.
#[tokio::test]
async fn audit_verify_passes_untouched_and_names_each_tampering() {
    let e = env_with(Settings::default()).await;
    submit(&e, "EXP-A1", "export", "alice").await;
    submit(&e, "DEL-A1", "delete", "bob").await;
    submit(&e, "DEL-A2", "delete", "carol").await;
    let state = e.svc.state();
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
    assert!(v.entries >= 3, "{v:?}");
    assert_eq!(v.roots_recomputed, 3, "{v:?}");

    let entry = |seq| state.blob(AUDIT, entry_name(seq));
    let original: Vec<Vec<u8>> = {
        let mut out = Vec::new();
        for seq in 0..v.entries {
            out.push(e.store.read_small(&entry(seq)).await.unwrap().0.to_vec());
        }
        out
    };
    let restore = || async {
        for (seq, b) in original.iter().enumerate() {
            overwrite(e.store.as_ref(), &entry(seq as u64), b.clone()).await;
        }
    };

    // Changed: a record's status edited in the chain entry (hash recomputed to hide it).
    let mut changed: ChainEntry = serde_json::from_slice(&original[1]).unwrap();
    changed.record["status"] = json!("completed_by_hand");
    changed.record_sha256 = azureml_dsr::domain::audit_chain::record_hash(&changed.record);
    overwrite(
        e.store.as_ref(),
        &entry(1),
        serde_json::to_vec_pretty(&changed).unwrap(),
    )
    .await;
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(
        v.findings
            .iter()
            .any(|f| f.position == 2 && f.problem.contains("position 1")),
        "{:?}",
        v.findings
    );
    restore().await;

    // Removed: entry 1 deleted.
    e.store.delete(&entry(1)).await.unwrap();
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(
        v.findings
            .iter()
            .any(|f| f.position == 1 && f.problem.contains("missing")),
        "{:?}",
        v.findings
    );
    restore().await;

    // Reordered: entries 0 and 1 swapped.
    overwrite(e.store.as_ref(), &entry(0), original[1].clone()).await;
    overwrite(e.store.as_ref(), &entry(1), original[0].clone()).await;
    let v = audit_trail::verify(&state).await.unwrap();
    assert_eq!(
        v.findings.first().map(|f| f.position),
        Some(0),
        "{:?}",
        v.findings
    );
    assert!(
        v.findings.iter().any(|f| f.problem.contains("reordered")),
        "{:?}",
        v.findings
    );
    restore().await;
    assert!(audit_trail::verify(&state).await.unwrap().ok());

    // A certificate's item changed after the fact.
    let cert = state.blob(REPORTS, "DEL-A1/certificate.json");
    let (bytes, _) = e.store.read_small(&cert).await.unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let items = doc["results"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| !r["items"].as_array().unwrap().is_empty())
        .unwrap();
    items["items"].as_array_mut().unwrap().remove(0);
    overwrite(
        e.store.as_ref(),
        &cert,
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .await;
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(
        v.findings
            .iter()
            .any(|f| f.problem.contains("Merkle root differs")),
        "{:?}",
        v.findings
    );

    // The command reports it and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(e.dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("Merkle root differs"), "{stdout}");
    overwrite(e.store.as_ref(), &cert, bytes.to_vec()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(e.dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Soft delete on: the certificate first says "retained until"; the retention-sweep timer, run
/// with a clock past the date, writes the final version: "fully erased on …, verified" for one
/// request, and for the other names the blob that is still there (restored, simulated).
#[tokio::test]
async fn follow_up_after_the_retention_date_writes_the_final_certificate() {
    use azureml_dsr::adapters::local::fs_blob::{AccountSettings, FsBlobStore};
    use azureml_dsr::domain::report::{FinalReport, FinalStatus};
    use azureml_dsr::domain::slice::{Item, ItemStatus};
    use azureml_dsr::functions::{follow_up, retention};
    use azureml_dsr::protocol::timer::TimerInfo;

    let e = env_with(Settings::default()).await;
    let fs = FsBlobStore::new(LocalPaths::new(e.dir.path()).store());
    for info in &e.truth.infos {
        fs.set_account_settings(
            &info.storage_account,
            &AccountSettings {
                delete_retention_days: 9,
            },
        )
        .unwrap();
    }
    let t0 = time::OffsetDateTime::now_utc();
    submit(&e, "DEL-F1", "delete", "alice").await;
    submit(&e, "DEL-F2", "delete", "bob").await;
    let state = e.svc.state();
    let cert = |id: &str, v: &str| state.blob(REPORTS, format!("{id}/certificate{v}"));
    let read_cert = |b: BlobRef| {
        let store = e.store.clone();
        async move {
            store
                .read_json::<FinalReport>(&b)
                .await
                .unwrap()
                .expect("certificate")
        }
    };
    let v1 = read_cert(cert("DEL-F1", ".json")).await;
    assert!(v1.counts.retained > 0, "{:?}", v1.counts);
    let md = e.store.read_small(&cert("DEL-F1", ".md")).await.unwrap().0;
    assert!(String::from_utf8_lossy(&md).contains("physically retained until"));

    // Before the date nothing is final.
    let early = follow_up::sweep(&e.svc, t0 + time::Duration::days(8))
        .await
        .unwrap();
    assert!(early.finalised.is_empty(), "{early:?}");
    assert_eq!(early.waiting, 2);

    // One of alice's blobs is back (restored from soft delete, simulated by writing it again).
    let restored = e.truth.blobs_of("alice")[0].clone();
    let (acct, rest) = restored.split_once('/').unwrap();
    let (container, name) = rest.split_once('/').unwrap();
    let restored_ref = BlobRef::new(acct, container, name);
    e.store
        .put(
            &restored_ref,
            bytes::Bytes::from_static(b"restored"),
            "text/plain",
            Condition::None,
            &Default::default(),
        )
        .await
        .unwrap();

    let timer = TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: false,
    };
    let later = t0 + time::Duration::days(10);
    let sweep = retention::run(&e.svc, &timer, later).await.unwrap();
    let mut finalised = sweep.follow_ups.finalised.clone();
    finalised.sort();
    assert_eq!(
        finalised,
        vec!["DEL-F1", "DEL-F2"],
        "{:?}",
        sweep.follow_ups
    );
    assert_eq!(sweep.follow_ups.still_recoverable, 1);

    // Bob: every retained item verified gone.
    let f2 = read_cert(cert("DEL-F2", ".final.json")).await;
    assert_eq!(f2.counts.retained, 0, "{:?}", f2.counts);
    assert_eq!(f2.status, FinalStatus::Completed);
    let md2 = String::from_utf8_lossy(
        &e.store
            .read_small(&cert("DEL-F2", ".final.md"))
            .await
            .unwrap()
            .0,
    )
    .to_string();
    assert!(md2.contains("fully erased on"), "{md2}");

    // Alice: the restored blob is named; the rest verified gone.
    let f1 = read_cert(cert("DEL-F1", ".final.json")).await;
    assert_eq!(f1.status, FinalStatus::PartiallyFailed);
    let mut named = 0;
    for o in f1.results.iter().flat_map(|r| &r.items) {
        match (&o.item, &o.status) {
            (
                Item::Blob {
                    account: a,
                    container: c,
                    name: n,
                    ..
                },
                ItemStatus::Failed { reason },
            ) if BlobRef::new(a, c, n.clone()) == restored_ref => {
                assert!(reason.contains("present again"), "{reason}");
                named += 1;
            }
            (Item::Blob { .. }, ItemStatus::Deleted { verified: true }) => {}
            (Item::Blob { .. }, other) => panic!("unexpected blob status {other:?}"),
            _ => {}
        }
    }
    assert_eq!(named, 1);
    let md1 = String::from_utf8_lossy(
        &e.store
            .read_small(&cert("DEL-F1", ".final.md"))
            .await
            .unwrap()
            .0,
    )
    .to_string();
    assert!(md1.contains("still there") && md1.contains(name), "{md1}");
    // The first certificate is untouched; the follow-up is chained and verifies.
    assert_eq!(read_cert(cert("DEL-F1", ".json")).await, v1);
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
    assert!(e
        .store
        .read_small(&state.blob(AUDIT, "requests/DEL-F1.final.json"))
        .await
        .is_ok());
    // Nothing more to do on the next run.
    let again = follow_up::sweep(&e.svc, later).await.unwrap();
    assert!(
        again.finalised.is_empty() && again.waiting == 0,
        "{again:?}"
    );
}

/// A soft-deleted copy still inside its retention when the follow-up runs (the account's
/// retention lengthened after the delete, simulated) is named as still there.
#[tokio::test]
async fn follow_up_names_a_soft_deleted_copy_still_recoverable() {
    use azureml_dsr::adapters::local::fs_blob::{AccountSettings, FsBlobStore};
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBlobStore::new(dir.path());
    fs.set_account_settings(
        "acct",
        &AccountSettings {
            delete_retention_days: 2,
        },
    )
    .unwrap();
    fs.create_container("acct", "cont").await.unwrap();
    let b = BlobRef::new("acct", "cont", "dir/x.bin");
    fs.put(
        &b,
        bytes::Bytes::from_static(b"x"),
        "application/octet-stream",
        Condition::None,
        &Default::default(),
    )
    .await
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    fs.delete(&b).await.unwrap();
    let left = fs
        .recoverable(&b, now + time::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("soft-deleted copy"), "{left:?}");
    fs.set_account_settings(
        "acct",
        &AccountSettings {
            delete_retention_days: 30,
        },
    )
    .unwrap();
    let left = fs
        .recoverable(&b, now + time::Duration::days(3))
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "retention lengthened: still there {left:?}");
    let left = fs
        .recoverable(&b, now + time::Duration::days(31))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Lineage impact: bob's job trained on alice's data asset, bob's model came from that job and
/// an online deployment serves it. Alice's delete lists the job, the model and the deployment
/// under "derived from the subject's data" with the evidence path, deletes none of them, and
/// the controller's decision goes into the chained audit trail.
#[tokio::test]
async fn lineage_derived_model_of_another_users_job_is_reported_not_deleted() {
    use azureml_dsr::adapters::local::control_plane::{LocalControlPlane, ARM_ACCOUNT};
    use azureml_dsr::domain::report::FinalReport;
    use azureml_dsr::domain::request::RequestId;
    use azureml_dsr::domain::resource::ArmKind;
    use azureml_dsr::functions::lineage::{decide, Decision};

    let e = env_with(Settings::default()).await;
    let alices_data = e
        .truth
        .resources_of("alice")
        .into_iter()
        .find(|id| id.contains("/data/"))
        .expect("alice has a data asset")
        .clone();
    let ws_id = &alices_data[..alices_data.find("/data/").unwrap()];
    let ws = e
        .truth
        .workspaces
        .iter()
        .find(|w| w.to_string().eq_ignore_ascii_case(ws_id))
        .unwrap()
        .clone();
    let in_ws = |id: &&String| {
        id.to_ascii_lowercase()
            .starts_with(&ws_id.to_ascii_lowercase())
    };
    let bobs_job = e
        .truth
        .resources_of("bob")
        .into_iter()
        .filter(in_ws)
        .find(|id| id.contains("/jobs/"))
        .expect("bob has a job")
        .clone();
    let bobs_model = e
        .truth
        .resources_of("bob")
        .into_iter()
        .filter(in_ws)
        .find(|id| id.contains("/models/"))
        .expect("bob has a model")
        .clone();
    let parts: Vec<&str> = alices_data.rsplit('/').collect(); // version, "versions", name
    let (data_name, data_version) = (parts[2], parts[0]);
    let job_name = bobs_job.rsplit('/').next().unwrap();

    // ARM shapes (2024-04-01 spec: JobInput `uri`, ModelVersion `jobName`, OnlineDeployment `model`).
    let lcp = LocalControlPlane::new(e.store.clone());
    let doc = |kind: ArmKind, id: &str| {
        let blob = BlobRef::new(
            ARM_ACCOUNT,
            LocalControlPlane::container(&ws),
            LocalControlPlane::blob_name(&ws, kind, id).unwrap(),
        );
        let store = e.store.clone();
        async move { store.read_json::<serde_json::Value>(&blob).await.unwrap() }
    };
    let mut job = doc(ArmKind::Job, &bobs_job).await.unwrap();
    job["properties"]["inputs"] = json!({"training_data": {"jobInputType": "uri_folder",
        "mode": "ReadOnlyMount", "uri": format!("azureml:{data_name}:{data_version}")}});
    lcp.put_resource(&ws, ArmKind::Job, &job).await.unwrap();
    let mut model = doc(ArmKind::ModelVersion, &bobs_model).await.unwrap();
    model["properties"]["jobName"] = json!(job_name);
    lcp.put_resource(&ws, ArmKind::ModelVersion, &model)
        .await
        .unwrap();
    let deployment_id = format!("{ws}/onlineEndpoints/churn-ep/deployments/blue");
    let deployment = json!({"id": deployment_id, "name": "blue",
        "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
        "properties": {"endpointComputeType": "Managed", "model": bobs_model, "provisioningState": "Succeeded"}});
    let dep_blob = BlobRef::new(
        ARM_ACCOUNT,
        LocalControlPlane::container(&ws),
        "onlineEndpoints/churn-ep/deployments/blue.json",
    );
    e.store.write_json(&dep_blob, &deployment).await.unwrap();

    submit(&e, "DEL-L1", "delete", "alice").await;
    let state = e.svc.state();
    let report: FinalReport = state
        .report(&RequestId::parse("DEL-L1").unwrap())
        .await
        .unwrap()
        .unwrap();
    let lineage = report
        .derived_from_subject_data
        .clone()
        .expect("lineage section");
    assert!(lineage.incomplete.is_empty(), "{:?}", lineage.incomplete);
    let find = |kind: &str| {
        lineage
            .derived
            .iter()
            .find(|d| d.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in {:?}", lineage.derived))
    };
    let j = find("job");
    assert_eq!(j.id, bobs_job);
    let m = find("modelVersion");
    assert_eq!(m.id, bobs_model);
    let d = find("onlineDeployment");
    assert_eq!(d.name, "churn-ep/blue");
    assert_eq!(d.evidence.len(), 4, "{:?}", d.evidence);
    assert!(
        d.evidence[0].contains(data_name)
            && d.evidence[1].contains("properties.inputs.training_data.uri"),
        "{:?}",
        d.evidence
    );
    assert!(
        d.evidence[2].contains("properties.jobName") && d.evidence[3].contains("properties.model"),
        "{:?}",
        d.evidence
    );
    let md = String::from_utf8_lossy(
        &e.store
            .read_small(&state.blob(REPORTS, "DEL-L1/certificate.md"))
            .await
            .unwrap()
            .0,
    )
    .to_string();
    assert!(
        md.contains("Derived from the subject's data") && md.contains("churn-ep/blue"),
        "{md}"
    );

    // Nothing derived was deleted.
    assert!(
        doc(ArmKind::Job, &bobs_job).await.is_some(),
        "bob's job kept"
    );
    assert!(
        doc(ArmKind::ModelVersion, &bobs_model).await.is_some(),
        "bob's model kept"
    );
    assert!(
        e.store
            .read_json::<serde_json::Value>(&dep_blob)
            .await
            .unwrap()
            .is_some(),
        "deployment kept"
    );
    // ... while alice's own data asset was.
    assert!(
        doc(ArmKind::DataVersion, &alices_data).await.is_none(),
        "alice's data asset deleted"
    );

    // The controller's decision, chained; a model not derived is refused.
    decide(
        &state,
        &report,
        &m.name,
        Decision::Retrain,
        "retrain without the subject's rows",
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(decide(
        &state,
        &report,
        "unrelated:1",
        Decision::Keep,
        "x",
        time::OffsetDateTime::now_utc()
    )
    .await
    .is_err());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(e.dir.path())
        .args([
            "lineage",
            "decide",
            "DEL-L1",
            &m.id,
            "retire",
            "--reason",
            "legal advice",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decisions = e
        .store
        .list_all(&state.account, AUDIT, "lineage-decisions/DEL-L1/")
        .await
        .unwrap();
    assert_eq!(decisions.len(), 2);
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
}

/// `AzureBlobStore::recoverable` against Azurite: the live blob and its snapshots are named
/// (the listing with `include=deleted,snapshots,versions`, asked again without `versions` where
/// the emulator refuses it); after a complete delete nothing is. Azurite stores a soft-delete
/// policy but deletes at once, so soft-deleted entries themselves cannot be shown here.
#[tokio::test]
async fn recoverable_on_azurite_names_the_blob_and_its_snapshots() {
    use azure_core::http::{ClientOptions, Url};
    use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
    use azureml_dsr::adapters::azure::shared_key::{SharedKeyCredential, SharedKeyPolicy};

    let az = support::azurite::Azurite::start(&["wsacct1"]);
    let store = AzureBlobStore::azurite(&az.base_url);
    store.create_container("wsacct1", "data").await.unwrap();
    let b = BlobRef::new("wsacct1", "data", "users/u1/a.csv");
    let other = BlobRef::new("wsacct1", "data", "users/u1/a.csv.bak");
    for x in [&b, &other] {
        store
            .put(
                x,
                bytes::Bytes::from_static(b"v1"),
                "text/csv",
                Condition::None,
                &Default::default(),
            )
            .await
            .unwrap();
    }
    let cred = Arc::new(SharedKeyCredential::new("wsacct1", support::azurite::KEY).unwrap());
    let options = BlobServiceClientOptions {
        client_options: ClientOptions {
            per_try_policies: vec![Arc::new(SharedKeyPolicy::new(cred))],
            ..Default::default()
        },
        ..Default::default()
    };
    let raw = BlobServiceClient::new(
        Url::parse(&format!("{}/wsacct1", az.base_url)).unwrap(),
        None,
        Some(options),
    )
    .unwrap();
    raw.blob_client("data", "users/u1/a.csv")
        .create_snapshot(None)
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let left = store.recoverable(&b, now).await.unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|l| l.contains("present again")), "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("snapshot ")), "{left:?}");
    store.delete(&b).await.unwrap();
    let left = store.recoverable(&b, now).await.unwrap();
    assert!(
        left.is_empty(),
        "the other blob sharing the prefix is not this one: {left:?}"
    );
}
