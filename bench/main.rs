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
//!   (`bench/archive.rs`), against the same child only loading the report;
//! - throttle: ARM deletes, Graph lookups and Log Analytics purges through the production
//!   adapters against token-bucket stand-ins (`throttle*.rs`), against the bucket's best rate;
//! - dsr: whole requests through the local runtime, counted (`dsr.rs`).
//!
//! This file holds the options, the dispatch and the shared reporting; each scenario is its own
//! module (`delete.rs`, `export.rs`, `discovery.rs`, `memory.rs`, `handler.rs`, `startup.rs`,
//! `throttle*.rs`, `dsr.rs`), with the seeding helpers in `seed.rs` and azcopy in `azcopy.rs`.
//!
//! `--smoke` runs everything at tiny sizes in seconds (CI); it asserts correctness of each
//! operation, never timings.

#[path = "archive.rs"]
mod archive;
mod azcopy;
/// The test suite's Azurite harness (pinned npm install into .build/azurite, free port).
#[path = "../tests/it/support/azurite.rs"]
#[allow(dead_code)]
mod azurite;
mod delete;
mod discovery;
mod dsr;
mod export;
/// Request forwarding shared with the tests' fault proxy (test and benchmark code only).
#[path = "../tests/it/support/forward.rs"]
mod forward;
mod handler;
mod memory;
mod raw;
mod seed;
mod startup;
mod throttle;
mod throttle_graph;
mod throttle_purge;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use azureml_dsr::adapters::azure::blob::AzureBlobStore;
use azureml_dsr::ports::blob::BlobStore;
use raw::Raw;

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
    /// Scenarios to run (all when empty): delete, export, discovery, memory, archive, handler,
    /// startup, throttle (or one of throttle-arm, throttle-graph, throttle-purge), dsr.
    only: Vec<String>,
    /// Throttled ARM: jobs deleted, the deletes bucket's capacity and refill rate per second.
    arm_jobs: usize,
    arm_burst: f64,
    arm_rate: f64,
    /// Throttled Graph: lookups, the resource-unit bucket's capacity and refill per second.
    graph_lookups: usize,
    graph_burst: f64,
    graph_rate: f64,
    /// Throttled Log Analytics purge: purges sent, the bucket's capacity and refill per second.
    purges: usize,
    purge_burst: f64,
    purge_rate: f64,
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
            // Graph's bucket holds 10 s of refill (8,000 RU per 10 s), scaled to 100/s.
            graph_lookups: 3_000,
            graph_burst: 1_000.0,
            graph_rate: 100.0,
            // The purge limit (50 per hour) with the hour scaled to 5 s: 50 at once, 10/s.
            purges: 300,
            purge_burst: 50.0,
            purge_rate: 10.0,
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
                graph_lookups: 150,
                graph_burst: 50.0,
                graph_rate: 50.0,
                purges: 40,
                purge_burst: 10.0,
                purge_rate: 10.0,
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
                graph_lookups: 10_000,
                graph_burst: 1_000.0,
                graph_rate: 100.0,
                purges: 600,
                purge_burst: 50.0,
                purge_rate: 10.0,
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
                "--graph-lookups" => o.graph_lookups = num()?.max(1),
                "--graph-burst" => o.graph_burst = num()?.max(1) as f64,
                "--graph-rate" => o.graph_rate = num()?.max(1) as f64,
                "--purges" => o.purges = num()?.max(1),
                "--purge-burst" => o.purge_burst = num()?.max(1) as f64,
                "--purge-rate" => o.purge_rate = num()?.max(1) as f64,
                "--heavy-runs" => o.heavy_runs = num()?.max(1),
                "--heavy-files" => o.heavy_files = num()?.max(1),
                // 0 leaves the light user out (a heavy-only run).
                "--light-runs" => o.light_runs = num()?,
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
        return memory::child(&args[2..]);
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
        let azcopy = azcopy::Azcopy::find();
        if azcopy.is_none() {
            eprintln!("bench: azcopy not installed (npm install --prefix .build/azcopy @azure-tools/azcopy-linux); its columns print n/a");
        }
        if want("delete") {
            rows.extend(delete::bench_delete(&o, &raw, &store, azcopy.as_ref()).await?);
        }
        if want("export") {
            rows.extend(export::bench_export(&o, &raw, &store, azcopy.as_ref()).await?);
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
        rows.extend(discovery::bench_discovery(&o, &raw, &store).await?);
        if want("memory") {
            rows.extend(memory::bench_memory(&o, &raw, &az.base_url).await?);
        }
    }
    if want("memory") {
        rows.extend(memory::bench_memory_fs(&o).await?);
    }
    if want("archive") {
        rows.extend(memory::bench_archive(&o).await?);
    }
    if want("handler") {
        rows.extend(handler::bench_handler(&o).await?);
    }
    if want("startup") {
        rows.extend(startup::bench_startup(&o).await?);
    }
    // `throttle` runs all three; `throttle-arm`, `throttle-graph`, `throttle-purge` one each.
    let want_throttle = |s: &str| want("throttle") || want(s);
    rows.extend(throttle::bench_throttle(&o, want_throttle).await?);
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
            if size.runs_per_user == 0 {
                continue;
            }
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
