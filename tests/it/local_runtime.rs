//! End-to-end tests of the local runtime: `LocalQueue` + `Dispatcher` against a tiny in-test
//! custom handler that records every request it receives, so both the Service Bus semantics
//! (redelivery, dead-lettering, duplicates, scheduling, locks, durability, concurrency) and the
//! host's wire encoding are checked with exact counts.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use azureml_dsr::adapters::local::sqlite_queue::{
    LocalQueue, QueueCounts, TimerStatus, MAX_DELIVERY_COUNT_EXCEEDED,
};
use azureml_dsr::ports::bus::{OutMessage, SendOutcome};
use azureml_dsr::runtime::dispatcher::{event_grid_queue, Dispatcher, DispatcherOptions};
use serde_json::{json, Value};
use time::OffsetDateTime;

type Behaviour = Arc<dyn Fn(&str, &Value, usize) -> (u16, Duration) + Send + Sync>;

#[derive(Debug, Clone)]
struct Recorded {
    function: String,
    headers: HeaderMap,
    body: Value,
    at: OffsetDateTime,
}

#[derive(Clone)]
struct Handler {
    calls: Arc<Mutex<Vec<Recorded>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    behaviour: Behaviour,
    base_url: String,
}

impl Handler {
    async fn start(
        behaviour: impl Fn(&str, &Value, usize) -> (u16, Duration) + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let h = Handler {
            calls: Default::default(),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            behaviour: Arc::new(behaviour),
            base_url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/", get(|| async { "ready" }))
            .route("/{function}", post(invoke))
            .with_state(h.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        h
    }

    fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap().clone()
    }
}

async fn invoke(
    State(h): State<Handler>,
    UrlPath(function): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let now = h.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    h.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let n = {
        let mut calls = h.calls.lock().unwrap();
        let n = calls.iter().filter(|c| c.function == function).count();
        calls.push(Recorded {
            function: function.clone(),
            headers,
            body: body.clone(),
            at: OffsetDateTime::now_utc(),
        });
        n
    };
    let (status, delay) = (h.behaviour)(&function, &body, n);
    tokio::time::sleep(delay).await;
    h.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({ "Outputs": {}, "Logs": [], "ReturnValue": null })),
    )
}

/// Write host.json and functions/<name>/function.json into a temp app root.
fn app(root: &Path, max_concurrent_calls: usize, functions: &[(&str, Value)]) {
    let host = json!({
        "version": "2.0",
        "customHandler": { "description": { "defaultExecutablePath": "azureml-dsr", "arguments": ["handler"] } },
        "functionTimeout": "00:00:30",
        "extensions": { "serviceBus": { "autoCompleteMessages": true, "maxConcurrentCalls": max_concurrent_calls } }
    });
    std::fs::write(root.join("host.json"), host.to_string()).unwrap();
    for (name, trigger) in functions {
        let dir = root.join("functions").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("function.json"),
            json!({ "bindings": [trigger] }).to_string(),
        )
        .unwrap();
    }
}

fn sb(queue: &str) -> Value {
    json!({"type": "serviceBusTrigger", "direction": "in", "name": "message", "queueName": queue, "connection": "ServiceBusConnection"})
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    queue: LocalQueue,
}

fn env(max_concurrent_calls: usize, functions: &[(&str, Value)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    app(&root, max_concurrent_calls, functions);
    let queue = LocalQueue::open(root.join("queue.sqlite")).unwrap();
    Env {
        _dir: dir,
        root,
        queue,
    }
}

fn fast_options() -> DispatcherOptions {
    DispatcherOptions {
        poll_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

fn msg(queue: &str, id: &str, body: Value) -> OutMessage {
    OutMessage::json(queue, id, &body)
}

fn md<'a>(c: &'a Recorded, key: &str) -> &'a Value {
    &c.body["Metadata"][key]
}

/// Decode a double-encoded Service Bus Data value back to the body object.
fn decode_data(v: &Value) -> Value {
    let once: String = serde_json::from_value(v.clone()).expect("Data is a JSON string");
    let inner: String = serde_json::from_str(&once).expect("Data is double-encoded");
    serde_json::from_str(&inner).expect("body is JSON")
}

#[tokio::test]
async fn redelivery_500_500_200_and_host_encoding() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, n| (if n < 2 { 500 } else { 200 }, Duration::ZERO)).await;
    let mut m = msg(
        "dsr-intake",
        "req-1",
        json!({"requestId": "r1", "kind": "delete"}),
    )
    .correlated("corr-1");
    m.application_properties
        .insert("tenant".into(), json!("t1"));
    assert_eq!(e.queue.send_blocking(&m).unwrap(), SendOutcome::Enqueued);

    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();

    let calls = h.calls();
    let counts: Vec<&Value> = calls.iter().map(|c| md(c, "DeliveryCount")).collect();
    assert_eq!(counts, [&json!("1"), &json!("2"), &json!("3")]);
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );

    let c = &calls[0];
    assert_eq!(c.function, "dsr-intake");
    assert_eq!(
        decode_data(&c.body["Data"]["message"]),
        json!({"requestId": "r1", "kind": "delete"})
    );
    assert_eq!(md(c, "MessageId"), &json!("\"req-1\""));
    assert_eq!(md(c, "CorrelationId"), &json!("\"corr-1\""));
    assert_eq!(md(c, "ContentType"), &json!("\"application/json\""));
    assert_eq!(md(c, "ApplicationProperties"), &json!({"tenant": "t1"}));
    assert_eq!(md(c, "UserProperties"), &json!({"tenant": "t1"}));
    assert_eq!(md(c, "MessageActions"), &json!({}));
    assert_eq!(md(c, "ExpiresAtUtc"), &json!("9999-12-31T23:59:59"));
    // Body properties merged into Metadata as JSON-encoded strings (the host's quirk).
    assert_eq!(md(c, "requestId"), &json!("\"r1\""));
    let seq: i64 = md(c, "SequenceNumber").as_str().unwrap().parse().unwrap();
    assert!(seq > 0);
    let enq = md(c, "EnqueuedTimeUtc").as_str().unwrap();
    assert_eq!(enq.len(), 19, "naive seconds-precision datetime: {enq}");
    assert_eq!(
        md(c, "EnqueuedTime").as_str().unwrap(),
        format!("{enq}+00:00")
    );
    assert_eq!(c.body["Metadata"]["sys"]["MethodName"], json!("dsr-intake"));
    assert!(c.body["Metadata"]["sys"]["UtcNow"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // A fresh lock token per delivery.
    assert_ne!(md(&calls[0], "LockToken"), md(&calls[1], "LockToken"));
    assert!(c.headers["x-azure-functions-invocationid"]
        .to_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .is_ok());
    assert!(c.headers.contains_key("x-azure-functions-hostversion"));
    assert!(c.headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("Azure-Functions-Host/4"));
    assert_eq!(c.headers["content-type"], "application/json");
}

#[tokio::test]
async fn dead_letter_after_max_delivery_count() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (500, Duration::ZERO)).await;
    e.queue
        .send_blocking(&msg("dsr-intake", "poison", json!({"x": 1})))
        .unwrap();
    let opts = DispatcherOptions {
        max_delivery_count: 3,
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h.calls().len(), 3);
    let dl = e.queue.dead_letters("dsr-intake").unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some(MAX_DELIVERY_COUNT_EXCEEDED)
    );
    assert_eq!(dl[0].delivery_count, 3);
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            dead_lettered: 1,
            ..Default::default()
        }
    );

    // Replay after the "fix": delivered once more, with DeliveryCount 1.
    e.queue
        .resubmit_dead_letter("dsr-intake", dl[0].sequence_number)
        .unwrap();
    let h2 = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h2.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h2.calls().len(), 1);
    assert_eq!(md(&h2.calls()[0], "DeliveryCount"), &json!("1"));
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn unreachable_handler_abandons_until_dead_letter() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    // Bind then drop: nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    e.queue
        .send_blocking(&msg("dsr-intake", "m", json!({})))
        .unwrap();
    let opts = DispatcherOptions {
        max_delivery_count: 2,
        ..fast_options()
    };
    let d = Dispatcher::new(
        &e.root,
        e.queue.clone(),
        format!("http://127.0.0.1:{port}"),
        opts,
    )
    .unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            dead_lettered: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn duplicate_message_id_is_delivered_once() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    assert_eq!(
        e.queue
            .send_blocking(&msg("dsr-intake", "same", json!({"a": 1})))
            .unwrap(),
        SendOutcome::Enqueued
    );
    assert_eq!(
        e.queue
            .send_blocking(&msg("dsr-intake", "same", json!({"a": 2})))
            .unwrap(),
        SendOutcome::Duplicate
    );
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        decode_data(&calls[0].body["Data"]["message"]),
        json!({"a": 1})
    );
}

#[tokio::test]
async fn scheduled_message_is_not_delivered_before_its_time() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let at = OffsetDateTime::now_utc() + Duration::from_millis(800);
    e.queue
        .send_blocking(&msg("dsr-intake", "later", json!({})).scheduled_at(at))
        .unwrap();
    e.queue
        .send_blocking(&msg("dsr-intake", "now", json!({})))
        .unwrap();
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h.calls().len(), 1);
    assert_eq!(md(&h.calls()[0], "MessageId"), &json!("\"now\""));
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            scheduled: 1,
            completed: 1,
            ..Default::default()
        }
    );

    tokio::time::sleep(Duration::from_millis(900)).await;
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(md(&calls[1], "MessageId"), &json!("\"later\""));
    assert!(calls[1].at >= at);
}

#[tokio::test]
async fn expired_lock_is_redelivered_while_the_first_invocation_hangs() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, n| {
        (
            200,
            if n == 0 {
                Duration::from_millis(1200)
            } else {
                Duration::ZERO
            },
        )
    })
    .await;
    e.queue
        .send_blocking(&msg("dsr-intake", "slow", json!({})))
        .unwrap();
    let opts = DispatcherOptions {
        lock_duration: Duration::from_millis(300),
        max_auto_lock_renewal: Duration::ZERO,
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    let calls = h.calls();
    let counts: Vec<&Value> = calls.iter().map(|c| md(c, "DeliveryCount")).collect();
    assert_eq!(counts, [&json!("1"), &json!("2")]);
    // The first invocation's late completion hit a lost lock; only the redelivery completed.
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn lock_renewal_prevents_redelivery_of_a_slow_invocation() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (200, Duration::from_millis(1000))).await;
    e.queue
        .send_blocking(&msg("dsr-intake", "slow", json!({})))
        .unwrap();
    let opts = DispatcherOptions {
        lock_duration: Duration::from_millis(300),
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h.calls().len(), 1);
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn in_flight_invocations_never_exceed_max_concurrent_calls() {
    let e = env(
        3,
        &[
            ("slice-data", sb("dsr-slice-data")),
            ("slice-jobs", sb("dsr-slice-jobs")),
        ],
    );
    let h = Handler::start(|_, _, _| (200, Duration::from_millis(60))).await;
    let batch: Vec<_> = (0..20)
        .map(|i| msg("dsr-slice-data", &format!("m{i}"), json!({"i": i})))
        .collect();
    e.queue.send_many_blocking(&batch).unwrap();
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.calls().len(), 20);
    assert_eq!(h.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(
        e.queue.counts("dsr-slice-data").unwrap(),
        QueueCounts {
            completed: 20,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn event_grid_event_is_delivered_and_retried_with_backoff() {
    let e = env(
        16,
        &[(
            "workspace-deleted",
            json!({"type": "eventGridTrigger", "direction": "in", "name": "event"}),
        )],
    );
    let h = Handler::start(|_, _, n| (if n == 0 { 500 } else { 200 }, Duration::ZERO)).await;
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/functions-host/msdocs-eventgrid-subscription-resource-delete-success.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let event = if let Value::Array(a) = &fixture {
        a[0].clone()
    } else {
        fixture.clone()
    };
    let q = event_grid_queue("workspace-deleted");
    let id = event["id"].as_str().unwrap_or("evt-1").to_string();
    e.queue.send_blocking(&msg(&q, &id, event.clone())).unwrap();

    let opts = DispatcherOptions {
        event_grid_retry_delays: vec![Duration::from_millis(300)],
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    let queue = e.queue.clone();
    let q2 = q.clone();
    let done = async move {
        while queue.counts(&q2).unwrap().completed == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), d.run(done))
        .await
        .unwrap()
        .unwrap();

    let calls = h.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body["Data"]["event"], event);
    assert_eq!(calls[0].body["Metadata"]["data"], event["data"]);
    assert_eq!(
        calls[0].body["Metadata"]["sys"]["MethodName"],
        json!("workspace-deleted")
    );
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(300));
    assert_eq!(
        e.queue.counts(&q).unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn timer_fires_on_schedule_and_persists_its_status() {
    let timer = json!({"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "%TICK%", "useMonitor": true});
    let e = env(16, &[("retention-sweep", timer)]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let mut opts = fast_options();
    opts.settings.insert("TICK".into(), "* * * * * *".into());
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.run(tokio::time::sleep(Duration::from_millis(2300)))
        .await
        .unwrap();

    let calls = h.calls();
    assert!(
        (2..=3).contains(&calls.len()),
        "{} timer invocations",
        calls.len()
    );
    let t0 = &calls[0].body["Data"]["timer"];
    assert_eq!(t0["Schedule"], json!({"AdjustForDST": true}));
    assert_eq!(t0["IsPastDue"], json!(false));
    assert_eq!(
        t0["ScheduleStatus"]["Last"],
        json!("0001-01-01T00:00:00+00:00")
    );
    assert_eq!(
        calls[1].body["Data"]["timer"]["ScheduleStatus"]["Last"],
        t0["ScheduleStatus"]["Next"]
    );
    assert_eq!(
        calls[0].body["Metadata"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["sys"]
    );
    let status = e.queue.timer_status("retention-sweep").unwrap().unwrap();
    assert!(status.next > status.last);
}

#[tokio::test]
async fn missed_occurrence_runs_at_startup_as_past_due() {
    let timer = json!({"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 0 * * * *", "useMonitor": true});
    let e = env(16, &[("retention-sweep", timer)]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let now = OffsetDateTime::now_utc();
    let missed = TimerStatus {
        last: now - Duration::from_secs(7200),
        next: now - Duration::from_secs(3600),
        last_updated: now - Duration::from_secs(7200),
    };
    e.queue
        .set_timer_status("retention-sweep", &missed)
        .unwrap();
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.run(tokio::time::sleep(Duration::from_millis(500)))
        .await
        .unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    let t = &calls[0].body["Data"]["timer"];
    assert_eq!(t["IsPastDue"], json!(true));
    assert!(t["ScheduleStatus"]["Next"]
        .as_str()
        .unwrap()
        .ends_with("+00:00"));
    let status = e.queue.timer_status("retention-sweep").unwrap().unwrap();
    assert_eq!(status.last.unix_timestamp(), missed.next.unix_timestamp());
    assert!(status.next > now);
}

const CHILD_ENV: &str = "DSR_LOCAL_RUNTIME_CHILD_QUEUE";

/// Not a test on its own: the child process of `kill_9_mid_delivery_loses_nothing`. It enqueues
/// 200 messages, locks 50, announces it, and waits to be killed.
#[test]
fn child_enqueue_and_lock() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let q = LocalQueue::open(&path).unwrap();
    let batch: Vec<_> = (0..200)
        .map(|i| msg("dsr-intake", &format!("m{i:03}"), json!({"i": i})))
        .collect();
    q.send_many_blocking(&batch).unwrap();
    let opts = azureml_dsr::adapters::local::sqlite_queue::ReceiveOptions {
        lock_duration: Duration::from_millis(300),
        max_delivery_count: 10,
    };
    for _ in 0..50 {
        q.receive_with("dsr-intake", opts).unwrap().unwrap();
    }
    // libtest prints "test <name> ... " on the same line, so the parent matches the line end.
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(60));
}

#[tokio::test]
async fn kill_9_mid_delivery_loses_nothing() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let path = e.queue.path().to_path_buf();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            // Its name in the one test binary (`tests/it/main.rs`: module `local_runtime`).
            "local_runtime::child_enqueue_and_lock",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.trim_end().ends_with("LOCKED"))
    });
    assert!(tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .unwrap()
        .unwrap());
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no settlement.
    child.wait().unwrap();

    tokio::time::sleep(Duration::from_millis(350)).await; // let the child's locks expire
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let queue = LocalQueue::open(&path).unwrap();
    let d = Dispatcher::new(&e.root, queue.clone(), &h.base_url, fast_options()).unwrap();
    let started = Instant::now();
    d.drain_until_idle(Duration::from_secs(60)).await.unwrap();
    let calls = h.calls();
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for c in &calls {
        let id = md(c, "MessageId").as_str().unwrap().to_string();
        assert!(by_id
            .insert(id, md(c, "DeliveryCount").as_str().unwrap().to_string())
            .is_none());
    }
    assert_eq!(calls.len(), 200, "drained in {:?}", started.elapsed());
    assert_eq!(by_id.values().filter(|c| *c == "2").count(), 50);
    assert_eq!(by_id.values().filter(|c| *c == "1").count(), 150);
    assert_eq!(
        queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 200,
            ..Default::default()
        }
    );
}
