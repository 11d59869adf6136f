//! The pipeline's functions driven directly (no HTTP, in-memory bus): exact item sets against the
//! generator's truth, no collateral change, idempotency under duplicate delivery, dry run, holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::holds::{HoldSet, LegalHold};
use azureml_dsr::domain::plan::ResourceType;
use azureml_dsr::domain::report::{FinalReport, FinalStatus};
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::domain::slice::{Item, ItemStatus, SliceTask};
use azureml_dsr::functions::{intake, slice, Delivery, Services, Settings};
use azureml_dsr::ports::blob::{
    BlobReader, BlobRef, BlobStore, BlobStoreExt, Condition, DeleteOutcome, ListPage, StoreError,
    StoreResult,
};
use azureml_dsr::ports::bus::queues;
use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use serde_json::json;

mod support;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    bus: Arc<MemoryBus>,
    svc: Services,
    truth: SeedTruth,
}

async fn env(holds: HoldSet, chunk_size: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let store = local_store(&paths);
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 5,
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
    let settings = Settings {
        chunk_size,
        ..Default::default()
    };
    let svc = local_services(&paths, store.clone(), bus.clone(), settings);
    svc.state().put_holds(&holds).await.unwrap();
    Env {
        _dir: dir,
        store,
        bus,
        svc,
        truth,
    }
}

/// Deliver every message (each `copies` times) until the bus is empty.
async fn drive(e: &Env, copies: usize) {
    support::pipeline::drive(&e.svc, &e.bus, copies).await
}

/// The slice task intake sent to `queue`.
fn sent_task(e: &Env, queue: &str) -> SliceTask {
    let m = e.bus.sent().into_iter().find(|m| m.queue == queue);
    serde_json::from_slice(&m.expect("a task on the queue").body).unwrap()
}

async fn submit(e: &Env, body: serde_json::Value, copies: usize) {
    let bytes = body.to_string().into_bytes();
    for _ in 0..copies {
        intake::run(
            &e.svc,
            &bytes,
            &Delivery {
                delivery_count: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    drive(e, copies).await;
}

fn request(e: &Env, id: &str, kind: &str, user: &str, dry_run: bool) -> serde_json::Value {
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    json!({"schemaVersion": "1.0", "requestId": id, "type": kind, "dryRun": dry_run,
           "subject": {"upn": e.truth.user(user).unwrap().upn}, "scope": {"workspaces": ws}})
}

/// sha256 of every blob in the workspace-side accounts (everything but the product's state).
async fn snapshot(e: &Env) -> BTreeMap<String, String> {
    let mut accounts: Vec<&str> = e
        .truth
        .infos
        .iter()
        .map(|i| i.storage_account.as_str())
        .collect();
    accounts.extend(["armlocal", "telemetrylocal"]);
    support::pipeline::snapshot(e.store.as_ref(), &accounts).await
}

async fn report(e: &Env, id: &str) -> FinalReport {
    e.svc
        .state()
        .report(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("report written")
}

fn arm_present(snapshot: &BTreeMap<String, String>, id: &str) -> bool {
    // armlocal/ws-<key>/jobs/<name>.json, models/<name>/<version>.json, ...
    let parts: Vec<&str> = id.split('/').collect();
    let n = parts.len();
    let suffix = if id.contains("/versions/") {
        format!("/{}/{}/{}.json", parts[n - 4], parts[n - 3], parts[n - 1])
    } else {
        format!("/{}/{}.json", parts[n - 2], parts[n - 1])
    };
    snapshot
        .keys()
        .any(|k| k.starts_with("armlocal/") && k.ends_with(&suffix))
}

#[tokio::test]
async fn export_returns_exactly_the_subjects_items() {
    let e = env(HoldSet::default(), 7).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "EXP-1", "export", "alice", false), 1).await;
    let r = report(&e, "EXP-1").await;
    assert_eq!(r.status, FinalStatus::Completed);
    let exported_blobs = r.blob_keys();
    let mut expected: Vec<String> = e.truth.blobs_of("alice").into_iter().cloned().collect();
    expected.sort();
    assert_eq!(exported_blobs, expected);
    let mut resources: Vec<String> = r
        .results
        .iter()
        .flat_map(|s| s.items.iter())
        .filter_map(|o| match &o.item {
            Item::Resource { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    resources.sort();
    let mut expected_res: Vec<String> =
        e.truth.resources_of("alice").into_iter().cloned().collect();
    expected_res.sort();
    assert_eq!(resources, expected_res);
    for o in r.results.iter().flat_map(|s| s.items.iter()) {
        let ItemStatus::Exported { path, sha256, .. } = &o.status else {
            panic!("not exported: {o:?}")
        };
        let (bytes, _) = e
            .store
            .read_small(&BlobRef::new("dsrstate", "dsr-exports", path.clone()))
            .await
            .unwrap();
        assert_eq!(&azureml_dsr::domain::ids::sha256_hex(&bytes), sha256);
    }
    assert_eq!(
        snapshot(&e).await,
        before,
        "export must not change workspace data"
    );
    let results: Vec<_> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .collect();
    assert_eq!(results.len(), 1);
}

#[tokio::test]
async fn delete_removes_subject_items_and_nothing_else_even_when_delivered_twice() {
    let e = env(HoldSet::default(), 5).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "DEL-1", "delete", "alice", false), 2).await;
    let r = report(&e, "DEL-1").await;
    assert_eq!(r.status, FinalStatus::Completed, "{:#?}", r.slices);
    let after = snapshot(&e).await;
    for b in e.truth.blobs_of("alice") {
        assert!(!after.contains_key(b), "alice's blob survived: {b}");
    }
    for (k, v) in &before {
        let owner = e.truth.blobs.get(k).map(String::as_str);
        if owner == Some("alice") || k.starts_with("armlocal/") || k.starts_with("telemetrylocal/")
        {
            continue;
        }
        assert_eq!(
            after.get(k),
            Some(v),
            "collateral change to {k} (owner {owner:?})"
        );
    }
    for (id, owner) in &e.truth.resources {
        assert_eq!(
            arm_present(&after, id),
            owner != "alice",
            "{id} owned by {owner}"
        );
    }
    assert!(r.counts.deleted > 0 && r.counts.deleted == r.counts.verified_gone);
    assert_eq!(r.counts.failed, 0);
    let results: Vec<_> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .collect();
    assert_eq!(results.len(), 1, "exactly one result message");
    assert!(r
        .results
        .iter()
        .any(|s| s.notes.iter().any(|n| n.contains("shared"))));
}

/// A slice acts only on a task its request's plan contains: a forged or corrupted task (another
/// subject, a dry run turned real, no plan at all) is refused before anything is changed.
#[tokio::test]
async fn slice_tasks_that_are_not_in_the_plan_are_refused_and_change_nothing() {
    let e = env(HoldSet::default(), 1000).await;
    let before = snapshot(&e).await;
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let body = request(&e, "FORGE-1", "delete", "alice", true).to_string();
    intake::run(&e.svc, body.as_bytes(), &d).await.unwrap();
    let genuine: SliceTask = sent_task(&e, "dsr-slice-jobs");
    let bob = e.truth.user("bob").unwrap();
    let mut other_subject = genuine.clone();
    other_subject.subject.object_id = bob.object_id;
    other_subject.dry_run = false;
    let mut made_real = genuine.clone();
    made_real.dry_run = false;
    let mut no_plan = genuine.clone();
    no_plan.request_id = RequestId::parse("FORGE-2").unwrap();
    no_plan.dry_run = false;
    let mut other_workspace = genuine.clone();
    other_workspace.key = "elsewhere-jobs".into();
    for (what, task) in [
        ("another subject", other_subject),
        ("dry run made real", made_real),
        ("no plan", no_plan),
        ("unplanned slice key", other_workspace),
    ] {
        let out = slice::run(&e.svc, &task, &d).await;
        assert!(
            matches!(&out, Err(azureml_dsr::functions::FnError::BadRequest(m)) if m.contains("refused")),
            "{what}: {out:?}"
        );
    }
    assert_eq!(snapshot(&e).await, before, "a refused task changed data");
    let state = e.svc.state();
    assert!(state
        .slice_result(&genuine.request_id, &genuine.key)
        .await
        .unwrap()
        .is_none());
    // The genuine task still runs (a dry run: still nothing changes).
    slice::run(&e.svc, &genuine, &d).await.unwrap();
    assert!(state
        .slice_result(&genuine.request_id, &genuine.key)
        .await
        .unwrap()
        .is_some());
    assert_eq!(snapshot(&e).await, before);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_counts_the_same() {
    let e = env(HoldSet::default(), 1000).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "DRY-1", "delete", "bob", true), 1).await;
    let r = report(&e, "DRY-1").await;
    assert_eq!(snapshot(&e).await, before);
    assert_eq!(r.counts.deleted, 0);
    assert_eq!(
        r.counts.would_delete as usize,
        e.truth.blobs_of("bob").len() + e.truth.resources_of("bob").len() + 1
    );
}

#[tokio::test]
async fn legal_holds_survive() {
    let e0 = env(HoldSet::default(), 50).await;
    let alice = e0.truth.user("alice").unwrap().object_id;
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-7".into(),
            reason: "litigation".into(),
            subject_object_id: Some(alice),
            workspace: None,
            resource_types: vec![ResourceType::Models],
        }],
    };
    let e = env(holds, 50).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "DEL-H", "delete", "alice", false), 1).await;
    let r = report(&e, "DEL-H").await;
    let after = snapshot(&e).await;
    let models: Vec<_> = r
        .results
        .iter()
        .filter(|s| s.resource_type == ResourceType::Models)
        .flat_map(|s| s.items.iter())
        .collect();
    assert!(!models.is_empty());
    for o in models {
        assert!(matches!(o.status, ItemStatus::Held { .. }));
        if let Some(k) = o.item.blob_key() {
            assert_eq!(after.get(&k), before.get(&k));
        }
    }
    assert!(r.counts.held > 0 && r.counts.deleted > 0);
}

#[tokio::test]
async fn invalid_requests_are_rejected_with_a_reason_and_archived() {
    let e = env(HoldSet::default(), 50).await;
    let bad = br#"{"schemaVersion":"1.0","requestId":"BAD-1","type":"erase","subject":{"upn":"x@y.com"},"scope":{"workspaces":[]}}"#;
    let out = intake::run(&e.svc, bad, &Delivery::default())
        .await
        .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Rejected {
            code: "invalid_field".into()
        }
    );
    let msgs = e.bus.sent();
    assert_eq!(msgs.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&msgs[0].body).unwrap();
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["requestId"], "BAD-1");
    assert!(body["reason"].as_str().unwrap().contains("type"));
    let archived = e
        .store
        .list_all("dsrstate", "dsr-intake-archive", "")
        .await
        .unwrap();
    assert_eq!(archived.len(), 1);
    let mut unknown = request(&e, "U-1", "export", "alice", false);
    unknown["subject"] = json!({"upn": "nobody@contoso.com"});
    let out = intake::run(&e.svc, unknown.to_string().as_bytes(), &Delivery::default())
        .await
        .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Rejected {
            code: "subject_not_found".into()
        }
    );
}

#[tokio::test]
async fn a_job_that_cannot_be_deleted_is_reported_and_the_request_ends_partially_failed() {
    let e = env(HoldSet::default(), 50).await;
    // Mark one of carol's jobs as running: the control plane refuses to delete it.
    let job_id = e
        .truth
        .resources_of("carol")
        .into_iter()
        .find(|id| id.contains("/jobs/"))
        .unwrap()
        .clone();
    let cp = azureml_dsr::adapters::local::control_plane::LocalControlPlane::new(e.store.clone());
    let ws = &e.truth.workspaces[0];
    let page = azureml_dsr::ports::control_plane::ControlPlane::list_all(
        &cp,
        ws,
        azureml_dsr::ports::control_plane::ArmKind::Job,
    )
    .await
    .unwrap();
    let mut doc = page
        .into_iter()
        .find(|d| d["id"] == job_id.as_str())
        .unwrap();
    doc["properties"]["status"] = json!("Running");
    cp.put_resource(ws, azureml_dsr::ports::control_plane::ArmKind::Job, &doc)
        .await
        .unwrap();
    // Scope also names a workspace that does not exist: its slices fail, the request still ends.
    let mut req = request(&e, "DEL-PF", "delete", "carol", false);
    req["scope"]["workspaces"].as_array_mut().unwrap().push(json!(
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/gone"
    ));
    submit(&e, req, 1).await;
    let r = report(&e, "DEL-PF").await;
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
    let failed_items: Vec<_> = r
        .results
        .iter()
        .flat_map(|s| &s.items)
        .filter(|o| matches!(o.status, ItemStatus::Failed { .. }))
        .collect();
    assert_eq!(failed_items.len(), 1, "only the running job failed");
    assert!(matches!(&failed_items[0].item, Item::Resource { id, .. } if *id == job_id));
    let failed_slices: Vec<_> = r
        .slices
        .iter()
        .filter(|s| s.status == azureml_dsr::domain::slice::SliceStatus::Failed)
        .collect();
    assert_eq!(failed_slices.len(), 6);
    assert!(failed_slices
        .iter()
        .all(|s| s.reason.as_deref() == Some("workspace not found")));
    let result: serde_json::Value = serde_json::from_slice(
        &e.bus
            .sent()
            .into_iter()
            .find(|m| m.queue == queues::RESULTS)
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(result["status"], "partially_failed");
}

/// Delegates to a real store but answers every listing of one container with a transient error.
struct Flaky {
    inner: Arc<dyn BlobStore>,
    container_prefix: &'static str,
}

#[async_trait::async_trait]
impl BlobStore for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    async fn create_container(&self, a: &str, c: &str) -> StoreResult<()> {
        self.inner.create_container(a, c).await
    }
    async fn list_containers(&self, a: &str, p: &str) -> StoreResult<Vec<String>> {
        self.inner.list_containers(a, p).await
    }
    async fn delete_container(&self, a: &str, c: &str) -> StoreResult<DeleteOutcome> {
        self.inner.delete_container(a, c).await
    }
    async fn list_page(
        &self,
        a: &str,
        c: &str,
        p: &str,
        m: Option<String>,
        n: u32,
    ) -> StoreResult<ListPage> {
        if c.starts_with(self.container_prefix) {
            return Err(StoreError::Transient("503 Server Busy (injected)".into()));
        }
        self.inner.list_page(a, c, p, m, n).await
    }
    async fn open(&self, b: &BlobRef) -> StoreResult<BlobReader> {
        self.inner.open(b).await
    }
    async fn put(
        &self,
        b: &BlobRef,
        body: bytes::Bytes,
        ct: &str,
        cond: Condition,
        md: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        self.inner.put(b, body, ct, cond, md).await
    }
    async fn copy(&self, s: &BlobRef, d: &BlobRef) -> StoreResult<()> {
        self.inner.copy(s, d).await
    }
    async fn delete(&self, b: &BlobRef) -> StoreResult<DeleteOutcome> {
        self.inner.delete(b).await
    }
    async fn read_link(&self, b: &BlobRef, e: time::Duration) -> StoreResult<Option<String>> {
        self.inner.read_link(b, e).await
    }
    async fn delete_many(
        &self,
        a: &str,
        c: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        self.inner.delete_many(a, c, names).await
    }
}

#[tokio::test]
async fn a_slice_that_keeps_failing_is_recorded_failed_on_its_last_delivery() {
    let mut e = env(HoldSet::default(), 50).await;
    e.svc.store = Arc::new(Flaky {
        inner: e.store.clone(),
        container_prefix: "code-",
    });
    let req = request(&e, "EXP-T", "export", "carol", false);
    intake::run(&e.svc, req.to_string().as_bytes(), &Delivery::default())
        .await
        .unwrap();
    let task: SliceTask = sent_task(&e, "dsr-slice-notebooks");
    let max = e.svc.settings.max_delivery_count;
    for n in 1..max {
        assert!(
            slice::run(
                &e.svc,
                &task,
                &Delivery {
                    delivery_count: n,
                    ..Default::default()
                }
            )
            .await
            .is_err(),
            "delivery {n} fails and will be retried"
        );
    }
    let out = slice::run(
        &e.svc,
        &task,
        &Delivery {
            delivery_count: max,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(out, slice::SliceStep::Finished { .. }));
    let result = e
        .svc
        .state()
        .slice_result(&task.request_id, &task.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        result.status,
        azureml_dsr::domain::slice::SliceStatus::Failed
    );
    assert!(result
        .reason
        .unwrap()
        .contains("gave up after 10 deliveries"));
    // The rest of the request still completes, as partially failed.
    drive(&e, 1).await;
    assert_eq!(
        report(&e, "EXP-T").await.status,
        FinalStatus::PartiallyFailed
    );
}

#[tokio::test]
async fn dry_run_makes_zero_mutating_calls_to_workspace_storage() {
    use azureml_dsr::adapters::counting::CountingStore;
    let mut e = env(HoldSet::default(), 3).await;
    let counting = Arc::new(CountingStore::new(e.store.clone()));
    let paths_dir = e._dir.path().to_path_buf();
    let svc = local_services(
        &LocalPaths::new(&paths_dir),
        counting.clone(),
        e.bus.clone(),
        Settings {
            chunk_size: 3,
            ..Default::default()
        },
    );
    e.svc = svc;
    submit(&e, request(&e, "DRY-C", "delete", "alice", true), 2).await;
    let counts = counting.counts();
    let ws_account = e.truth.infos[0].storage_account.clone();
    for account in [ws_account.as_str(), "armlocal", "telemetrylocal"] {
        let c = counts.get(account).cloned().unwrap_or_default();
        assert!(c.reads > 0, "{account} was read");
        assert_eq!(c.mutations, 0, "{account} was mutated during a dry run");
    }
    assert!(
        counts["dsrstate"].mutations > 0,
        "state (plan, inventory, report) is still written"
    );
    assert!(report(&e, "DRY-C").await.counts.would_delete > 0);
}
