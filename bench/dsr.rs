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

mod count;
mod summary;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use azureml_dsr::adapters::counting_ports::{
    CountingBus, CountingDirectory, CountingRunHistory, CountingTelemetry, Tally,
};
use azureml_dsr::app::App;
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::runtime::dispatcher::{Dispatcher, DispatcherOptions};
use azureml_dsr::runtime::host_config::HostConfig;
use azureml_dsr::settings::{Adapters, AppSettings, StorageChoice};
use serde_json::{json, Value};

use futures::{StreamExt, TryStreamExt};

use count::*;
use summary::*;

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
            "rss_mb": crate::memory::vm_hwm_kb()? as f64 / 1024.0,
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
