//! `cargo run --release --example bench -- [--smoke|--full] [--items N] [--total M] [--reps R]`
//!
//! Starts its own Azurite (in memory, free 127.0.0.1 port), seeds synthetic workspace data, and
//! for each scenario runs our product code and the baselines alternately (the order rotates per
//! repetition), R times, and prints medians and ratios measured in this one run:
//! - delete: `slice::delete_blobs` (the slice's Blob Batch path) vs raw single DELETEs, raw
//!   batches (the storage ceiling) and `azcopy remove`;
//! - export: `slice::export_blob` (copy + streaming SHA-256) vs raw Copy Blob + GET + SHA-256
//!   and `azcopy copy`;
//! - discovery of one subject's runs among 1k / 10k (/ 100k with --full) runs, vs raw list + GET;
//! - handler: intake invocations through the real axum router vs a bare axum echo;
//! - start-up: exec of `azureml-dsr handler` to the first answered `GET /`;
//! - memory: peak RSS (VmHWM) of a child process scanning runs (on Azurite, and 1k vs 100k runs
//!   on the embedded file store, which can hold 100k runs where Azurite slows to a crawl) and
//!   exporting a large blob;
//! - archive: peak RSS building an export archive of one 1 GiB file and of 100,000 small files
//!   (`bench/archive.rs`), against the same child only loading the report.
//!
//! `--smoke` runs everything at tiny sizes in seconds (CI); it asserts correctness of each
//! operation, never timings.

#[path = "archive.rs"]
mod archive;
/// The test suite's Azurite harness (pinned npm install into .build/azurite, free port).
#[path = "../tests/it/support/azurite.rs"]
#[allow(dead_code)]
mod azurite;
mod dsr;
mod raw;
mod throttle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use azureml_dsr::adapters::azure::blob::AzureBlobStore;
use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
use azureml_dsr::adapters::local::directory::FileDirectory;
use azureml_dsr::adapters::local::fs_blob::FsBlobStore;
use azureml_dsr::adapters::local::memory_blob::MemoryBlobStore;
use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::adapters::local::telemetry::LocalTelemetry;
use azureml_dsr::domain::plan::ResourceType;
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::domain::request::RequestKind;
use azureml_dsr::domain::slice::{ItemStatus, SliceTask};
use azureml_dsr::domain::subject::ResolvedSubject;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::functions::{discovery, slice, Services, Settings};
use azureml_dsr::ports::blob::{BlobRef, BlobStore, DeleteOutcome};
use azureml_dsr::ports::control_plane::WorkspaceInfo;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use raw::Raw;
use serde_json::json;

const ACCOUNTS: [&str; 5] = [
    "mlwstore0",
    "armlocal",
    "telemetrylocal",
    "dsrstate",
    azureml_dsr::adapters::local::run_history::RUN_HISTORY_ACCOUNT,
];
const WS_ACCOUNT: &str = "mlwstore0";
const SUBJECT_OID: &str = "11111111-2222-3333-4444-555555555555";
/// In-flight requests of the raw single-request baselines and of seeding.
const RAW_CONCURRENCY: usize = 32;
/// The subject's runs in each workspace of the file-store memory scan.
const FS_SUBJECT_RUNS: usize = 100;

#[derive(Debug, Clone)]
struct Opts {
    mode: &'static str,
    items: usize,
    total: usize,
    reps: usize,
    export_items: usize,
    export_kib: usize,
    runs: Vec<usize>,
    /// Workspace sizes of the memory scan on the embedded file store (the subject owns
    /// FS_SUBJECT_RUNS of them whatever the size, so growth is the workspace's alone).
    fs_runs: Vec<usize>,
    big_mib: usize,
    /// Export-archive scenario: one file of this size, and this many 1 KiB files.
    archive_mib: usize,
    archive_files: usize,
    handler_n: usize,
    startup_n: usize,
    /// Scenarios to run (all when empty): delete, export, discovery, memory, handler, startup,
    /// throttle, calls, heavy.
    only: Vec<String>,
    /// Throttled ARM: jobs deleted, the deletes bucket's capacity and refill rate per second.
    arm_jobs: usize,
    arm_burst: f64,
    arm_rate: f64,
    /// Whole requests (scenario `dsr`): the heavy user's runs per workspace and files per run
    /// (10 workspaces), and the light user's runs (1 workspace).
    heavy_runs: usize,
    heavy_files: usize,
    heavy_workspaces: usize,
    light_runs: usize,
}

impl Opts {
    fn parse() -> anyhow::Result<Opts> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut o = Opts {
            mode: "default",
            // Azurite's in-memory metadata store scans the account on every delete and listing,
            // so its own rate falls as the account grows (~430 deletes/s at 500 blobs, ~40-60
            // at 5,000): these sizes keep a run under half an hour on 2 cores.
            items: 1_000,
            total: 5_000,
            reps: 3,
            // azcopy's wall time moves in steps of about 2 s (its job-status polling): 2,000
            // items keep that step small against the transfer itself.
            export_items: 2_000,
            export_kib: 64,
            runs: vec![1_000, 10_000],
            fs_runs: vec![1_000, 100_000],
            big_mib: 1024,
            archive_mib: 1024,
            archive_files: 100_000,
            handler_n: 2_000,
            startup_n: 20,
            only: vec![],
            // ARM's deletes bucket scaled 5x in rate and halved in size so the run takes ~20 s;
            // the bucket holds at least one Retry-After second of refill, as ARM's does.
            arm_jobs: 1_000,
            arm_burst: 100.0,
            arm_rate: 50.0,
            heavy_runs: 20,
            heavy_files: 10,
            heavy_workspaces: 10,
            light_runs: 100,
        };
        if args.iter().any(|a| a == "--smoke") {
            o = Opts {
                mode: "smoke",
                items: 100,
                total: 500,
                reps: 1,
                export_items: 20,
                export_kib: 16,
                runs: vec![100, 300],
                fs_runs: vec![200, 1_000],
                big_mib: 8,
                archive_mib: 8,
                archive_files: 500,
                handler_n: 100,
                startup_n: 3,
                only: vec![],
                arm_jobs: 150,
                arm_burst: 50.0,
                arm_rate: 50.0,
                heavy_runs: 1,
                heavy_files: 2,
                heavy_workspaces: 3,
                light_runs: 3,
            };
        } else if args.iter().any(|a| a == "--full") {
            o = Opts {
                mode: "full",
                items: 10_000,
                total: 100_000,
                reps: 3,
                export_items: 1_000,
                export_kib: 64,
                runs: vec![1_000, 10_000, 100_000],
                fs_runs: vec![1_000, 100_000],
                big_mib: 1024,
                archive_mib: 1024,
                archive_files: 100_000,
                handler_n: 5_000,
                startup_n: 30,
                only: vec![],
                // ARM's documented subscription deletes bucket (200, refilled 10/s).
                arm_jobs: 10_000,
                arm_burst: 200.0,
                arm_rate: 10.0,
                // The heavy user: 10,000 runs, ~1,000,000 blobs over 10 workspaces.
                heavy_runs: 1_000,
                heavy_files: 100,
                heavy_workspaces: 10,
                light_runs: 100,
            };
        }
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = || -> anyhow::Result<usize> {
                it.next()
                    .with_context(|| format!("{a} needs a value"))?
                    .parse::<usize>()
                    .with_context(|| format!("{a}: not a number"))
            };
            match a.as_str() {
                "--smoke" | "--full" => {}
                "--items" => o.items = num()?,
                "--total" => o.total = num()?,
                "--reps" => o.reps = num()?.max(1),
                "--export-items" => o.export_items = num()?,
                "--export-kib" => o.export_kib = num()?,
                "--big-mib" => o.big_mib = num()?,
                "--archive-mib" => o.archive_mib = num()?,
                "--archive-files" => o.archive_files = num()?,
                "--handler-n" => o.handler_n = num()?,
                "--startup-n" => o.startup_n = num()?.max(1),
                "--arm-jobs" => o.arm_jobs = num()?.max(1),
                "--arm-burst" => o.arm_burst = num()?.max(1) as f64,
                "--arm-rate" => o.arm_rate = num()?.max(1) as f64,
                "--heavy-runs" => o.heavy_runs = num()?.max(1),
                "--heavy-files" => o.heavy_files = num()?.max(1),
                "--light-runs" => o.light_runs = num()?.max(1),
                "--heavy-workspaces" => o.heavy_workspaces = num()?.max(1),
                "--only" => {
                    o.only = it
                        .next()
                        .context("--only needs a list, e.g. delete,export")?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect()
                }
                "--runs" | "--fs-runs" => {
                    let list = it
                        .next()
                        .with_context(|| format!("{a} needs a list, e.g. 1000,10000"))?
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()?;
                    ensure!(!list.is_empty(), "{a}: empty list");
                    if a == "--runs" {
                        o.runs = list
                    } else {
                        o.fs_runs = list
                    }
                }
                other => bail!("unknown argument {other}"),
            }
        }
        o.total = o.total.max(o.items);
        Ok(o)
    }
}

struct Row {
    scenario: String,
    unit: &'static str,
    ours: f64,
    ceiling: Option<f64>,
    azcopy: Option<f64>,
    note: String,
}

/// The product's Azure Blob adapter on Azurite. Azurite has no blob versioning, so the store is
/// configured as a deployment without versioning would be (`Versioning::Off`: no version
/// listing after deletes). With the default `Detect`, Azurite's `include=versions` listings
/// failed (retries exhausted) once the container held ~20k blobs; see BENCHMARKS.md.
fn bench_store(base: &str) -> Arc<dyn BlobStore> {
    let mut cfg = AzureBlobStore::azurite_config(base);
    if std::env::var_os("BENCH_VERSIONING_DETECT").is_none() {
        cfg.versioning = azureml_dsr::adapters::azure::blob::Versioning::Off;
    }
    Arc::new(AzureBlobStore::new(cfg))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child")
        && args.get(2).map(String::as_str) == Some("dsr")
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return rt.block_on(dsr::child(&args[3..]));
    }
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2..]);
    }
    let opts = Opts::parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

async fn start_azurite() -> anyhow::Result<azurite::Azurite> {
    let az = tokio::task::spawn_blocking(|| azurite::Azurite::start(&ACCOUNTS)).await?;
    eprintln!("bench: azurite on {}", az.base_url);
    Ok(az)
}

async fn run(o: Opts) -> anyhow::Result<()> {
    let t0 = Instant::now();
    eprintln!("bench: mode {} {o:?}", o.mode);
    let want = |s: &str| o.only.is_empty() || o.only.iter().any(|x| x == s);
    let mut rows = Vec::new();

    if want("delete") || want("export") {
        let az = start_azurite().await?;
        let raw = Raw::new(&az.base_url, &ACCOUNTS);
        let store: Arc<dyn BlobStore> = bench_store(&az.base_url);
        let azcopy = Azcopy::find();
        if azcopy.is_none() {
            eprintln!("bench: azcopy not installed (npm install --prefix .build/azcopy @azure-tools/azcopy-linux); its columns print n/a");
        }
        if want("delete") {
            rows.extend(bench_delete(&o, &raw, &store, azcopy.as_ref()).await?);
        }
        if want("export") {
            rows.extend(bench_export(&o, &raw, &store, azcopy.as_ref()).await?);
        }
    }
    if want("discovery") || want("memory") {
        // A fresh Azurite: its per-request cost grows with everything it holds, and a 10k-run
        // discovery on the instance that also held the delete and export data stalled for
        // minutes (BENCHMARKS.md, run B).
        let az = start_azurite().await?;
        let raw = Raw::new(&az.base_url, &ACCOUNTS);
        let store: Arc<dyn BlobStore> = bench_store(&az.base_url);
        // Memory scans the workspaces discovery seeds.
        rows.extend(bench_discovery(&o, &raw, &store).await?);
        if want("memory") {
            rows.extend(bench_memory(&o, &raw, &az.base_url).await?);
        }
    }
    if want("memory") {
        rows.extend(bench_memory_fs(&o).await?);
    }
    if want("archive") {
        rows.extend(bench_archive(&o).await?);
    }
    if want("handler") {
        rows.extend(bench_handler(&o).await?);
    }
    if want("startup") {
        rows.extend(bench_startup(&o).await?);
    }
    if want("throttle") {
        rows.push(bench_throttle(&o).await?);
    }
    let mut call_tables = String::new();
    if want("dsr") {
        for size in [
            dsr::DsrSize {
                label: "light",
                workspaces: 1,
                users: 3,
                runs_per_user: o.light_runs,
                files_per_run: 3,
            },
            dsr::DsrSize {
                label: "heavy",
                workspaces: o.heavy_workspaces,
                users: 2,
                runs_per_user: o.heavy_runs,
                files_per_run: o.heavy_files,
            },
        ] {
            let out = dsr::run(&size).await?;
            rows.extend(out.rows);
            call_tables.push_str(&out.tables);
        }
    }

    print_table(&o, &rows);
    if !call_tables.is_empty() {
        println!("\n### Calls per request against the minimum (same run)\n{call_tables}");
    }
    eprintln!("bench: done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn print_table(o: &Opts, rows: &[Row]) {
    println!();
    println!(
        "azureml-dsr bench — mode {}, reps {} (medians), Azurite in memory on 127.0.0.1",
        o.mode, o.reps
    );
    println!("| scenario | unit | ours | ceiling | azcopy | ours/ceiling | ours/azcopy | note |");
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let c = r.ceiling.unwrap_or(f64::NAN);
        let a = r.azcopy.unwrap_or(f64::NAN);
        // For rates (per second) higher is better; for times and sizes lower is better, and the
        // ratio is always ours / baseline.
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.unit,
            fmt(r.ours),
            fmt(c),
            fmt(a),
            if c.is_nan() {
                "n/a".into()
            } else {
                format!("{:.2}", r.ours / c)
            },
            if a.is_nan() {
                "n/a".into()
            } else {
                format!("{:.2}", r.ours / a)
            },
            r.note
        );
    }
}

// ---------------------------------------------------------------------------------------------
// seeding helpers

async fn put_many(
    raw: &Raw,
    account: &str,
    container: &str,
    names: &[String],
    size: usize,
) -> anyhow::Result<()> {
    let body = Bytes::from(vec![b'x'; size]);
    futures::stream::iter(names.iter())
        .map(|n| {
            let body = body.clone();
            async move { raw.put(account, container, n, body).await }
        })
        .buffer_unordered(RAW_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn subject_blob(i: usize) -> String {
    format!("ExperimentRun/dcid.alice_job_{i:07}/logs/std_log.txt")
}

// ---------------------------------------------------------------------------------------------
// delete

async fn bench_delete(
    o: &Opts,
    raw: &Raw,
    store: &Arc<dyn BlobStore>,
    azcopy: Option<&Azcopy>,
) -> anyhow::Result<Vec<Row>> {
    let container = "azureml";
    raw.create_container(WS_ACCOUNT, container).await?;
    let others: Vec<String> = (0..o.total - o.items)
        .map(|i| {
            format!(
                "ExperimentRun/dcid.user{}_job_{i:07}/logs/std_log.txt",
                i % 9
            )
        })
        .collect();
    let t = Instant::now();
    put_many(raw, WS_ACCOUNT, container, &others, 1024).await?;
    eprintln!(
        "bench: delete: seeded {} other blobs in {:.1}s",
        others.len(),
        t.elapsed().as_secs_f64()
    );
    let names: Vec<String> = (0..o.items).map(subject_blob).collect();
    let list_file = std::env::temp_dir().join(format!("bench-delete-{}.txt", std::process::id()));
    std::fs::write(&list_file, names.join("\n"))?;
    let concurrency = Settings::default().concurrency;

    let methods = ["ours", "raw-single", "raw-batch", "azcopy"];
    let mut res: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut azcopy_err = None;
    for rep in 0..o.reps {
        for k in 0..methods.len() {
            let m = methods[(k + rep) % methods.len()];
            if m == "azcopy" && (azcopy.is_none() || azcopy_err.is_some()) {
                continue;
            }
            put_many(raw, WS_ACCOUNT, container, &names, 1024).await?;
            let t = Instant::now();
            let r: anyhow::Result<()> = match m {
                "ours" => {
                    let out =
                        slice::delete_blobs(store, WS_ACCOUNT, container, &names, concurrency)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    ensure!(out.len() == names.len());
                    for r in out {
                        // NotFound = already gone; the listing below proves nothing is left.
                        ensure!(
                            matches!(r, Ok(DeleteOutcome::Deleted | DeleteOutcome::NotFound)),
                            "ours: {r:?}"
                        );
                    }
                    Ok(())
                }
                "raw-single" => {
                    let ok: Vec<u16> = futures::stream::iter(names.iter())
                        .map(|n| raw.delete(WS_ACCOUNT, container, n))
                        .buffer_unordered(RAW_CONCURRENCY)
                        .try_collect()
                        .await?;
                    ensure!(ok.iter().all(|s| *s == 202), "raw delete statuses");
                    Ok(())
                }
                "raw-batch" => {
                    let n: Vec<usize> = futures::stream::iter(names.chunks(256))
                        .map(|c| raw.batch_delete(WS_ACCOUNT, container, c))
                        .buffer_unordered(slice::delete_batches_in_flight(concurrency))
                        .try_collect()
                        .await?;
                    ensure!(n.iter().sum::<usize>() == names.len(), "raw batch count");
                    Ok(())
                }
                _ => {
                    let az = azcopy.expect("checked");
                    let url = format!(
                        "{}/{WS_ACCOUNT}/{container}?{}",
                        raw.base,
                        raw.container_sas(WS_ACCOUNT, container, "rdl")
                    );
                    match az
                        .run(&[
                            "remove",
                            &url,
                            "--from-to=BlobTrash",
                            &format!("--list-of-files={}", list_file.display()),
                        ])
                        .await
                    {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            eprintln!("bench: azcopy remove failed: {e:#}");
                            azcopy_err = Some(e.to_string());
                            continue;
                        }
                    }
                }
            };
            r?;
            let dt = t.elapsed().as_secs_f64();
            let left = raw
                .list(WS_ACCOUNT, container, "ExperimentRun/dcid.alice_")
                .await?;
            ensure!(
                left.is_empty(),
                "{m}: {} subject blobs left after delete",
                left.len()
            );
            res.entry(m).or_default().push(names.len() as f64 / dt);
            eprintln!(
                "bench: delete rep {rep} {m}: {:.0} items/s",
                names.len() as f64 / dt
            );
        }
    }
    let _ = std::fs::remove_file(&list_file);
    let med = |m: &str| res.get(m).cloned().map(median);
    let single = med("raw-single").unwrap_or(f64::NAN);
    let batch = med("raw-batch").unwrap_or(f64::NAN);
    let ceiling = single.max(batch);
    Ok(vec![Row {
        scenario: format!("delete {} of {} blobs", o.items, o.total),
        unit: "items/s",
        ours: med("ours").unwrap_or(f64::NAN),
        ceiling: Some(ceiling),
        azcopy: med("azcopy"),
        note: format!(
            "ceiling = best of raw single DELETE x{RAW_CONCURRENCY} ({}) and raw batch ({}){}",
            fmt(single),
            fmt(batch),
            azcopy_err
                .map(|e| format!("; azcopy failed: {}", e.lines().next().unwrap_or("")))
                .unwrap_or_default()
        ),
    }])
}

// ---------------------------------------------------------------------------------------------
// export

async fn bench_export(
    o: &Opts,
    raw: &Raw,
    store: &Arc<dyn BlobStore>,
    azcopy: Option<&Azcopy>,
) -> anyhow::Result<Vec<Row>> {
    let src_c = "exportsrc";
    raw.create_container(WS_ACCOUNT, src_c).await?;
    for c in ["exports-ours", "exports-raw", "exports-azcopy"] {
        raw.create_container("dsrstate", c).await?;
    }
    let size = o.export_kib * 1024;
    let names: Vec<String> = (0..o.export_items)
        .map(|i| format!("azureml/alice_job_{i:07}/outputs/part-0000.bin"))
        .collect();
    // Distinct contents per blob would not change the server's work; one body is enough.
    put_many(raw, WS_ACCOUNT, src_c, &names, size).await?;
    let list_file = std::env::temp_dir().join(format!("bench-export-{}.txt", std::process::id()));
    std::fs::write(&list_file, names.join("\n"))?;
    let concurrency = Settings::default().concurrency;
    let src_sas = raw.container_sas(WS_ACCOUNT, src_c, "rl");
    let mb = (names.len() * size) as f64 / 1e6;

    // Warm-up, untimed: one pass of ours and the ceiling over every item, so each timed pass
    // overwrites existing copies (the first pass otherwise also grows Azurite's account, which
    // costs whichever method runs first: 250-278 items/s in the first slot, 300-360 after).
    futures::stream::iter(names.iter())
        .map(|n| {
            let src_sas = &src_sas;
            async move {
                let src = BlobRef::new(WS_ACCOUNT, src_c, n.clone());
                let dst = BlobRef::new("dsrstate", "exports-ours", n.clone());
                slice::export_blob(store.as_ref(), &src, &dst)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut src = raw.url(WS_ACCOUNT, src_c, Some(n));
                src.set_query(Some(src_sas));
                raw.copy(&src, "dsrstate", "exports-raw", n).await?;
                raw.get_sha256("dsrstate", "exports-raw", n).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;

    let methods = ["ours", "raw", "azcopy"];
    let mut res: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut azcopy_err: Option<String> = None;
    let mut azcopy_download = false;
    let mut azcopy_dead = false;
    for rep in 0..o.reps {
        for k in 0..methods.len() {
            let m = methods[(k + rep) % methods.len()];
            if m == "azcopy" && (azcopy.is_none() || azcopy_dead) {
                continue;
            }
            let mut t = Instant::now();
            match m {
                "ours" => {
                    let out: Vec<ItemStatus> = futures::stream::iter(names.iter())
                        .map(|n| {
                            let src = BlobRef::new(WS_ACCOUNT, src_c, n.clone());
                            let dst = BlobRef::new("dsrstate", "exports-ours", n.clone());
                            async move { slice::export_blob(store.as_ref(), &src, &dst).await }
                        })
                        .buffered(concurrency)
                        .try_collect()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    for s in out {
                        ensure!(
                            matches!(s, ItemStatus::Exported { size: n, .. } if n as usize == size),
                            "ours: {s:?}"
                        );
                    }
                }
                "raw" => {
                    let out: Vec<(u64, String)> = futures::stream::iter(names.iter())
                        .map(|n| {
                            let src_sas = &src_sas;
                            async move {
                                let mut src = raw.url(WS_ACCOUNT, src_c, Some(n));
                                src.set_query(Some(src_sas));
                                raw.copy(&src, "dsrstate", "exports-raw", n).await?;
                                raw.get_sha256("dsrstate", "exports-raw", n).await
                            }
                        })
                        .buffered(concurrency)
                        .try_collect()
                        .await?;
                    ensure!(out.iter().all(|(n, _)| *n as usize == size), "raw sizes");
                }
                _ => {
                    let az = azcopy.expect("checked");
                    let src = format!("{}/{WS_ACCOUNT}/{src_c}?{src_sas}", raw.base);
                    let list = format!("--list-of-files={}", list_file.display());
                    if !azcopy_download {
                        // Blob-to-blob first (server-side, what a user would run).
                        let dst = format!(
                            "{}/dsrstate/exports-azcopy?{}",
                            raw.base,
                            raw.container_sas("dsrstate", "exports-azcopy", "racwdl")
                        );
                        match az
                            .run(&[
                                "copy",
                                &src,
                                &dst,
                                "--from-to=BlobBlob",
                                &list,
                                "--overwrite=true",
                                "--s2s-preserve-access-tier=false",
                            ])
                            .await
                        {
                            Ok(()) => {
                                let got = raw.list("dsrstate", "exports-azcopy", "").await?;
                                ensure!(
                                    got.len() >= names.len(),
                                    "azcopy copied {} of {}",
                                    got.len(),
                                    names.len()
                                );
                            }
                            Err(e) => {
                                let first = e
                                    .to_string()
                                    .lines()
                                    .find(|l| l.contains("COPYFAILED"))
                                    .map(|l| l.split(" : ").skip(1).collect::<Vec<_>>().join(" : "))
                                    .unwrap_or_else(|| e.to_string());
                                eprintln!("bench: azcopy blob-to-blob copy failed on Azurite ({first}); using azcopy download (BlobLocal) to tmpfs instead");
                                azcopy_err = Some(format!(
                                    "azcopy blob-to-blob copy fails on Azurite ({}), so azcopy = download to tmpfs",
                                    first.trim()
                                ));
                                azcopy_download = true;
                                t = Instant::now();
                            }
                        }
                    }
                    if azcopy_download {
                        let base = if Path::new("/dev/shm").is_dir() {
                            PathBuf::from("/dev/shm")
                        } else {
                            std::env::temp_dir()
                        };
                        let dir = tempfile::tempdir_in(base)?;
                        if let Err(e) = az
                            .run(&[
                                "copy",
                                &src,
                                &dir.path().to_string_lossy(),
                                "--from-to=BlobLocal",
                                &list,
                                "--overwrite=true",
                            ])
                            .await
                        {
                            eprintln!("bench: azcopy download failed: {e:#}");
                            azcopy_err = Some(format!(
                                "azcopy download failed too: {}",
                                e.to_string().lines().next().unwrap_or("")
                            ));
                            azcopy_dead = true;
                            continue;
                        }
                    }
                }
            }
            let dt = t.elapsed().as_secs_f64();
            res.entry(m).or_default().push(names.len() as f64 / dt);
            eprintln!(
                "bench: export rep {rep} {m}: {:.0} items/s, {:.1} MB/s",
                names.len() as f64 / dt,
                mb / dt
            );
        }
    }
    let _ = std::fs::remove_file(&list_file);
    let med = |m: &str| res.get(m).cloned().map(median);
    let to_mb = |v: Option<f64>| v.map(|x| x * size as f64 / 1e6);
    let err_note = azcopy_err
        .map(|e| format!("; {}", e.lines().next().unwrap_or("")))
        .unwrap_or_default();
    Ok(vec![
        Row {
            scenario: format!("export {} blobs of {} KiB", names.len(), o.export_kib),
            unit: "items/s",
            ours: med("ours").unwrap_or(f64::NAN),
            ceiling: med("raw"),
            azcopy: med("azcopy"),
            note: format!("ours and ceiling: server-side copy + GET + SHA-256, {concurrency} in flight; azcopy copies only (no hash){err_note}"),
        },
        Row {
            scenario: format!("export {} blobs of {} KiB", names.len(), o.export_kib),
            unit: "MB/s",
            ours: to_mb(med("ours")).unwrap_or(f64::NAN),
            ceiling: to_mb(med("raw")),
            azcopy: to_mb(med("azcopy")),
            note: "same runs as the row above".into(),
        },
    ])
}

// ---------------------------------------------------------------------------------------------
// discovery

fn bench_ws(runs: usize) -> WorkspaceId {
    WorkspaceId::parse(&format!(
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-bench/providers/Microsoft.MachineLearningServices/workspaces/bench-{runs}"
    ))
    .expect("workspace id")
}

fn services(store: Arc<dyn BlobStore>, dir: &Path) -> Services {
    Services {
        control: Arc::new(LocalControlPlane::new(store.clone())),
        files: Arc::new(
            azureml_dsr::adapters::local::blob_share::BlobFileShare::new(store.clone()),
        ),
        telemetry: Arc::new(LocalTelemetry::new(store.clone())),
        directory: Arc::new(FileDirectory::new(dir.join("directory.json"))),
        bus: Arc::new(MemoryBus::new()),
        settings: Settings::default(),
        state_containers: Default::default(),
        run_history: Arc::new(
            azureml_dsr::adapters::local::run_history::LocalRunHistory::new(store.clone()),
        ),
        store,
    }
}

fn jobs_task(ws: &WorkspaceId) -> SliceTask {
    SliceTask {
        request_id: RequestId::parse("BENCH-1").expect("id"),
        kind: RequestKind::Export,
        dry_run: false,
        subject: ResolvedSubject {
            object_id: SUBJECT_OID.parse().expect("uuid"),
            tenant_id: None,
            upn: None,
            display_name: None,
            notebook_aliases: vec![],
            notebook_alias_conflicts: 0,
        },
        workspace: ws.clone(),
        resource_type: ResourceType::Jobs,
        key: "bench".into(),
        hold: None,
        cutoff: None,
        chunk: 0,
    }
}

/// Run `i`'s job document for the local control plane (a display name in `systemData`, as ARM
/// returns jobs) and its run-history record (the creator's object id): the subject's when
/// `i % every == 0`.
fn run_doc(ws: &WorkspaceId, i: usize, every: usize) -> (String, Bytes, Bytes) {
    let oid = if i.is_multiple_of(every) {
        SUBJECT_OID.to_string()
    } else {
        uuid::Uuid::from_u128(i as u128 + 7).to_string()
    };
    let job = format!("job_{i:07}");
    let doc = json!({
        "id": format!("{ws}/jobs/{job}"), "name": job,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {"jobType": "Command", "status": "Completed"},
        "systemData": {"createdAt": "2026-01-01T00:00:00Z", "createdBy": "Someone", "createdByType": "User"}
    });
    let run = json!({"runId": job, "dataContainerId": format!("dcid.{job}"),
        "createdBy": {"userObjectId": oid, "userName": "Someone", "upn": null}});
    (
        job,
        Bytes::from(doc.to_string()),
        Bytes::from(run.to_string()),
    )
}

/// A workspace with `runs` job documents in the local control plane (on the blob store); every
/// tenth run is the subject's.
async fn seed_runs(
    raw: &Raw,
    store: &Arc<dyn BlobStore>,
    runs: usize,
) -> anyhow::Result<WorkspaceId> {
    let ws = bench_ws(runs);
    seed_workspace_info(store, &ws).await?;
    let container = LocalControlPlane::container(&ws);
    // The datastore containers discovery lists for matched runs (empty here: this scenario
    // measures finding the runs).
    for c in ["azureml", "azureml-blobstore-bench"] {
        raw.create_container(WS_ACCOUNT, c).await?;
    }
    let rh = azureml_dsr::adapters::local::run_history::RUN_HISTORY_ACCOUNT;
    raw.create_container(rh, &container).await?;
    let docs: Vec<(String, Bytes, Bytes)> = (0..runs).map(|i| run_doc(&ws, i, 10)).collect();
    futures::stream::iter(docs)
        .map(|(job, b, run)| {
            let container = &container;
            async move {
                raw.put("armlocal", container, &format!("jobs/{job}.json"), b)
                    .await?;
                raw.put(rh, container, &format!("runs/{job}.json"), run)
                    .await
            }
        })
        .buffer_unordered(RAW_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(ws)
}

async fn bench_discovery(
    o: &Opts,
    raw: &Raw,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<Vec<Row>> {
    let tmp = tempfile::tempdir()?;
    let svc = services(store.clone(), tmp.path());
    svc.state().ensure_containers().await?;
    let mut rows = Vec::new();
    for &runs in &o.runs {
        let t = Instant::now();
        let ws = seed_runs(raw, store, runs).await?;
        eprintln!(
            "bench: discovery: seeded {runs} runs in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let task = jobs_task(&ws);
        let container = LocalControlPlane::container(&ws);
        let mut ours = Vec::new();
        let mut ceil = Vec::new();
        let reps = if runs >= 50_000 { 1 } else { o.reps };
        for rep in 0..reps {
            for k in 0..2 {
                let t = Instant::now();
                if (k + rep) % 2 == 0 {
                    let jobs = discover_runs(&svc, &task).await?;
                    ensure!(
                        jobs == runs.div_ceil(10),
                        "found {jobs} of {} runs",
                        runs.div_ceil(10)
                    );
                    ours.push(t.elapsed().as_secs_f64());
                } else {
                    // The least any discovery on this control plane must do: list + read each doc.
                    let names = raw.list("armlocal", &container, "jobs/").await?;
                    let found: Vec<bool> = futures::stream::iter(names.iter())
                        .map(|n| {
                            let container = &container;
                            async move {
                                let u = raw.url("armlocal", container, Some(n));
                                let (s, _, _) = raw
                                    .send("armlocal", reqwest::Method::GET, u, vec![], Bytes::new())
                                    .await?;
                                ensure!(s == 200, "get doc {s}");
                                // The creator is in run history, not in the ARM document.
                                let rh =
                                    azureml_dsr::adapters::local::run_history::RUN_HISTORY_ACCOUNT;
                                let run = n.replacen("jobs/", "runs/", 1);
                                let u = raw.url(rh, container, Some(&run));
                                let (s, _, b) = raw
                                    .send(rh, reqwest::Method::GET, u, vec![], Bytes::new())
                                    .await?;
                                ensure!(s == 200, "get run {s}");
                                let hit = memchr_contains(&b, SUBJECT_OID.as_bytes());
                                if hit {
                                    // A matched run's two folders (run history, outputs),
                                    // listed as discovery must to find the run's blobs.
                                    let job =
                                        n.trim_start_matches("jobs/").trim_end_matches(".json");
                                    raw.list(
                                        WS_ACCOUNT,
                                        "azureml",
                                        &format!("ExperimentRun/dcid.{job}/"),
                                    )
                                    .await?;
                                    raw.list(
                                        WS_ACCOUNT,
                                        "azureml-blobstore-bench",
                                        &format!("azureml/{job}/"),
                                    )
                                    .await?;
                                }
                                Ok::<_, anyhow::Error>(hit)
                            }
                        })
                        .buffer_unordered(RAW_CONCURRENCY)
                        .try_collect()
                        .await?;
                    ensure!(found.iter().filter(|f| **f).count() == runs.div_ceil(10));
                    ceil.push(t.elapsed().as_secs_f64());
                }
            }
        }
        let (m_ours, m_ceil) = (median(ours), median(ceil));
        eprintln!("bench: discovery {runs} runs: ours {m_ours:.2}s, raw {m_ceil:.2}s");
        rows.push(Row {
            scenario: format!("discover subject's runs among {runs}"),
            unit: "s (lower is better)",
            ours: m_ours,
            ceiling: Some(m_ceil),
            azcopy: None,
            note: format!(
                "{} runs/s; ceiling = raw list + GET of every job document and its run-history record + list of each matched run's two folders (no child-run listing), x{RAW_CONCURRENCY}",
                fmt(runs as f64 / m_ours)
            ),
        });
    }
    Ok(rows)
}

/// Our discovery of the subject's runs: how many jobs it found.
async fn discover_runs(svc: &Services, task: &SliceTask) -> anyhow::Result<usize> {
    let inv = discovery::discover(svc, task)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(inv
        .entries
        .iter()
        .filter(|e| matches!(&e.item, azureml_dsr::domain::slice::Item::Resource { .. }))
        .count())
}

fn memchr_contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// memory (child processes: VmHWM of a fresh process doing only that work)

async fn bench_memory(o: &Opts, raw: &Raw, base: &str) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let idle = run_child(&["idle", base]).await?;
    let first = *o.runs.first().expect("runs");
    let last = *o.runs.last().expect("runs");
    let small = run_child(&["scan", base, &first.to_string()]).await?;
    let large = run_child(&["scan", base, &last.to_string()]).await?;
    rows.push(Row {
        scenario: format!("peak RSS scanning {first} vs {last} runs"),
        unit: "MB",
        ours: large,
        ceiling: Some(small),
        azcopy: None,
        note: format!(
            "ours = {last} runs, 'ceiling' column = {first} runs (ratio = growth); idle process {} MB",
            fmt(idle)
        ),
    });
    let big = o.big_mib * 1024 * 1024;
    raw.create_container(WS_ACCOUNT, "bigsrc").await?;
    raw.create_container("dsrstate", "exports-big").await?;
    let t = Instant::now();
    raw.put_large(WS_ACCOUNT, "bigsrc", "big.bin", big, 8 * 1024 * 1024)
        .await?;
    eprintln!(
        "bench: memory: uploaded {} MiB in {:.1}s",
        o.big_mib,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let exp = run_child(&["export", base, &big.to_string()]).await?;
    let dt = t.elapsed().as_secs_f64();
    rows.push(Row {
        scenario: format!("peak RSS exporting one {} MiB blob", o.big_mib),
        unit: "MB",
        ours: exp,
        ceiling: None,
        azcopy: None,
        note: format!(
            "copy + streaming SHA-256 in a child process, {:.1} s incl. process start ({} MB/s)",
            dt,
            fmt(big as f64 / 1e6 / dt)
        ),
    });
    Ok(rows)
}

/// Peak RSS of discovery on the embedded default (file store under a temporary folder) in
/// workspaces of `fs_runs` sizes, the subject owning FS_SUBJECT_RUNS runs in each: whatever the
/// workspace's size, memory should hold a page of it and the subject's inventory, not the runs.
async fn bench_memory_fs(o: &Opts) -> anyhow::Result<Vec<Row>> {
    let root = tempfile::tempdir()?;
    let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(root.path()));
    let mut peaks = Vec::new();
    for &runs in &o.fs_runs {
        let t = Instant::now();
        let ws = bench_ws(runs);
        seed_workspace_info(&store, &ws).await?;
        let container = LocalControlPlane::container(&ws);
        store
            .create_container(
                azureml_dsr::adapters::local::run_history::RUN_HISTORY_ACCOUNT,
                &container,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let every = (runs / FS_SUBJECT_RUNS).max(1);
        futures::stream::iter(0..runs)
            .map(|i| {
                let (job, body, run) = run_doc(&ws, i, every);
                let store = &store;
                let blob = BlobRef::new("armlocal", container.clone(), format!("jobs/{job}.json"));
                let run_blob = BlobRef::new(
                    azureml_dsr::adapters::local::run_history::RUN_HISTORY_ACCOUNT,
                    container.clone(),
                    format!("runs/{job}.json"),
                );
                async move {
                    for (b, body) in [(blob, body), (run_blob, run)] {
                        store
                            .put(
                                &b,
                                body,
                                "application/json",
                                azureml_dsr::ports::blob::Condition::None,
                                &BTreeMap::new(),
                            )
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                    Ok::<(), anyhow::Error>(())
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        let seeded = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let want = runs.div_ceil(every);
        let root_s = root.path().to_string_lossy().to_string();
        let peak = run_child(&["scan-fs", &root_s, &runs.to_string(), &want.to_string()]).await?;
        eprintln!(
            "bench: memory (file store): {runs} runs seeded in {seeded:.1}s, scanned in {:.1}s, peak {peak:.1} MB",
            t.elapsed().as_secs_f64()
        );
        peaks.push((runs, peak, want, t.elapsed().as_secs_f64()));
    }
    let (first, last) = (peaks[0], peaks[peaks.len() - 1]);
    Ok(vec![Row {
        scenario: format!(
            "peak RSS scanning {} vs {} runs, embedded file store",
            first.0, last.0
        ),
        unit: "MB",
        ours: last.1,
        ceiling: Some(first.1),
        azcopy: None,
        note: format!(
            "ours = {} runs, 'ceiling' column = {} runs (ratio = growth); the subject owns {} and {} of them; scan {:.1} s and {:.1} s incl. process start",
            last.0, first.0, last.2, first.2, last.3, first.3
        ),
    }])
}

/// Peak RSS building an export archive (`bench/archive.rs`): one large file, then many small
/// ones, each in a child process; the 'ceiling' column is the same child only loading the
/// report, so the ratio shows what the builder adds.
async fn bench_archive(o: &Opts) -> anyhow::Result<Vec<Row>> {
    let root = tempfile::tempdir()?;
    let r = root.path().to_string_lossy().to_string();
    let mut rows = Vec::new();
    let cases = [
        (
            "BENCH-BIG",
            0,
            (o.archive_mib as u64) << 20,
            format!("one {} MiB file", o.archive_mib),
        ),
        (
            "BENCH-MANY",
            o.archive_files,
            0,
            format!("{} files of 1 KiB", o.archive_files),
        ),
    ];
    for (req, files, big, label) in cases {
        let t = Instant::now();
        let report = archive::seed(root.path(), req, files, 1024, big).await?;
        let seeded = t.elapsed().as_secs_f64();
        let rep = report.to_string_lossy().to_string();
        let load = run_child(&["archive-load", &r, &rep]).await?;
        let t = Instant::now();
        let peak = run_child(&["archive", &r, &rep]).await?;
        let dt = t.elapsed().as_secs_f64();
        let (entries, bytes) = archive::verify(root.path(), req)?;
        eprintln!("bench: archive {label}: seeded in {seeded:.1}s, built in {dt:.1}s, peak {peak:.1} MB (report loaded alone: {load:.1} MB)");
        rows.push(Row {
            scenario: format!("peak RSS archiving {label}"),
            unit: "MB",
            ours: peak,
            ceiling: Some(load),
            azcopy: None,
            note: format!(
                "'ceiling' column = the child only loading the report; {entries} entries, {:.1} MB archive built in {dt:.1} s incl. process start ({:.0} MB/s), checked by export verify",
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / dt
            ),
        });
        // Free the disk before the next case.
        std::fs::remove_dir_all(root.path().join("dsrstate"))?;
    }
    Ok(rows)
}

async fn seed_workspace_info(store: &Arc<dyn BlobStore>, ws: &WorkspaceId) -> anyhow::Result<()> {
    let info = WorkspaceInfo {
        id: ws.clone(),
        storage_account: WS_ACCOUNT.into(),
        artifact_container: "azureml".into(),
        blobstore_container: "azureml-blobstore-bench".into(),
        file_share: "code-bench".into(),
        app_insights: None,
        log_analytics_workspace: None,
        diagnostic_destinations: vec![],
        diagnostic_settings_error: None,
        key_vault: None,
        tags: BTreeMap::new(),
        location: None,
    };
    LocalControlPlane::new(store.clone())
        .put_workspace(&info)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run_child(args: &[&str]) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "child {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM "))
        .context("child printed no VmHWM")?
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

fn vm_hwm_kb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?)
}

fn child(args: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kind = args.first().context("child kind")?.as_str();
        let base = args.get(1).context("base url or store folder")?;
        if let "archive" | "archive-load" = kind {
            let report = args.get(2).context("report file")?;
            archive::child(base, report, kind == "archive-load").await?;
            println!("VmHWM {}", vm_hwm_kb()?);
            return Ok(());
        }
        let store: Arc<dyn BlobStore> = if kind == "scan-fs" {
            Arc::new(FsBlobStore::new(base))
        } else {
            bench_store(base)
        };
        match kind {
            "idle" => {
                store.list_page(WS_ACCOUNT, "azureml", "", None, 1).await?;
            }
            "scan" | "scan-fs" => {
                let runs: usize = args.get(2).context("runs")?.parse()?;
                // On Azurite a tenth of the runs are the subject's; the file-store scan says.
                let want: usize = match args.get(3) {
                    Some(w) => w.parse()?,
                    None => runs.div_ceil(10),
                };
                let tmp = tempfile::tempdir()?;
                let svc = services(store, tmp.path());
                let jobs = discover_runs(&svc, &jobs_task(&bench_ws(runs))).await?;
                ensure!(jobs == want, "found {jobs} of {want} runs");
            }
            "export" => {
                let size: u64 = args.get(2).context("size")?.parse()?;
                let src = BlobRef::new(WS_ACCOUNT, "bigsrc", "big.bin");
                let dst = BlobRef::new("dsrstate", "exports-big", "big.bin");
                let s = slice::export_blob(store.as_ref(), &src, &dst)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                ensure!(
                    matches!(s, ItemStatus::Exported { size: n, .. } if n == size),
                    "export: {s:?}"
                );
            }
            other => bail!("unknown child {other}"),
        }
        println!("VmHWM {}", vm_hwm_kb()?);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// handler

fn intake_envelope(i: usize, ws: &str, upn: &str) -> serde_json::Value {
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
type LoadResult = (f64, Vec<f64>);

async fn load(
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
async fn spawn_handler(
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
struct DecodeOnly;

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

async fn bench_handler(o: &Opts) -> anyhow::Result<Vec<Row>> {
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

// ---------------------------------------------------------------------------------------------
// start-up

fn product_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/bench -> target/<profile>/azureml-dsr
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("exe location")?
        .to_path_buf();
    let bin = profile_dir.join("azureml-dsr");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    // Always (re)build: cargo is a no-op when it is fresh, and a stale binary would lie.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--bin",
        "azureml-dsr",
        "--manifest-path",
    ])
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    // Into the target folder this bench runs from, wherever the caller's cargo put it.
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("cargo build --bin azureml-dsr")?;
    ensure!(status.success(), "building azureml-dsr failed");
    ensure!(bin.exists(), "{} missing", bin.display());
    Ok(bin)
}

async fn bench_startup(o: &Opts) -> anyhow::Result<Vec<Row>> {
    let bin = tokio::task::spawn_blocking(product_binary).await??;
    let tmp = tempfile::tempdir()?;
    let mut times = Vec::new();
    for _ in 0..o.startup_n {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let t = Instant::now();
        let mut child = tokio::process::Command::new(&bin)
            .arg("handler")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("DSR_DATA_DIR", tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                if get_root(s).await.unwrap_or(false) {
                    break;
                }
            }
            ensure!(Instant::now() < deadline, "handler did not answer GET /");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill().await;
    }
    let m = median(times.clone());
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(vec![Row {
        scenario: "start-up: exec to first GET / answered".into(),
        unit: "ms (lower is better)",
        ours: m,
        ceiling: None,
        azcopy: None,
        note: format!(
            "{} ({}), median of {}, max {:.1} ms; goal < 50 ms",
            bin.file_name().unwrap_or_default().to_string_lossy(),
            bin.parent()
                .and_then(Path::file_name)
                .unwrap_or_default()
                .to_string_lossy(),
            times.len(),
            times.last().copied().unwrap_or(f64::NAN)
        ),
    }])
}

async fn get_root(mut s: tokio::net::TcpStream) -> anyhow::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await?;
    Ok(n >= 12 && &buf[..12] == b"HTTP/1.1 200")
}

// ---------------------------------------------------------------------------------------------
// azcopy

/// Pinned azcopy (npm `@azure-tools/azcopy-linux` ships the official Linux binary).
const AZCOPY_VERSION: &str = "10.32.2";

struct Azcopy {
    bin: PathBuf,
    /// Extra library folder (a libsecret unpacked from Debian's package), when the machine
    /// lacks it.
    lib_dir: Option<PathBuf>,
}

impl Azcopy {
    fn find() -> Option<Azcopy> {
        if let Ok(p) = std::env::var("AZCOPY_BIN") {
            return Some(Azcopy {
                bin: p.into(),
                lib_dir: None,
            });
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.build/azcopy/node_modules/@azure-tools/azcopy-linux/dist/bin");
        let bin = root.join("azcopy_linux_amd64");
        if !bin.exists() && std::env::var_os("BENCH_NO_AZCOPY_INSTALL").is_none() {
            // Like the Azurite harness: the pinned npm package into the ignored .build/.
            eprintln!("bench: installing azcopy {AZCOPY_VERSION} (npm @azure-tools/azcopy-linux)");
            let prefix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.build/azcopy");
            let ok = Command::new("npm")
                .args(["install", "--prefix"])
                .arg(&prefix)
                .args(["--no-audit", "--no-fund", "--loglevel=error"])
                .arg(format!("@azure-tools/azcopy-linux@{AZCOPY_VERSION}"))
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                eprintln!("bench: npm install of azcopy failed");
            }
        }
        if !bin.exists() {
            return None;
        }
        // npm does not keep the executable bit of this package's binary.
        use std::os::unix::fs::PermissionsExt;
        let mut perm = std::fs::metadata(&bin).ok()?.permissions();
        if perm.mode() & 0o111 == 0 {
            perm.set_mode(0o755);
            std::fs::set_permissions(&bin, perm).ok()?;
        }
        let lib_dir = Self::libsecret(&bin);
        Some(Azcopy { bin, lib_dir })
    }

    /// azcopy links libsecret-1.so.0, which slim Debian images lack. Without root or an
    /// install step, fetch Debian's `libsecret-1-0` package (`apt-get download`, from the
    /// Debian mirror the machine already uses) and unpack it into .build/azcopy/sysroot; its
    /// own dependencies (glib, libgcrypt) are part of a base system.
    fn libsecret(bin: &Path) -> Option<PathBuf> {
        let loads = |lib: Option<&Path>| {
            let mut c = Command::new(bin);
            c.arg("--version");
            if let Some(l) = lib {
                c.env("LD_LIBRARY_PATH", l);
            }
            c.output().map(|o| o.status.success()).unwrap_or(false)
        };
        if loads(None) {
            return None;
        }
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.build/azcopy");
        let lib = base.join("sysroot/usr/lib/x86_64-linux-gnu");
        if !lib.join("libsecret-1.so.0").exists() {
            eprintln!("bench: azcopy cannot load libsecret-1.so.0; unpacking Debian's libsecret-1-0 into .build/azcopy/sysroot");
            let debs = base.join("debs");
            let _ = std::fs::create_dir_all(&debs);
            let fetched = Command::new("apt-get")
                .args(["download", "libsecret-1-0"])
                .current_dir(&debs)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            let deb = std::fs::read_dir(&debs).ok()?.flatten().find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("libsecret-1-0_")
            });
            let unpacked = match (fetched, deb) {
                (true, Some(deb)) => Command::new("dpkg")
                    .args(["-x"])
                    .arg(deb.path())
                    .arg(base.join("sysroot"))
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false),
                _ => false,
            };
            if !unpacked {
                eprintln!("bench: could not fetch libsecret-1-0 (apt-get download / dpkg -x); install it with apt-get install libsecret-1-0");
                return None;
            }
        }
        if loads(Some(&lib)) {
            Some(lib)
        } else {
            eprintln!("bench: azcopy still does not start with {}", lib.display());
            None
        }
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let work = std::env::temp_dir().join(format!("bench-azcopy-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let mut cmd = tokio::process::Command::new(&self.bin);
        if let Some(lib) = &self.lib_dir {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let out = cmd
            .args(args)
            .args(["--output-level=essential", "--log-level=ERROR"])
            .env("AZCOPY_LOG_LOCATION", &work)
            .env("AZCOPY_JOB_PLAN_LOCATION", &work)
            .env("AZCOPY_DISABLE_SYSLOG", "true")
            .output()
            .await
            .context("run azcopy")?;
        let mut log_errors = String::new();
        if !out.status.success() {
            for e in std::fs::read_dir(&work).into_iter().flatten().flatten() {
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    for l in text
                        .lines()
                        .filter(|l| {
                            l.contains("ERR")
                                || l.contains("RESPONSE STATUS")
                                || l.contains("x-ms-error-code")
                        })
                        .take(8)
                    {
                        log_errors.push_str(l);
                        log_errors.push('\n');
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&work);
        if !out.status.success() {
            bail!(
                "azcopy {}: {}{}{log_errors}",
                args[0],
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// throttled ARM (bench/throttle.rs)

async fn bench_throttle(o: &Opts) -> anyhow::Result<Row> {
    let invocations = 4;
    let concurrency = Settings::default().concurrency;
    let bucket = azureml_dsr::adapters::local::arm_throttle::Bucket {
        capacity: o.arm_burst,
        per_sec: o.arm_rate,
    };
    let r = throttle::run(o.arm_jobs, invocations, concurrency, bucket).await?;
    eprintln!(
        "bench: throttle: {} jobs in {:.1}s, {} failed, 429s server {} client {}",
        r.jobs, r.secs, r.failed, r.server_429, r.client_429
    );
    ensure!(
        r.failed == 0,
        "{} of {} deletes failed under throttling",
        r.failed,
        r.jobs
    );
    Ok(Row {
        scenario: format!(
            "delete {} jobs through throttled ARM (deletes bucket {} refilled {}/s), {} invocations x {} in flight",
            r.jobs, r.bucket.capacity, r.bucket.per_sec, r.invocations, r.concurrency
        ),
        unit: "deletes/s",
        ours: r.rate(),
        ceiling: Some(r.ceiling_rate()),
        azcopy: None,
        note: format!(
            "{} failed; {} 429s answered (client waited out {}); ceiling = the bucket's best: {} at once, the rest at {}/s; {:.1} s",
            r.failed, r.server_429, r.client_429, r.bucket.capacity, r.bucket.per_sec, r.secs
        ),
    })
}
