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
use azureml_dsr::seed::{SeedOptions, SeedTruth};
use azureml_dsr::state::{StateStore, AUDIT, REPORTS};
use azureml_dsr::wiring::{local_store, LocalPaths};
use serde_json::json;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    bus: Arc<MemoryBus>,
    svc: Services,
    truth: SeedTruth,
}

async fn env_with(settings: Settings) -> Env {
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 2,
        ..Default::default()
    };
    let seeded = support::pipeline::Seeded::new(&opts, time::OffsetDateTime::now_utc())
        .await
        .with_directory();
    let bus = Arc::new(MemoryBus::new());
    let svc = seeded.services(bus.clone(), settings).await;
    Env {
        store: seeded.store.clone(),
        truth: seeded.truth.clone(),
        dir: seeded.dir,
        bus,
        svc,
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

mod audit;
mod follow_up;
mod lineage;
mod recoverable;
