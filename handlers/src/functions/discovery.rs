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
//!
//! This file dispatches per resource type and holds the small kinds (compute, notebooks,
//! telemetry); `discovery/jobs.rs` and `discovery/assets.rs` hold the two large ones.

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

mod assets;
mod jobs;

use assets::assets;
pub use assets::{resolve_uri, Location};
pub use jobs::blast_radius_guard;
use jobs::jobs;

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
