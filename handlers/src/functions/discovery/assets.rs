//! Assets (data, models, environments, components): an asset's storage URI resolved to
//! (account, container, prefix), taken only where no one else's job folder overlaps it.

use super::*;

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
pub(super) fn overlaps(a: &Location, b: &Location) -> bool {
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
    // Job folders belong to the job's creator (and its child runs'): an asset reaching over or
    // into a job area leaves it alone.
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
        foreign.extend(others_job_folders(ws));
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

/// The job areas, claimed as a whole for everyone: which job or child run a folder belongs
/// to is only known from run history, and other people's child runs are not listed by ARM, so
/// an asset of the subject's reaching into a job area leaves its files in place.
pub(super) fn others_job_folders(ws: &WorkspaceInfo) -> Vec<Location> {
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
