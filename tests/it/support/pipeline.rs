//! The one pipeline driver for tests that need no host: a seeded local environment, the
//! functions driven directly over the in-memory bus (each message inside the trace its
//! `Diagnostic-Id` carries, as the handler does), and fingerprints of a store, so what changed
//! and what did not is compared by hash.

use std::collections::BTreeMap;
use std::sync::Arc;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::slice::{SliceCompletion, SliceTask};
use azureml_dsr::functions::{aggregate, intake, slice, Delivery, Services, Settings};
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt};
use azureml_dsr::ports::bus::{queues, MessageBus, OutMessage};
use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
use azureml_dsr::trace::{TraceContext, DIAGNOSTIC_ID};
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use time::OffsetDateTime;

/// A seeded local store in a temporary folder: what every direct pipeline test starts from.
pub struct Seeded {
    pub dir: tempfile::TempDir,
    pub paths: LocalPaths,
    pub store: Arc<dyn BlobStore>,
    pub truth: SeedTruth,
}

impl Seeded {
    /// Seed `opts` at `now` into a new local store.
    pub async fn new(opts: &SeedOptions, now: OffsetDateTime) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = LocalPaths::new(dir.path());
        let store = local_store(&paths);
        let truth = seed(&store, opts, now).await.unwrap();
        Seeded {
            dir,
            paths,
            store,
            truth,
        }
    }

    /// Also write the seeded people as the local directory (what Graph answers locally).
    pub fn with_directory(self) -> Self {
        std::fs::write(
            self.paths.directory(),
            serde_json::to_vec(&self.truth.directory()).unwrap(),
        )
        .unwrap();
        self
    }

    /// The local services over this store, sending on `bus`, allowed to act on the seeded
    /// workspaces (intake refuses any other).
    pub async fn services(&self, bus: Arc<dyn MessageBus>, settings: Settings) -> Services {
        let svc = local_services(&self.paths, self.store.clone(), bus, settings);
        svc.state().put_scope(&self.truth.workspaces).await.unwrap();
        svc
    }
}

/// A first delivery.
pub fn delivery() -> Delivery {
    Delivery {
        delivery_count: 1,
        ..Default::default()
    }
}

/// Deliver one message to its function as the handler does (`app.rs`): inside the trace its
/// `Diagnostic-Id` carries. Result messages are left for the test to read.
pub async fn deliver(svc: &Services, m: &OutMessage) {
    let d = delivery();
    let ctx = m
        .application_properties
        .get(DIAGNOSTIC_ID)
        .and_then(|v| v.as_str())
        .and_then(TraceContext::parse);
    let work = async {
        match m.queue.as_str() {
            queues::INTAKE => {
                intake::run(svc, &m.body, &d).await.unwrap();
            }
            queues::COMPLETIONS => {
                let c: SliceCompletion = serde_json::from_slice(&m.body).unwrap();
                aggregate::run(svc, &c).await.unwrap();
            }
            queues::RESULTS => {}
            q if q.starts_with("dsr-slice-") => {
                let t: SliceTask = serde_json::from_slice(&m.body).unwrap();
                slice::run(svc, &t, &d).await.unwrap();
            }
            other => panic!("unexpected queue {other}"),
        }
    };
    match ctx {
        Some(c) => azureml_dsr::trace::scope(c, work).await,
        None => work.await,
    }
}

/// Deliver every message on `bus` (each `copies` times, as a redelivering queue would) through
/// the functions until the bus is empty.
pub async fn drive(svc: &Services, bus: &MemoryBus, copies: usize) {
    while let Some(m) = bus.pop() {
        for _ in 0..copies {
            deliver(svc, &m).await;
        }
    }
}

/// SHA-256 of every blob in `accounts`, keyed `account/container/name`.
pub async fn snapshot(store: &dyn BlobStore, accounts: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for &a in accounts {
        for c in store.list_containers(a, "").await.unwrap() {
            for b in store.list_all(a, &c, "").await.unwrap() {
                let (bytes, _) = store
                    .read_small(&BlobRef::new(a, c.clone(), b.name.clone()))
                    .await
                    .unwrap();
                out.insert(
                    format!("{a}/{c}/{}", b.name),
                    azureml_dsr::domain::ids::sha256_hex(&bytes),
                );
            }
        }
    }
    out
}

/// ARM id of every seeded resource -> hash of its document in the local control plane's store
/// (absent: deleted).
pub async fn seeded_resources(
    store: &dyn BlobStore,
    truth: &azureml_dsr::seed::SeedTruth,
) -> BTreeMap<String, String> {
    use azureml_dsr::adapters::local::control_plane::{LocalControlPlane, ARM_ACCOUNT};
    use azureml_dsr::ports::control_plane::ArmKind;
    let mut out = BTreeMap::new();
    for id in truth.resources.keys() {
        let blob = truth
            .workspaces
            .iter()
            .find_map(|ws| {
                [
                    ArmKind::Job,
                    ArmKind::ModelVersion,
                    ArmKind::DataVersion,
                    ArmKind::Compute,
                    ArmKind::Schedule,
                ]
                .into_iter()
                .find_map(|k| LocalControlPlane::blob_name(ws, k, id))
                .map(|n| BlobRef::new(ARM_ACCOUNT, LocalControlPlane::container(ws), n))
            })
            .unwrap_or_else(|| panic!("seeded resource {id} maps to no document"));
        if let Ok((bytes, _)) = store.read_small(&blob).await {
            out.insert(id.clone(), azureml_dsr::domain::ids::sha256_hex(&bytes));
        }
    }
    out
}
