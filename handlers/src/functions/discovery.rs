//! Discovery: what belongs to the subject in one workspace, per resource type. Pure decisions
//! (who matches) live in `domain::subject`; this module walks the ports.
//!
//! Collateral protection: files behind a model or data asset are only taken when no asset of
//! another user points into the same folder; a job's folders are named by the job's own name.

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{FnError, Services};
use crate::domain::holds::HoldSet;
use crate::domain::plan::ResourceType;
use crate::domain::request::RequestKind;
use crate::domain::slice::{Item, SliceTask};
use crate::ports::blob::BlobStoreExt;
use crate::ports::control_plane::{ArmKind, ControlPlaneError, WorkspaceInfo};
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
            resource_type: kind.as_str().to_string(),
            id,
        },
        doc: Some(doc.clone()),
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
    loop {
        let next = page.next_link.take();
        listed += page.value.len();
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

/// Where an asset URI points: (account, container, path) in a datastore we can resolve.
pub fn resolve_uri(ws: &WorkspaceInfo, uri: &str) -> Option<(String, String, String)> {
    if let Some(rest) = uri.strip_prefix("azureml://") {
        // azureml://[subscriptions/../resourcegroups/../workspaces/../]datastores/<ds>/paths/<path>
        let idx = rest.find("datastores/")?;
        let after = &rest[idx + "datastores/".len()..];
        let (ds, path) = after.split_once("/paths/")?;
        let container = match ds {
            "workspaceblobstore" => ws.blobstore_container.clone(),
            "workspaceartifactstore" => ws.artifact_container.clone(),
            _ => return None,
        };
        return Some((ws.storage_account.clone(), container, path.to_string()));
    }
    if let Some(rest) = uri.strip_prefix("https://") {
        let (host, path) = rest.split_once('/')?;
        let account = host.strip_suffix(".blob.core.windows.net")?;
        let (container, path) = path.split_once('/')?;
        return Some((account.to_string(), container.to_string(), path.to_string()));
    }
    None
}

/// Two asset locations overlap when one is a folder containing the other (or they are equal).
fn overlaps(a: &(String, String, String), b: &(String, String, String)) -> bool {
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
    let mine = |d: &Value| {
        d.get("systemData")
            .is_some_and(|sd| task.subject.matches_system_data(sd))
    };
    let location = |d: &Value| -> Option<(String, String, String)> {
        let uri = d
            .pointer(uri_ptr)
            .or_else(|| d.pointer("/properties/dataUri"))
            .or_else(|| d.pointer("/properties/modelUri"))?
            .as_str()?;
        resolve_uri(ws, uri)
    };
    let foreign: Vec<_> = all
        .iter()
        .chain(others_of_other_kind.iter())
        .filter(|d| !mine(d))
        .filter_map(location)
        .collect();

    let mut entries = Vec::new();
    let mut notes = Vec::new();
    for doc in all.iter().filter(|d| mine(d)) {
        let Some(entry) = resource_entry(kind, doc) else {
            continue;
        };
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
        match location(doc) {
            Some(loc) if foreign.iter().any(|f| overlaps(&loc, f)) => {
                notes.push(format!("{} {id}: its files are shared with another user's assets and were left in place", kind.as_str()));
            }
            Some((account, container, path)) => {
                if path.ends_with('/') || path.is_empty() {
                    if !path.is_empty() {
                        blobs_under(svc, &account, &container, &path, &mut entries).await?;
                    }
                } else {
                    // A file, or a folder written without its trailing slash.
                    let mut found = Vec::new();
                    blobs_under(svc, &account, &container, &path, &mut found).await?;
                    entries.extend(found.into_iter().filter(|e| match &e.item {
                        Item::Blob { name, .. } => name == &path || name.starts_with(&format!("{path}/")),
                        _ => false,
                    }));
                }
            }
            None => notes.push(format!("{} {id}: files are outside the workspace's default datastores and were not searched", kind.as_str())),
        }
        entries.push(entry);
    }
    Ok(Inventory { entries, notes })
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

async fn notebooks(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
) -> Result<Inventory, DiscoveryError> {
    let prefixes = task.subject.notebook_prefixes();
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    if prefixes.is_empty() {
        notes.push("no notebooks folder name is known for the subject (no UPN or alias); user files were not searched".into());
    }
    for p in prefixes {
        blobs_under(svc, &ws.storage_account, &ws.file_share, &p, &mut entries).await?;
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
        .map(|(table, rows)| InventoryEntry {
            item: Item::Telemetry {
                table,
                records: rows.len() as u64,
            },
            doc: Some(Value::Array(rows)),
            hold: None,
        })
        .collect();
    Ok(Inventory {
        entries,
        notes: vec![],
    })
}
