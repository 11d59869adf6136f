//! Discovery: what belongs to the subject in one workspace, per resource type. Pure decisions
//! (who matches) live in `domain::subject`; this module walks the ports.
//!
//! Collateral protection: files behind a model or data asset are only looked for in the
//! workspace's own blob datastores (never another workspace's, never the service's state
//! account), and only taken when no asset or job of another user is in or over the same folder;
//! a job's folders are named by the job's and its child runs' names and data container ids.
//!
//! Attribution: a job is the subject's only when its run-history record names the subject's
//! object id (`domain::attribution`); ARM's `systemData.createdBy` of a job is a display name
//! and is never used. A job whose creator cannot be established is left untouched and listed.

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{FnError, Services};
use crate::domain::attribution::{
    attribute, retention_hold, Attribution, RunRecord, UNATTRIBUTED_NOTE,
};
use crate::domain::holds::HoldSet;
use crate::domain::plan::ResourceType;
use crate::domain::request::RequestKind;
use crate::domain::slice::{Item, SliceTask};
use crate::ports::blob::BlobStoreExt;
use crate::ports::control_plane::{ArmKind, ControlPlaneError, Datastore, WorkspaceInfo};
use crate::ports::run_history::RunHistoryError;
use crate::state::{Inventory, InventoryEntry};

/// A discovery failure that retrying cannot fix (the slice fails with this reason).
#[derive(Debug)]
pub enum DiscoveryError {
    Permanent(String),
    Retry(FnError),
}

impl From<FnError> for DiscoveryError {
    fn from(e: FnError) -> Self {
        match e {
            // A fault every delivery would repeat: fail the slice now (see `FnError`'s mappings).
            FnError::BadRequest(m) => DiscoveryError::Permanent(m),
            e => DiscoveryError::Retry(e),
        }
    }
}
impl From<crate::ports::blob::StoreError> for DiscoveryError {
    fn from(e: crate::ports::blob::StoreError) -> Self {
        DiscoveryError::Retry(e.into())
    }
}
impl From<ControlPlaneError> for DiscoveryError {
    fn from(e: ControlPlaneError) -> Self {
        match e {
            ControlPlaneError::WorkspaceNotFound => {
                DiscoveryError::Permanent("workspace not found".into())
            }
            other => DiscoveryError::Retry(other.into()),
        }
    }
}

pub async fn discover(svc: &Services, task: &SliceTask) -> Result<Inventory, DiscoveryError> {
    let ws = svc.control.workspace(&task.workspace).await?;
    svc.state().record_workspace(&ws).await?;
    match task.resource_type {
        ResourceType::Jobs => jobs(svc, task, &ws).await,
        ResourceType::Models => {
            assets(
                svc,
                task,
                &ws,
                ArmKind::ModelVersion,
                "/properties/modelUri",
            )
            .await
        }
        ResourceType::Data => {
            assets(svc, task, &ws, ArmKind::DataVersion, "/properties/dataUri").await
        }
        ResourceType::Compute => compute(svc, task).await,
        ResourceType::Notebooks => notebooks(svc, task, &ws).await,
        ResourceType::Telemetry => telemetry(svc, task, &ws).await,
    }
}

fn resource_entry(kind: ArmKind, doc: &Value) -> Option<InventoryEntry> {
    let id = doc.get("id")?.as_str()?.to_string();
    Some(InventoryEntry {
        item: Item::Resource {
            resource_type: kind,
            id,
        },
        doc: Some(doc.clone()),
        doc_sha256: None,
        hold: None,
    })
}

async fn blobs_under(
    svc: &Services,
    account: &str,
    container: &str,
    prefix: &str,
    out: &mut Vec<InventoryEntry>,
) -> Result<(), DiscoveryError> {
    match svc.store.list_all(account, container, prefix).await {
        Ok(items) => {
            out.extend(items.into_iter().map(|b| InventoryEntry {
                item: Item::Blob {
                    account: account.into(),
                    container: container.into(),
                    name: b.name,
                    size: b.size,
                },
                doc: None,
                doc_sha256: None,
                hold: None,
            }));
            Ok(())
        }
        Err(crate::ports::blob::StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A resource name that can be used as one path segment.
fn safe_segment(n: &str) -> bool {
    crate::domain::subject::valid_alias(n) && !n.contains('/')
}

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

/// What run history says about one listed job: its record, or why it has none (404, or an
/// answer that is not one). A throttled or failing service is a retry, never "nobody's".
async fn job_run(
    svc: &Services,
    ws: &WorkspaceInfo,
    name: &str,
) -> Result<Result<RunRecord, String>, DiscoveryError> {
    match svc.run_history.run(ws, name).await {
        Ok(Some(r)) => Ok(Ok(r)),
        Ok(None) => Ok(Err("run history has no record of it".into())),
        Err(RunHistoryError::Transient(m)) => Err(DiscoveryError::Retry(FnError::Transient(
            crate::logging::redact(&format!("run history: {m}")),
        ))),
        Err(RunHistoryError::Other(m)) => Ok(Err(crate::logging::redact(&format!(
            "run history could not be read: {m}"
        )))),
    }
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

async fn jobs(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
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
        let found = futures::stream::iter(matched)
            .map(|(doc, run)| job_entries(svc, task, ws, &holds, doc, run))
            .buffered(svc.settings.concurrency.max(1))
            .try_collect::<Vec<(Vec<InventoryEntry>, Vec<String>, Vec<String>)>>();
        let (found, next_page) = match next {
            Some(n) => {
                let fetch = svc.control.list(&task.workspace, ArmKind::Job, Some(n));
                let (found, next_page) = futures::future::join(found, fetch).await;
                (found?, Some(next_page?))
            }
            None => (found.await?, None),
        };
        for (e, note, runs) in found {
            entries.extend(e);
            notes.extend(note);
            names.extend(runs);
        }
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
    super::workspace_deleted::record_job_names(&svc.state(), &task.workspace, names).await?;
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
                if let Some(setup_run) = setup_run {
                    match job_run(svc, ws, &setup_run).await? {
                        Err(_) => own(&ws.artifact_container, setup),
                        Ok(_) => notes.push(format!(
                            "job {name:?}: a setup folder is also the folder of another run; it was left in place"
                        )),
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
    entry.doc = Some(serde_json::json!({
        "job": doc,
        "runHistory": run.as_ref().map(|r| r.doc.clone()),
        "childRuns": children.iter().map(|c| c.doc.clone()).collect::<Vec<_>>(),
    }));
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
    entries.push(entry);
    let runs = run
        .iter()
        .chain(children.iter())
        .flat_map(folder_names)
        .collect();
    Ok((entries, notes, runs))
}

/// Where an asset's files are: (account, container, path).
pub type Location = (String, String, String);

/// Where an asset URI points, in one of `ws`'s own blob datastores, or why it is not searched.
/// Accepted: `azureml://[subscriptions/<s>/resourcegroups/<rg>/workspaces/<w>/]datastores/<ds>/paths/<p>`
/// where the workspace segments (if any) name `ws` and `<ds>` is one of its blob datastores;
/// `https://<account>.blob.core.windows.net/<container>/<p>` where (account, container) is one of
/// them. Never the service's own state account, whatever a datastore says. The reason names no
/// path (paths can hold personal data).
pub fn resolve_uri(
    ws: &crate::domain::workspace::WorkspaceId,
    datastores: &[Datastore],
    state_account: &str,
    uri: &str,
) -> Result<Location, &'static str> {
    let (account, container, path) = if let Some(rest) = uri.strip_prefix("azureml://") {
        let (head, path) = rest
            .split_once("/paths/")
            .ok_or("an azureml URI without a datastore path")?;
        let seg: Vec<&str> = head.split('/').collect();
        let ds_name = match seg.as_slice() {
            ["datastores", ds] => *ds,
            [s, sub, r, rg, w, name, "datastores", ds]
                if s.eq_ignore_ascii_case("subscriptions")
                    && r.eq_ignore_ascii_case("resourcegroups")
                    && w.eq_ignore_ascii_case("workspaces") =>
            {
                let named = crate::domain::workspace::WorkspaceId::parse(&format!(
                    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}"
                ));
                if named.as_ref() != Ok(ws) {
                    return Err("it points into another workspace");
                }
                *ds
            }
            _ => return Err("an azureml URI of a form that is not a workspace datastore path"),
        };
        let ds = datastores
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(ds_name))
            .ok_or("it names a datastore this workspace does not have")?;
        if !ds.is_blob() {
            return Err("its datastore is not a blob datastore");
        }
        (ds.account.clone(), ds.container.clone(), path.to_string())
    } else if let Some(rest) = uri.strip_prefix("https://") {
        let (host, rest) = rest.split_once('/').ok_or("an https URI without a path")?;
        let account = host
            .to_ascii_lowercase()
            .strip_suffix(".blob.core.windows.net")
            .ok_or("an https URI that is not Azure Blob Storage")?
            .to_string();
        if account.eq_ignore_ascii_case(state_account) {
            return Err("it points into this service's own state account");
        }
        let (container, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !datastores
            .iter()
            .any(|d| d.is_blob() && d.account == account && d.container == container)
        {
            return Err("it is not in one of this workspace's datastores");
        }
        (account, container.to_string(), path.to_string())
    } else {
        return Err("a URI scheme that is not searched");
    };
    if account.eq_ignore_ascii_case(state_account) {
        return Err("it points into this service's own state account");
    }
    if container.is_empty()
        || path.contains(['?', '#', '\\'])
        || path.starts_with('/')
        || path
            .split('/')
            .any(|seg| seg == "." || seg == ".." || seg.chars().any(char::is_control))
    {
        return Err("its path is not a plain blob path");
    }
    Ok((account, container, path))
}

/// Two asset locations overlap when one is a folder containing the other (or they are equal).
fn overlaps(a: &Location, b: &Location) -> bool {
    if a.0 != b.0 || a.1 != b.1 {
        return false;
    }
    let (pa, pb) = (a.2.trim_end_matches('/'), b.2.trim_end_matches('/'));
    pa == pb
        || pa.starts_with(&format!("{pb}/"))
        || pb.starts_with(&format!("{pa}/"))
        || pa.is_empty()
        || pb.is_empty()
}

/// Whose an asset is, from the strongest evidence it carries (`domain::review`).
enum AssetClass {
    /// Produced by `run`, one of the subject's runs (run history says so).
    Owned { run: String, evidence: String },
    /// Only `systemData` ties it to the subject: listed for review, never acted on.
    Candidate(String),
    /// Someone else's, or nothing ties it to the subject.
    Other,
}

async fn classify_asset(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
    doc: &Value,
    location: Option<&Location>,
) -> Result<AssetClass, DiscoveryError> {
    use crate::domain::review::{candidate_evidence, declared_run, run_of_folder};
    let reference = declared_run(doc).or_else(|| {
        location
            .filter(|(account, _, _)| *account == ws.storage_account)
            .and_then(|(_, container, path)| {
                run_of_folder(
                    &ws.blobstore_container,
                    &ws.artifact_container,
                    container,
                    path,
                )
            })
    });
    let mut missing = "no run names it".to_string();
    if let Some(r) = reference {
        match job_run(svc, ws, &r.run_id).await? {
            Ok(rec) => match attribute(&task.subject, rec.creator.as_ref()) {
                Attribution::Subject => {
                    return Ok(AssetClass::Owned {
                        evidence: format!(
                        "produced by run {:?} ({}), which run history attributes to the subject",
                        r.run_id, r.via
                    ),
                        run: r.run_id,
                    })
                }
                // The run that produced it is someone else's: a namesake's, whatever the name.
                Attribution::Other => return Ok(AssetClass::Other),
                Attribution::Unknown => {
                    missing = format!(
                        "{} names run {:?}, whose creator run history cannot tell",
                        r.via, r.run_id
                    )
                }
            },
            Err(why) => missing = format!("{} names run {:?}, but {why}", r.via, r.run_id),
        }
    }
    Ok(
        match candidate_evidence(&task.subject, doc.get("systemData")) {
            Some(ev) => AssetClass::Candidate(format!("{ev}; {missing}")),
            None => AssetClass::Other,
        },
    )
}

/// Models or data assets: the subject's (produced by one of their runs) into the inventory,
/// display-name-only matches into its review candidates. Files are taken only where no other
/// asset (nor a job area, except the producing run's own folder) is in or over them.
async fn assets(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
    kind: ArmKind,
    uri_ptr: &str,
) -> Result<Inventory, DiscoveryError> {
    let all = svc.control.list_all(&task.workspace, kind).await?;
    // Locations used by anyone else's assets of either kind: never touched.
    let other_kind = if kind == ArmKind::ModelVersion {
        ArmKind::DataVersion
    } else {
        ArmKind::ModelVersion
    };
    let others_of_other_kind = svc.control.list_all(&task.workspace, other_kind).await?;
    let datastores = svc.control.datastores(&task.workspace).await?;
    let state_account = svc.settings.state_account.as_str();
    let location = |d: &Value| -> Result<Location, &'static str> {
        let uri = d
            .pointer(uri_ptr)
            .or_else(|| d.pointer("/properties/dataUri"))
            .or_else(|| d.pointer("/properties/modelUri"))
            .and_then(Value::as_str)
            .ok_or("it has no URI")?;
        resolve_uri(&task.workspace, &datastores, state_account, uri)
    };
    let mut classes = Vec::with_capacity(all.len());
    for d in &all {
        classes.push(classify_asset(svc, task, ws, d, location(d).ok().as_ref()).await?);
    }
    // The other kind's assets are foreign unless proven the subject's.
    let mut foreign_other: Vec<Location> = Vec::new();
    for d in &others_of_other_kind {
        let Ok(loc) = location(d) else { continue };
        if !matches!(
            classify_asset(svc, task, ws, d, Some(&loc)).await?,
            AssetClass::Owned { .. }
        ) {
            foreign_other.push(loc);
        }
    }

    let mut entries = Vec::new();
    let mut notes = Vec::new();
    let mut candidates = Vec::new();
    for (i, doc) in all.iter().enumerate() {
        let (owned_run, evidence) = match &classes[i] {
            AssetClass::Other => continue,
            AssetClass::Owned { run, evidence } => (Some(run.as_str()), evidence.clone()),
            AssetClass::Candidate(evidence) => (None, evidence.clone()),
        };
        let Some(entry) = resource_entry(kind, doc) else {
            continue;
        };
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
        let what = if owned_run.is_some() {
            kind.as_str().to_string()
        } else {
            format!("{} (for review)", kind.as_str())
        };
        // Every asset not proven the subject's (candidates too: one may be a namesake's).
        let foreign: Vec<Location> = all
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i && !matches!(classes[*j], AssetClass::Owned { .. }))
            .filter_map(|(_, d)| location(d).ok())
            .chain(foreign_other.iter().cloned())
            .collect();
        let mut found = Vec::new();
        match location(doc) {
            Ok(loc) if foreign.iter().any(|f| overlaps(&loc, f)) => {
                notes.push(format!("{what} {id}: its files are shared with another user's assets or jobs and were left in place"));
            }
            Ok(loc) if in_own_run_folder(ws, &loc, owned_run) => {
                // The producing run's folder is the job's: the jobs slice takes it (once).
                notes.push(format!("{what} {id}: its files are in the folder of the subject's run that produced it and are taken with that job"));
            }
            Ok(loc) if others_job_folders(ws).iter().any(|a| overlaps(&loc, a)) => {
                notes.push(format!("{what} {id}: its files are in a job area and not in the folder of the subject's run that produced it; they were left in place"));
            }
            Ok((account, container, path)) => {
                if path.ends_with('/') || path.is_empty() {
                    if path.is_empty() {
                        notes.push(format!("{what} {id}: it names a whole container, whose files are not provably the subject's; they were left in place"));
                    } else {
                        blobs_under(svc, &account, &container, &path, &mut found).await?;
                    }
                } else {
                    // A file, or a folder written without its trailing slash.
                    let mut listed = Vec::new();
                    blobs_under(svc, &account, &container, &path, &mut listed).await?;
                    found.extend(listed.into_iter().filter(|e| match &e.item {
                        Item::Blob { name, .. } => {
                            name == &path || name.starts_with(&format!("{path}/"))
                        }
                        _ => false,
                    }));
                }
            }
            Err(why) => notes.push(format!(
                "{what} {id}: its files were not searched and were left in place: {why}"
            )),
        }
        if owned_run.is_some() {
            entries.extend(found);
            entries.push(entry);
        } else {
            let review = crate::domain::review::ReviewItem::new(
                &task.key,
                kind,
                id,
                evidence,
                found.len() as u64,
            );
            found.push(entry);
            candidates.push(crate::state::Candidate {
                review,
                entries: found,
            });
        }
    }
    Ok(Inventory {
        entries,
        notes,
        candidates,
    })
}

/// Whether `loc` lies inside the folder of `run` (the subject's run that produced the asset):
/// `azureml/<run>/` in the blob store or `ExperimentRun/dcid.<run>/` in the artifact store.
fn in_own_run_folder(ws: &WorkspaceInfo, loc: &Location, run: Option<&str>) -> bool {
    let Some(run) = run else { return false };
    loc.0 == ws.storage_account
        && crate::domain::review::run_of_folder(
            &ws.blobstore_container,
            &ws.artifact_container,
            &loc.1,
            &loc.2,
        )
        .is_some_and(|r| r.run_id == run)
}

/// The job areas, claimed as a whole for everyone: which job or child run a folder belongs
/// to is only known from run history, and other people's child runs are not listed by ARM, so
/// an asset of the subject's reaching into a job area leaves its files in place.
fn others_job_folders(ws: &WorkspaceInfo) -> Vec<Location> {
    vec![
        (
            ws.storage_account.clone(),
            ws.blobstore_container.clone(),
            "azureml/".into(),
        ),
        (
            ws.storage_account.clone(),
            ws.artifact_container.clone(),
            "ExperimentRun/".into(),
        ),
    ]
}

async fn compute(svc: &Services, task: &SliceTask) -> Result<Inventory, DiscoveryError> {
    let mut entries = Vec::new();
    for doc in svc
        .control
        .list_all(&task.workspace, ArmKind::Compute)
        .await?
    {
        if crate::domain::attribution::personal_compute_of(&task.subject, &doc) {
            entries.extend(resource_entry(ArmKind::Compute, &doc));
        }
    }
    Ok(Inventory {
        entries,
        notes: vec![],
        candidates: vec![],
    })
}

/// The subject's folders in the workspace's Azure Files share (`Users/<alias>/`, from
/// [`crate::domain::subject::ResolvedSubject::notebook_prefixes`]): every file below them. A
/// folder that does not exist holds nothing; a missing share or a refused listing fails the
/// slice with its reason (never "no files").
async fn notebooks(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
) -> Result<Inventory, DiscoveryError> {
    use crate::ports::file_share::{FileShareExt, ShareError};
    let prefixes = task.subject.notebook_prefixes();
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    if task.subject.notebook_alias_conflicts > 0 {
        // The folder name is shared: it may hold another person's files (issue 14, item 5).
        notes.push(format!("{UNATTRIBUTED_NOTE} a notebooks folder name the directory gives the subject is also another user's; that Users/ folder was left untouched for a person to decide"));
    }
    if prefixes.is_empty() && task.subject.notebook_alias_conflicts > 0 {
        return Ok(Inventory {
            entries,
            notes,
            candidates: vec![],
        });
    }
    if prefixes.is_empty() {
        notes.push(if task.subject.upn.is_some() {
            // A departed user (no directory entry): the request's UPN alone never names a
            // folder to act on (issue 14, item 5).
            format!("{UNATTRIBUTED_NOTE} the subject has no directory entry, and a UPN from the request alone never names a notebooks folder; Users/ folders were not searched and were left untouched")
        } else {
            "no notebooks folder name is known for the subject (no UPN or alias); user files were not searched".into()
        });
        return Ok(Inventory {
            entries,
            notes,
            candidates: vec![],
        });
    }
    let (account, share) = (&ws.storage_account, &ws.file_share);
    for p in prefixes {
        match svc.files.list_tree(account, share, &p).await {
            Ok(tree) => entries.extend(tree.files.into_iter().map(|f| InventoryEntry {
                item: Item::File {
                    account: account.clone(),
                    share: share.clone(),
                    path: f.path,
                    size: f.size,
                },
                doc: None,
                doc_sha256: None,
                hold: None,
            })),
            Err(ShareError::DirectoryNotFound(_)) => {}
            Err(e @ (ShareError::ShareNotFound(_) | ShareError::Forbidden(_))) => {
                return Err(DiscoveryError::Permanent(format!(
                    "notebooks share {account}/{share}: {e}"
                )))
            }
            Err(e) => return Err(DiscoveryError::Retry(FnError::Transient(e.to_string()))),
        }
    }
    if task.kind.mutates() {
        match svc.files.retention(account, share).await {
            Ok(r) => notes.extend(r.note(share)),
            Err(e) => notes.push(format!(
                "share snapshots of {share} could not be checked ({e}): deleted files may remain in them"
            )),
        }
    }
    Ok(Inventory {
        entries,
        notes,
        candidates: vec![],
    })
}

async fn telemetry(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
) -> Result<Inventory, DiscoveryError> {
    let tables = svc
        .telemetry
        .query(ws, &task.subject)
        .await
        .map_err(|e| DiscoveryError::Retry(FnError::Transient(e.to_string())))?;
    let entries = tables
        .into_iter()
        .map(|t| InventoryEntry {
            item: Item::Telemetry {
                table: t.table,
                records: t.rows.len() as u64,
                destination: Some(t.destination),
            },
            doc: Some(Value::Array(t.rows)),
            doc_sha256: None,
            hold: None,
        })
        .collect();
    Ok(Inventory {
        entries,
        notes: vec![],
        candidates: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workspace::WorkspaceId;

    const WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/mlw-0";

    fn stores() -> Vec<Datastore> {
        let blob = |name: &str, account: &str, container: &str| Datastore {
            name: name.into(),
            datastore_type: "AzureBlob".into(),
            account: account.into(),
            container: container.into(),
        };
        vec![
            blob("workspaceblobstore", "mlwstore0", "azureml-blobstore-1"),
            blob("workspaceartifactstore", "mlwstore0", "azureml"),
            blob("projectdata", "datalake0", "project"),
            // A datastore someone registered on the service's own account: never followed.
            blob("sneaky", "dsrstate", "dsr-exports"),
            Datastore {
                name: "workspaceworkingdirectory".into(),
                datastore_type: "AzureFile".into(),
                account: "mlwstore0".into(),
                container: "code-1".into(),
            },
        ]
    }

    fn resolve(uri: &str) -> Result<Location, &'static str> {
        resolve_uri(&WorkspaceId::parse(WS).unwrap(), &stores(), "dsrstate", uri)
    }

    #[test]
    fn asset_uris_resolve_only_into_the_workspaces_own_blob_datastores() {
        let loc = |a: &str, c: &str, p: &str| Ok((a.to_string(), c.to_string(), p.to_string()));
        assert_eq!(
            resolve("azureml://datastores/workspaceblobstore/paths/UI/x/data.csv"),
            loc("mlwstore0", "azureml-blobstore-1", "UI/x/data.csv")
        );
        assert_eq!(
            resolve("azureml://subscriptions/00000000-1111-2222-3333-444444444444/resourcegroups/RG-ML/workspaces/MLW-0/datastores/workspaceblobstore/paths/m/"),
            loc("mlwstore0", "azureml-blobstore-1", "m/")
        );
        // Any registered blob datastore, not only the two defaults.
        assert_eq!(
            resolve("azureml://datastores/projectdata/paths/a/b.csv"),
            loc("datalake0", "project", "a/b.csv")
        );
        assert_eq!(
            resolve("https://mlwstore0.blob.core.windows.net/azureml-blobstore-1/UI/x.csv"),
            loc("mlwstore0", "azureml-blobstore-1", "UI/x.csv")
        );
        for bad in [
            // Another workspace, subscription or resource group.
            "azureml://subscriptions/00000000-1111-2222-3333-444444444444/resourcegroups/rg-ml/workspaces/mlw-1/datastores/workspaceblobstore/paths/m/",
            "azureml://subscriptions/99999999-1111-2222-3333-444444444444/resourcegroups/rg-ml/workspaces/mlw-0/datastores/workspaceblobstore/paths/m/",
            "azureml://subscriptions/00000000-1111-2222-3333-444444444444/resourcegroups/other/workspaces/mlw-0/datastores/workspaceblobstore/paths/m/",
            // A datastore the workspace does not have, a file datastore, the state account.
            "azureml://datastores/elsewhere/paths/a",
            "azureml://datastores/workspaceworkingdirectory/paths/Users/alice/",
            "azureml://datastores/sneaky/paths/requests/",
            "https://dsrstate.blob.core.windows.net/dsr-exports/requests/T-1/x",
            // Storage that is no datastore of the workspace.
            "https://otheraccount.blob.core.windows.net/data/x.csv",
            "https://mlwstore0.blob.core.windows.net/other-container/x.csv",
            // Malformed or unsupported.
            "azureml://datastores/workspaceblobstore/paths/a/../../b",
            "azureml://datastores/workspaceblobstore/paths//etc",
            "azureml://locations/westeurope/workspaces/x/data/y/versions/1",
            "azureml://datastores/workspaceblobstore",
            "https://mlwstore0.blob.core.windows.net/azureml-blobstore-1/x.csv?sig=abc",
            "wasbs://data@mlwstore0.blob.core.windows.net/x.csv",
            "",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn resolution_never_panics_and_never_leaves_the_datastores(uri in "\\PC{0,120}") {
            if let Ok((account, container, _)) = resolve(&uri) {
                proptest::prop_assert!(account != "dsrstate");
                proptest::prop_assert!(stores().iter().any(|d| d.is_blob() && d.account == account && d.container == container));
            }
        }
    }
}
