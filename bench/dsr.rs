//! Whole requests through the local runtime, counted: a synthetic subject across W workspaces
//! (the seed module's data: jobs with child runs, outputs, models, data, notebooks, telemetry),
//! an export then a delete through the real handler over HTTP and the durable local queue, on
//! Azurite, with the production ARM adapter against the local ARM server.
//!
//! - Every storage request goes through a counting proxy in front of Azurite, classified by
//!   account (workspace storage, the DSR's state account, and the local stand-ins' own accounts)
//!   and kind (list, read, write, copy, delete, batch — batch sub-requests counted too).
//! - ARM requests are counted at the local ARM server (GET / DELETE / other).
//! - Run history, the bus (one send = one message = one function invocation later), the
//!   directory and telemetry are counted at their ports; function invocations (with how many
//!   ran at once) at the invoker.
//! - The runtime runs in a child process, so its peak RSS is the product's alone.
//!
//! The ceiling: the raw REST client doing the storage work the request needs (Copy Blob + GET
//! of every exported blob, Blob Batch deletes of as many blobs), in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Response, StatusCode};
use azureml_dsr::adapters::counting_ports::{
    CountingBus, CountingDirectory, CountingRunHistory, CountingTelemetry, Tally,
};
use azureml_dsr::app::App;
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::runtime::dispatcher::{Dispatcher, DispatcherOptions};
use azureml_dsr::runtime::host_config::HostConfig;
use azureml_dsr::settings::{Adapters, AppSettings, StorageChoice};
use azureml_dsr::startup::Invoker;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// counting proxy in front of Azurite

#[derive(Default)]
pub struct StorageCounts(
    Mutex<BTreeMap<(String, String), u64>>,
    /// `account/container/blob` of every delete sent (single or in a batch) -> times sent.
    Mutex<BTreeMap<String, u64>>,
);

impl StorageCounts {
    fn add(&self, account: &str, kind: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((account.to_string(), kind.to_string()))
                .or_default() += n;
        }
    }
    fn deleted(&self, account: &str, path: &str) {
        // `/account/container/blob` (path style) or `/container/blob`, without the query.
        let path = path.split('?').next().unwrap_or_default();
        let path = azureml_dsr::adapters::percent_decode(path);
        let rest = path.trim_start_matches('/');
        let rest = rest.strip_prefix(&format!("{account}/")).unwrap_or(rest);
        if let Ok(mut m) = self.1.lock() {
            *m.entry(format!("{account}/{rest}")).or_default() += 1;
        }
    }
    pub fn take_deleted(&self) -> BTreeMap<String, u64> {
        self.1
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
    pub fn take(&self) -> BTreeMap<(String, String), u64> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

pub struct CountProxy {
    pub base_url: String,
    pub counts: Arc<StorageCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    counts: Arc<StorageCounts>,
}

pub async fn start_proxy(upstream: &str) -> anyhow::Result<CountProxy> {
    let counts = Arc::new(StorageCounts::default());
    let st = Arc::new(ProxyState {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        counts: counts.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(proxy).with_state(st);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(CountProxy {
        base_url,
        counts,
        task,
    })
}

/// The billing class of one Blob request (Azure bills a batch's sub-requests one by one).
fn classify(method: &str, query: &str, headers: &HeaderMap) -> &'static str {
    let q = |k: &str| query.split('&').any(|p| p.eq_ignore_ascii_case(k));
    match method {
        "GET" | "HEAD" if q("comp=list") => "list",
        "GET" | "HEAD" => "read",
        "PUT" if headers.contains_key("x-ms-copy-source") => "copy",
        "PUT" => "write",
        "DELETE" => "delete",
        "POST" if q("comp=batch") => "batch",
        _ => "other",
    }
}

async fn proxy(State(s): State<Arc<ProxyState>>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path();
    let account = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let kind = classify(
        parts.method.as_str(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
    );
    // Azurite checks a copy's source with its own HEAD (axios) through the proxy: Azure reads
    // the source inside the one Copy Blob transaction, so that HEAD is not counted.
    let azurite_own = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("axios"));
    if !azurite_own {
        s.counts.add(&account, kind, 1);
    }
    if kind == "batch" {
        // Each sub-request is a line `DELETE /<container>/<blob> HTTP/1.1` after its part headers.
        let text = String::from_utf8_lossy(&body);
        let mut subs = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("DELETE ") {
                subs += 1;
                s.counts
                    .deleted(&account, rest.split(' ').next().unwrap_or_default());
            }
        }
        s.counts.add(&account, "batch_subrequest", subs);
    }
    if kind == "delete" {
        s.counts.deleted(&account, parts.uri.path());
    }
    let url = format!(
        "{}{}",
        s.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut headers = HeaderMap::new();
    for (k, v) in parts.headers.iter() {
        // The Host header is kept: Azurite serves a copy only from a source on the host the
        // copy was sent to (`validateCopySource`), and the source URL names the proxy (every
        // copy through the proxy was answered 404 without it).
        if k != "content-length" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let upstream = match s
        .client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::empty())
                .unwrap_or_default()
        }
    };
    let mut builder = Response::builder().status(upstream.status().as_u16());
    for (k, v) in upstream.headers().iter() {
        if k != "transfer-encoding" && k != "connection" {
            builder = builder.header(k, v);
        }
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    builder.body(Body::from(bytes)).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// ARM server with a request count

pub struct ArmCounts(pub Mutex<BTreeMap<String, u64>>);

pub async fn start_arm(
    store: Arc<dyn azureml_dsr::ports::blob::BlobStore>,
) -> anyhow::Result<(String, Arc<ArmCounts>, tokio::task::JoinHandle<()>)> {
    use azureml_dsr::adapters::local::arm_server::{router, ArmServerOptions};
    let counts = Arc::new(ArmCounts(Mutex::new(BTreeMap::new())));
    let c = counts.clone();
    let app = router(
        store,
        ArmServerOptions {
            // One status poll per delete (the operation is done when first polled).
            lro_polls: 0,
            ..Default::default()
        },
    )
    .layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let c = c.clone();
            async move {
                let what = if req.uri().path().contains("/mfeOperation") {
                    "GET operation poll".to_string()
                } else if req.method() == axum::http::Method::GET && is_collection(req.uri().path())
                {
                    "GET list page".to_string()
                } else {
                    format!("{} other", req.method())
                };
                if let Ok(mut m) = c.0.lock() {
                    *m.entry(what).or_default() += 1;
                }
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, counts, task))
}

/// A collection path (`…/workspaces/<ws>/jobs`, `…/models`, `…/models/<m>/versions`, …): an
/// even number of segments after the workspace's eight.
fn is_collection(path: &str) -> bool {
    let n = path.trim_matches('/').split('/').count();
    n > 8 && (n - 8) % 2 == 1
}

// ---------------------------------------------------------------------------------------------
// the child: the local runtime with counting ports, one request, then peak RSS

struct CountingInvoker {
    inner: Arc<dyn Invoker>,
    tally: Tally,
    running: AtomicUsize,
    peak: AtomicUsize,
    /// Per slice invocation: (function, ms).
    slices: Mutex<Vec<(String, f64)>>,
}

#[async_trait::async_trait]
impl Invoker for CountingInvoker {
    fn functions(&self) -> Vec<String> {
        self.inner.functions()
    }
    async fn invoke(
        &self,
        function: &str,
        ctx: azureml_dsr::startup::InvocationContext,
        req: azureml_dsr::protocol::envelope::InvocationRequest,
    ) -> Result<
        azureml_dsr::protocol::envelope::InvocationResponse,
        azureml_dsr::startup::InvokeError,
    > {
        self.tally.add(&format!("invocation:{function}"), 1);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let t = Instant::now();
        let r = self.inner.invoke(function, ctx, req).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.tally
            .add("invocation_us", t.elapsed().as_micros() as u64);
        if function.starts_with("slice") {
            if let Ok(mut s) = self.slices.lock() {
                s.push((function.to_string(), t.elapsed().as_secs_f64() * 1e3));
            }
        }
        r
    }
}

/// `--child dsr <data_dir> <storage_url> <arm_url> <kind> <upn> <request_id> <workspaces,…>`:
/// prints one JSON line with the counts, the report's counts, wall time and peak RSS.
pub async fn child(args: &[String]) -> anyhow::Result<()> {
    let [data_dir, storage, arm, kind, upn, rid, wss] = args else {
        anyhow::bail!("dsr child: bad arguments");
    };
    let mut app = AppSettings::local(
        PathBuf::from(data_dir),
        StorageChoice::Azurite(storage.clone()),
    );
    // No Retry-After from the local server: poll a delete's operation after 20 ms.
    app.arm_poll = Duration::from_millis(20);
    if let Adapters::Local(l) = &mut app.adapters {
        l.arm_endpoint = Some(url::Url::parse(arm)?);
        l.poll_interval = Duration::from_millis(5);
    }
    let wired = azureml_dsr::wiring::build(&app)?;
    let queue = wired.queue.clone().context("local queue")?;
    let tally = Tally::default();
    let mut svc = wired.services;
    svc.run_history = Arc::new(CountingRunHistory {
        inner: svc.run_history.clone(),
        tally: tally.clone(),
    });
    svc.bus = Arc::new(CountingBus {
        inner: svc.bus.clone(),
        tally: tally.clone(),
    });
    svc.directory = Arc::new(CountingDirectory {
        inner: svc.directory.clone(),
        tally: tally.clone(),
    });
    svc.telemetry = Arc::new(CountingTelemetry {
        inner: svc.telemetry.clone(),
        tally: tally.clone(),
    });
    let state = svc.state();
    let invoker = Arc::new(CountingInvoker {
        inner: azureml_dsr::app::invoker(App::with_services(svc)),
        tally: tally.clone(),
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        slices: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(azureml_dsr::startup::serve(
        listener,
        invoker.clone(),
        std::future::pending(),
    ));
    let options = DispatcherOptions {
        max_delivery_count: app.tunables.max_delivery_count,
        lock_duration: queue.options().lock_duration,
        poll_interval: Duration::from_millis(5),
        ..Default::default()
    };
    let config = HostConfig::embedded(&options.settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dispatcher = Dispatcher::with_config(config, (*queue).clone(), &base_url, options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let workspaces: Vec<&str> = wss.split(',').collect();
    let body = json!({
        "schemaVersion": "1.0", "requestId": rid, "type": kind,
        "subject": {"upn": upn}, "scope": {"workspaces": workspaces}, "dryRun": false,
        "regulation": "gdpr",
        "receivedAt": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
    });
    let t = Instant::now();
    azureml_dsr::cli::requests::enqueue(&queue, serde_json::to_vec(&body)?).await?;
    dispatcher
        .drain_until_idle(Duration::from_secs(3600))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let report = state
        .report(&RequestId::parse(rid).map_err(anyhow::Error::msg)?)
        .await?
        .with_context(|| format!("request {rid} produced no report"))?;
    let slices = invoker.slices.lock().map(|s| s.clone()).unwrap_or_default();
    let mut ms: Vec<f64> = slices.iter().map(|s| s.1).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let busy: f64 = ms.iter().sum::<f64>() / 1e3;
    server.abort();
    println!(
        "{}",
        json!({
            "secs": secs,
            "rss_mb": super::vm_hwm_kb()? as f64 / 1024.0,
            "status": format!("{:?}", report.status),
            "counts": serde_json::to_value(&report.counts)?,
            "calls": tally.snapshot(),
            "peak_concurrent_invocations": invoker.peak.load(Ordering::SeqCst),
            "slice_invocations": ms.len(),
            "slice_ms_p50": ms.get(ms.len() / 2).copied().unwrap_or(0.0),
            "slice_ms_max": ms.last().copied().unwrap_or(0.0),
            "slice_busy_secs": busy,
        })
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the parent: seed, ceiling, run the child for export then delete, print counts vs minimum

pub struct DsrSize {
    pub label: &'static str,
    pub workspaces: usize,
    pub users: usize,
    pub runs_per_user: usize,
    pub files_per_run: usize,
}

pub struct DsrOutcome {
    pub rows: Vec<super::Row>,
    pub tables: String,
}

fn accounts_for(workspaces: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..workspaces).map(|w| format!("mlwstore{w}")).collect();
    for a in [
        "armlocal",
        "telemetrylocal",
        "dsrstate",
        azureml_dsr::adapters::local::run_history::RUN_HISTORY_ACCOUNT,
    ] {
        v.push(a.to_string());
    }
    v
}

pub async fn run(size: &DsrSize) -> anyhow::Result<DsrOutcome> {
    let accounts = accounts_for(size.workspaces);
    let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let az = {
        let refs: Vec<String> = accounts.clone();
        tokio::task::spawn_blocking(move || {
            let r: Vec<&str> = refs.iter().map(String::as_str).collect();
            super::azurite::Azurite::start(&r)
        })
        .await?
    };
    let raw = super::raw::Raw::new(&az.base_url, &refs);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let t = Instant::now();
    let seed_args = azureml_dsr::cli::seed::SeedArgs {
        workspaces: size.workspaces,
        users: size.users,
        runs_per_user: size.runs_per_user,
        files_per_run: size.files_per_run,
        output_bytes: 1024,
        seed: 7,
    };
    let truth = azureml_dsr::cli::seed::seed_into(
        &data,
        &StorageChoice::Azurite(az.base_url.clone()),
        &seed_args,
    )
    .await?;
    let subject = truth.user("alice").context("seeded alice")?.clone();
    let ws_accounts: Vec<String> = truth
        .infos
        .iter()
        .map(|i| i.storage_account.clone())
        .collect();
    let subject_blobs: Vec<(String, String, String)> = truth
        .blobs_of("alice")
        .into_iter()
        .filter_map(|k| {
            let mut p = k.splitn(3, '/');
            Some((
                p.next()?.to_string(),
                p.next()?.to_string(),
                p.next()?.to_string(),
            ))
        })
        .filter(|(a, _, _)| ws_accounts.contains(a))
        .collect();
    let total_blobs = truth
        .blobs
        .keys()
        .filter(|k| ws_accounts.iter().any(|a| k.starts_with(&format!("{a}/"))))
        .count();
    eprintln!(
        "bench: dsr {}: seeded {} workspaces, {} blobs ({} the subject's), {} resources in {:.1}s",
        size.label,
        size.workspaces,
        total_blobs,
        subject_blobs.len(),
        truth.resources.len(),
        t.elapsed().as_secs_f64()
    );
    // The ARM stand-in reads the local control plane's documents from Azurite directly.
    let arm_store = super::bench_store(&az.base_url);
    let (arm_url, arm_counts, arm_task) = start_arm(arm_store).await?;
    let proxy = start_proxy(&az.base_url).await?;
    let wss: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();

    // Ceiling, export: Copy Blob + GET of each of the subject's blobs (into a scratch container
    // of each workspace account; deleted again below as the delete ceiling).
    for a in &ws_accounts {
        raw.create_container(a, "ceiling").await?;
    }
    let t = Instant::now();
    futures::stream::iter(subject_blobs.iter().enumerate())
        .map(|(i, (a, c, n))| {
            let raw = &raw;
            async move {
                let dst = format!("c{i:08}");
                raw.copy(&raw.url(a, c, Some(n)), a, "ceiling", &dst)
                    .await?;
                raw.get_sha256(a, "ceiling", &dst).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(super::RAW_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let ceil_export = t.elapsed().as_secs_f64();

    let mut results = BTreeMap::new();
    for kind in ["export", "delete"] {
        proxy.counts.take();
        if let Ok(mut m) = arm_counts.0.lock() {
            m.clear();
        }
        let rid = format!(
            "BENCH-{}-{}",
            size.label.to_uppercase(),
            kind.to_uppercase()
        );
        let out = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--child", "dsr"])
            .arg(&data)
            .arg(&proxy.base_url)
            .arg(&arm_url)
            .args([kind, subject.upn.as_str(), rid.as_str()])
            .arg(wss.join(","))
            .stderr(std::process::Stdio::inherit())
            .output()
            .await?;
        ensure!(out.status.success(), "dsr child ({kind}) failed");
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.lines().last().unwrap_or_default())
            .with_context(|| format!("dsr child output: {line}"))?;
        let storage = proxy.counts.take();
        let deleted = proxy.counts.take_deleted();
        // Safety, seen at the wire: every blob a delete was sent for in the workspaces' storage
        // is one of the subject's (the state account holds the request's own files).
        let subject: std::collections::BTreeSet<String> = subject_blobs
            .iter()
            .map(|(a, c, n)| format!("{a}/{c}/{n}"))
            .collect();
        let foreign: Vec<&String> = deleted
            .keys()
            .filter(|k| ws_accounts.iter().any(|a| k.starts_with(&format!("{a}/"))))
            .filter(|k| !subject.contains(*k))
            .collect();
        let repeated: u64 = deleted.values().filter(|&&n| n > 1).map(|n| n - 1).sum();
        eprintln!(
            "bench: dsr {} {kind}: deletes sent for {} distinct blobs ({repeated} repeats); {} not the subject's{}",
            size.label,
            deleted.len(),
            foreign.len(),
            foreign.first().map(|f| format!(", e.g. {f}")).unwrap_or_default()
        );
        ensure!(
            foreign.is_empty(),
            "a delete was sent for a blob that is not the subject's"
        );
        let arm = arm_counts.0.lock().map(|m| m.clone()).unwrap_or_default();
        eprintln!(
            "bench: dsr {} {kind}: {:.1}s, status {}",
            size.label, v["secs"], v["status"]
        );
        results.insert(kind, (v, storage, arm));
    }

    // Ceiling, delete: Blob Batch deletes of as many blobs (the export ceiling's copies).
    let t = Instant::now();
    for a in &ws_accounts {
        let names: Vec<String> = raw.list(a, "ceiling", "").await?;
        futures::stream::iter(names.chunks(256))
            .map(|chunk| raw.batch_delete(a, "ceiling", chunk))
            .buffer_unordered(4)
            .try_collect::<Vec<_>>()
            .await?;
    }
    let ceil_delete = t.elapsed().as_secs_f64();
    arm_task.abort();
    drop(proxy);

    summarize(
        size,
        &truth,
        &subject_blobs,
        total_blobs,
        &ws_accounts,
        results,
        ceil_export,
        ceil_delete,
    )
}

use futures::{StreamExt, TryStreamExt};

type PhaseResult = (
    Value,
    BTreeMap<(String, String), u64>,
    BTreeMap<String, u64>,
);

#[allow(clippy::too_many_arguments)]
fn summarize(
    size: &DsrSize,
    truth: &azureml_dsr::seed::SeedTruth,
    subject_blobs: &[(String, String, String)],
    total_blobs: usize,
    ws_accounts: &[String],
    results: BTreeMap<&str, PhaseResult>,
    ceil_export: f64,
    ceil_delete: f64,
) -> anyhow::Result<DsrOutcome> {
    let mut rows = Vec::new();
    let mut tables = String::new();
    // Per container: the subject's blobs, and all blobs (for the listing floor).
    let mut per_container: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (a, c, _) in subject_blobs {
        *per_container.entry((a.clone(), c.clone())).or_default() += 1;
    }
    let mut container_total: BTreeMap<(String, String), usize> = BTreeMap::new();
    for k in truth.blobs.keys() {
        let mut p = k.splitn(3, '/');
        if let (Some(a), Some(c)) = (p.next(), p.next()) {
            if ws_accounts.iter().any(|w| w == a) {
                *container_total
                    .entry((a.to_string(), c.to_string()))
                    .or_default() += 1;
            }
        }
    }
    let n = subject_blobs.len() as u64;
    let batches_min: u64 = per_container
        .values()
        .map(|&v| (v as u64).div_ceil(256))
        .sum();
    let list_floor: u64 = per_container
        .keys()
        .map(|k| {
            (container_total.get(k).copied().unwrap_or(0) as u64)
                .div_ceil(5000)
                .max(1)
        })
        .sum();
    let jobs_per_ws: Vec<usize> = truth
        .workspaces
        .iter()
        .map(|w| {
            truth
                .resources
                .keys()
                .filter(|id| id.starts_with(&format!("{w}/jobs/")))
                .count()
        })
        .collect();
    let subject_resources = truth.resources_of("alice").len() as u64;
    let subject_jobs = truth
        .resources_of("alice")
        .iter()
        .filter(|id| id.contains("/jobs/"))
        .count() as u64;
    // ARM list pages the work needs: each kind listed once per workspace, 100 per page; model
    // and data versions are listed per container.
    let mut arm_pages: u64 = 0;
    for (w, ws) in truth.workspaces.iter().enumerate() {
        let prefix = format!("{ws}/");
        let ids: Vec<&String> = truth
            .resources
            .keys()
            .filter(|id| id.starts_with(&prefix))
            .collect();
        arm_pages += (jobs_per_ws[w] as u64).div_ceil(100).max(1);
        for kind in ["models", "data"] {
            let mut containers: BTreeMap<&str, u64> = BTreeMap::new();
            for id in &ids {
                let rest = &id[prefix.len()..];
                let mut p = rest.split('/');
                if p.next() == Some(kind) {
                    if let Some(c) = p.next() {
                        *containers.entry(c).or_default() += 1;
                    }
                }
            }
            arm_pages += (containers.len() as u64).div_ceil(100).max(1);
            arm_pages += containers.values().map(|v| v.div_ceil(100)).sum::<u64>();
        }
        let computes = ids
            .iter()
            .filter(|id| id[prefix.len()..].starts_with("computes/"))
            .count() as u64;
        arm_pages += computes.div_ceil(100).max(1);
    }
    let listed_jobs: u64 = jobs_per_ws.iter().map(|&j| j as u64).sum();
    let mut cost_total = 0.0;
    let mut cost_lines = String::new();

    for (kind, (v, storage, arm)) in &results {
        let sum_in = |accts: &dyn Fn(&str) -> bool, k: &str| -> u64 {
            storage
                .iter()
                .filter(|((a, kk), _)| accts(a) && kk == k)
                .map(|(_, n)| *n)
                .sum()
        };
        let is_ws = |a: &str| ws_accounts.iter().any(|w| w == a);
        let is_state = |a: &str| a == "dsrstate";
        let calls = v["calls"].as_object().cloned().unwrap_or_default();
        let call = |k: &str| calls.get(k).and_then(Value::as_u64).unwrap_or(0);
        let bus_total: u64 = calls
            .iter()
            .filter(|(k, _)| k.starts_with("bus.send:"))
            .filter_map(|(_, v)| v.as_u64())
            .sum();
        let inv_total: u64 = calls
            .iter()
            .filter(|(k, _)| k.starts_with("invocation:"))
            .filter_map(|(_, v)| v.as_u64())
            .sum();
        let inv_secs = call("invocation_us") as f64 / 1e6;
        let arm_get = |k: &str| arm.get(k).copied().unwrap_or(0);
        let del = *kind == "delete";
        let mut t = format!(
            "\n#### {} {kind}: {} workspace(s), subject {} of {} blobs, {} of {} resources ({} of {} jobs)\n\n| calls | workspace storage | DSR state account | minimum | ours/min | the minimum is |\n|---|---:|---:|---:|---:|---|\n",
            size.label, size.workspaces, n, total_blobs, subject_resources, truth.resources.len(), subject_jobs, listed_jobs
        );
        let ratio = |ours: u64, min: u64| {
            if min > 0 {
                format!("{:.2}", ours as f64 / min as f64)
            } else if ours == 0 {
                "–".into()
            } else {
                "above 0".into()
            }
        };
        let mut st = |k: &str, label: &str, min: Option<u64>, why: &str| {
            let (w, s_) = (sum_in(&is_ws, k), sum_in(&is_state, k));
            let (m, r) = match min {
                Some(m) => (m.to_string(), ratio(w + s_, m)),
                None => ("–".into(), "–".into()),
            };
            t.push_str(&format!(
                "| storage {label} | {w} | {s_} | {m} | {r} | {why} |\n"
            ));
        };
        st(
            "list",
            "list",
            Some(list_floor),
            "each container with the subject's blobs listed once, 5,000 per page",
        );
        st(
            "read",
            "read (GET/HEAD)",
            Some(if del { 0 } else { n }),
            "export: one GET per exported copy (SHA-256)",
        );
        st(
            "write",
            "write (PUT)",
            None,
            "state, manifests and the report (no floor computed)",
        );
        st(
            "copy",
            "copy",
            Some(if del { 0 } else { n }),
            "one per exported blob",
        );
        st("delete", "delete (single)", Some(0), "none: batches");
        st(
            "batch",
            "batch",
            Some(if del { batches_min } else { 0 }),
            "one per 256 of the subject's blobs per container",
        );
        st(
            "batch_subrequest",
            "batch sub-requests",
            Some(if del { n } else { 0 }),
            "one per deleted blob",
        );
        let mut other = |label: &str, ours: u64, min: Option<u64>, why: &str| {
            let (m, r) = match min {
                Some(m) => (m.to_string(), ratio(ours, m)),
                None => ("–".into(), "–".into()),
            };
            t.push_str(&format!("| {label} | {ours} | | {m} | {r} | {why} |\n"));
        };
        other(
            "ARM list pages (GET)",
            arm_get("GET list page"),
            Some(arm_pages),
            "each kind listed once per workspace, 100 per page (versions per container)",
        );
        other(
            "ARM other GET",
            arm_get("GET other"),
            None,
            "workspace, datastores, resource checks",
        );
        other(
            "ARM operation polls",
            arm_get("GET operation poll"),
            Some(if del { subject_resources } else { 0 }),
            "one per long-running delete",
        );
        other(
            "ARM DELETE",
            arm_get("DELETE other"),
            Some(if del { subject_resources } else { 0 }),
            "one per subject resource",
        );
        other(
            "run history: run records",
            call("run_history.run"),
            Some(listed_jobs),
            "one per listed job",
        );
        other(
            "run history: child-run pages",
            call("run_history.children_page"),
            Some(subject_jobs),
            "one per matched job",
        );
        other("Graph lookups", call("directory.lookup"), Some(1), "one");
        other(
            "Log Analytics queries",
            call("telemetry.query"),
            Some(size.workspaces as u64),
            "one per workspace",
        );
        other(
            "Log Analytics purges sent",
            call("telemetry.send_purge"),
            None,
            "",
        );
        other(
            "Service Bus messages sent",
            bus_total,
            None,
            "each also received and completed by its trigger",
        );
        other(
            "function invocations",
            inv_total,
            None,
            &format!("{inv_secs:.1} s of invocation time in all"),
        );
        // Cost at list prices (BENCHMARKS.md gives the sources; assumptions marked there).
        let all = |k: &str| sum_in(&|a: &str| is_ws(a) || is_state(a), k) as f64;
        let write_class = all("write") + all("copy") + all("list");
        let read_class = all("read") + all("batch") + all("other");
        let storage_usd = write_class * PRICE_BLOB_WRITE_PER_10K / 1e4
            + read_class * PRICE_BLOB_READ_PER_10K / 1e4;
        let sb_ops = bus_total as f64 * 3.0;
        let sb_usd = sb_ops * PRICE_SB_OP_PER_M / 1e6;
        let exec_usd = inv_total as f64 * PRICE_FLEX_EXEC_PER_M / 1e6;
        // Upper bound: every invocation billed on its own (concurrent invocations on one
        // instance are billed once in Flex Consumption); lower bound: one instance for the
        // request's wall time.
        let gbs = inv_secs * FLEX_INSTANCE_GB;
        let gbs_usd = gbs * PRICE_FLEX_GBS;
        let gbs_low = v["secs"].as_f64().unwrap_or(0.0) * FLEX_INSTANCE_GB;
        let usd = storage_usd + sb_usd + exec_usd + gbs_usd;
        cost_total += usd;
        cost_lines.push_str(&format!(
            "| {} {kind} | {:.0} write-class + {:.0} read-class blob ops: ${:.5} | {:.0} Service Bus ops: ${:.5} | {inv_total} executions: ${:.5}; {:.1} GB-s: ${:.5} (one instance for the wall time: {:.1} GB-s, ${:.5}) | ${:.4} |\n",
            size.label, write_class, read_class, storage_usd, sb_ops, sb_usd, exec_usd, gbs, gbs_usd, gbs_low, gbs_low * PRICE_FLEX_GBS, usd
        ));
        tables.push_str(&t);
        let secs = v["secs"].as_f64().unwrap_or(f64::NAN);
        let ceil = if *kind == "export" {
            ceil_export
        } else {
            ceil_delete
        };
        rows.push(super::Row {
            scenario: format!(
                "{} {kind}: {} workspaces, subject {} of {} blobs, {} resources, local runtime",
                size.label, size.workspaces, n, total_blobs, subject_resources
            ),
            unit: "s (lower is better)",
            ours: secs,
            ceiling: Some(ceil),
            azcopy: None,
            note: format!(
                "status {}; peak RSS {:.1} MB; {} slice invocations (p50 {:.0} ms, max {:.0} ms, {:.1} s busy), up to {} invocations at once; ceiling = raw {} of the same {} blobs",
                v["status"].as_str().unwrap_or("?"),
                v["rss_mb"].as_f64().unwrap_or(f64::NAN),
                v["slice_invocations"],
                v["slice_ms_p50"].as_f64().unwrap_or(0.0),
                v["slice_ms_max"].as_f64().unwrap_or(0.0),
                v["slice_busy_secs"].as_f64().unwrap_or(0.0),
                v["peak_concurrent_invocations"],
                if *kind == "export" { "Copy Blob + GET" } else { "Blob Batch deletes" },
                n
            ),
        });
    }
    tables.push_str(&format!(
        "\n#### {} cost per request at list prices (export + delete: ${:.4})\n\n| request | Blob transactions | Service Bus | Flex Consumption | total |\n|---|---|---|---|---:|\n{cost_lines}",
        size.label, cost_total
    ));
    Ok(DsrOutcome { rows, tables })
}

// List prices (USD) used for the cost table; BENCHMARKS.md cites each and marks assumptions.
/// Blob hot LRS: Write, Copy, List and Create Container operations, per 10,000 (assumption).
const PRICE_BLOB_WRITE_PER_10K: f64 = 0.065;
/// Blob hot LRS: Read and All other operations, per 10,000 (assumption); deletes are free.
const PRICE_BLOB_READ_PER_10K: f64 = 0.005;
/// Service Bus Standard operations beyond the 13M included, per million (assumption).
const PRICE_SB_OP_PER_M: f64 = 0.80;
/// Flex Consumption on demand: executions per million (assumption) and GB-s (modal.com).
const PRICE_FLEX_EXEC_PER_M: f64 = 0.40;
const PRICE_FLEX_GBS: f64 = 0.000026;
/// Instance memory billed while executing (Flex Consumption default 2,048 MB); invocation time
/// summed over invocations, so concurrent invocations on one instance are counted twice (an
/// upper bound).
const FLEX_INSTANCE_GB: f64 = 2.0;
