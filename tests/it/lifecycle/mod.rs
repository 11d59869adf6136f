//! The request lifecycle as a ticketing system steers it (issue 17): states announced on the
//! results queue, `cancel` (before start, and during a delete: the certificate lists what was
//! and was not deleted), `extend` within the legal limits, bad control messages rejected with a
//! reason, deadline warnings from the timer (once each), and one trace per request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::holds::HoldSet;
use azureml_dsr::domain::lifecycle::{
    is_cancelled_skip, Lifecycle, RequestState, CANCELLED_BEFORE_START,
};
use azureml_dsr::domain::report::{FinalReport, FinalStatus};
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::domain::slice::{Item, ItemStatus, SliceTask};
use azureml_dsr::functions::control::ControlOutcome;
use azureml_dsr::functions::intake::IntakeOutcome;
use azureml_dsr::functions::{intake, Delivery, Services, Settings};
use azureml_dsr::ports::blob::{BlobStore, BlobStoreExt};
use azureml_dsr::ports::bus::{queues, BusError, MessageBus, OutMessage, SendOutcome};
use azureml_dsr::seed::{SeedOptions, SeedTruth};
use azureml_dsr::trace::{TraceContext, DIAGNOSTIC_ID};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::support;
use support::pipeline::deliver;

/// The in-memory bus, recording every send attempt too (duplicates included), so "sent once"
/// is checked at the sender and not only after the bus's duplicate detection.
struct Recording {
    inner: Arc<MemoryBus>,
    attempts: Mutex<Vec<OutMessage>>,
}

#[async_trait]
impl MessageBus for Recording {
    async fn send(&self, m: OutMessage) -> Result<SendOutcome, BusError> {
        self.attempts.lock().unwrap().push(m.clone());
        self.inner.send(m).await
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    bus: Arc<MemoryBus>,
    rec: Arc<Recording>,
    svc: Services,
    truth: SeedTruth,
}

async fn env(chunk_size: usize) -> Env {
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 5,
        ..Default::default()
    };
    let seeded = support::pipeline::Seeded::new(&opts, OffsetDateTime::now_utc())
        .await
        .with_directory();
    let bus = Arc::new(MemoryBus::new());
    let rec = Arc::new(Recording {
        inner: bus.clone(),
        attempts: Mutex::new(vec![]),
    });
    let settings = Settings {
        chunk_size,
        ..Default::default()
    };
    let svc = seeded.services(rec.clone(), settings).await;
    svc.state().put_holds(&HoldSet::default()).await.unwrap();
    Env {
        store: seeded.store.clone(),
        truth: seeded.truth.clone(),
        _dir: seeded.dir,
        bus,
        rec,
        svc,
    }
}

fn delivery() -> Delivery {
    support::pipeline::delivery()
}

fn request(e: &Env, id: &str, kind: &str, user: &str) -> Value {
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    json!({"schemaVersion": "1.0", "requestId": id, "type": kind,
           "subject": {"upn": e.truth.user(user).unwrap().upn}, "scope": {"workspaces": ws}})
}

async fn send_intake(e: &Env, body: &Value) -> IntakeOutcome {
    intake::run(&e.svc, body.to_string().as_bytes(), &delivery())
        .await
        .unwrap()
}

async fn drive(e: &Env) {
    support::pipeline::drive(&e.svc, &e.bus, 1).await
}

/// Lifecycle messages on the results queue (as the ticketing system reads them).
fn lifecycle_messages(e: &Env, id: &str) -> Vec<Value> {
    e.bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .filter(|m| azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
        .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
        .filter(|v| v["requestId"] == id)
        .collect()
}

fn announced_states(e: &Env, id: &str) -> Vec<String> {
    lifecycle_messages(e, id)
        .into_iter()
        .filter(|m| m["event"] == "state_changed")
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect()
}

async fn lifecycle(e: &Env, id: &str) -> Lifecycle {
    azureml_dsr::functions::lifecycle::load(&e.svc.state(), &RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("a lifecycle document")
}

fn history(l: &Lifecycle) -> Vec<RequestState> {
    l.history.iter().map(|h| h.state).collect()
}

async fn report(e: &Env, id: &str) -> FinalReport {
    e.svc
        .state()
        .report(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("report written")
}

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

fn control_rejected(out: &IntakeOutcome) -> Option<&str> {
    match out {
        IntakeOutcome::Control {
            outcome: ControlOutcome::Rejected { code },
            ..
        } => Some(code),
        _ => None,
    }
}

fn timer() -> azureml_dsr::protocol::timer::TimerInfo {
    azureml_dsr::protocol::timer::TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: false,
    }
}

mod control;
mod deadlines;
mod rejections;
mod states_and_cancel;
