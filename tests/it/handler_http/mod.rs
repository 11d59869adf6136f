//! The custom handler over real HTTP on a random port, with the payload shapes the Functions
//! host sends (tests/fixtures/functions-host, sources in its README) and with garbage.

use std::collections::BTreeMap;
use std::sync::Arc;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::app::App;
use azureml_dsr::functions::Settings;
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/functions-host"
);

struct Server {
    base: String,
    bus: Arc<MemoryBus>,
    _dir: tempfile::TempDir,
}

async fn spawn() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let bus = Arc::new(MemoryBus::new());
    let svc = local_services(
        &paths,
        local_store(&paths),
        bus.clone(),
        Settings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let invoker = azureml_dsr::app::invoker(App::with_services(svc));
    tokio::spawn(azureml_dsr::startup::serve(
        listener,
        invoker,
        std::future::pending(),
    ));
    Server {
        base,
        bus,
        _dir: dir,
    }
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
}

async fn post(
    s: &Server,
    function: &str,
    body: impl Into<reqwest::Body>,
    content_type: &str,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/{function}", s.base))
        .header("content-type", content_type)
        .header(
            "x-azure-functions-invocationid",
            "00000000-0000-0000-0000-0000000000aa",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{function}: content-type {ct}"
    );
    (status, r.json().await.unwrap())
}

fn assert_host_response(v: &Value) {
    assert!(v.get("Outputs").is_some_and(Value::is_object), "{v}");
    assert!(v.get("Logs").is_some_and(Value::is_array), "{v}");
    assert!(v.get("ReturnValue").is_some(), "{v}");
}

mod as_deployed;
mod host_protocol;
mod hostile;
