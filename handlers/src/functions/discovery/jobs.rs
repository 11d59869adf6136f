//! Jobs discovery: the workspace's jobs page by page, attributed by run history (never by
//! ARM's display name), each matched job's folders and its descendants' folders; the
//! schedules tied to the subject as review candidates; and the retention sweep's variant
//! (jobs by age, legal holds, the blast-radius guard).

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{blobs_under, job_run, resource_entry, safe_segment, DiscoveryError};
use crate::domain::attribution::{
    attribute, retention_hold, Attribution, RunRecord, UNATTRIBUTED_NOTE,
};
use crate::domain::holds::HoldSet;
use crate::domain::raw_json::RawJson;
use crate::domain::request::RequestKind;
use crate::domain::slice::SliceTask;
use crate::functions::{FnError, Services};
use crate::ports::control_plane::{ArmKind, WorkspaceInfo};
use crate::ports::run_history::RunHistoryError;
use crate::state::{Inventory, InventoryEntry, InventoryPager};

/// Whether a listed job is old enough for a retention sweep (retention only; who created a
/// job is decided from run history, see [`attribute_job`]).
fn older_than_cutoff(task: &SliceTask, doc: &Value) -> bool {
    let Some(cutoff) = task.cutoff else {
        return false;
    };
    let created = doc
        .pointer("/systemData/createdAt")
        .and_then(Value::as_str)
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        });
    matches!(created, Some(c) if c < cutoff)
}

/// Job types whose runs have child runs (pipeline steps, sweep trials, AutoML children).
fn has_children(doc: &Value) -> bool {
    doc.pointer("/properties/jobType")
        .and_then(Value::as_str)
        .is_some_and(|t| ["pipeline", "sweep", "automl"].contains(&t.to_ascii_lowercase().as_str()))
}

/// The names a run's folders in the artifact container carry (`dcid.<name>/`), for the record
/// a purged workspace is cleaned by: the run itself and, for a `dcid.<run>` container, its
/// `_setup` folder.
fn folder_names(r: &RunRecord) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(run) = r
        .data_container_id
        .as_deref()
        .and_then(|d| d.strip_prefix("dcid."))
    {
        out.push(run.to_string());
        out.push(format!("{run}_setup"));
    }
    out.push(r.run_id.clone());
    out.retain(|n| safe_segment(n));
    out
}

/// The note that makes a report say `needs_review`: a job nobody can attribute is left alone.
fn unattributed_note(name: &str, why: &str) -> String {
    format!(
        "{UNATTRIBUTED_NOTE} job {name:?} was left untouched: its creator cannot be established ({why})"
    )
}

pub(super) async fn jobs(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
    pager: &mut InventoryPager,
) -> Result<Inventory, DiscoveryError> {
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    // A retention sweep applies per-person holds to each job; read them once, as they are now.
    let holds = if task.kind == RequestKind::Retention {
        svc.holds().await?
    } else {
        HoldSet::default()
    };
    // Page by page: memory follows the subject's runs, not the workspace's (at most two pages
    // are held). The next page is fetched while the matched jobs of this one have their
    // folders listed (concurrently, order kept), so neither waits for the other.
    let mut page = svc
        .control
        .list(&task.workspace, ArmKind::Job, None)
        .await?;
    let (mut listed, mut matched_jobs) = (0usize, 0usize);
    // Every job's name, matched or not: once the workspace is deleted its run folders in the
    // shared artifact container can only be found by them (see `workspace_deleted`).
    let mut names = std::collections::BTreeSet::new();
    loop {
        let next = page.next_link.take();
        listed += page.value.len();
        names.extend(
            page.value
                .iter()
                .filter_map(|d| d.get("name").and_then(Value::as_str))
                .filter(|n| safe_segment(n))
                .map(str::to_string),
        );
        // Retention takes jobs by age; a request by who created them, which only run history
        // knows (ARM's systemData.createdBy is a display name).
        let listed_docs: Vec<String> = page
            .value
            .iter()
            .filter(|d| has_children(d))
            .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        let candidates: Vec<Value> = page
            .value
            .into_iter()
            .filter(|doc| task.kind != RequestKind::Retention || older_than_cutoff(task, doc))
            .collect();
        let looked_up: Vec<(Value, Result<RunRecord, String>)> = futures::stream::iter(candidates)
            .map(|doc| async move {
                let name = doc.get("name").and_then(Value::as_str).unwrap_or_default();
                let run = job_run(svc, ws, name).await?;
                Ok::<_, DiscoveryError>((doc, run))
            })
            .buffered(svc.settings.concurrency.max(1))
            .try_collect()
            .await?;
        if task.kind == RequestKind::Retention {
            // The nightly sweep keeps the record of run folder names fresh: child runs too, so
            // a purged workspace's pipeline steps and trials are cleaned with it.
            for name in &listed_docs {
                if let Ok(children) = svc.run_history.descendants(ws, name).await {
                    names.extend(children.iter().flat_map(folder_names));
                }
            }
        }
        let mut matched = Vec::new();
        for (doc, run) in looked_up {
            let name = doc.get("name").and_then(Value::as_str).unwrap_or_default();
            if task.kind == RequestKind::Retention {
                matched.push((doc, run.ok()));
                continue;
            }
            match run {
                Ok(r) => match attribute(&task.subject, r.creator.as_ref()) {
                    Attribution::Subject => matched.push((doc, Some(r))),
                    Attribution::Other => {}
                    Attribution::Unknown => {
                        notes.push(unattributed_note(name, "its run record names no object id"))
                    }
                },
                Err(why) => notes.push(unattributed_note(name, &why)),
            }
        }
        matched_jobs += matched.len();
        // Each job's entries go to the pager as soon as they are found (in order), not a whole
        // ARM page of jobs with all their files at once: at 100 files a job that was 10,000
        // entries per slice held together, and ten slices run at once (issue 19's peak RSS).
        let store_found = async {
            let mut found = futures::stream::iter(matched)
                .map(|(doc, run)| job_entries(svc, task, ws, &holds, doc, run))
                .buffered(svc.settings.concurrency.max(1));
            while let Some((e, note, runs)) = found.try_next().await? {
                // A request's entries are stored a page at a time as they are found; a
                // retention sweep keeps them (its blast-radius guard may hold them all, below).
                if task.kind == RequestKind::Retention {
                    entries.extend(e);
                } else {
                    pager.push(e).await?;
                }
                notes.extend(note);
                names.extend(runs);
            }
            Ok::<_, DiscoveryError>(())
        };
        let next_page = match next {
            Some(n) => {
                let fetch = svc.control.list(&task.workspace, ArmKind::Job, Some(n));
                let (stored, next_page) = futures::future::join(store_found, fetch).await;
                stored?;
                Some(next_page?)
            }
            None => {
                store_found.await?;
                None
            }
        };
        match next_page {
            Some(p) => page = p,
            None => break,
        }
    }
    if task.kind == RequestKind::Retention {
        if let Some(guard) = blast_radius_guard(
            matched_jobs,
            listed,
            svc.settings.job_retention_max_share_pct,
        ) {
            // Nothing of this sweep is deleted: every entry is held, and the report says why.
            notes.push(guard.reason.clone());
            for e in &mut entries {
                e.hold = Some(guard.clone());
            }
        }
    }
    crate::functions::workspace_deleted::record_job_names(&svc.state(), &task.workspace, names)
        .await?;
    // Schedules keep submitting jobs as their creator; a request (not a retention sweep)
    // looks at them with the jobs.
    let candidates = if task.kind == RequestKind::Retention {
        Vec::new()
    } else {
        schedules(svc, task).await?
    };
    Ok(Inventory {
        entries,
        notes,
        candidates,
        pages: None,
    })
}

/// The workspace's schedules (ARM `Schedules_List`, `listViewType=All`) that `systemData`
/// ties to the subject. A schedule records its creator only there — for Azure ML a display
/// name — and names no run of its own, so a match is a review candidate: exported or deleted
/// (which stops it) once a person approves, never on a name alone.
async fn schedules(
    svc: &Services,
    task: &SliceTask,
) -> Result<Vec<crate::state::Candidate>, DiscoveryError> {
    let mut out = Vec::new();
    for doc in svc
        .control
        .list_all(&task.workspace, ArmKind::Schedule)
        .await?
    {
        let Some(evidence) =
            crate::domain::review::candidate_evidence(&task.subject, doc.get("systemData"))
        else {
            continue;
        };
        let Some(entry) = resource_entry(ArmKind::Schedule, &doc) else {
            continue;
        };
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
        out.push(crate::state::Candidate {
            review: crate::domain::review::ReviewItem::new(
                &task.key,
                ArmKind::Schedule,
                id,
                format!("{evidence}; a schedule records no creator object id"),
                0,
            ),
            entries: vec![entry],
        });
    }
    Ok(out)
}

/// A retention sweep that would delete more than `max_share_pct` percent of a workspace's jobs
/// is more likely a wrong setting or clock than policy: it stops, as a hold on every item.
pub fn blast_radius_guard(
    matched: usize,
    listed: usize,
    max_share_pct: u32,
) -> Option<crate::domain::holds::HoldRef> {
    (matched * 100 > listed * max_share_pct as usize).then(|| crate::domain::holds::HoldRef {
        id: "blast-radius-guard".into(),
        reason: format!(
            "the sweep would delete {matched} of {listed} jobs, more than {max_share_pct}% of the workspace (DSR_JOB_RETENTION_MAX_SHARE): nothing was deleted; review, then raise the share or the retention"
        ),
    })
}

/// One matched job: its folders and those of every descendant run (pipeline steps, sweep
/// trials, AutoML children: Jobs_List does not return them), then the job itself (exported with
/// its run records), with a creator's legal hold applied to all of them in a retention sweep.
async fn job_entries(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
    holds: &HoldSet,
    doc: Value,
    run: Option<RunRecord>,
) -> Result<(Vec<InventoryEntry>, Vec<String>, Vec<String>), DiscoveryError> {
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(mut entry) = resource_entry(ArmKind::Job, &doc) else {
        return Ok((entries, notes, vec![]));
    };
    let children = match &run {
        None => Vec::new(),
        Some(_) => match svc.run_history.descendants(ws, &name).await {
            Ok(c) => c,
            Err(RunHistoryError::Transient(m)) => {
                return Err(DiscoveryError::Retry(FnError::Transient(
                    crate::logging::redact(&format!("run history: {m}")),
                )))
            }
            Err(RunHistoryError::Other(m)) => {
                notes.push(format!(
                    "{UNATTRIBUTED_NOTE} job {name:?}: its child runs could not be listed ({}); only the job's own folders were taken",
                    crate::logging::redact(&m)
                ));
                Vec::new()
            }
        },
    };
    // (container, prefix) of every folder the job and its descendants own.
    let mut folders: Vec<(String, String)> = Vec::new();
    // `dcid.<run>_setup/` folders already looked at (listed, and taken or left).
    let mut setup_listed = std::collections::BTreeSet::new();
    let mut own = |container: &str, prefix: String| {
        if !folders.iter().any(|(c, p)| c == container && *p == prefix) {
            folders.push((container.to_string(), prefix));
        }
    };
    if safe_segment(&name) {
        own(
            &ws.artifact_container,
            format!("ExperimentRun/dcid.{name}/"),
        );
        own(&ws.blobstore_container, format!("azureml/{name}/"));
    } else {
        notes.push(format!(
            "job {name:?} has a name that cannot be a folder; its files were not searched"
        ));
    }
    for r in run.iter().chain(children.iter()) {
        if r.run_id != name {
            if safe_segment(&r.run_id) {
                own(&ws.blobstore_container, format!("azureml/{}/", r.run_id));
            } else {
                notes.push(format!(
                    "job {name:?}: a child run has a name that cannot be a folder; its outputs were not searched"
                ));
            }
        }
        match r.artifact_prefixes() {
            Some([dcid, setup]) => {
                own(&ws.artifact_container, dcid);
                // `dcid.<run>_setup` is the run's, unless a run of that name exists.
                let setup_run = r
                    .data_container_id
                    .as_deref()
                    .and_then(|d| d.strip_prefix("dcid."))
                    .map(|run| format!("{run}_setup"));
                if let Some(setup_run) = setup_run.filter(|_| setup_listed.insert(setup.clone())) {
                    // Listed first: an empty or absent setup folder (most runs have none) holds
                    // nothing to take, so run history need not be asked whose it is (issue 19:
                    // one run-history read fewer per run, and no listing more).
                    let mut found = Vec::new();
                    blobs_under(svc, &ws.storage_account, &ws.artifact_container, &setup, &mut found)
                        .await?;
                    if !found.is_empty() {
                        match job_run(svc, ws, &setup_run).await? {
                            Err(_) => entries.extend(found),
                            Ok(_) => notes.push(format!(
                                "job {name:?}: a setup folder is also the folder of another run; it was left in place"
                            )),
                        }
                    }
                }
            }
            None if r.data_container_id.is_some() => notes.push(format!(
                "job {name:?}: a run's data container id cannot be a folder; its run files were not searched"
            )),
            None => {}
        }
    }
    for (container, prefix) in &folders {
        blobs_under(svc, &ws.storage_account, container, prefix, &mut entries).await?;
    }
    // The export carries the run records: they are the subject's run history.
    entry.doc = Some(RawJson::of(&serde_json::json!({
        "job": doc,
        "runHistory": run.as_ref().map(|r| &r.doc),
        "childRuns": children.iter().map(|c| &c.doc).collect::<Vec<_>>(),
    })));
    if task.kind == RequestKind::Retention {
        // A retention sweep has no subject of its own: a person under legal hold keeps their
        // job history, and a job nobody can attribute is kept while anyone is held here.
        let creator = run.as_ref().and_then(|r| r.creator.as_ref());
        if let Some(hold) = retention_hold(holds, &task.workspace, creator) {
            for e in &mut entries {
                e.hold = Some(hold.clone());
            }
            entry.hold = Some(hold);
        }
    }
    // Exactly one more: `push` alone would double the capacity of a job's file list.
    entries.reserve_exact(1);
    entries.push(entry);
    let runs = run
        .iter()
        .chain(children.iter())
        .flat_map(folder_names)
        .collect();
    Ok((entries, notes, runs))
}
