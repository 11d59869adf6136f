//! Handler scenario: intake invocations through the real axum router against a bare axum echo
//! and the custom-handler layer alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use azureml_dsr::adapters::local::fs_blob::FsBlobStore;
use azureml_dsr::adapters::local::memory_blob::MemoryBlobStore;
use azureml_dsr::ports::blob::BlobStore;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::discovery::*;
use crate::{median, percentile, Opts, Row};

pub(crate) fn intake_envelope(i: usize, ws: &str, upn: &str) -> serde_json::Value {
    let id = format!("BENCH-{}-{i}", std::process::id());
    let req = json!({"schemaVersion": "1.0", "requestId": id, "type": "export",
        "subject": {"upn": upn}, "scope": {"workspaces": [ws]}});
    let text = req.to_string();
    let mut md = serde_json::Map::new();
    md.insert("DeliveryCount".into(), json!("1"));
    md.insert("MessageId".into(), json!(json!(id).to_string()));
    md.insert("EnqueuedTimeUtc".into(), json!("2026-11-28T12:00:00"));
    md.insert("EnqueuedTime".into(), json!("2026-11-28T12:00:00+00:00"));
    md.insert("SequenceNumber".into(), json!(i.to_string()));
    md.insert("ContentType".into(), json!("\"application/json\""));
    // Host quirk: the body's top-level scalars are merged into Metadata.
    for (k, v) in req.as_object().expect("object") {
        if !v.is_array() && !v.is_object() {
            md.insert(k.clone(), json!(v.to_string()));
        }
    }
    md.insert(
        "sys".into(),
        json!({"MethodName": "dsr-intake", "UtcNow": "2026-11-28T12:00:00.1234567Z",
               "RandGuid": uuid::Uuid::new_v4().to_string()}),
    );
    json!({"Data": {"message": json!(text).to_string()}, "Metadata": md})
}

/// Invocations per second and sorted latencies (ms).
pub(crate) type LoadResult = (f64, Vec<f64>);

pub(crate) async fn load(
    url: &str,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let client = reqwest::Client::new();
    let n = bodies.len();
    let t = Instant::now();
    let mut lat: Vec<f64> = futures::stream::iter(bodies)
        .map(|b| {
            let client = &client;
            async move {
                let t = Instant::now();
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await?;
                let status = r.status();
                let body = r.bytes().await?;
                ensure!(
                    status.is_success(),
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                );
                Ok::<_, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((rate, lat))
}

/// Spawn the real handler (router + App) over `store` on a random port, seeded with a few users.
pub(crate) async fn spawn_handler(
    store: Arc<dyn BlobStore>,
    dir: &Path,
) -> anyhow::Result<(std::net::SocketAddr, azureml_dsr::seed::SeedTruth)> {
    let opts = azureml_dsr::seed::SeedOptions {
        users: 3,
        runs_per_user: 2,
        files_per_run: 1,
        ..Default::default()
    };
    let truth = azureml_dsr::seed::seed(&store, &opts, time::OffsetDateTime::now_utc()).await?;
    std::fs::write(
        dir.join("directory.json"),
        serde_json::to_vec(&truth.directory())?,
    )?;
    let svc = services(store, dir);
    // Intake acts only on configured workspaces.
    svc.state().put_scope(&truth.workspaces).await?;
    let app = azureml_dsr::app::App::with_services(svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(azureml_dsr::startup::serve(
        listener,
        azureml_dsr::app::invoker(app),
        std::future::pending(),
    ));
    Ok((addr, truth))
}

/// The custom-handler layer alone: the product's router and envelope decoding (host envelope,
/// Service Bus trigger, metadata) around a function that does nothing with the message.
pub(crate) struct DecodeOnly;

#[async_trait::async_trait]
impl azureml_dsr::startup::Invoker for DecodeOnly {
    fn functions(&self) -> Vec<String> {
        azureml_dsr::app::all_functions()
    }
    async fn invoke(
        &self,
        _function: &str,
        _ctx: azureml_dsr::startup::InvocationContext,
        req: azureml_dsr::protocol::envelope::InvocationRequest,
    ) -> Result<
        azureml_dsr::protocol::envelope::InvocationResponse,
        azureml_dsr::startup::InvokeError,
    > {
        use azureml_dsr::protocol::servicebus::{BodyEncoding, ServiceBusMessage};
        let m = ServiceBusMessage::from_envelope(&req, "message", BodyEncoding::Text)
            .map_err(|e| azureml_dsr::startup::InvokeError::BadRequest(e.0))?;
        Ok(
            azureml_dsr::protocol::envelope::InvocationResponse::with_logs(vec![format!(
                "{} bytes",
                m.body.len()
            )]),
        )
    }
}

pub(crate) async fn bench_handler(o: &Opts) -> anyhow::Result<Vec<Row>> {
    // The real handler twice: with the embedded default store (files, here on tmpfs) and with
    // the in-memory store, which leaves the handler's own work (envelope decoding, validation,
    // subject resolution, planning, fan-out, JSON) — the overhead the echo is the floor for.
    let shm = Path::new("/dev/shm");
    let tmpdir = || {
        if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
    };
    let (fs_dir, mem_dir) = (tmpdir()?, tmpdir()?);
    let fs_store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(fs_dir.path().join("store")));
    let (fs_addr, truth) = spawn_handler(fs_store, fs_dir.path()).await?;
    let mem_store: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let (mem_addr, mem_truth) = spawn_handler(mem_store, mem_dir.path()).await?;
    ensure!(
        truth.workspaces[0] == mem_truth.workspaces[0]
            && truth.users[0].upn == mem_truth.users[0].upn,
        "both handlers must be seeded alike"
    );

    let layer = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let layer_addr = layer.local_addr()?;
    tokio::spawn(azureml_dsr::startup::serve(
        layer,
        Arc::new(DecodeOnly),
        std::future::pending(),
    ));
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    let echo_app = axum::Router::new().route(
        "/{function}",
        axum::routing::post(|body: Bytes| async move {
            axum::Json(json!({"Outputs": {}, "Logs": [], "ReturnValue": body.len()}))
        }),
    );
    tokio::spawn(async move { axum::serve(echo, echo_app).await });

    let ws = truth.workspaces[0].to_string();
    let upn = truth.users[0].upn.clone();
    let conc = 4;
    let methods = [
        ("files", fs_addr),
        ("memory", mem_addr),
        ("layer", layer_addr),
        ("echo", echo_addr),
    ];
    let mut res: BTreeMap<&str, Vec<LoadResult>> = BTreeMap::new();
    let mut counter = 0usize;
    for rep in 0..o.reps {
        for k in 0..methods.len() {
            let (name, addr) = methods[(k + rep) % methods.len()];
            let bodies: Vec<Vec<u8>> = (0..o.handler_n)
                .map(|_| {
                    counter += 1;
                    serde_json::to_vec(&intake_envelope(counter, &ws, &upn)).expect("json")
                })
                .collect();
            let r = load(&format!("http://{addr}/dsr-intake"), bodies, conc).await?;
            eprintln!(
                "bench: handler rep {rep} {name}: {:.0}/s p50 {:.2} ms",
                r.0,
                percentile(&r.1, 0.5)
            );
            res.entry(name).or_default().push(r);
        }
    }
    let stat =
        |name: &str, f: &dyn Fn(&LoadResult) -> f64| median(res[name].iter().map(f).collect());
    let rate = |r: &LoadResult| r.0;
    let p50 = |r: &LoadResult| percentile(&r.1, 0.5);
    let p99 = |r: &LoadResult| percentile(&r.1, 0.99);
    let mut rows = Vec::new();
    for (name, label) in [
        ("layer", "handler layer only (decode, no-op function)"),
        ("memory", "handler intake, in-memory store"),
        ("files", "handler intake, embedded file store"),
    ] {
        let note = if name == "layer" {
            format!("{} intake POSTs x{conc} in flight through the product's router, host-envelope and Service Bus trigger decoding, function does nothing: the custom-handler overhead; 'ceiling' column = bare axum echo", o.handler_n)
        } else if name == "memory" {
            "same, through the real App: intake validates, resolves the subject, plans and fans out, with the store in memory".to_string()
        } else {
            "same, with the embedded default store (files on tmpfs: archive, plan, fan-out writes)"
                .to_string()
        };
        rows.push(Row {
            scenario: label.into(),
            unit: "invocations/s",
            ours: stat(name, &rate),
            ceiling: Some(stat("echo", &rate)),
            azcopy: None,
            note,
        });
        for (q, f) in [("p50", &p50 as &dyn Fn(&LoadResult) -> f64), ("p99", &p99)] {
            rows.push(Row {
                scenario: format!("{label} {q}"),
                unit: "ms (lower is better)",
                ours: stat(name, f),
                ceiling: Some(stat("echo", f)),
                azcopy: None,
                note: "same runs".into(),
            });
        }
    }
    Ok(rows)
}
