//! Edges of `cancel` (issue 17): a cancel that comes after every part of a request has done its
//! work is refused (`already_finished`) and the request keeps its own outcome; one that lands
//! while the last chunk finishes, and so stops nothing, is settled at fan-in to the request's
//! true state (announced and audited), never a false `cancelled`; a cancel that overtakes its
//! request on the queue is remembered and cancels the request on arrival, within its time.

use std::sync::Arc;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::holds::HoldSet;
use azureml_dsr::domain::lifecycle::{Lifecycle, RequestState, CANCEL_OVERTAKEN};
use azureml_dsr::domain::report::{FinalReport, FinalStatus};
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::domain::slice::{SliceCompletion, SliceTask};
use azureml_dsr::functions::control::ControlOutcome;
use azureml_dsr::functions::intake::IntakeOutcome;
use azureml_dsr::functions::lifecycle as lc;
use azureml_dsr::functions::{aggregate, intake, slice, Delivery, Services, Settings};
use azureml_dsr::ports::blob::{BlobStore, BlobStoreExt};
use azureml_dsr::ports::bus::{queues, OutMessage};
use azureml_dsr::seed::{SeedOptions, SeedTruth};
use azureml_dsr::wiring::local_services;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::support;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    bus: Arc<MemoryBus>,
    svc: Services,
    truth: SeedTruth,
}

async fn env() -> Env {
    let opts = SeedOptions {
        users: 3,
        runs_per_user: 3,
        ..Default::default()
    };
    let support::pipeline::Seeded {
        dir,
        paths,
        store,
        truth,
    } = support::pipeline::Seeded::new(&opts, OffsetDateTime::now_utc())
        .await
        .with_directory();
    let bus = Arc::new(MemoryBus::new());
    let settings = Settings {
        chunk_size: 5,
        ..Default::default()
    };
    let svc = local_services(&paths, store.clone(), bus.clone(), settings);
    svc.state().put_holds(&HoldSet::default()).await.unwrap();
    svc.state().put_scope(&truth.workspaces).await.unwrap();
    Env {
        _dir: dir,
        store,
        bus,
        svc,
        truth,
    }
}

fn delivery() -> Delivery {
    Delivery {
        delivery_count: 1,
        ..Default::default()
    }
}

fn request(e: &Env, id: &str, kind: &str, user: &str) -> Value {
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    json!({"schemaVersion": "1.0", "requestId": id, "type": kind,
           "subject": {"upn": e.truth.user(user).unwrap().upn}, "scope": {"workspaces": ws}})
}

fn cancel(id: &str) -> Value {
    json!({"type": "cancel", "version": 1, "requestId": id, "reason": "the subject withdrew it"})
}

async fn send_intake(e: &Env, body: &Value) -> IntakeOutcome {
    intake::run(&e.svc, body.to_string().as_bytes(), &delivery())
        .await
        .unwrap()
}

async fn deliver(svc: &Services, m: &OutMessage) {
    let d = delivery();
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

/// Everything but fan-in: every slice runs to its end; the completions are held back.
async fn run_slices_hold_completions(e: &Env) -> Vec<OutMessage> {
    let mut held = Vec::new();
    while let Some(m) = e.bus.pop() {
        if m.queue == queues::COMPLETIONS {
            held.push(m);
        } else {
            deliver(&e.svc, &m).await;
        }
    }
    assert!(!held.is_empty());
    held
}

async fn drive(e: &Env) {
    while let Some(m) = e.bus.pop() {
        deliver(&e.svc, &m).await;
    }
}

async fn lifecycle(e: &Env, id: &str) -> Lifecycle {
    lc::load(&e.svc.state(), &RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("a lifecycle document")
}

async fn report(e: &Env, id: &str) -> FinalReport {
    e.svc
        .state()
        .report(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("report written")
}

fn lifecycle_messages(e: &Env, id: &str) -> Vec<Value> {
    e.bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .filter(|m| lc::is_lifecycle_message(&m.body))
        .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
        .filter(|v| v["requestId"] == id)
        .collect()
}

fn result_status(e: &Env, id: &str) -> Vec<String> {
    e.bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .filter(|m| !lc::is_lifecycle_message(&m.body))
        .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
        .filter(|v| v["requestId"] == id)
        .map(|v| v["status"].as_str().unwrap().to_string())
        .collect()
}

async fn audit_names(e: &Env, id: &str) -> Vec<String> {
    e.store
        .list_all("dsrstate", "dsr-audit", &format!("lifecycle/{id}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect()
}

async fn snapshot(e: &Env) -> std::collections::BTreeMap<String, String> {
    let mut accounts: Vec<&str> = e
        .truth
        .infos
        .iter()
        .map(|i| i.storage_account.as_str())
        .collect();
    accounts.extend(["armlocal", "telemetrylocal"]);
    support::pipeline::snapshot(e.store.as_ref(), &accounts).await
}

/// Every slice of the delete has done its work (only fan-in is left) when the cancel arrives:
/// it is refused with a reason, and the request ends with its true outcome, not `cancelled`.
#[tokio::test]
async fn a_cancel_after_every_part_finished_is_refused_and_the_request_keeps_its_outcome() {
    let e = env().await;
    send_intake(&e, &request(&e, "LE-1", "delete", "alice")).await;
    let held = run_slices_hold_completions(&e).await;
    let out = send_intake(&e, &cancel("LE-1")).await;
    assert_eq!(
        out,
        IntakeOutcome::Control {
            kind: "cancel".into(),
            outcome: ControlOutcome::Rejected {
                code: "already_finished".into()
            }
        }
    );
    let refusal = lifecycle_messages(&e, "LE-1")
        .into_iter()
        .find(|m| m["event"] == "control_rejected")
        .expect("a control_rejected message");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("nothing left to stop"),
        "{refusal}"
    );
    for m in held {
        deliver(&e.svc, &m).await;
    }
    drive(&e).await;
    let r = report(&e, "LE-1").await;
    assert_ne!(r.status, FinalStatus::Cancelled);
    assert!(r.counts.items > 0);
    let l = lifecycle(&e, "LE-1").await;
    assert!(l.cancel.is_none(), "{:?}", l.cancel);
    assert!(!l.history.iter().any(|h| h.state == RequestState::Cancelled));
    assert_eq!(l.state, RequestState::from_final(r.status));
    assert_ne!(result_status(&e, "LE-1"), vec!["cancelled".to_string()]);
}

/// A cancel accepted while the last chunk was finishing (here: recorded straight into the
/// lifecycle after the slices read it, as a cancel landing at that moment is) stops nothing:
/// fan-in keeps the report's true status and moves the request from `cancelled` to it, with the
/// reason, announced and audited.
#[tokio::test]
async fn a_cancel_that_stopped_nothing_is_settled_to_the_true_outcome_at_fan_in() {
    let e = env().await;
    send_intake(&e, &request(&e, "LE-2", "delete", "bob")).await;
    let held = run_slices_hold_completions(&e).await;
    let id = RequestId::parse("LE-2").unwrap();
    lc::update(
        &e.svc.state(),
        &id,
        || None,
        |d| {
            d.cancel(OffsetDateTime::now_utc(), Some("late".into()))
                .map(|c| c.then_some(()))
        },
    )
    .await
    .unwrap();
    assert_eq!(lifecycle(&e, "LE-2").await.state, RequestState::Cancelled);
    for m in held {
        deliver(&e.svc, &m).await;
    }
    drive(&e).await;
    let r = report(&e, "LE-2").await;
    assert_ne!(r.status, FinalStatus::Cancelled, "nothing was stopped");
    let l = lifecycle(&e, "LE-2").await;
    assert_eq!(l.state, RequestState::from_final(r.status));
    let last = l.history.last().unwrap();
    assert_eq!(last.reason.as_deref(), Some(CANCEL_OVERTAKEN));
    assert!(!l.cancel_requested() && l.cancel.as_ref().unwrap().overtaken);
    let states: Vec<Value> = lifecycle_messages(&e, "LE-2")
        .into_iter()
        .filter(|m| m["event"] == "state_changed")
        .map(|m| m["state"].clone())
        .collect();
    assert_eq!(
        states.last().unwrap(),
        &json!(RequestState::from_final(r.status).as_str())
    );
    assert!(audit_names(&e, "LE-2")
        .await
        .iter()
        .any(|n| n.ends_with("cancel-overtaken.json")));
}

/// The cancel overtakes its request on the queue: remembered (`cancel_pending`), and the
/// request, arriving afterwards, is cancelled on arrival — nothing in it is looked at or changed.
#[tokio::test]
async fn a_cancel_that_overtakes_its_request_cancels_it_on_arrival() {
    let e = env().await;
    let before = snapshot(&e).await;
    let c = cancel("LE-3");
    let out = send_intake(&e, &c).await;
    assert!(
        matches!(
            &out,
            IntakeOutcome::Control {
                outcome: ControlOutcome::Applied { changed: true, .. },
                ..
            }
        ),
        "{out:?}"
    );
    // A redelivery changes nothing more.
    assert!(matches!(
        send_intake(&e, &c).await,
        IntakeOutcome::Control {
            outcome: ControlOutcome::Applied { changed: false, .. },
            ..
        }
    ));
    let pending: Vec<Value> = lifecycle_messages(&e, "LE-3")
        .into_iter()
        .filter(|m| m["event"] == "cancel_pending")
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    send_intake(&e, &request(&e, "LE-3", "delete", "alice")).await;
    drive(&e).await;
    assert_eq!(
        snapshot(&e).await,
        before,
        "a cancelled request changed data"
    );
    let r = report(&e, "LE-3").await;
    assert_eq!(r.status, FinalStatus::Cancelled);
    assert_eq!(r.counts.items, 0);
    let l = lifecycle(&e, "LE-3").await;
    use RequestState::*;
    assert_eq!(
        l.history.iter().map(|h| h.state).collect::<Vec<_>>(),
        vec![Received, Planned, Cancelled]
    );
    assert_eq!(
        l.history.last().unwrap().reason.as_deref(),
        Some("the subject withdrew it")
    );
    let audit = audit_names(&e, "LE-3").await;
    assert!(
        audit.iter().any(|n| n.ends_with("-on-arrival.json")),
        "{audit:?}"
    );
    // The pending record is gone once applied.
    assert!(e
        .store
        .list_all("dsrstate", "dsr-state", "pending-cancels/")
        .await
        .unwrap()
        .is_empty());
}

/// A remembered cancel is bounded in time: a request arriving after it goes ahead (audited),
/// and one that never arrives is forgotten by the retention sweep.
#[tokio::test]
async fn a_pending_cancel_expires() {
    let e = env().await;
    send_intake(&e, &cancel("LE-4")).await;
    send_intake(&e, &cancel("LE-NEVER")).await;
    // LE-4's cancel waited longer than it may.
    let b = e
        .svc
        .state()
        .blob("dsr-state", "pending-cancels/LE-4.json".to_string());
    let (bytes, _) = e.store.read_small(&b).await.unwrap();
    let mut p: Value = serde_json::from_slice(&bytes).unwrap();
    p["until"] = json!("2020-01-01T00:00:00Z");
    e.store.write_json(&b, &p).await.unwrap();
    send_intake(&e, &request(&e, "LE-4", "export", "bob")).await;
    drive(&e).await;
    let r = report(&e, "LE-4").await;
    assert_ne!(r.status, FinalStatus::Cancelled);
    assert!(lifecycle(&e, "LE-4").await.cancel.is_none());
    let audit = audit_names(&e, "LE-4").await;
    assert!(
        audit.iter().any(|n| n.ends_with("-expired.json")),
        "{audit:?}"
    );
    let later = OffsetDateTime::now_utc() + time::Duration::hours(25);
    let n = azureml_dsr::functions::control::cancel::expire_pending(&e.svc, later)
        .await
        .unwrap();
    assert_eq!(n, 1);
}
