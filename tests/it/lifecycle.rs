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
use azureml_dsr::domain::slice::{Item, ItemStatus, SliceCompletion, SliceTask};
use azureml_dsr::functions::control::ControlOutcome;
use azureml_dsr::functions::intake::IntakeOutcome;
use azureml_dsr::functions::{aggregate, intake, slice, Delivery, Services, Settings};
use azureml_dsr::ports::blob::{BlobStore, BlobStoreExt};
use azureml_dsr::ports::bus::{queues, BusError, MessageBus, OutMessage, SendOutcome};
use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
use azureml_dsr::trace::{TraceContext, DIAGNOSTIC_ID};
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::support;

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
    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let store = local_store(&paths);
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 5,
        ..Default::default()
    };
    let truth = seed(&store, &opts, OffsetDateTime::now_utc())
        .await
        .unwrap();
    std::fs::write(
        paths.directory(),
        serde_json::to_vec(&truth.directory()).unwrap(),
    )
    .unwrap();
    let bus = Arc::new(MemoryBus::new());
    let rec = Arc::new(Recording {
        inner: bus.clone(),
        attempts: Mutex::new(vec![]),
    });
    let settings = Settings {
        chunk_size,
        ..Default::default()
    };
    let svc = local_services(&paths, store.clone(), rec.clone(), settings);
    svc.state().put_holds(&HoldSet::default()).await.unwrap();
    svc.state().put_scope(&truth.workspaces).await.unwrap();
    Env {
        _dir: dir,
        store,
        bus,
        rec,
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

async fn send_intake(e: &Env, body: &Value) -> IntakeOutcome {
    intake::run(&e.svc, body.to_string().as_bytes(), &delivery())
        .await
        .unwrap()
}

/// Deliver one message as the handler does (`app.rs`): inside the trace its `Diagnostic-Id`
/// carries.
async fn deliver(svc: &Services, m: &OutMessage) {
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

async fn drive(e: &Env) {
    while let Some(m) = e.bus.pop() {
        deliver(&e.svc, &m).await;
    }
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

#[tokio::test]
async fn a_delete_passes_through_its_states_each_announced_once_in_one_trace() {
    let e = env(5).await;
    let body = request(&e, "LC-1", "delete", "bob");
    send_intake(&e, &body).await;
    // A redelivered request re-announces nothing new.
    send_intake(&e, &body).await;
    drive(&e).await;
    let l = lifecycle(&e, "LC-1").await;
    use RequestState::*;
    let expected = vec![Received, Planned, InProgress, CompletedPurgePending];
    assert_eq!(history(&l), expected);
    assert_eq!(
        announced_states(&e, "LC-1"),
        expected.iter().map(|s| s.as_str()).collect::<Vec<_>>()
    );
    // Every message the pipeline sent for it carries the same W3C trace.
    let traces: std::collections::BTreeSet<String> = e
        .bus
        .sent()
        .iter()
        .map(|m| {
            let tp = m.application_properties[DIAGNOSTIC_ID].as_str().unwrap();
            TraceContext::parse(tp)
                .unwrap_or_else(|| panic!("bad traceparent {tp}"))
                .trace_id
        })
        .collect();
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert_eq!(traces.into_iter().next().unwrap(), l.trace_id);
    let status = lifecycle_messages(&e, "LC-1");
    assert!(status.iter().all(|m| m["deadline"].is_string()));
}

#[tokio::test]
async fn cancel_before_start_stops_the_request_and_changes_nothing() {
    let e = env(5).await;
    let before = snapshot(&e).await;
    send_intake(&e, &request(&e, "LC-2", "delete", "alice")).await;
    let cancel = json!({"type": "cancel", "version": 1, "requestId": "LC-2", "reason": "subject withdrew the request"});
    let out = send_intake(&e, &cancel).await;
    assert_eq!(
        out,
        IntakeOutcome::Control {
            kind: "cancel".into(),
            outcome: ControlOutcome::Applied {
                request_id: "LC-2".into(),
                changed: true
            }
        }
    );
    // A redelivered cancel changes nothing more.
    let again = send_intake(&e, &cancel).await;
    assert!(matches!(
        again,
        IntakeOutcome::Control {
            outcome: ControlOutcome::Applied { changed: false, .. },
            ..
        }
    ));
    drive(&e).await;
    assert_eq!(
        snapshot(&e).await,
        before,
        "a cancelled request changed data"
    );
    let r = report(&e, "LC-2").await;
    assert_eq!(r.status, FinalStatus::Cancelled);
    assert_eq!(r.counts.items, 0);
    assert!(r
        .results
        .iter()
        .all(|s| s.notes.iter().any(|n| n == CANCELLED_BEFORE_START)));
    let l = lifecycle(&e, "LC-2").await;
    use RequestState::*;
    assert_eq!(history(&l), vec![Received, Planned, Cancelled]);
    assert_eq!(
        l.history.last().unwrap().reason.as_deref(),
        Some("subject withdrew the request")
    );
    assert_eq!(
        announced_states(&e, "LC-2"),
        vec!["received", "planned", "cancelled"]
    );
    // The ticketing system also gets the final result, cancelled.
    let finals: Vec<Value> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .filter(|m| !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
        .map(|m| serde_json::from_slice(&m.body).unwrap())
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0]["status"], "cancelled");
    // The cancel is in the request's audit trail.
    let audit = e
        .store
        .list_all("dsrstate", "dsr-audit", "lifecycle/LC-2/")
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
}

/// ARM id -> whether its document is still in the local control plane's store.
fn arm_present(snapshot: &BTreeMap<String, String>, id: &str) -> bool {
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
async fn cancel_during_a_delete_finishes_the_chunk_and_the_certificate_lists_what_was_and_was_not_deleted(
) {
    // Two items per chunk: the jobs slice takes several chunks.
    let e = env(2).await;
    send_intake(&e, &request(&e, "LC-3", "delete", "alice")).await;
    let mut cancelled = false;
    while let Some(m) = e.bus.pop() {
        if !cancelled && m.queue == queues::SLICE_JOBS {
            let t: SliceTask = serde_json::from_slice(&m.body).unwrap();
            if t.chunk == 1 {
                // Chunk 0 of the jobs slice is done; the cancel arrives before chunk 1.
                let c = json!({"type": "cancel", "version": 1, "requestId": "LC-3"});
                let out = send_intake(&e, &c).await;
                assert!(matches!(
                    out,
                    IntakeOutcome::Control {
                        outcome: ControlOutcome::Applied { changed: true, .. },
                        ..
                    }
                ));
                cancelled = true;
            }
        }
        deliver(&e.svc, &m).await;
    }
    assert!(cancelled, "the jobs slice never reached a second chunk");
    let r = report(&e, "LC-3").await;
    assert_eq!(r.status, FinalStatus::Cancelled);
    let after = snapshot(&e).await;
    let (mut deleted, mut not_deleted) = (0, 0);
    for o in r.results.iter().flat_map(|s| &s.items) {
        let present = match &o.item {
            Item::Blob { .. } => Some(after.contains_key(&o.item.blob_key().unwrap())),
            Item::Resource { id, .. } => Some(arm_present(&after, id)),
            _ => None,
        };
        match &o.status {
            ItemStatus::Deleted { verified } => {
                assert!(verified, "{o:?}");
                if let Some(p) = present {
                    assert!(!p, "reported deleted but still there: {o:?}");
                }
                deleted += 1;
            }
            // A telemetry purge requested before the cancel runs on in Log Analytics.
            ItemStatus::Pending { .. } => {}
            s if is_cancelled_skip(s) => {
                if let Some(p) = present {
                    assert!(p, "reported not deleted but gone: {o:?}");
                }
                not_deleted += 1;
            }
            other => panic!("unexpected outcome {other:?} for {:?}", o.item),
        }
    }
    assert!(deleted > 0, "nothing was deleted before the cancel");
    assert!(not_deleted > 0, "the cancel stopped nothing");
    // The jobs slice kept exactly its first chunk's deletes.
    let jobs = r
        .results
        .iter()
        .find(|s| s.resource_type == azureml_dsr::domain::plan::ResourceType::Jobs)
        .unwrap();
    let jobs_deleted = jobs
        .items
        .iter()
        .filter(|o| matches!(o.status, ItemStatus::Deleted { .. }))
        .count();
    assert_eq!(jobs_deleted, 2, "{:#?}", jobs.items);
    // The certificate a person reads says it too.
    let md = azureml_dsr::domain::report::render_markdown(&r);
    assert!(md.contains("not deleted"), "{md}");
    assert!(md.contains("deleted, verified gone"), "{md}");
    let l = lifecycle(&e, "LC-3").await;
    assert_eq!(l.state, RequestState::Cancelled);
    assert_eq!(
        history(&l),
        vec![
            RequestState::Received,
            RequestState::Planned,
            RequestState::InProgress,
            RequestState::Cancelled
        ]
    );
}

#[tokio::test]
async fn an_extension_moves_the_deadline_past_the_original_within_the_law_and_is_audited() {
    let e = env(5).await;
    send_intake(&e, &request(&e, "LC-4", "export", "bob")).await;
    let original = lifecycle(&e, "LC-4").await.deadline;
    let ext = json!({"type": "extend", "version": 1, "requestId": "LC-4", "days": 20,
                     "reason": "the request covers twelve workspaces"});
    let out = send_intake(&e, &ext).await;
    assert!(
        matches!(
            out,
            IntakeOutcome::Control {
                outcome: ControlOutcome::Applied { changed: true, .. },
                ..
            }
        ),
        "{out:?}"
    );
    // Redelivered: not extended twice.
    send_intake(&e, &ext).await;
    let l = lifecycle(&e, "LC-4").await;
    assert_eq!(l.original_deadline, original);
    assert_eq!(l.deadline, original + Duration::days(20));
    assert_eq!(l.extensions.len(), 1);
    let msgs: Vec<Value> = lifecycle_messages(&e, "LC-4")
        .into_iter()
        .filter(|m| m["event"] == "deadline_extended")
        .collect();
    assert_eq!(msgs.len(), 1);
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert_eq!(msgs[0]["deadline"], fmt(original + Duration::days(20)));
    assert_eq!(msgs[0]["previousDeadline"], fmt(original));
    assert_eq!(msgs[0]["reason"], "the request covers twelve workspaces");
    let audit = e
        .store
        .list_all("dsrstate", "dsr-audit", "lifecycle/LC-4/")
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    let (bytes, _) = e
        .store
        .read_small(&e.svc.state().blob("dsr-audit", audit[0].name.clone()))
        .await
        .unwrap();
    let a: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(a["control"], "extend");
    assert_eq!(a["detail"]["days"], 20);
    // Beyond two further months: refused with the limit, nothing changes.
    let too_far = json!({"type": "extend", "version": 1, "requestId": "LC-4", "days": 45,
                         "reason": "still more"});
    let out = send_intake(&e, &too_far).await;
    assert_eq!(control_rejected(&out), Some("extension_beyond_legal_limit"));
    let rejected: Vec<Value> = lifecycle_messages(&e, "LC-4")
        .into_iter()
        .filter(|m| m["event"] == "control_rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("two further months"),
        "{rejected:?}"
    );
    assert_eq!(lifecycle(&e, "LC-4").await.deadline, l.deadline);
    // The export still finishes; its manifest carries the deadline in force.
    drive(&e).await;
    assert_eq!(lifecycle(&e, "LC-4").await.state, RequestState::Completed);
    let r = report(&e, "LC-4").await;
    assert_eq!(r.deadline, original + Duration::days(20));
    assert!(r.within_deadline);
}

#[tokio::test]
async fn bad_control_messages_are_rejected_with_a_reason_and_kept() {
    let e = env(5).await;
    send_intake(&e, &request(&e, "LC-5", "export", "carol")).await;
    let cases = [
        (
            json!({"type": "cancel", "requestId": "LC-5"}),
            "invalid_control",
        ),
        (
            json!({"type": "cancel", "version": 2, "requestId": "LC-5"}),
            "unsupported_version",
        ),
        (json!({"type": "cancel", "version": 1}), "invalid_control"),
        (
            json!({"type": "cancel", "version": 1, "requestId": "../x"}),
            "invalid_control",
        ),
        (
            json!({"type": "cancel", "version": 1, "requestId": "LC-5", "reasn": "typo"}),
            "invalid_control",
        ),
        (
            json!({"type": "cancel", "version": 1, "requestId": "LC-5", "reason": 7}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": 10}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": "ten", "reason": "x"}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": 0, "reason": "x"}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": -3, "reason": "x"}),
            "invalid_control",
        ),
    ];
    for (body, code) in &cases {
        let out = send_intake(&e, body).await;
        assert_eq!(control_rejected(&out), Some(*code), "{body}");
        // Kept for audit, exactly as received.
        let sha = azureml_dsr::domain::ids::sha256_hex(body.to_string().as_bytes());
        let archived = e
            .store
            .list_all("dsrstate", "dsr-intake-archive", "")
            .await
            .unwrap();
        assert!(archived
            .iter()
            .any(|b| b.name.ends_with(&format!("{sha}.bin"))));
        assert!(e
            .store
            .read_small(
                &e.svc
                    .state()
                    .blob("dsr-audit", format!("control-rejected/{sha}.json"))
            )
            .await
            .is_ok());
    }
    let rejections: Vec<Value> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
        .filter(|m| m["event"] == "control_rejected")
        .collect();
    assert_eq!(rejections.len(), cases.len());
    for r in &rejections {
        assert!(r["reason"].as_str().is_some_and(|s| s.len() > 10), "{r}");
        assert!(r["control"].is_string(), "{r}");
    }
    // None of them touched the request.
    let l = lifecycle(&e, "LC-5").await;
    assert_eq!(l.state, RequestState::Planned);
    assert!(l.cancel.is_none() && l.extensions.is_empty());
    // A finished request cannot be cancelled.
    drive(&e).await;
    let out = send_intake(
        &e,
        &json!({"type": "cancel", "version": 1, "requestId": "LC-5"}),
    )
    .await;
    assert_eq!(control_rejected(&out), Some("not_cancellable"));
    assert_eq!(lifecycle(&e, "LC-5").await.state, RequestState::Completed);
}

fn timer() -> azureml_dsr::protocol::timer::TimerInfo {
    azureml_dsr::protocol::timer::TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: false,
    }
}

#[tokio::test]
async fn the_timer_warns_before_the_deadline_and_when_it_is_missed_once_each() {
    let e = env(5).await;
    let now = OffsetDateTime::now_utc();
    let received = now - Duration::days(26);
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // Open (planned, never driven): due within 7 days.
    let mut open = request(&e, "LC-6", "export", "bob");
    open["receivedAt"] = rfc(received).into();
    send_intake(&e, &open).await;
    // Finished: never warned about.
    let mut done = request(&e, "LC-7", "export", "bob");
    done["receivedAt"] = rfc(received).into();
    send_intake(&e, &done).await;
    while let Some(m) = e.bus.pop() {
        // Only LC-7's work is delivered: LC-6 stays open.
        let is_lc6 = serde_json::from_slice::<Value>(&m.body)
            .ok()
            .is_some_and(|v| v["requestId"] == "LC-6");
        if !is_lc6 {
            deliver(&e.svc, &m).await;
        }
    }
    assert_eq!(lifecycle(&e, "LC-7").await.state, RequestState::Completed);
    let deadline = lifecycle(&e, "LC-6").await.deadline;
    assert!(deadline > now && deadline - now < Duration::days(7));

    let attempts = |kind: &str| {
        e.rec
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.queue == queues::RESULTS)
            .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
            .filter(|v| v["event"] == kind)
            .map(|v| v["requestId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let sweep = |at: OffsetDateTime| {
        let svc = e.svc.clone();
        async move {
            azureml_dsr::functions::retention::run(&svc, &timer(), at)
                .await
                .unwrap()
        }
    };
    let s = sweep(now).await;
    assert_eq!(s.deadline_warnings.len(), 1);
    sweep(now + Duration::hours(1)).await;
    assert_eq!(attempts("deadline_approaching"), vec!["LC-6"]);
    assert!(attempts("deadline_missed").is_empty());
    let late = deadline + Duration::hours(1);
    sweep(late).await;
    sweep(late + Duration::days(1)).await;
    assert_eq!(attempts("deadline_missed"), vec!["LC-6"]);
    assert_eq!(attempts("deadline_approaching"), vec!["LC-6"]);
    let l = lifecycle(&e, "LC-6").await;
    assert_eq!(l.warnings.len(), 2);
    // The warning is in the request's trace.
    let w = e
        .bus
        .sent()
        .into_iter()
        .find(|m| {
            serde_json::from_slice::<Value>(&m.body).is_ok_and(|v| v["event"] == "deadline_missed")
        })
        .unwrap();
    let tp = w.application_properties[DIAGNOSTIC_ID].as_str().unwrap();
    assert_eq!(TraceContext::parse(tp).unwrap().trace_id, l.trace_id);
}

fn repo_file(rel: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// The documented examples are what the service accepts and sends: each control example (in
/// `examples/` and in its schema) is carried out, and each lifecycle-message example reads as
/// the message type the service sends.
#[tokio::test]
async fn the_documented_examples_are_accepted_and_match_the_messages_sent() {
    let e = env(5).await;
    let mut examples = vec![
        repo_file("examples/control-extend.json"),
        repo_file("examples/control-cancel.json"),
    ];
    for schema in [
        "schemas/dsr-control-extend.schema.json",
        "schemas/dsr-control-cancel.schema.json",
    ] {
        examples.extend(repo_file(schema)["examples"].as_array().unwrap().clone());
    }
    for (i, mut ex) in examples.into_iter().enumerate() {
        let id = format!("LC-EX-{i}");
        send_intake(&e, &request(&e, &id, "export", "alice")).await;
        ex["requestId"] = id.clone().into();
        let out = send_intake(&e, &ex).await;
        assert!(
            matches!(
                out,
                IntakeOutcome::Control {
                    outcome: ControlOutcome::Applied { changed: true, .. },
                    ..
                }
            ),
            "{ex}: {out:?}"
        );
    }
    let schema = repo_file("schemas/dsr-lifecycle-message.schema.json");
    let events: Vec<&str> = schema["properties"]["event"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for ex in schema["examples"].as_array().unwrap() {
        let m: azureml_dsr::functions::lifecycle::LifecycleMessage =
            serde_json::from_value(ex.clone()).unwrap_or_else(|err| panic!("{ex}: {err}"));
        assert!(events.contains(&m.event.as_str()));
    }
    // Every state the schema lists is one the service has, and the other way round.
    let states: Vec<String> = schema["$defs"]["state"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let ours: Vec<String> = RequestState::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    assert_eq!(states, ours);
    // And every message this test's requests produced has a documented event.
    for m in e.bus.sent().iter().filter(|m| m.queue == queues::RESULTS) {
        if azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body) {
            let v: Value = serde_json::from_slice(&m.body).unwrap();
            assert!(events.contains(&v["event"].as_str().unwrap()), "{v}");
            assert_eq!(m.application_properties["DsrMessage"], "lifecycle");
        }
    }
}

/// A request refused at intake is `rejected` in its lifecycle (with the reason); sent again,
/// corrected, under the same id it starts over.
#[tokio::test]
async fn a_rejected_request_is_recorded_and_may_be_sent_again_corrected() {
    let e = env(5).await;
    let mut bad = request(&e, "LC-8", "export", "bob");
    bad["scope"]["workspaces"] = json!([
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/not-in-scope"
    ]);
    let out = send_intake(&e, &bad).await;
    assert!(matches!(out, IntakeOutcome::Rejected { .. }), "{out:?}");
    let l = lifecycle(&e, "LC-8").await;
    use RequestState::*;
    assert_eq!(history(&l), vec![Received, Rejected]);
    assert!(l.history[1]
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("not among the workspaces")));
    assert_eq!(announced_states(&e, "LC-8"), vec!["received", "rejected"]);
    send_intake(&e, &request(&e, "LC-8", "export", "bob")).await;
    drive(&e).await;
    let l = lifecycle(&e, "LC-8").await;
    assert_eq!(
        history(&l),
        vec![Received, Rejected, Received, Planned, InProgress, Completed]
    );
    assert_eq!(
        announced_states(&e, "LC-8"),
        vec![
            "received",
            "rejected",
            "received",
            "planned",
            "in_progress",
            "completed"
        ]
    );
}

/// A rejected request's lifecycle (it never gets a report, so it is not removed with a finished
/// request's state) goes after the state retention period; an open request's stays.
#[tokio::test]
async fn a_rejected_requests_lifecycle_expires_with_the_state_retention_period() {
    let e = env(5).await;
    let mut bad = request(&e, "LC-9", "export", "alice");
    bad["subject"] = json!({"upn": "nobody@contoso.com"});
    send_intake(&e, &bad).await;
    send_intake(&e, &request(&e, "LC-10", "export", "bob")).await;
    assert_eq!(lifecycle(&e, "LC-9").await.state, RequestState::Rejected);
    let later =
        OffsetDateTime::now_utc() + Duration::days(e.svc.settings.state_retention_days as i64 + 1);
    let out = azureml_dsr::functions::retention::run(&e.svc, &timer(), later)
        .await
        .unwrap();
    assert_eq!(out.expired_state.rejected_lifecycles, 1, "{out:?}");
    let state = e.svc.state();
    let gone = azureml_dsr::functions::lifecycle::load(&state, &RequestId::parse("LC-9").unwrap())
        .await
        .unwrap();
    assert!(gone.is_none());
    assert_eq!(lifecycle(&e, "LC-10").await.state, RequestState::Planned);
}
