//! ARM reads: the workspace and its datastores, paged lists (`nextLink`, 429), models and data
//! versions, computes; a `nextLink` to another host is not followed.

use super::*;

#[tokio::test]
async fn workspace_get_and_datastores_parse_into_workspace_info() {
    let server = serve(ARM_SCOPE, |c| {
        let p = c.req.path.as_str();
        assert_eq!(
            c.req.query.get("api-version").map(String::as_str),
            Some(if p.contains("microsoft.insights") {
                "2020-02-02"
            } else {
                "2024-10-01"
            })
        );
        if p == WS {
            return (200, vec![], body("ml/workspace-get.json", "200"));
        }
        if p == format!("{WS}/datastores/workspaceblobstore") {
            return (200, vec![], body("ml/datastore-get.json", "200"));
        }
        if p == format!("{WS}/datastores/workspaceworkingdirectory") {
            // The Datastore/get example re-typed as the AzureFile datastore it would be.
            let mut b = body("ml/datastore-get.json", "200");
            let props = b["properties"].as_object_mut().unwrap();
            props.remove("containerName");
            props.insert("datastoreType".into(), json!("AzureFile"));
            props.insert(
                "fileShareName".into(),
                json!("code-391ff5ac-6576-460f-ba4d-7e03433c68b6"),
            );
            return (200, vec![], b);
        }
        if p.ends_with("/microsoft.insights/components/testinsights") {
            return (
                200,
                vec![],
                json!({"properties": {"WorkspaceResourceId": LA}}),
            );
        }
        not_found()
    })
    .await;
    let info = arm(&server).workspace(&ws()).await.unwrap();
    assert_eq!(info.storage_account, "teststorageaccount");
    assert_eq!(info.blobstore_container, "string"); // the example's own value
    assert_eq!(info.artifact_container, "azureml"); // no workspaceartifactstore: the default
    assert_eq!(info.file_share, "code-391ff5ac-6576-460f-ba4d-7e03433c68b6");
    assert!(info
        .key_vault
        .as_deref()
        .unwrap()
        .ends_with("/vaults/testkv"));
    assert!(info
        .app_insights
        .as_deref()
        .unwrap()
        .ends_with("/components/testinsights"));
    assert_eq!(info.log_analytics_workspace.as_deref(), Some(LA));

    let missing = serve(ARM_SCOPE, |_| not_found()).await;
    assert!(matches!(
        arm(&missing).workspace(&ws()).await,
        Err(ControlPlaneError::WorkspaceNotFound)
    ));
}

/// Datastores_List, as the Datastore/list example answers it, every page followed: the asset
/// URIs of a workspace are resolved against exactly these.
#[tokio::test]
async fn datastores_list_pages_into_datastores() {
    let server = serve(ARM_SCOPE, |c| {
        let p = c.req.path.as_str();
        if p != format!("{WS}/datastores") {
            return not_found();
        }
        let mut b = body("ml/datastore-list.json", "200");
        if c.req.query.contains_key("page") {
            // The second page: the example's item re-typed as a file datastore, no nextLink.
            let item = &mut b["value"][0];
            item["name"] = json!("workspaceworkingdirectory");
            let props = item["properties"].as_object_mut().unwrap();
            props.remove("containerName");
            props.insert("datastoreType".into(), json!("AzureFile"));
            props.insert("fileShareName".into(), json!("code-1"));
            b.as_object_mut().unwrap().remove("nextLink");
        } else {
            b["nextLink"] = json!(format!(
                "{}{WS}/datastores?api-version=2024-10-01&page=2",
                c.base
            ));
        }
        (200, vec![], b)
    })
    .await;
    let ds = arm(&server).datastores(&ws()).await.unwrap();
    assert_eq!(
        ds,
        vec![
            Datastore {
                name: "string".into(),
                datastore_type: "AzureBlob".into(),
                account: "string".into(),
                container: "string".into(),
            },
            Datastore {
                name: "workspaceworkingdirectory".into(),
                datastore_type: "AzureFile".into(),
                account: "string".into(),
                container: "code-1".into(),
            },
        ]
    );
    assert!(ds[0].is_blob() && !ds[1].is_blob());
    let missing = serve(ARM_SCOPE, |_| not_found()).await;
    assert!(matches!(
        arm(&missing).datastores(&ws()).await,
        Err(ControlPlaneError::WorkspaceNotFound)
    ));
}

/// A list example's body with ids under our workspace and `nextLink` pointing back at us.
fn page(name: &str, ids: &[String], next: Option<String>) -> Value {
    let mut b = body(name, "200");
    let template = b["value"][0].clone();
    b["value"] = Value::Array(
        ids.iter()
            .map(|id| {
                let mut v = template.clone();
                v["id"] = json!(id);
                v["name"] = json!(id.rsplit('/').next().unwrap());
                v
            })
            .collect(),
    );
    match next {
        Some(n) => b["nextLink"] = json!(n),
        None => {
            b.as_object_mut().unwrap().remove("nextLink");
        }
    }
    b
}

#[tokio::test]
async fn jobs_page_through_next_link_and_wait_out_429() {
    let server = serve(ARM_SCOPE, |c| {
        let jobs = format!("{WS}/jobs");
        assert_eq!(c.req.path, jobs);
        assert_eq!(
            c.req.query.get("listViewType").map(String::as_str),
            Some("All")
        );
        match c.req.query.get("$skipToken").map(String::as_str) {
            None if c.n == 0 => (
                429,
                vec![("retry-after", "1".to_string())],
                json!({"error": {"code": "TooManyRequests", "message": "slow down"}}),
            ),
            None => (
                200,
                vec![],
                page(
                    "ml/job-commandjob-list.json",
                    &[format!("{WS}/jobs/job-1"), format!("{WS}/jobs/job-2")],
                    Some(format!(
                        "{}{jobs}?api-version=2024-10-01&listViewType=All&$skipToken=p2",
                        c.base
                    )),
                ),
            ),
            Some("p2") => (
                200,
                vec![],
                page(
                    "ml/job-commandjob-list.json",
                    &[format!("{WS}/jobs/job-3")],
                    None,
                ),
            ),
            other => panic!("unexpected skip token {other:?}"),
        }
    })
    .await;
    let cp = arm(&server);
    let jobs = cp.list_all(&ws(), ArmKind::Job).await.unwrap();
    let names: Vec<_> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["job-1", "job-2", "job-3"]);
    // The example's shape survives: systemData for the creator, status for refusals.
    assert_eq!(jobs[0]["systemData"]["createdByType"], "User");
    assert_eq!(jobs[0]["properties"]["status"], "NotStarted");
    assert!(jobs[0].pointer("/properties/runHistory").is_none());
    let first = server.requests("GET", "/jobs");
    assert_eq!(first.len(), 3);
    let waited = first[1].at - first[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After honoured: {waited:?}"
    );
}

#[tokio::test]
async fn model_and_data_versions_walk_containers_then_versions() {
    let server = serve(ARM_SCOPE, |c| {
        let p = c.req.path.as_str();
        let models = format!("{WS}/models");
        let data = format!("{WS}/data");
        let skip = c.req.query.get("$skipToken").map(String::as_str);
        if p == models {
            return match skip {
                None => (
                    200,
                    vec![],
                    page(
                        "ml/modelcontainer-list.json",
                        &[format!("{models}/testContainer")],
                        Some(format!("{}{models}?api-version=2024-10-01&$skipToken=c2", c.base)),
                    ),
                ),
                _ => (
                    200,
                    vec![],
                    // `gone` is deleted before its versions are listed: its listing is 404.
                    page(
                        "ml/modelcontainer-list.json",
                        &[format!("{models}/gone"), format!("{models}/other model")],
                        None,
                    ),
                ),
            };
        }
        if p == format!("{models}/testContainer/versions") {
            return match skip {
                None => (
                    200,
                    vec![],
                    page(
                        "ml/modelversion-list.json",
                        &[format!("{models}/testContainer/versions/1")],
                        Some(format!(
                            "{}{models}/testContainer/versions?api-version=2024-10-01&$skipToken=v2",
                            c.base
                        )),
                    ),
                ),
                _ => (
                    200,
                    vec![],
                    page("ml/modelversion-list.json", &[format!("{models}/testContainer/versions/2")], None),
                ),
            };
        }
        if p == format!("{models}/other%20model/versions") {
            return (
                200,
                vec![],
                page("ml/modelversion-list.json", &[format!("{models}/other model/versions/1")], None),
            );
        }
        if p == data {
            // The DataContainer/list example as published (two containers), last page.
            let mut b = body("ml/datacontainer-list.json", "200");
            b.as_object_mut().unwrap().remove("nextLink");
            return (200, vec![], b);
        }
        if let Some(name) = p
            .strip_prefix(&format!("{data}/"))
            .and_then(|r| r.strip_suffix("/versions"))
        {
            return (
                200,
                vec![],
                page("ml/dataversion-list.json", &[format!("{data}/{name}/versions/1")], None),
            );
        }
        not_found()
    })
    .await;
    let cp = arm(&server);
    let models = cp.list_all(&ws(), ArmKind::ModelVersion).await.unwrap();
    let ids: Vec<_> = models
        .iter()
        .map(|m| m["id"].as_str().unwrap().replace(WS, ""))
        .collect();
    assert_eq!(
        ids,
        [
            "/models/testContainer/versions/1",
            "/models/testContainer/versions/2",
            "/models/other model/versions/1"
        ]
    );
    assert_eq!(models[0]["properties"]["modelUri"], "string");
    let data = cp.list_all(&ws(), ArmKind::DataVersion).await.unwrap();
    let ids: Vec<_> = data
        .iter()
        .map(|m| m["id"].as_str().unwrap().replace(WS, ""))
        .collect();
    assert_eq!(
        ids,
        [
            "/data/datastore123/versions/1",
            "/data/datastore124/versions/1"
        ]
    );
    assert_eq!(data[0]["properties"]["dataUri"], "string");
    // First pages are ours (nextLinks are the service's, followed verbatim).
    for r in server
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| !r.query.contains_key("$skipToken"))
    {
        assert_eq!(
            r.query.get("listViewType").map(String::as_str),
            Some("All"),
            "{}",
            r.path
        );
    }
}

#[tokio::test]
async fn computes_list_and_personal_instance_shape() {
    let server = serve(ARM_SCOPE, |c| {
        assert_eq!(c.req.path, format!("{WS}/computes"));
        match c.req.query.get("$skipToken") {
            None => {
                let mut b = body("ml/compute-list.json", "200");
                b["nextLink"] = json!(format!(
                    "{}{WS}/computes?api-version=2024-10-01&$skipToken=2",
                    c.base
                ));
                (200, vec![], b)
            }
            Some(_) => (
                200,
                vec![],
                json!({"value": [body("ml/compute-get-computeinstance.json", "200")]}),
            ),
        }
    })
    .await;
    let all = arm(&server)
        .list_all(&ws(), ArmKind::Compute)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[2]
            .pointer("/properties/properties/personalComputeInstanceSettings/assignedUser/objectId")
            .and_then(Value::as_str),
        Some("00000000-0000-0000-0000-000000000000")
    );
}

#[tokio::test]
async fn next_link_to_another_host_is_not_followed() {
    let server = serve(ARM_SCOPE, |_| {
        let mut b = body("ml/job-commandjob-list.json", "200");
        b["nextLink"] = json!("https://attacker.example/steal");
        (200, vec![], b)
    })
    .await;
    let err = arm(&server)
        .list_all(&ws(), ArmKind::Job)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("refusing to send credentials"),
        "{err}"
    );
}
