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
use azureml_dsr::seed::{SeedOptions, SeedTruth};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use azureml_dsr::wiring::LocalPaths;

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
    let now = OffsetDateTime::now_utc();
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 6,
        history_days: 400,
        ..Default::default()
    };
    // No local directory: the sweeps resolve no person by name.
    let seeded = support::pipeline::Seeded::new(&opts, now).await;
    let bus = Arc::new(MemoryBus::new());
    let settings = Settings {
        job_retention_enabled: true,
        retention_days: 180,
        job_retention_max_share_pct: max_share_pct,
        retention_dry_run: dry_run,
        chunk_size: 7,
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

mod deleted_workspaces;
mod export_bundles;
mod job_history;
mod state_expiry;
