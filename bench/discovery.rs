//! Discovery scenario: the subject's runs found among 1k / 10k (/ 100k) runs by our discovery,
//! against the raw client listing and reading the same run documents.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::raw::Raw;
use anyhow::ensure;
use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
use azureml_dsr::adapters::local::directory::FileDirectory;
use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::adapters::local::telemetry::LocalTelemetry;
use azureml_dsr::domain::plan::ResourceType;
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::domain::request::RequestKind;
use azureml_dsr::domain::slice::SliceTask;
use azureml_dsr::domain::subject::ResolvedSubject;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::functions::{discovery, Services, Settings};
use azureml_dsr::ports::blob::BlobStore;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::seed::*;
use crate::{fmt, median, Opts, Row, RAW_CONCURRENCY, SUBJECT_OID, WS_ACCOUNT};

pub(crate) fn bench_ws(runs: usize) -> WorkspaceId {
    WorkspaceId::parse(&format!(
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-bench/providers/Microsoft.MachineLearningServices/workspaces/bench-{runs}"
    ))
    .expect("workspace id")
}

pub(crate) fn services(store: Arc<dyn BlobStore>, dir: &Path) -> Services {
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

pub(crate) fn jobs_task(ws: &WorkspaceId) -> SliceTask {
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
pub(crate) fn run_doc(ws: &WorkspaceId, i: usize, every: usize) -> (String, Bytes, Bytes) {
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
pub(crate) async fn seed_runs(
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

pub(crate) async fn bench_discovery(
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
pub(crate) async fn discover_runs(svc: &Services, task: &SliceTask) -> anyhow::Result<usize> {
    // One unbounded page: discovery only, nothing written to the state store (as before).
    let mut pager = svc.state().inventory_pager(task, usize::MAX, false);
    let found = discovery::discover(svc, task, &mut pager)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    pager.push(found.entries).await?;
    let inv = pager.finish(found.notes, found.candidates).await?;
    Ok(inv
        .entries
        .iter()
        .filter(|e| matches!(&e.item, azureml_dsr::domain::slice::Item::Resource { .. }))
        .count())
}

pub(crate) fn memchr_contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
