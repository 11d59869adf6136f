//! Discovery: what belongs to the subject in one workspace, per resource type. Pure decisions
//! (who matches) live in `domain::subject`; this module walks the ports.
//!
//! Collateral protection: files behind a model or data asset are only looked for in the
//! workspace's own blob datastores (never another workspace's, never the service's state
//! account), and only taken when no asset or job of another user is in or over the same folder;
//! a job's folders are named by the job's own name.

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{FnError, Services};
use crate::domain::holds::HoldSet;
use crate::domain::plan::ResourceType;
use crate::domain::request::RequestKind;
use crate::domain::slice::{Item, SliceTask};
use crate::ports::blob::BlobStoreExt;
use crate::ports::control_plane::{ArmKind, ControlPlaneError, Datastore, WorkspaceInfo};
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

fn job_matches(task: &SliceTask, doc: &Value) -> bool {
    if task.kind == RequestKind::Retention {
        let Some(cutoff) = task.cutoff else {
            return false;
        };
        let created = doc
            .pointer("/systemData/createdAt")
            .and_then(Value::as_str)
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            });
        return matches!(created, Some(c) if c < cutoff);
    }
    match doc.pointer("/properties/runHistory/createdBy") {
        Some(created_by) => task.subject.matches_run_creator(created_by),
        None => doc
            .get("systemData")
            .is_some_and(|sd| task.subject.matches_system_data(sd)),
    }
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
        let matched: Vec<Value> = page
            .value
            .into_iter()
            .filter(|doc| job_matches(task, doc))
            .collect();
        matched_jobs += matched.len();
        let found = futures::stream::iter(matched)
            .map(|doc| job_entries(svc, task, ws, &holds, doc))
            .buffered(svc.settings.concurrency.max(1))
            .try_collect::<Vec<(Vec<InventoryEntry>, Option<String>)>>();
        let (found, next_page) = match next {
            Some(n) => {
                let fetch = svc.control.list(&task.workspace, ArmKind::Job, Some(n));
                let (found, next_page) = futures::future::join(found, fetch).await;
                (found?, Some(next_page?))
            }
            None => (found.await?, None),
        };
        for (e, note) in found {
            entries.extend(e);
            notes.extend(note);
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
    Ok(Inventory { entries, notes })
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

/// One matched job: its run-history and output blobs, then the job itself (the order the
/// inventory has always had), with a creator's legal hold applied to all of them.
async fn job_entries(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
    holds: &HoldSet,
    doc: Value,
) -> Result<(Vec<InventoryEntry>, Option<String>), DiscoveryError> {
    let mut entries = Vec::new();
    let mut note = None;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(mut entry) = resource_entry(ArmKind::Job, &doc) else {
        return Ok((entries, note));
    };
    if safe_segment(&name) {
        // Run history artifacts and the job's outputs in the default datastore.
        blobs_under(
            svc,
            &ws.storage_account,
            &ws.artifact_container,
            &format!("ExperimentRun/dcid.{name}/"),
            &mut entries,
        )
        .await?;
        blobs_under(
            svc,
            &ws.storage_account,
            &ws.blobstore_container,
            &format!("azureml/{name}/"),
            &mut entries,
        )
        .await?;
    } else {
        note = Some(format!(
            "job {name:?} has a name that cannot be a folder; its files were not searched"
        ));
    }
    if task.kind == RequestKind::Retention {
        // A retention sweep has no subject of its own: a person under legal hold keeps
        // their job history.
        if let Some(hold) = creator_hold(holds, task, &doc) {
            for e in &mut entries {
                e.hold = Some(hold.clone());
            }
            entry.hold = Some(hold);
        }
    }
    entries.push(entry);
    Ok((entries, note))
}

fn creator_hold(
    holds: &HoldSet,
    task: &SliceTask,
    doc: &Value,
) -> Option<crate::domain::holds::HoldRef> {
    let oid = doc
        .pointer("/properties/runHistory/createdBy/userObjectId")
        .and_then(Value::as_str)?;
    let oid = uuid::Uuid::parse_str(oid).ok()?;
    holds
        .holds
        .iter()
        .filter(|h| h.subject_object_id == Some(oid))
        .filter(|h| h.workspace.as_ref().is_none_or(|w| *w == task.workspace))
        .find(|h| h.resource_types.is_empty() || h.resource_types.contains(&ResourceType::Jobs))
        .map(|h| crate::domain::holds::HoldRef {
            id: h.id.clone(),
            reason: h.reason.clone(),
        })
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
    let mine = |d: &Value| {
        d.get("systemData")
            .is_some_and(|sd| task.subject.matches_system_data(sd))
    };
    let location = |d: &Value| -> Result<Location, &'static str> {
        let uri = d
            .pointer(uri_ptr)
            .or_else(|| d.pointer("/properties/dataUri"))
            .or_else(|| d.pointer("/properties/modelUri"))
            .and_then(Value::as_str)
            .ok_or("it has no URI")?;
        resolve_uri(&task.workspace, &datastores, state_account, uri)
    };
    let mut foreign: Vec<Location> = all
        .iter()
        .chain(others_of_other_kind.iter())
        .filter(|d| !mine(d))
        .filter_map(|d| location(d).ok())
        .collect();
    // Job folders belong to the job's creator: an asset reaching over or into another user's
    // job folders leaves them alone. Jobs are only listed when an asset of the subject's lies in
    // or over a job area.
    let job_areas: [Location; 2] = [
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
    ];
    if all
        .iter()
        .filter(|d| mine(d))
        .filter_map(|d| location(d).ok())
        .any(|l| job_areas.iter().any(|a| overlaps(&l, a)))
    {
        foreign.extend(others_job_folders(svc, task, ws).await?);
    }

    let mut entries = Vec::new();
    let mut notes = Vec::new();
    for doc in all.iter().filter(|d| mine(d)) {
        let Some(entry) = resource_entry(kind, doc) else {
            continue;
        };
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
        match location(doc) {
            Ok(loc) if foreign.iter().any(|f| overlaps(&loc, f)) => {
                notes.push(format!("{} {id}: its files are shared with another user's assets or jobs and were left in place", kind.as_str()));
            }
            Ok((account, container, path)) => {
                if path.ends_with('/') || path.is_empty() {
                    if path.is_empty() {
                        notes.push(format!("{} {id}: it names a whole container, whose files are not provably the subject's; they were left in place", kind.as_str()));
                    } else {
                        blobs_under(svc, &account, &container, &path, &mut entries).await?;
                    }
                } else {
                    // A file, or a folder written without its trailing slash.
                    let mut found = Vec::new();
                    blobs_under(svc, &account, &container, &path, &mut found).await?;
                    entries.extend(found.into_iter().filter(|e| match &e.item {
                        Item::Blob { name, .. } => {
                            name == &path || name.starts_with(&format!("{path}/"))
                        }
                        _ => false,
                    }));
                }
            }
            Err(why) => notes.push(format!(
                "{} {id}: its files were not searched and were left in place: {why}",
                kind.as_str()
            )),
        }
        entries.push(entry);
    }
    Ok(Inventory { entries, notes })
}

/// The folders of every job the subject did not create. A job whose name cannot be a folder
/// claims the whole job area (its folders cannot be told apart).
async fn others_job_folders(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
) -> Result<Vec<Location>, DiscoveryError> {
    let acct = ws.storage_account.clone();
    let mut out = Vec::new();
    for doc in svc.control.list_all(&task.workspace, ArmKind::Job).await? {
        if job_matches(task, &doc) {
            continue;
        }
        let name = doc.get("name").and_then(Value::as_str).unwrap_or_default();
        let (run, outputs) = if safe_segment(name) {
            (
                format!("ExperimentRun/dcid.{name}/"),
                format!("azureml/{name}/"),
            )
        } else {
            ("ExperimentRun/".into(), "azureml/".into())
        };
        out.push((acct.clone(), ws.artifact_container.clone(), run));
        out.push((acct.clone(), ws.blobstore_container.clone(), outputs));
    }
    Ok(out)
}

async fn compute(svc: &Services, task: &SliceTask) -> Result<Inventory, DiscoveryError> {
    let mut entries = Vec::new();
    for doc in svc
        .control
        .list_all(&task.workspace, ArmKind::Compute)
        .await?
    {
        let assigned = doc
            .pointer("/properties/properties/personalComputeInstanceSettings/assignedUser/objectId")
            .and_then(Value::as_str);
        let tenant = doc
            .pointer("/properties/properties/personalComputeInstanceSettings/assignedUser/tenantId")
            .and_then(Value::as_str);
        if assigned.is_some_and(|a| {
            task.subject.matches_object_id(a) && task.subject.matches_tenant(tenant)
        }) {
            entries.extend(resource_entry(ArmKind::Compute, &doc));
        }
    }
    Ok(Inventory {
        entries,
        notes: vec![],
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
    if prefixes.is_empty() {
        notes.push("no notebooks folder name is known for the subject (no UPN or alias); user files were not searched".into());
        return Ok(Inventory { entries, notes });
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
    Ok(Inventory { entries, notes })
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
