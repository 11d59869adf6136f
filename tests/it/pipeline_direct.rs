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
    BlobReader, BlobRef, BlobStore, BlobStoreExt, DeleteOutcome, ListPage, StoreError, StoreResult,
};
use azureml_dsr::ports::blob_layer::BlobLayer;
use azureml_dsr::ports::bus::queues;
use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use serde_json::json;

use crate::support;

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
    // The workspaces this service may act on (intake refuses any other).
    svc.state().put_scope(&truth.workspaces).await.unwrap();
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
    // Alice's display name is also Ali's: assets only that name ties to her wait for review.
    assert_eq!(r.status, FinalStatus::NeedsReview);
    let listed: Vec<&str> = r
        .results
        .iter()
        .flat_map(|s| &s.review)
        .map(|i| i.resource_id.as_str())
        .collect();
    for who in ["alice", "ali"] {
        for (id, owner) in &e.truth.resources {
            if *owner == azureml_dsr::seed::review_owner(who) {
                assert!(listed.contains(&id.as_str()), "{id} is listed for review");
            }
        }
    }
    assert!(!listed.is_empty());
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
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .collect();
    assert_eq!(results.len(), 1);
}

#[tokio::test]
async fn delete_removes_subject_items_and_nothing_else_even_when_delivered_twice() {
    let e = env(HoldSet::default(), 5).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "DEL-1", "delete", "alice", false), 2).await;
    let r = report(&e, "DEL-1").await;
    // Everything is done but the telemetry purge (completed on a later timer poll) and the
    // display-name-only assets, which wait for a person's review (untouched: see below).
    assert_eq!(r.status, FinalStatus::NeedsReview, "{:#?}", r.slices);
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
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
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
    // One result; the lifecycle messages (received, rejected) are counted in tests/lifecycle.rs.
    let msgs: Vec<_> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
        .collect();
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
    let gone = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/gone";
    let mut scope = e.svc.scope().await.unwrap();
    scope.push(azureml_dsr::domain::workspace::WorkspaceId::parse(gone).unwrap());
    e.svc.state().put_scope(&scope).await.unwrap();
    let mut req = request(&e, "DEL-PF", "delete", "carol", false);
    req["scope"]["workspaces"]
        .as_array_mut()
        .unwrap()
        .push(json!(gone));
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
            .find(|m| {
                m.queue == queues::RESULTS
                    && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
            })
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
impl BlobLayer for Flaky {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn kind(&self) -> &'static str {
        "flaky"
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
}

#[tokio::test]
async fn a_slice_that_keeps_failing_is_recorded_failed_on_its_last_delivery() {
    let mut e = env(HoldSet::default(), 50).await;
    e.svc.store = Arc::new(Flaky {
        inner: e.store.clone(),
        container_prefix: "code-",
    });
    // The notebooks share is reached through the file-share port (locally: over the store).
    e.svc.files =
        Arc::new(azureml_dsr::adapters::local::blob_share::BlobFileShare::new(e.svc.store.clone()));
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

/// An inventory naming a resource kind the product does not know (here: a "datastore" whose id
/// is another user's compute) is refused as a whole: the slice fails, nothing is deleted. It
/// used to fall back to a compute delete.
#[tokio::test]
async fn an_unknown_resource_kind_in_an_inventory_deletes_nothing() {
    let e = env(HoldSet::default(), 100).await;
    let bob_compute = e
        .truth
        .resources_of("bob")
        .into_iter()
        .find(|id| id.contains("/computes/"))
        .expect("bob has a compute instance")
        .clone();
    let body = request(&e, "KIND-1", "delete", "alice", false)
        .to_string()
        .into_bytes();
    intake::run(
        &e.svc,
        &body,
        &Delivery {
            delivery_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let task = sent_task(&e, "dsr-slice-jobs");
    let state = e.svc.state();
    state
        .store
        .write_json(
            &state.inventory_ref(&task),
            &json!({"entries": [{"item": {"kind": "resource", "resourceType": "datastore", "id": bob_compute}}], "notes": []}),
        )
        .await
        .unwrap();
    drive(&e, 1).await;
    assert!(
        arm_present(&snapshot(&e).await, &bob_compute),
        "bob's compute instance is still there"
    );
    let r = report(&e, "KIND-1").await;
    let jobs = r
        .slices
        .iter()
        .find(|s| s.key == task.key)
        .expect("the jobs slice is reported");
    assert_eq!(jobs.status, azureml_dsr::domain::slice::SliceStatus::Failed);
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
}

/// The result messages sent so far, as JSON.
fn results(e: &Env) -> Vec<serde_json::Value> {
    e.bus
        .sent()
        .into_iter()
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .map(|m| serde_json::from_slice(&m.body).unwrap())
        .collect()
}

/// A second request reusing a requestId with other content is neither dropped by the bus nor
/// replayed as the first: it reaches intake, which rejects it with a reason the sender can read,
/// and both payloads stay archived.
#[tokio::test]
async fn a_reused_request_id_with_other_content_is_rejected_with_a_reason() {
    let e = env(HoldSet::default(), 100).await;
    let queue = azureml_dsr::wiring::open_local_queue(e._dir.path()).unwrap();
    let first = request(&e, "TWICE-1", "export", "alice", false).to_string();
    let second = request(&e, "TWICE-1", "delete", "bob", false).to_string();
    azureml_dsr::cli::requests::enqueue(&queue, first.clone().into_bytes())
        .await
        .unwrap();
    azureml_dsr::cli::requests::enqueue(&queue, second.clone().into_bytes())
        .await
        .unwrap();
    // A resend of the very same bytes is still a duplicate for the bus.
    azureml_dsr::cli::requests::enqueue(&queue, first.clone().into_bytes())
        .await
        .unwrap();
    let queued: Vec<Vec<u8>> = queue
        .peek(queues::INTAKE)
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(
        queued,
        vec![first.clone().into_bytes(), second.clone().into_bytes()],
        "the second request reaches intake; the resend of the first does not"
    );
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let out1 = intake::run(&e.svc, first.as_bytes(), &d).await.unwrap();
    assert!(matches!(out1, intake::IntakeOutcome::Planned { .. }));
    let out2 = intake::run(&e.svc, second.as_bytes(), &d).await.unwrap();
    assert_eq!(
        out2,
        intake::IntakeOutcome::Rejected {
            code: "request_conflict".into()
        }
    );
    let rejected: Vec<_> = results(&e)
        .into_iter()
        .filter(|r| r["status"] == "rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["requestId"], "TWICE-1");
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("already used") && reason.contains("new requestId"),
        "{reason}"
    );
    let archived = e
        .store
        .list_all("dsrstate", "dsr-intake-archive", "")
        .await
        .unwrap();
    assert_eq!(archived.len(), 2, "both payloads are kept for audit");
    // The first request is carried out as planned; only the export ran.
    drive(&e, 1).await;
    assert_eq!(report(&e, "TWICE-1").await.kind.as_str(), "export");
}

/// A store that answers "not found" to the first read of a plan: the window in which two
/// deliveries race to create it.
struct PlanRace {
    inner: Arc<dyn BlobStore>,
    hidden: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl BlobLayer for PlanRace {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn kind(&self) -> &'static str {
        "plan-race"
    }
    async fn open(&self, b: &BlobRef) -> StoreResult<BlobReader> {
        if b.name.ends_with("/plan.json")
            && !self.hidden.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::NotFound(b.to_string()));
        }
        self.inner.open(b).await
    }
}

/// The same holds when the second request loses the race to create the plan.
#[tokio::test]
async fn a_reused_request_id_that_loses_the_plan_race_is_rejected() {
    let mut e = env(HoldSet::default(), 100).await;
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let first = request(&e, "RACE-1", "export", "alice", false).to_string();
    let second = request(&e, "RACE-1", "delete", "bob", false).to_string();
    intake::run(&e.svc, first.as_bytes(), &d).await.unwrap();
    e.svc.store = Arc::new(PlanRace {
        inner: e.store.clone(),
        hidden: Default::default(),
    });
    let out = intake::run(&e.svc, second.as_bytes(), &d).await.unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Rejected {
            code: "request_conflict".into()
        }
    );
}

/// Intake acts only on the configured workspaces, compared as ARM compares ids (any case); an
/// empty configuration refuses everything. Nothing is planned or sent for a refused request.
#[tokio::test]
async fn intake_refuses_workspaces_outside_the_configured_scope() {
    let e = env(HoldSet::default(), 100).await;
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let other = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/elsewhere";
    let mut req = request(&e, "SCOPE-1", "delete", "alice", false);
    req["scope"]["workspaces"]
        .as_array_mut()
        .unwrap()
        .push(json!(other));
    let out = intake::run(&e.svc, req.to_string().as_bytes(), &d)
        .await
        .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Rejected {
            code: "workspace_out_of_scope".into()
        }
    );
    let r = results(&e);
    let reason = r[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("scope.workspaces[1]") && reason.contains("elsewhere"),
        "{reason}"
    );
    assert!(e
        .svc
        .state()
        .plan(&RequestId::parse("SCOPE-1").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(e
        .bus
        .sent()
        .iter()
        .all(|m| !m.queue.starts_with("dsr-slice-")));

    // The configured workspace, spelled in another case, is in scope.
    let upper = e.truth.workspaces[0].to_string().to_uppercase();
    let mut req = request(&e, "SCOPE-2", "export", "alice", true);
    req["scope"]["workspaces"] = json!([upper]);
    let out = intake::run(&e.svc, req.to_string().as_bytes(), &d)
        .await
        .unwrap();
    assert!(
        matches!(out, intake::IntakeOutcome::Planned { .. }),
        "{out:?}"
    );

    // No scope configured: every request is refused.
    e.svc.state().put_scope(&[]).await.unwrap();
    let req = request(&e, "SCOPE-3", "export", "alice", false);
    let out = intake::run(&e.svc, req.to_string().as_bytes(), &d)
        .await
        .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Rejected {
            code: "workspace_out_of_scope".into()
        }
    );
}

/// Data assets of alice's that point beyond her workspace's own datastores, at the service's
/// state account, at another workspace, or over other users' job folders: a delete follows none
/// of them (the report says why), while a file in a datastore the workspace registered beyond
/// the two defaults is found and deleted.
#[tokio::test]
async fn asset_uris_reach_only_the_workspaces_own_datastores() {
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    use azureml_dsr::ports::control_plane::{ArmKind, ControlPlane};
    let e = env(HoldSet::default(), 100).await;
    let ws = e.truth.workspaces[0].clone();
    let info = e.truth.infos[0].clone();
    let cp = LocalControlPlane::new(e.store.clone());
    let put = |account: &str, container: &str, name: &str| {
        let b = BlobRef::new(account, container, name);
        let store = e.store.clone();
        async move {
            store
                .create_container(&b.account, &b.container)
                .await
                .unwrap();
            store
                .write_json(&b, &json!({"not": "alice's"}))
                .await
                .unwrap();
            b
        }
    };
    // Unowned files the crafted URIs aim at.
    let team = put(
        &info.storage_account,
        &info.blobstore_container,
        "team/reference/lookup.csv",
    )
    .await;
    let exported = put(
        "dsrstate",
        "dsr-exports",
        "requests/OTHER-1/mlw-0/files/x.csv",
    )
    .await;
    let elsewhere = put("otheracct", "data", "x.csv").await;
    let bob_job = e
        .truth
        .blobs_of("bob")
        .into_iter()
        .find(|k| k.contains("/azureml/") && k.contains("/outputs/"))
        .expect("bob has job outputs")
        .clone();
    // A datastore registered beyond the defaults, with a file of alice's in it.
    cp.put_datastore(
        &ws,
        &json!({"name": "projectdata", "properties": {"datastoreType": "AzureBlob",
                "accountName": info.storage_account, "containerName": "projectdata"}}),
    )
    .await
    .unwrap();
    let project = put(&info.storage_account, "projectdata", "alice/run.csv").await;

    let template = cp
        .list_all(&ws, ArmKind::DataVersion)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d["id"].as_str().unwrap().contains("/data/alice-data-0/"))
        .unwrap();
    let other_ws = format!(
        "azureml://subscriptions/{}/resourcegroups/{}/workspaces/other-ws/datastores/workspaceblobstore/paths/team/reference/lookup.csv",
        ws.subscription(),
        ws.resource_group()
    );
    let uris = [
        other_ws,
        format!(
            "https://dsrstate.blob.core.windows.net/dsr-exports/{}",
            exported.name
        ),
        "https://otheracct.blob.core.windows.net/data/x.csv".to_string(),
        "azureml://datastores/workspaceblobstore/paths/azureml/".to_string(),
        "azureml://datastores/projectdata/paths/alice/run.csv".to_string(),
    ];
    for (i, uri) in uris.iter().enumerate() {
        let mut doc = template.clone();
        doc["id"] = json!(format!("{ws}/data/alice-crafted-{i}/versions/1"));
        doc["properties"]["dataUri"] = json!(uri);
        cp.put_resource(&ws, ArmKind::DataVersion, &doc)
            .await
            .unwrap();
    }

    submit(&e, request(&e, "URI-1", "delete", "alice", false), 1).await;
    // The crafted assets name no run: review candidates. Approving them acts with the same
    // collateral checks as discovery applied (their files were found by the same rules).
    let crafted: Vec<String> = (0..uris.len())
        .map(|i| format!("{ws}/data/alice-crafted-{i}/versions/1"))
        .collect();
    let out = azureml_dsr::functions::review::decide(
        &e.svc,
        &azureml_dsr::domain::review::ReviewDecision {
            request_id: RequestId::parse("URI-1").unwrap(),
            approve: true,
            items: crafted,
            approver: "privacy-officer".into(),
            reason: "crafted test assets are alice's".into(),
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            out,
            azureml_dsr::functions::review::ReviewOutcome::Decided { .. }
        ),
        "{out:?}"
    );
    for b in [&team, &exported, &elsewhere] {
        assert!(e.store.read_small(b).await.is_ok(), "{b} was left alone");
    }
    let (a, rest) = bob_job.split_once('/').unwrap();
    let (c, n) = rest.split_once('/').unwrap();
    assert!(
        e.store.read_small(&BlobRef::new(a, c, n)).await.is_ok(),
        "bob's job outputs were left alone"
    );
    assert!(
        e.store.read_small(&project).await.is_err(),
        "the file in the registered datastore was deleted"
    );
    let r = report(&e, "URI-1").await;
    let notes: Vec<&String> = r.results.iter().flat_map(|s| &s.notes).collect();
    for why in [
        "another workspace",
        "state account",
        "not in one of this workspace's datastores",
        "another user's assets or jobs",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(why)),
            "a note says {why:?}: {notes:?}"
        );
    }
}

/// A hold placed after the request was planned, before its slices ran, still stops the
/// deletion; and a hold list that cannot be read is never taken as "no holds".
#[tokio::test]
async fn a_hold_placed_after_planning_or_an_unreadable_hold_list_deletes_nothing() {
    for corrupt in [false, true] {
        let e = env(HoldSet::default(), 50).await;
        let alice = e.truth.user("alice").unwrap().object_id;
        let before = snapshot(&e).await;
        let body = request(&e, "LATE-HOLD", "delete", "alice", false).to_string();
        let out = intake::run(
            &e.svc,
            body.as_bytes(),
            &Delivery {
                delivery_count: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(out, intake::IntakeOutcome::Planned { .. }),
            "{out:?}"
        );
        let state = e.svc.state();
        if corrupt {
            state
                .store
                .put(
                    &state.blob("dsr-state", azureml_dsr::state::HOLDS_DOC),
                    bytes::Bytes::from_static(b"{not json"),
                    "application/json",
                    azureml_dsr::ports::blob::Condition::None,
                    &Default::default(),
                )
                .await
                .unwrap();
        } else {
            state
                .put_holds(&HoldSet {
                    holds: vec![LegalHold {
                        id: "LATE".into(),
                        reason: "litigation filed after the request".into(),
                        subject_object_id: Some(alice),
                        workspace: None,
                        resource_types: vec![],
                    }],
                })
                .await
                .unwrap();
        }
        drive(&e, 1).await;
        let r = report(&e, "LATE-HOLD").await;
        assert_eq!(r.counts.deleted, 0, "corrupt={corrupt}: {:?}", r.counts);
        assert!(r.counts.held > 0, "corrupt={corrupt}: {:?}", r.counts);
        let after = snapshot(&e).await;
        assert_eq!(after, before, "corrupt={corrupt}: something was deleted");
    }
}

/// Every file of the workspace's notebooks share, `path -> sha256`.
async fn share_files(e: &Env) -> BTreeMap<String, String> {
    let info = &e.truth.infos[0];
    let prefix = format!("{}/{}/", info.storage_account, info.file_share);
    snapshot(e)
        .await
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|p| (p.to_string(), v)))
        .collect()
}

#[tokio::test]
async fn notebooks_delete_removes_the_subjects_folder_and_nothing_else() {
    let e = env(HoldSet::default(), 2).await;
    let before = share_files(&e).await;
    let alias = e.truth.user("alice").unwrap().key.clone();
    let mine = format!("Users/{alias}/");
    assert!(before.keys().any(|p| p.starts_with(&mine)), "seeded");
    assert!(
        before.keys().any(|p| !p.starts_with(&mine)),
        "others seeded"
    );
    submit(&e, request(&e, "NB-DEL", "delete", "alice", false), 1).await;
    let r = report(&e, "NB-DEL").await;
    let nb = r
        .results
        .iter()
        .find(|s| s.resource_type == ResourceType::Notebooks)
        .unwrap();
    assert!(!nb.items.is_empty());
    for o in &nb.items {
        assert!(
            matches!(&o.item, Item::File { path, .. } if path.starts_with(&mine)),
            "{:?}",
            o.item
        );
        assert_eq!(o.status, ItemStatus::Deleted { verified: true });
    }
    let after = share_files(&e).await;
    let expected: BTreeMap<String, String> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&mine))
        .collect();
    assert_eq!(after, expected, "only the subject's folder went");
}

/// A share that cannot be listed is a failure with its reason, never "no notebooks" (before
/// the file-share port, a 404 from the share read as an empty folder and the slice completed).
#[tokio::test]
async fn a_missing_notebooks_share_fails_the_slice_instead_of_finding_nothing() {
    let e = env(HoldSet::default(), 50).await;
    let info = e.truth.infos[0].clone();
    for b in e
        .store
        .list_all(&info.storage_account, &info.file_share, "")
        .await
        .unwrap()
    {
        e.store
            .delete(&BlobRef::new(
                info.storage_account.clone(),
                info.file_share.clone(),
                b.name,
            ))
            .await
            .unwrap();
    }
    e.store
        .delete_container(&info.storage_account, &info.file_share)
        .await
        .unwrap();
    submit(&e, request(&e, "NB-GONE", "delete", "alice", false), 1).await;
    let r = report(&e, "NB-GONE").await;
    let nb = r
        .results
        .iter()
        .find(|s| s.resource_type == ResourceType::Notebooks)
        .unwrap();
    assert_eq!(nb.status, azureml_dsr::domain::slice::SliceStatus::Failed);
    let reason = nb.reason.clone().unwrap_or_default();
    assert!(reason.contains("file share not found"), "{reason}");
    assert!(!reason.contains("alice"), "no personal data: {reason}");
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
}

/// A delete keeps no copy of what it erases: its frozen inventories hold the SHA-256 of each ARM
/// document and telemetry record set, never the document; an export keeps the documents (they
/// are what it exports).
#[tokio::test]
async fn a_delete_keeps_hashes_not_copies_of_what_it_erases() {
    let e = env(HoldSet::default(), 100).await;
    submit(&e, request(&e, "COPY-DEL", "delete", "alice", false), 1).await;
    submit(&e, request(&e, "COPY-EXP", "export", "bob", false), 1).await;
    let state = e.svc.state();
    for (id, export) in [("COPY-DEL", false), ("COPY-EXP", true)] {
        let docs = state
            .store
            .list_all("dsrstate", "dsr-state", &format!("requests/{id}/slices/"))
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.name.ends_with("/inventory.json"))
            .collect::<Vec<_>>();
        assert!(!docs.is_empty());
        let (mut with_doc, mut with_hash) = (0, 0);
        for i in docs {
            let inv: serde_json::Value = state
                .store
                .read_json(&BlobRef::new("dsrstate", "dsr-state", i.name))
                .await
                .unwrap()
                .unwrap();
            for entry in inv["entries"].as_array().unwrap() {
                with_doc += entry.get("doc").is_some() as usize;
                with_hash += entry.get("docSha256").is_some() as usize;
            }
        }
        if export {
            assert!(
                with_doc > 0 && with_hash == 0,
                "{id}: {with_doc}/{with_hash}"
            );
        } else {
            assert!(
                with_doc == 0 && with_hash > 0,
                "{id}: {with_doc}/{with_hash}"
            );
        }
    }
}

/// A store whose deletes of one job's run folder report success and do nothing (a silently
/// failing delete).
struct SilentDeletes {
    inner: Arc<dyn BlobStore>,
    marker: String,
}

impl SilentDeletes {
    fn lies_about(&self, name: &str) -> bool {
        name.contains(&self.marker)
    }
}

/// Lies in single deletes and in batches (one by one through its own `delete`, so the batch lies
/// about the same names).
#[async_trait::async_trait]
impl BlobLayer for SilentDeletes {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn kind(&self) -> &'static str {
        "silent-deletes"
    }
    async fn delete(&self, b: &BlobRef) -> StoreResult<DeleteOutcome> {
        if self.lies_about(&b.name) {
            return Ok(DeleteOutcome::Deleted);
        }
        self.inner.delete(b).await
    }
    async fn delete_many(
        &self,
        a: &str,
        c: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        azureml_dsr::ports::blob::delete_one_by_one(self, a, c, names).await
    }
}

/// "Verified gone" means each item was checked directly: a blob whose delete silently did
/// nothing is reported failed, even though its job resource is gone and discovery would no
/// longer find its folder.
#[tokio::test]
async fn a_blob_that_survived_its_delete_is_reported_failed_not_verified() {
    let mut e = env(HoldSet::default(), 100).await;
    let alice = e.truth.user("alice").unwrap().key.clone();
    let job = e
        .truth
        .resources_of(&alice)
        .into_iter()
        .find(|id| id.contains("/jobs/"))
        .expect("alice has a job")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    e.svc.store = Arc::new(SilentDeletes {
        inner: e.store.clone(),
        marker: format!("dcid.{job}/"),
    });
    submit(&e, request(&e, "VERIFY-1", "delete", "alice", false), 1).await;
    let r = report(&e, "VERIFY-1").await;
    let survivors: Vec<_> = r
        .results
        .iter()
        .flat_map(|s| s.items.iter())
        .filter(|o| {
            o.item
                .blob_key()
                .is_some_and(|k| k.contains(&format!("dcid.{job}/")))
        })
        .collect();
    assert!(!survivors.is_empty(), "the job has run-history files");
    for o in survivors {
        assert!(
            matches!(&o.status, ItemStatus::Failed { reason } if reason.contains("still listed")),
            "{:?} {:?}",
            o.item,
            o.status
        );
    }
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
    // Everything else of hers was checked and is gone.
    assert!(r.counts.verified_gone > 0);
}

/// Issue 14's done-when: ARM holds only display names (as Azure returns jobs), and two people
/// share one. Deleting Alice removes her jobs, their pipeline steps and sweep trials (child runs
/// ARM does not list) with every folder they own; her namesake's jobs and children are
/// untouched; a job run history cannot attribute is left in place and the report says
/// `needs_review` instead of `completed`.
#[tokio::test]
async fn jobs_are_attributed_by_run_history_never_by_display_name() {
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    use azureml_dsr::ports::control_plane::{ArmKind, ControlPlane};
    let e = env(HoldSet::default(), 50).await;
    let alice = e.truth.user("alice").unwrap().clone();
    let ali = e.truth.user("ali").unwrap().clone();
    assert_eq!(alice.display_name, ali.display_name, "the seed's namesakes");
    let ws = &e.truth.workspaces[0];
    let info = &e.truth.infos[0];
    // ARM job documents carry display names only, and no run history.
    let jobs = LocalControlPlane::new(e.store.clone())
        .list_all(ws, ArmKind::Job)
        .await
        .unwrap();
    assert!(!jobs.is_empty());
    for j in &jobs {
        assert!(j.pointer("/properties/runHistory").is_none(), "{j}");
        let by = j["systemData"]["createdBy"].as_str().unwrap();
        assert!(
            e.truth.users.iter().any(|u| u.display_name == by),
            "not a display name: {by}"
        );
    }
    // Alice's child runs exist only in run history, with their own folders.
    let child_folder = |owner: &str| {
        e.truth
            .blobs_of(owner)
            .into_iter()
            .filter(|k| {
                k.contains("/ExperimentRun/dcid.")
                    && (k.contains("_pipeline_") || k.contains("_sweep_"))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let (alice_children, ali_children) = (child_folder("alice"), child_folder("ali"));
    assert!(alice_children.iter().any(|k| k.contains("_setup/")));
    assert!(alice_children.len() >= 3 + 5 + 2, "{alice_children:?}");
    assert!(!ali_children.is_empty());
    // A job nobody can attribute (no run record), under Alice's display name.
    let orphan = "orphan_job_1";
    LocalControlPlane::new(e.store.clone())
        .put_resource(
            ws,
            ArmKind::Job,
            &json!({"id": format!("{ws}/jobs/{orphan}"), "name": orphan,
                    "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                    "properties": {"jobType": "Command", "status": "Completed"},
                    "systemData": {"createdAt": "2026-11-01T00:00:00Z", "createdBy": alice.display_name, "createdByType": "User"}}),
        )
        .await
        .unwrap();
    let orphan_blob = BlobRef::new(
        info.storage_account.clone(),
        info.artifact_container.clone(),
        format!("ExperimentRun/dcid.{orphan}/logs/std_log.txt"),
    );
    e.store
        .write_json(&orphan_blob, &json!({"by": "unknown"}))
        .await
        .unwrap();

    let before = snapshot(&e).await;
    submit(&e, request(&e, "ATTR-1", "delete", "alice", false), 1).await;
    let r = report(&e, "ATTR-1").await;
    let after = snapshot(&e).await;
    for b in e.truth.blobs_of("alice") {
        assert!(!after.contains_key(b), "alice's blob survived: {b}");
    }
    for (k, v) in &before {
        if e.truth.blobs.get(k).map(String::as_str) == Some("alice")
            || k.starts_with("armlocal/")
            || k.starts_with("telemetrylocal/")
        {
            continue;
        }
        assert_eq!(after.get(k), Some(v), "collateral change to {k}");
    }
    for k in &ali_children {
        assert!(
            after.contains_key(k),
            "the namesake's child run folder went: {k}"
        );
    }
    for (id, owner) in &e.truth.resources {
        assert_eq!(
            arm_present(&after, id),
            owner != "alice",
            "{id} owned by {owner}"
        );
    }
    assert!(
        arm_present(&after, &format!("{ws}/jobs/{orphan}")),
        "the unattributed job stays"
    );
    assert_eq!(r.counts.failed, 0);
    assert_eq!(r.status, FinalStatus::NeedsReview, "{:#?}", r.slices);
    assert!(r
        .results
        .iter()
        .flat_map(|s| s.notes.iter())
        .any(|n| n.starts_with("unattributed:") && n.contains(orphan)));
}

/// The telemetry rows of `user` left in the local tables.
async fn telemetry_rows_of(e: &Env, user: &str) -> usize {
    let oid = e.truth.user(user).unwrap().object_id.to_string();
    let mut n = 0;
    for c in e
        .store
        .list_containers("telemetrylocal", "ws-")
        .await
        .unwrap()
    {
        for b in e.store.list_all("telemetrylocal", &c, "").await.unwrap() {
            let (bytes, _) = e
                .store
                .read_small(&BlobRef::new("telemetrylocal", &c, b.name))
                .await
                .unwrap();
            n += String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| l.contains(&oid))
                .count();
        }
    }
    n
}

async fn certificate(e: &Env, id: &str, name: &str) -> Option<FinalReport> {
    e.store
        .read_json(&BlobRef::new(
            "dsrstate",
            "dsr-reports",
            format!("{id}/{name}"),
        ))
        .await
        .unwrap()
}

/// A purge that stays pending across two timer runs, then completes: the report says
/// "completed — telemetry purge pending (operation …, requested …)" until then, the rows go
/// only when the purge completes, and a new certificate version says completed (with an audit
/// record of the change and a second result message).
#[tokio::test]
async fn telemetry_purge_pending_across_two_timer_runs_then_certificate_v2_completed() {
    use azureml_dsr::adapters::local::telemetry::LocalTelemetry;
    let mut e = env(HoldSet::default(), 1000).await;
    e.svc.telemetry = Arc::new(LocalTelemetry::new(e.store.clone()).with_pending_polls(2));
    // Through the retention-sweep timer function itself (job retention is off by default).
    let timer = azureml_dsr::protocol::timer::TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: false,
    };
    let sweep = |now| {
        let (svc, timer) = (&e.svc, &timer);
        async move {
            Ok::<_, ()>(
                azureml_dsr::functions::retention::run(svc, timer, now)
                    .await
                    .unwrap()
                    .purges,
            )
        }
    };
    assert!(telemetry_rows_of(&e, "bob").await > 0);
    submit(&e, request(&e, "DEL-T1", "delete", "bob", false), 1).await;
    let v1 = certificate(&e, "DEL-T1", "certificate.json").await.unwrap();
    assert_eq!(v1.status, FinalStatus::CompletedPurgePending);
    let md = String::from_utf8(
        e.store
            .read_small(&BlobRef::new(
                "dsrstate",
                "dsr-reports",
                "DEL-T1/certificate.md",
            ))
            .await
            .unwrap()
            .0
            .to_vec(),
    )
    .unwrap();
    assert!(
        md.contains("completed — telemetry purge pending (operation purge-")
            && md.contains("requested "),
        "{md}"
    );
    let now = time::OffsetDateTime::now_utc();
    for run in 0..2 {
        let s = sweep(now + time::Duration::hours(run)).await.unwrap();
        assert!(s.still_open > 0 && s.revised.is_empty(), "run {run}: {s:?}");
        assert!(
            telemetry_rows_of(&e, "bob").await > 0,
            "rows go only on completion"
        );
        assert!(certificate(&e, "DEL-T1", "certificate.v2.json")
            .await
            .is_none());
    }
    let s = sweep(now + time::Duration::hours(2)).await.unwrap();
    assert_eq!(s.revised, ["DEL-T1"], "{s:?}");
    assert_eq!(telemetry_rows_of(&e, "bob").await, 0);
    assert!(
        telemetry_rows_of(&e, "carol").await > 0,
        "only the subject's rows"
    );
    let v2 = certificate(&e, "DEL-T1", "certificate.v2.json")
        .await
        .unwrap();
    assert_eq!(v2.status, FinalStatus::Completed, "{:#?}", v2.counts);
    assert_eq!(v2.counts.pending, 0);
    // The first version is unchanged; the change is audited; a second result message.
    assert_eq!(
        certificate(&e, "DEL-T1", "certificate.json").await.unwrap(),
        v1
    );
    let audit: serde_json::Value = e
        .store
        .read_json(&BlobRef::new(
            "dsrstate",
            "dsr-audit",
            "requests/DEL-T1.v2.json",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audit["previousStatus"], "completed_purge_pending");
    assert_eq!(audit["status"], "completed");
    let results = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .count();
    assert_eq!(results, 2);
    // Nothing left to poll; a further run changes nothing.
    let s = sweep(now + time::Duration::hours(3)).await.unwrap();
    assert_eq!(s, Default::default());
}

/// A purge that fails: the new certificate version says partially failed, naming the purge.
#[tokio::test]
async fn telemetry_purge_that_fails_gives_a_failed_certificate_v2() {
    use azureml_dsr::adapters::local::telemetry::LocalTelemetry;
    use azureml_dsr::functions::telemetry_purges::sweep;
    let mut e = env(HoldSet::default(), 1000).await;
    e.svc.telemetry = Arc::new(LocalTelemetry::new(e.store.clone()).with_failing_purges());
    submit(&e, request(&e, "DEL-T2", "delete", "bob", false), 1).await;
    assert_eq!(
        certificate(&e, "DEL-T2", "certificate.json")
            .await
            .unwrap()
            .status,
        FinalStatus::CompletedPurgePending
    );
    let s = sweep(&e.svc, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(s.revised, ["DEL-T2"]);
    let v2 = certificate(&e, "DEL-T2", "certificate.v2.json")
        .await
        .unwrap();
    assert_eq!(v2.status, FinalStatus::PartiallyFailed);
    let failed: Vec<&ItemStatus> = v2
        .results
        .iter()
        .flat_map(|r| &r.items)
        .filter(|i| matches!(i.item, Item::Telemetry { .. }))
        .map(|i| &i.status)
        .collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|s| matches!(s, ItemStatus::Failed { reason } if reason.contains("purge"))),
        "{failed:?}"
    );
    assert!(
        telemetry_rows_of(&e, "bob").await > 0,
        "a failed purge removes nothing"
    );
}

/// Issue 14, item 3: models and data assets by evidence. Alice's assets produced by her runs
/// (a model's `jobName`, a data asset in her run's output folder) are deleted with the request;
/// assets only a display name ties to her — hers and those of Ali, who shares her display name
/// — are listed for review and untouched; the request's submitter cannot approve them when
/// separation is required; an approval deletes exactly the approved items (report version 2),
/// a rejection from the intake queue keeps them (version 3); every decision is in the audit
/// trail; a bad control message is rejected with its reason and archived.
#[tokio::test]
async fn display_name_only_assets_wait_for_review_and_approval_deletes_exactly_those() {
    use azureml_dsr::domain::review::ReviewDecision;
    use azureml_dsr::functions::review::{decide, ReviewOutcome};
    use azureml_dsr::seed::review_owner;
    let mut e = env(HoldSet::default(), 50).await;
    e.svc.settings.review_separate_approver = true;
    let mut req = request(&e, "REV-1", "delete", "alice", false);
    req["submittedBy"] = json!("helpdesk@contoso.com");
    submit(&e, req, 1).await;
    let v1 = report(&e, "REV-1").await;
    assert_eq!(v1.status, FinalStatus::NeedsReview);
    let snap = snapshot(&e).await;
    let of = |who: &str| -> Vec<String> {
        e.truth
            .resources
            .iter()
            .filter(|(_, o)| **o == review_owner(who))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let (alice_candidates, ali_candidates) = (of("alice"), of("ali"));
    assert_eq!(
        alice_candidates.len(),
        4,
        "model-1, data-1, census, her schedule"
    );
    assert_eq!(ali_candidates.len(), 4);
    let listed: Vec<_> = v1.results.iter().flat_map(|s| &s.review).collect();
    for id in alice_candidates.iter().chain(&ali_candidates) {
        let item = listed
            .iter()
            .find(|i| &i.resource_id == id)
            .unwrap_or_else(|| panic!("{id} listed"));
        assert!(item.evidence.contains("display name"), "{}", item.evidence);
        assert!(arm_present(&snap, id), "{id} untouched before approval");
    }
    assert_eq!(listed.len(), 8, "only display-name matches are listed");
    for (k, owner) in &e.truth.blobs {
        if owner.starts_with(azureml_dsr::seed::REVIEW_PREFIX) {
            assert!(snap.contains_key(k), "{k} untouched before approval");
        }
    }
    // Produced by her runs: gone with the request. Ali's run-produced model: untouched.
    for id in e.truth.resources_of("alice") {
        assert!(!arm_present(&snap, id), "{id} deleted");
    }
    for id in e.truth.resources_of("ali") {
        assert!(arm_present(&snap, id), "{id} (Ali's) untouched");
    }
    let md = azureml_dsr::domain::report::render_markdown(&v1);
    assert!(
        md.contains("## Needs review") && md.contains("pending"),
        "{md}"
    );

    let decision = |approve: bool, items: &[String], by: &str| ReviewDecision {
        request_id: RequestId::parse("REV-1").unwrap(),
        approve,
        items: items.to_vec(),
        approver: by.into(),
        reason: "checked with the subject".into(),
    };
    // The submitter may not approve (DSR_REVIEW_SEPARATE_APPROVER): refused, nothing changes.
    let out = decide(
        &e.svc,
        &decision(true, &alice_candidates, "HelpDesk@contoso.com"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(&out, ReviewOutcome::Refused(why) if why.contains("submitted")),
        "{out:?}"
    );
    assert_eq!(snapshot(&e).await, snap);
    // An item that is not a review item of this request: refused, nothing decided.
    let out = decide(
        &e.svc,
        &decision(true, &[e.truth.resources_of("bob")[0].clone()], "dpo"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(matches!(out, ReviewOutcome::Refused(_)), "{out:?}");
    assert_eq!(snapshot(&e).await, snap);

    // Approval by someone else deletes exactly Alice's three.
    let out = decide(
        &e.svc,
        &decision(true, &alice_candidates, "dpo@contoso.com"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(out, ReviewOutcome::Decided { version: 2, .. }),
        "{out:?}"
    );
    let after = snapshot(&e).await;
    for id in &alice_candidates {
        assert!(!arm_present(&after, id), "{id} deleted once approved");
    }
    for id in &ali_candidates {
        assert!(arm_present(&after, id), "{id} (Ali's) still untouched");
    }
    for (k, owner) in &e.truth.blobs {
        let alices = *owner == review_owner("alice");
        assert_eq!(
            after.contains_key(k),
            !alices && snap.contains_key(k),
            "{k} ({owner})"
        );
    }
    let v2 = certificate(&e, "REV-1", "certificate.v2.json")
        .await
        .expect("certificate version 2");
    assert_eq!(
        v2.status,
        FinalStatus::NeedsReview,
        "Ali's items are pending"
    );
    let approved: Vec<_> = v2
        .results
        .iter()
        .flat_map(|s| &s.review)
        .filter(|i| i.decision.as_ref().is_some_and(|d| d.approved))
        .collect();
    assert_eq!(approved.len(), 4);
    assert!(approved
        .iter()
        .all(|i| i.decision.as_ref().unwrap().by == "dpo@contoso.com"));
    for id in &alice_candidates {
        let outcome = v2
            .results
            .iter()
            .flat_map(|s| &s.items)
            .find(|o| matches!(&o.item, Item::Resource { id: x, .. } if x == id))
            .unwrap_or_else(|| panic!("{id} in version 2"));
        assert_eq!(outcome.status, ItemStatus::Deleted { verified: true });
    }
    assert!(v2.counts.deleted > v1.counts.deleted);
    // The decision is in the audit trail: who, when, why.
    let item = &approved[0].id;
    let (audit, _) = e
        .store
        .read_small(&BlobRef::new(
            "dsrstate",
            "dsr-audit",
            format!("reviews/REV-1/{item}.json"),
        ))
        .await
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&audit).unwrap();
    assert_eq!(audit["by"], "dpo@contoso.com");
    assert_eq!(audit["decision"], "approve");
    assert!(audit["at"].is_string() && audit["reason"].is_string());

    // A rejection through the intake queue (control message) keeps Ali's items.
    let msg = json!({"type": "reject", "version": 1, "requestId": "REV-1", "items": ali_candidates,
                     "approver": "dpo@contoso.com", "reason": "namesake's assets"});
    let out = intake::run(
        &e.svc,
        msg.to_string().as_bytes(),
        &Delivery {
            delivery_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Reviewed {
            request_id: "REV-1".into(),
            version: 3
        }
    );
    assert_eq!(snapshot(&e).await, after, "a rejection changes nothing");
    let v3 = certificate(&e, "REV-1", "certificate.v3.json")
        .await
        .expect("certificate version 3");
    assert!(v3
        .results
        .iter()
        .flat_map(|s| &s.review)
        .all(|i| i.decision.is_some()));
    assert_ne!(v3.status, FinalStatus::NeedsReview, "{:?}", v3.status);
    // A decision is final; a bad control message is rejected with its reason.
    let out = decide(
        &e.svc,
        &decision(true, &ali_candidates, "dpo@contoso.com"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(&out, ReviewOutcome::Refused(why) if why.contains("final")),
        "{out:?}"
    );
    let bad = json!({"type": "approve", "version": 1, "requestId": "REV-1", "items": ["x"], "approver": "dpo"});
    let out = intake::run(
        &e.svc,
        bad.to_string().as_bytes(),
        &Delivery {
            delivery_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Rejected {
            code: "invalid_control_message".into()
        }
    );
    assert_eq!(snapshot(&e).await, after);
}

/// Issue 14, item 5: a departed user (no directory entry) is matched by object id only. The
/// request's UPN never names a notebooks folder on its own: `Users/<alias>/` is left untouched
/// and the report needs review; the jobs her object id proves are hers still go.
#[tokio::test]
async fn a_departed_users_upn_never_names_a_folder_to_erase() {
    let e = env(HoldSet::default(), 50).await;
    let carol = e.truth.user("carol").unwrap().clone();
    // The directory no longer knows her.
    let paths = LocalPaths::new(e._dir.path());
    let rest: Vec<_> = e
        .truth
        .directory()
        .into_iter()
        .filter(|d| d.object_id != carol.object_id)
        .collect();
    std::fs::write(paths.directory(), serde_json::to_vec(&rest).unwrap()).unwrap();
    let before = snapshot(&e).await;
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    submit(
        &e,
        json!({"schemaVersion": "1.0", "requestId": "GONE-1", "type": "delete",
               "subject": {"objectId": carol.object_id.to_string(), "upn": carol.upn},
               "scope": {"workspaces": ws}}),
        1,
    )
    .await;
    let r = report(&e, "GONE-1").await;
    assert_eq!(r.status, FinalStatus::NeedsReview, "{:#?}", r.slices);
    let after = snapshot(&e).await;
    let notebooks: Vec<&String> = before
        .keys()
        .filter(|k| k.contains(&format!("/Users/{}/", carol.key)))
        .collect();
    assert!(!notebooks.is_empty());
    for k in notebooks {
        assert!(after.contains_key(k), "{k} was erased on a UPN alone");
    }
    assert!(r
        .results
        .iter()
        .flat_map(|s| &s.notes)
        .any(|n| n.contains("never names a notebooks folder")));
    // Her jobs, proven by object id in run history, are gone.
    let jobs: Vec<&String> = e
        .truth
        .resources_of("carol")
        .into_iter()
        .filter(|id| id.contains("/jobs/"))
        .collect();
    assert!(!jobs.is_empty());
    for id in jobs {
        assert!(!arm_present(&after, id), "{id} deleted");
    }
}

/// An approved candidate of an export is exported by the slice engine: the manifest's next
/// version lists the asset and its files, with the checksums of what was written; nothing in
/// the workspace changes.
#[tokio::test]
async fn an_approved_candidate_of_an_export_is_exported_in_the_next_manifest() {
    use azureml_dsr::domain::review::ReviewDecision;
    use azureml_dsr::functions::review::{decide, ReviewOutcome};
    let e = env(HoldSet::default(), 50).await;
    submit(&e, request(&e, "EXP-R", "export", "alice", false), 1).await;
    let before = snapshot(&e).await;
    let model = e
        .truth
        .resources
        .iter()
        .find(|(id, o)| {
            id.contains("/models/alice-model-1/") && **o == azureml_dsr::seed::review_owner("alice")
        })
        .map(|(id, _)| id.clone())
        .expect("alice's display-name-only model");
    let out = decide(
        &e.svc,
        &ReviewDecision {
            request_id: RequestId::parse("EXP-R").unwrap(),
            approve: true,
            items: vec![model.clone()],
            approver: "dpo".into(),
            reason: "hers".into(),
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(out, ReviewOutcome::Decided { version: 2, .. }),
        "{out:?}"
    );
    assert_eq!(snapshot(&e).await, before, "an export changes nothing");
    let v2: FinalReport = e
        .store
        .read_json(&BlobRef::new(
            "dsrstate",
            "dsr-exports",
            "EXP-R/manifest.v2.json",
        ))
        .await
        .unwrap()
        .expect("manifest version 2");
    let files: Vec<&String> = e
        .truth
        .blobs
        .iter()
        .filter(|(k, o)| {
            **o == azureml_dsr::seed::review_owner("alice") && k.contains("LocalUpload/")
        })
        .map(|(k, _)| k)
        .collect();
    assert_eq!(files.len(), 2, "model.pkl and conda.yaml");
    let keys = v2.blob_keys();
    for f in &files {
        assert_eq!(
            keys.iter().filter(|k| k == f).count(),
            1,
            "{f} exported once"
        );
    }
    let mut exported = 0;
    for o in v2.results.iter().flat_map(|s| &s.items) {
        let ItemStatus::Exported { path, sha256, .. } = &o.status else {
            panic!("not exported: {o:?}")
        };
        let (bytes, _) = e
            .store
            .read_small(&BlobRef::new("dsrstate", "dsr-exports", path.clone()))
            .await
            .unwrap();
        assert_eq!(&azureml_dsr::domain::ids::sha256_hex(&bytes), sha256);
        exported += 1;
    }
    assert!(v2
        .results
        .iter()
        .flat_map(|s| &s.items)
        .any(|o| matches!(&o.item, Item::Resource { id, .. } if *id == model)));
    assert_eq!(exported as u64, v2.counts.exported);
    assert_eq!(
        v2.counts.exported,
        report(&e, "EXP-R").await.counts.exported + 3
    );
}

/// Issue 14, item 5: when the directory maps another person to the subject's notebooks folder
/// name (a guest `ALICE@fabrikam.com` and `alice@contoso.com` both map to `Users/alice/`; Azure
/// Files names are case-insensitive), the folder is nobody's to erase alone: it is left
/// untouched and the report needs review.
#[tokio::test]
async fn a_notebooks_folder_two_people_map_to_is_left_for_review() {
    let e = env(HoldSet::default(), 50).await;
    let paths = LocalPaths::new(e._dir.path());
    let mut dir = e.truth.directory();
    let mut guest = dir[0].clone();
    guest.object_id = uuid::Uuid::from_u128(0x4444);
    guest.upn = Some(azureml_dsr::domain::subject::Upn::parse("ALICE@fabrikam.com").unwrap());
    guest.mail = guest.upn.clone();
    dir.push(guest);
    std::fs::write(paths.directory(), serde_json::to_vec(&dir).unwrap()).unwrap();
    let before = snapshot(&e).await;
    submit(&e, request(&e, "NB-COL", "delete", "alice", false), 1).await;
    let r = report(&e, "NB-COL").await;
    assert_eq!(r.status, FinalStatus::NeedsReview);
    assert!(r
        .results
        .iter()
        .flat_map(|s| &s.notes)
        .any(|n| n.contains("also another user's")));
    let after = snapshot(&e).await;
    let folder: Vec<&String> = before
        .keys()
        .filter(|k| k.contains("/Users/alice/"))
        .collect();
    assert!(!folder.is_empty());
    for k in folder {
        assert!(
            after.contains_key(k),
            "{k} erased though two people map to it"
        );
    }
    // Without the other person, the same request erases it (the check is what keeps it).
    let e2 = env(HoldSet::default(), 50).await;
    submit(&e2, request(&e2, "NB-ONE", "delete", "alice", false), 1).await;
    let after2 = snapshot(&e2).await;
    assert!(!after2.keys().any(|k| k.contains("/Users/alice/")));
}
