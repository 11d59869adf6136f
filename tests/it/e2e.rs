//! End to end through the local runtime: requests enqueued on the durable queue, dispatched to
//! the real handler over HTTP with the host's envelope, slices, aggregator, reports. The same
//! assertions run against both stores: local files and Azure Blob (official SDK) on Azurite.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use azureml_dsr::cli::local::{LocalRuntime, StorageChoice};
use azureml_dsr::cli::requests::enqueue;
use azureml_dsr::cli::seed::{seed_into, SeedArgs};
use azureml_dsr::domain::report::{FinalReport, FinalStatus};
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::domain::slice::{Item, ItemStatus};
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt};
use azureml_dsr::seed::SeedTruth;
use azureml_dsr::wiring::LocalPaths;
use serde_json::json;

const ACCOUNTS: [&str; 5] = [
    "mlwstore0",
    "armlocal",
    "telemetrylocal",
    "dsrstate",
    "runhistorylocal",
];

struct Env {
    dir: tempfile::TempDir,
    storage: StorageChoice,
    store: Arc<dyn BlobStore>,
    truth: SeedTruth,
    rt: LocalRuntime,
    _azurite: Option<support::azurite::Azurite>,
}

fn app_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

async fn env(azurite: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let az = azurite.then(|| support::azurite::Azurite::start(&ACCOUNTS));
    let storage = match &az {
        Some(a) => StorageChoice::Azurite(a.base_url.clone()),
        None => StorageChoice::Local,
    };
    let args = SeedArgs {
        workspaces: 1,
        users: 4,
        runs_per_user: 4,
        files_per_run: 2,
        output_bytes: 1024,
        seed: 11,
    };
    let truth = seed_into(dir.path(), &storage, &args).await.unwrap();
    let store = azureml_dsr::wiring::store_at(dir.path(), &storage);
    let rt = LocalRuntime::start(dir.path(), &storage, app_root())
        .await
        .unwrap();
    Env {
        dir,
        storage,
        store,
        truth,
        rt,
        _azurite: az,
    }
}

impl Env {
    fn request(&self, id: &str, kind: &str, user: &str, dry_run: bool) -> serde_json::Value {
        json!({"schemaVersion": "1.0", "requestId": id, "type": kind, "dryRun": dry_run,
               "subject": {"upn": self.truth.user(user).unwrap().upn},
               "scope": {"workspaces": self.truth.workspaces.iter().map(|w| w.to_string()).collect::<Vec<_>>()}})
    }

    async fn submit(&self, body: &serde_json::Value) {
        enqueue(
            &azureml_dsr::wiring::open_local_queue(self.dir.path()).unwrap(),
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    }

    async fn drain(&self) {
        self.rt.drain(Duration::from_secs(120)).await.unwrap();
    }

    async fn report(&self, id: &str) -> FinalReport {
        let state = azureml_dsr::state::StateStore::new(self.store.clone(), "dsrstate");
        state
            .report(&RequestId::parse(id).unwrap())
            .await
            .unwrap()
            .expect("report")
    }

    /// sha256 of every seeded blob still present.
    async fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for key in self.truth.blobs.keys() {
            let mut p = key.splitn(3, '/');
            let b = BlobRef::new(p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
            if let Ok((bytes, _)) = self.store.read_small(&b).await {
                out.insert(key.clone(), azureml_dsr::domain::ids::sha256_hex(&bytes));
            }
        }
        out
    }

    fn results(&self) -> Vec<serde_json::Value> {
        self.rt
            .queue
            .peek("dsr-results")
            .unwrap()
            .into_iter()
            // Result messages; lifecycle messages share the queue (tests/lifecycle.rs).
            .filter(|m| !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
            .map(|m| serde_json::from_slice(&m.body).unwrap())
            .collect()
    }
}

async fn export_then_delete_exactly_the_subjects_items(azurite: bool) {
    let e = env(azurite).await;
    let before = e.snapshot().await;
    e.submit(&e.request("E2E-EXP", "export", "bob", false))
        .await;
    e.drain().await;
    let exp = e.report("E2E-EXP").await;
    assert_eq!(exp.status, FinalStatus::Completed);
    let got = exp.blob_keys();
    let mut want: Vec<String> = e.truth.blobs_of("bob").into_iter().cloned().collect();
    want.sort();
    assert_eq!(got, want, "export = exactly bob's blobs ({:?})", e.storage);
    for o in exp.results.iter().flat_map(|s| &s.items) {
        let ItemStatus::Exported { path, sha256, .. } = &o.status else {
            panic!("{o:?}")
        };
        let (bytes, _) = e
            .store
            .read_small(&BlobRef::new("dsrstate", "dsr-exports", path.clone()))
            .await
            .unwrap();
        assert_eq!(&azureml_dsr::domain::ids::sha256_hex(&bytes), sha256);
    }
    assert_eq!(e.snapshot().await, before, "export changed nothing");
    let exp_msg = e
        .results()
        .into_iter()
        .find(|m| m["requestId"] == "E2E-EXP")
        .expect("export result message");
    assert_eq!(exp_msg["status"], "completed");
    // The archive: through its link on Azure storage (no credential), straight from the store
    // locally (the local store issues no links). Unzipped by Python's zipfile, checked against
    // the seeded data; `export verify` passes, and fails once a byte is flipped.
    let zip_dir = tempfile::tempdir().unwrap();
    let zip = zip_dir.path().join("export.zip");
    if azurite {
        let link = exp_msg["exportLink"]
            .as_str()
            .expect("export link on Azure storage");
        assert!(link.contains("sig=") && link.contains("se="), "{link}");
        assert!(link.contains("sp=r&"), "read-only: {link}");
        assert!(link.contains(".zip?"), "the link is to the archive: {link}");
        let resp = reqwest::get(link)
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        std::fs::write(&zip, resp.bytes().await.unwrap()).unwrap();
    } else {
        assert!(
            exp_msg.get("exportLink").is_none(),
            "the local store issues no links"
        );
        let state = azureml_dsr::state::StateStore::new(e.store.clone(), "dsrstate");
        let blob = azureml_dsr::functions::archive::archive_ref(&state, &exp);
        let (bytes, _) = e.store.read_small(&blob).await.unwrap();
        std::fs::write(&zip, bytes).unwrap();
    }
    let matched = support::archive_check::check_archive(&zip, &exp, &before);
    assert_eq!(
        matched,
        e.truth.blobs_of("bob").len(),
        "every one of bob's blobs is in the archive with its seeded bytes"
    );
    support::archive_check::flipped_byte_is_detected(&zip);

    // Delete, with the intake message delivered twice (the ticketing system re-sent it).
    let del = e.request("E2E-DEL", "delete", "bob", false);
    e.submit(&del).await;
    e.drain().await;
    e.submit(&del).await;
    e.drain().await;
    let r = e.report("E2E-DEL").await;
    // The telemetry purge completes on a later timer poll (tests/it/pipeline_direct.rs follows it).
    assert_eq!(
        r.status,
        FinalStatus::CompletedPurgePending,
        "{:#?}",
        r.slices
    );
    let after = e.snapshot().await;
    for (k, owner) in &e.truth.blobs {
        if owner == "bob" {
            assert!(!after.contains_key(k), "bob's {k} survived");
        } else {
            assert_eq!(
                after.get(k),
                before.get(k),
                "collateral change to {k} ({owner})"
            );
        }
    }
    assert_eq!(r.counts.failed, 0);
    assert_eq!(r.counts.deleted, r.counts.verified_gone);
    let results = e.results();
    let finals: Vec<_> = results
        .iter()
        .filter(|m| m["requestId"] == "E2E-DEL")
        .collect();
    assert_eq!(
        finals.len(),
        1,
        "exactly one result message for the delete: {results:#?}"
    );
    assert_eq!(finals[0]["status"], "completed_purge_pending");
    e.rt.stop().await;
}

async fn dry_run_and_rejections(azurite: bool) {
    let e = env(azurite).await;
    let before = e.snapshot().await;
    e.submit(&e.request("E2E-DRY", "delete", "carol", true))
        .await;
    e.submit(&json!({"schemaVersion": "9.0", "requestId": "E2E-BAD", "type": "delete"}))
        .await;
    e.drain().await;
    assert_eq!(e.snapshot().await, before, "dry run changed nothing");
    let dry = e.report("E2E-DRY").await;
    assert!(dry.dry_run && dry.counts.would_delete > 0 && dry.counts.deleted == 0);
    let results = e.results();
    let bad: Vec<_> = results
        .iter()
        .filter(|m| m["requestId"] == "E2E-BAD")
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["status"], "rejected");
    assert_eq!(bad[0]["code"], "unsupported_schema_version");
    let archive = e
        .store
        .list_all("dsrstate", "dsr-intake-archive", "")
        .await
        .unwrap();
    assert_eq!(archive.len(), 2, "both originals archived");
    e.rt.stop().await;
}

async fn soft_delete_gives_honest_retained_until_dates(azurite: bool) {
    let e = env(azurite).await;
    let account = e.truth.infos[0].storage_account.clone();
    match &e.storage {
        StorageChoice::Azurite(url) => support::azurite::set_soft_delete(url, &account, 9).await,
        _ => azureml_dsr::adapters::local::fs_blob::FsBlobStore::new(
            LocalPaths::new(e.dir.path()).store(),
        )
        .set_account_settings(
            &account,
            &azureml_dsr::adapters::local::fs_blob::AccountSettings {
                delete_retention_days: 9,
            },
        )
        .unwrap(),
    }
    let t0 = time::OffsetDateTime::now_utc();
    e.submit(&e.request("E2E-SOFT", "delete", "alice", false))
        .await;
    e.drain().await;
    let r = e.report("E2E-SOFT").await;
    let blobs = e.truth.blobs_of("alice").len() as u64;
    assert_eq!(
        r.counts.retained, blobs,
        "every blob of the workspace account is reported retained"
    );
    for o in r.results.iter().flat_map(|s| &s.items) {
        match (&o.item, &o.status) {
            (Item::Blob { .. }, ItemStatus::RetainedUntil { until }) => {
                let days = (*until - t0).whole_hours() as f64 / 24.0;
                assert!((8.9..=9.1).contains(&days), "retained for {days} days");
            }
            (Item::Blob { .. }, other) => panic!("blob not reported retained: {other:?}"),
            _ => {}
        }
    }
    let md = e
        .store
        .read_small(&BlobRef::new(
            "dsrstate",
            "dsr-reports",
            "E2E-SOFT/certificate.md",
        ))
        .await
        .unwrap()
        .0;
    assert!(String::from_utf8_lossy(&md).contains("physically retained until"));
    e.rt.stop().await;
}

async fn aggregator_finalises_exactly_once_under_concurrency(azurite: bool) {
    use azureml_dsr::adapters::local::memory_bus::MemoryBus;
    use azureml_dsr::domain::slice::SliceCompletion;
    use azureml_dsr::functions::{aggregate, intake, Settings};
    let e = env(azurite).await;
    let paths = LocalPaths::new(e.dir.path());
    let bus = Arc::new(MemoryBus::new());
    let svc = azureml_dsr::wiring::local_services(
        &paths,
        e.store.clone(),
        bus.clone(),
        Settings::default(),
    );
    intake::run(
        &svc,
        e.request("E2E-CONC", "export", "carol", false)
            .to_string()
            .as_bytes(),
        &support::pipeline::delivery(),
    )
    .await
    .unwrap();
    // The slices run through the shared driver; the completions are held back, to be
    // delivered all at once below.
    let mut completions = Vec::new();
    while let Some(m) = bus.pop() {
        if m.queue == "dsr-completions" {
            completions.push(serde_json::from_slice::<SliceCompletion>(&m.body).unwrap());
        } else {
            support::pipeline::deliver(&svc, &m).await;
        }
    }
    assert_eq!(completions.len(), 6);
    // Every completion delivered three times, all at once.
    let mut tasks = Vec::new();
    for _ in 0..3 {
        for c in completions.clone() {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                aggregate::run(&svc, &c).await.unwrap()
            }));
        }
    }
    let mut created = 0;
    let mut finalised = 0;
    for t in tasks {
        if let aggregate::AggregateStep::Finalised { created_report } = t.await.unwrap() {
            finalised += 1;
            created += usize::from(created_report);
        }
    }
    assert!(finalised >= 1);
    assert_eq!(created, 1, "exactly one invocation created the report");
    let results = bus
        .sent()
        .into_iter()
        .filter(|m| {
            m.queue == "dsr-results"
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .count();
    assert_eq!(
        results, 1,
        "one result message (duplicates dropped by MessageId)"
    );
    let audit = e
        .store
        .list_all("dsrstate", "dsr-audit", "requests/")
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    e.rt.stop().await;
}

macro_rules! both_stores {
    ($($name:ident),*) => {
        mod local_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await })*
        }
        mod azurite_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await })*
        }
    };
}

both_stores!(
    export_then_delete_exactly_the_subjects_items,
    dry_run_and_rejections,
    soft_delete_gives_honest_retained_until_dates,
    aggregator_finalises_exactly_once_under_concurrency
);
