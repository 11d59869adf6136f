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
use azureml_dsr::seed::{SeedOptions, SeedTruth};
use azureml_dsr::wiring::{local_services, LocalPaths};
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
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 5,
        ..Default::default()
    };
    let seeded = support::pipeline::Seeded::new(&opts, time::OffsetDateTime::now_utc())
        .await
        .with_directory();
    let bus = Arc::new(MemoryBus::new());
    let settings = Settings {
        chunk_size,
        ..Default::default()
    };
    let svc = seeded.services(bus.clone(), settings).await;
    svc.state().put_holds(&holds).await.unwrap();
    Env {
        store: seeded.store.clone(),
        truth: seeded.truth.clone(),
        _dir: seeded.dir,
        bus,
        svc,
    }
}

/// Deliver every message (each `copies` times) until the bus is empty.
async fn drive(e: &Env, copies: usize) {
    support::pipeline::drive(&e.svc, &e.bus, copies).await
}

/// Intake, given `body`, rejects it with `code` (and nothing else): the one body of every
/// "intake refuses X" check.
async fn intake_rejects(e: &Env, body: impl AsRef<[u8]>, code: &str) {
    let out = intake::run(&e.svc, body.as_ref(), &support::pipeline::delivery())
        .await
        .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Rejected { code: code.into() },
        "intake should reject with {code}"
    );
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

/// `who`'s compute instance (the resource a forged inventory entry names in the refusal tests).
fn compute_of(e: &Env, who: &str) -> String {
    e.truth
        .resources_of(who)
        .into_iter()
        .find(|id| id.contains("/computes/"))
        .unwrap_or_else(|| panic!("{who} has a compute instance"))
        .clone()
}

/// After a slice refused what its stored inventory named: `kept` (another user's compute the
/// forged entry named) is untouched, the slice `key` failed and the request says so. Returns
/// the slice's summary for further checks.
async fn assert_slice_refused(
    e: &Env,
    request_id: &str,
    key: &str,
    kept: &str,
) -> azureml_dsr::domain::report::SliceSummary {
    assert!(
        arm_present(&snapshot(e).await, kept),
        "bob's compute instance is still there"
    );
    let r = report(e, request_id).await;
    let slice = r
        .slices
        .iter()
        .find(|s| s.key == key)
        .expect("the jobs slice is reported")
        .clone();
    assert_eq!(
        slice.status,
        azureml_dsr::domain::slice::SliceStatus::Failed
    );
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
    slice
}

/// The state blob of request `id` whose name contains `part` and ends with `end` (a slice's
/// stored page, for the tests that damage one).
async fn state_blob(e: &Env, id: &str, part: &str, end: &str) -> BlobRef {
    let name = e
        .store
        .list_all("dsrstate", "dsr-state", &format!("requests/{id}/slices/"))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .find(|n| n.contains(part) && n.ends_with(end))
        .unwrap_or_else(|| panic!("no state blob of {id} like {part}…{end}"));
    BlobRef::new("dsrstate", "dsr-state", name)
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

mod attribution;
mod erasure_evidence;
mod exact_sets;
mod faults;
mod holds_and_scope;
mod intake_refusals;
mod notebooks;
mod paged_inventory;
mod paged_report;
mod telemetry;
