//! Memory scenarios: peak RSS (VmHWM) of a fresh child process doing only one piece of work —
//! scanning runs on Azurite and on the embedded file store, exporting a large blob, building an
//! export archive — and the child's entry point.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::raw::Raw;
use anyhow::{bail, ensure, Context};
use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
use azureml_dsr::adapters::local::fs_blob::FsBlobStore;
use azureml_dsr::domain::slice::ItemStatus;
use azureml_dsr::functions::slice;
use azureml_dsr::ports::blob::{BlobRef, BlobStore};
use futures::{StreamExt, TryStreamExt};

use crate::discovery::*;
use crate::seed::*;
use crate::{bench_store, fmt, Opts, Row, FS_SUBJECT_RUNS, WS_ACCOUNT};

pub(crate) async fn bench_memory(o: &Opts, raw: &Raw, base: &str) -> anyhow::Result<Vec<Row>> {
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
pub(crate) async fn bench_memory_fs(o: &Opts) -> anyhow::Result<Vec<Row>> {
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
pub(crate) async fn bench_archive(o: &Opts) -> anyhow::Result<Vec<Row>> {
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
        let report = crate::archive::seed(root.path(), req, files, 1024, big).await?;
        let seeded = t.elapsed().as_secs_f64();
        let rep = report.to_string_lossy().to_string();
        let load = run_child(&["archive-load", &r, &rep]).await?;
        let t = Instant::now();
        let peak = run_child(&["archive", &r, &rep]).await?;
        let dt = t.elapsed().as_secs_f64();
        let (entries, bytes) = crate::archive::verify(root.path(), req)?;
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

pub(crate) async fn run_child(args: &[&str]) -> anyhow::Result<f64> {
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

pub(crate) fn vm_hwm_kb() -> anyhow::Result<u64> {
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

pub(crate) fn child(args: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kind = args.first().context("child kind")?.as_str();
        let base = args.get(1).context("base url or store folder")?;
        if let "archive" | "archive-load" = kind {
            let report = args.get(2).context("report file")?;
            crate::archive::child(base, report, kind == "archive-load").await?;
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
