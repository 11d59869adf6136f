//! Model and data asset discovery: whose an asset is (the run that produced it, else a
//! display-name match for review), where its files are (only the workspace's own blob
//! datastores, never the state account: [`resolve_uri`]), and whether those files may be taken
//! (not when another user's asset or a job area is in or over them).

use serde_json::Value;

use super::{blobs_under, job_run, resource_entry, DiscoveryError};
use crate::domain::attribution::{attribute, Attribution};
use crate::domain::slice::{Item, SliceTask};
use crate::functions::Services;
use crate::ports::control_plane::{ArmKind, Datastore, WorkspaceInfo};
use crate::state::Inventory;

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
pub(super) async fn assets(
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
        pages: None,
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
