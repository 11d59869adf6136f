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

mod child;
mod delivery;
mod locks;
mod triggers;
