//! Driving the pipeline's functions directly over the in-memory bus, and fingerprinting a
//! store, for tests that need no host: what changed and what did not is compared by hash.

use std::collections::BTreeMap;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::slice::{SliceCompletion, SliceTask};
use azureml_dsr::functions::{aggregate, intake, slice, Delivery, Services};
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt};
use azureml_dsr::ports::bus::queues;

/// Deliver every message on `bus` (each `copies` times, as a redelivering queue would) through
/// the functions until the bus is empty. Result messages are left for the test to read.
pub async fn drive(svc: &Services, bus: &MemoryBus, copies: usize) {
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    while let Some(m) = bus.pop() {
        for _ in 0..copies {
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
