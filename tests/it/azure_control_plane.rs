//! The production Azure adapters (`adapters::azure::{arm, graph, purge, servicebus}`) against
//! local HTTP servers that replay the response bodies of the official API examples
//! (`tests/fixtures/azure-rest/README.md` names each source): paging through `nextLink`,
//! long-running deletes (202 + `Location` / `Azure-AsyncOperation`), 429 + `Retry-After`, 404,
//! refusals. Tokens come from `azure_identity`'s `ManagedIdentityCredential`, pointed at the
//! process-wide identity stand-in (`stand_ins::identity`, shared with `twin`) through
//! `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`; every fake service checks the bearer token's audience,
//! so a wrong scope fails the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use azure_core::http::Url;
use azureml_dsr::adapters::azure::arm::{ArmConfig, AzureMlControlPlane, ARM_SCOPE};
use azureml_dsr::adapters::azure::graph::{GraphDirectory, GRAPH_SCOPE};
use azureml_dsr::adapters::azure::purge::{
    LogAnalyticsTelemetry, PurgeBudget, PurgeConfig, LOG_ANALYTICS_SCOPE,
};
use azureml_dsr::adapters::azure::rest::RestClient;
use azureml_dsr::adapters::azure::retry::RetryConfig;
use azureml_dsr::adapters::azure::servicebus::{ServiceBusSender, SERVICEBUS_SCOPE};
use azureml_dsr::domain::request::SubjectRef;
use azureml_dsr::domain::subject::Upn;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::ports::bus::{MessageBus, OutMessage, SendOutcome};
use azureml_dsr::ports::control_plane::{
    ArmKind, ControlPlane, ControlPlaneError, Datastore, ResourceDelete, WorkspaceInfo,
};
use azureml_dsr::ports::directory::Directory;
use azureml_dsr::ports::telemetry::{PurgePoll, PurgeSend, PurgeStatus, TelemetryStore};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::stand_ins::identity::IdentityStandIn;
use crate::support::azure::{credential, rest, subject, workspace_info};

const WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/workspace-1234/providers/Microsoft.MachineLearningServices/workspaces/testworkspace";
const LA: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/workspace-1234/providers/Microsoft.OperationalInsights/workspaces/testla";

// ---------------------------------------------------------------- fixtures

fn example(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/azure-rest/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The response body of status `code` in a spec example.
fn body(name: &str, code: &str) -> Value {
    example(name)["responses"][code]["body"].clone()
}

// ---------------------------------------------------------------- tokens

/// The token is a JWT whose `aud` is the requested resource (from the process-wide identity
/// stand-in, `support::azure::credential`), so each fake service checks the audience by
/// comparing the whole header with this.
fn audience(scope: &str) -> String {
    IdentityStandIn::shared().bearer(scope.trim_end_matches("/.default"))
}

// ---------------------------------------------------------------- replay server

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

/// What a handler sees: the request, the server's base URL and how many identical requests
/// (method + path + query) came before this one.
struct Ctx<'a> {
    req: &'a Seen,
    base: &'a str,
    n: usize,
}

type Reply = (u16, Vec<(&'static str, String)>, Value);
type Handler = Arc<dyn Fn(&Ctx) -> Reply + Send + Sync>;

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn requests(&self, method: &str, path_suffix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path.ends_with(path_suffix))
            .cloned()
            .collect()
    }
    fn url(&self) -> Url {
        Url::parse(&self.base).unwrap()
    }
}

struct ServerState {
    base: OnceLock<String>,
    bearer: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Handler,
}

async fn replay(
    State(st): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    if seen.headers.get("authorization") != Some(&st.bearer) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            format!("expected {}", st.bearer),
        )
            .into_response();
    }
    let n = {
        let mut log = st.seen.lock().unwrap();
        let n = log
            .iter()
            .filter(|s| s.method == seen.method && s.path == seen.path && s.query == seen.query)
            .count();
        log.push(seen.clone());
        n
    };
    let base = st.base.get().cloned().unwrap_or_default();
    let (status, hdrs, value) = (st.handler)(&Ctx {
        req: &seen,
        base: &base,
        n,
    });
    let mut rsp = if value.is_null() {
        axum::http::StatusCode::from_u16(status)
            .unwrap()
            .into_response()
    } else {
        (
            axum::http::StatusCode::from_u16(status).unwrap(),
            axum::Json(value),
        )
            .into_response()
    };
    for (k, v) in hdrs {
        rsp.headers_mut().insert(k, v.parse().unwrap());
    }
    rsp
}

async fn serve(scope: &str, handler: impl Fn(&Ctx) -> Reply + Send + Sync + 'static) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let st = Arc::new(ServerState {
        base: OnceLock::new(),
        bearer: audience(scope),
        seen: seen.clone(),
        handler: Arc::new(handler),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    st.base.set(base.clone()).unwrap();
    let app = axum::Router::new().fallback(replay).with_state(st);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base, seen }
}

fn ws() -> WorkspaceId {
    WorkspaceId::parse(WS).unwrap()
}

fn arm(server: &Server) -> AzureMlControlPlane {
    let mut cfg = ArmConfig::new(server.url());
    cfg.poll_interval = Duration::from_millis(20);
    cfg.max_poll = Duration::from_secs(10);
    AzureMlControlPlane::new(rest(ARM_SCOPE), cfg)
}

fn not_found() -> Reply {
    (
        404,
        vec![],
        json!({"error": {"code": "ResourceNotFound", "message": "not found"}}),
    )
}

// ---------------------------------------------------------------- ARM: workspace

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

// ---------------------------------------------------------------- ARM: lists

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

// ---------------------------------------------------------------- ARM: deletes

#[tokio::test]
async fn job_delete_202_polls_location_until_gone() {
    let job = format!("{WS}/jobs/my-favorite-aml-job");
    let j = job.clone();
    let server = serve(ARM_SCOPE, move |c| {
        assert_eq!(c.req.path, j);
        match c.req.method.as_str() {
            // Job/delete.json: 202 with `location` = the job itself.
            "DELETE" => {
                let loc = example("ml/job-delete.json")["responses"]["202"]["headers"]["location"]
                    .as_str()
                    .unwrap()
                    .replace("http://subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}", &format!("{}{WS}", c.base));
                (202, vec![("location", format!("{loc}?api-version=2024-10-01"))], Value::Null)
            }
            "GET" if c.n < 2 => (202, vec![], Value::Null),
            "GET" => not_found(),
            m => panic!("unexpected {m}"),
        }
    })
    .await;
    let r = arm(&server)
        .delete(&ws(), ArmKind::Job, &job)
        .await
        .unwrap();
    assert_eq!(r, ResourceDelete::Deleted);
    assert_eq!(server.requests("GET", "my-favorite-aml-job").len(), 3);
}

#[tokio::test]
async fn compute_delete_polls_azure_async_operation() {
    let compute = format!("{WS}/computes/compute123");
    let c2 = compute.clone();
    let server = serve(ARM_SCOPE, move |c| {
        if c.req.method == "DELETE" {
            assert_eq!(c.req.path, c2);
            assert_eq!(
                c.req
                    .query
                    .get("underlyingResourceAction")
                    .map(String::as_str),
                Some("Delete")
            );
            // Compute/delete.json: 202 with both headers; the status document wins.
            let h = &example("ml/compute-delete.json")["responses"]["202"]["headers"];
            let rebase = |v: &Value| {
                v.as_str()
                    .unwrap()
                    .replace("https://management.azure.com", c.base)
                    .replace("...", "")
            };
            return (
                202,
                vec![
                    ("azure-asyncoperation", rebase(&h["Azure-AsyncOperation"])),
                    ("location", rebase(&h["Location"])),
                    ("retry-after", "0".into()),
                ],
                Value::Null,
            );
        }
        assert!(
            c.req.path.contains("pathToOperationStatus"),
            "{}",
            c.req.path
        );
        if c.n == 0 {
            (200, vec![], json!({"status": "InProgress"}))
        } else {
            (200, vec![], json!({"status": "Succeeded"}))
        }
    })
    .await;
    let r = arm(&server)
        .delete(&ws(), ArmKind::Compute, &compute)
        .await
        .unwrap();
    assert_eq!(r, ResourceDelete::Deleted);
    assert!(server.requests("GET", "pathToOperationResult").is_empty());

    let failing = serve(ARM_SCOPE, |c| {
        if c.req.method == "DELETE" {
            return (
                202,
                vec![("azure-asyncoperation", format!("{}/op", c.base))],
                Value::Null,
            );
        }
        (
            200,
            vec![],
            json!({"status": "Failed", "error": {"code": "Locked", "message": "resource is locked"}}),
        )
    })
    .await;
    let r = arm(&failing)
        .delete(&ws(), ArmKind::Compute, &compute)
        .await
        .unwrap();
    assert!(
        matches!(r, ResourceDelete::Refused(ref m) if m.contains("resource is locked")),
        "{r:?}"
    );
}

#[tokio::test]
async fn delete_outcomes_404_409_5xx_and_foreign_ids() {
    let server = serve(ARM_SCOPE, |c| {
        let name = c.req.path.rsplit('/').next().unwrap().to_string();
        match name.as_str() {
            "gone" => not_found(),
            "running" => (
                409,
                vec![],
                json!({"error": {"code": "Conflict", "message": "Job is in Running state and cannot be deleted"}}),
            ),
            "flaky" if c.n < 2 => (503, vec![], json!({"error": {"code": "ServiceUnavailable", "message": "try later"}})),
            "flaky" => (200, vec![], Value::Null),
            "down" => (500, vec![], json!({"error": {"code": "InternalServerError", "message": "boom"}})),
            other => panic!("unexpected {other}"),
        }
    })
    .await;
    let cp = arm(&server);
    let id = |n: &str| format!("{WS}/jobs/{n}");
    assert_eq!(
        cp.delete(&ws(), ArmKind::Job, &id("gone")).await.unwrap(),
        ResourceDelete::NotFound
    );
    match cp
        .delete(&ws(), ArmKind::Job, &id("running"))
        .await
        .unwrap()
    {
        ResourceDelete::Refused(m) => assert!(m.contains("Running state"), "{m}"),
        other => panic!("running job must be refused, got {other:?}"),
    }
    assert_eq!(
        cp.delete(&ws(), ArmKind::Job, &id("flaky")).await.unwrap(),
        ResourceDelete::Deleted
    );
    assert_eq!(server.requests("DELETE", "/flaky").len(), 3);
    let err = cp
        .delete(&ws(), ArmKind::Job, &id("down"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        server.requests("DELETE", "/down").len(),
        5,
        "first try + 4 retries"
    );
    // Not a job of this workspace: refused without a request.
    let foreign = "/subscriptions/x/resourceGroups/y/providers/Microsoft.MachineLearningServices/workspaces/other/jobs/j";
    assert!(matches!(
        cp.delete(&ws(), ArmKind::Job, foreign).await.unwrap(),
        ResourceDelete::Refused(_)
    ));
    assert!(server.requests("DELETE", "/j").is_empty());
}

// ---------------------------------------------------------------- Graph

#[tokio::test]
async fn graph_resolves_upn_and_reports_unknown_users_as_none() {
    let server = serve(GRAPH_SCOPE, |c| {
        assert_eq!(
            c.req.query.get("$select").map(String::as_str),
            Some("id,userPrincipalName,mail,displayName")
        );
        match c.req.path.as_str() {
            "/v1.0/users/adelev@contoso.com" | "/v1.0/users/87d349ed-44d7-43e1-9a83-5f2406dee5bd" => {
                (200, vec![], example("graph/user-get.json"))
            }
            "/v1.0/users" => {
                assert_eq!(
                    c.req.query.get("$filter").map(String::as_str),
                    Some("mail eq 'nobody@contoso.com'")
                );
                (200, vec![], json!({"value": []}))
            }
            _ => (
                404,
                vec![],
                json!({"error": {"code": "Request_ResourceNotFound", "message": "Resource does not exist"}}),
            ),
        }
    })
    .await;
    let dir = GraphDirectory::new(rest(GRAPH_SCOPE), server.url());
    let subject = |upn: &str| SubjectRef {
        object_id: None,
        upn: Some(Upn::parse(upn).unwrap()),
        tenant_id: None,
        display_name: None,
    };
    let e = dir
        .lookup(&subject("AdeleV@contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.object_id.to_string(),
        "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
    );
    assert_eq!(e.upn.as_ref().map(Upn::as_str), Some("adelev@contoso.com"));
    assert_eq!(e.display_name.as_deref(), Some("Adele Vance"));
    let by_oid = SubjectRef {
        object_id: Some(e.object_id),
        upn: None,
        tenant_id: None,
        display_name: None,
    };
    assert_eq!(
        dir.lookup(&by_oid).await.unwrap().unwrap().object_id,
        e.object_id
    );
    assert!(dir
        .lookup(&subject("nobody@contoso.com"))
        .await
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------- Log Analytics

fn info_with_la() -> WorkspaceInfo {
    workspace_info(ws(), "teststorageaccount", LA)
}

#[tokio::test]
async fn telemetry_query_purge_pending_then_completed_within_budget() {
    const ALICE: &str = "11111111-2222-3333-4444-555555555555";
    // Query API (`api.loganalytics.io`): rows for any subject.
    let query = serve(LOG_ANALYTICS_SCOPE, |c| {
        assert_eq!(c.req.path, format!("/v1{LA}/query"));
        let q: Value = serde_json::from_str(&c.req.body).unwrap();
        let kql = q["query"].as_str().unwrap();
        // A string identity column (table reference: `AmlRunStatusChangedEvent.Identity string`).
        assert!(
            kql.starts_with("AmlRunStatusChangedEvent | where Identity == \""),
            "{kql}"
        );
        let oid = kql.split('"').nth(1).unwrap();
        (
            200,
            vec![],
            json!({"tables": [{"name": "PrimaryResult",
                "columns": [{"name": "TimeGenerated", "type": "datetime"}, {"name": "Identity", "type": "string"}],
                "rows": [["2026-11-01T10:00:00Z", oid]]}]}),
        )
    })
    .await;
    // ARM purge (WorkspacesPurge.json) and its status location.
    let arm_srv = serve(ARM_SCOPE, |c| {
        if c.req.method == "POST" {
            assert_eq!(c.req.path, format!("{LA}/purge"));
            assert_eq!(
                c.req.query.get("api-version").map(String::as_str),
                Some("2020-08-01")
            );
            let ex = &example("loganalytics/workspaces-purge.json")["responses"]["202"];
            let loc = ex["headers"]["x-ms-status-location"]
                .as_str()
                .unwrap()
                .replace("https://management.azure.com", c.base);
            return (202, vec![("x-ms-status-location", loc)], ex["body"].clone());
        }
        assert!(c
            .req
            .path
            .ends_with("/operations/purge-970318e7-b859-4edb-8903-83b1b54d0b74"));
        if c.n == 0 {
            (200, vec![], json!({"status": "pending"}))
        } else {
            (200, vec![], json!({"status": "completed"}))
        }
    })
    .await;
    let cfg = PurgeConfig {
        arm_endpoint: arm_srv.url(),
        query_endpoint: query.url(),
        tables: vec!["AmlRunStatusChangedEvent".into()],
    };
    let tel = LogAnalyticsTelemetry::with_budget(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        cfg,
        PurgeBudget::new(1, Duration::from_secs(3600)),
    );
    let info = info_with_la();
    let rows = tel.query(&info, &subject(ALICE)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].rows[0]["Identity"], ALICE);
    assert_eq!(rows[0].destination, LA);

    let op = "purge-970318e7-b859-4edb-8903-83b1b54d0b74".to_string();
    let plan = tel.purge_plan(&info, &subject(ALICE)).await.unwrap();
    let bodies = plan[0].bodies.clone().unwrap();
    assert_eq!(
        bodies,
        vec![
            json!({"table": "AmlRunStatusChangedEvent", "filters": [{"column": "Identity", "operator": "==", "value": ALICE}]})
        ]
    );
    let PurgeSend::Accepted {
        operation_id,
        status_url,
    } = tel.send_purge(LA, &bodies[0]).await.unwrap()
    else {
        panic!("not accepted")
    };
    assert_eq!(operation_id, op);
    let posts = arm_srv.requests("POST", "/purge");
    assert_eq!(posts.len(), 1);
    let sent: Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(sent, bodies[0]);
    // The status location is polled (a later timer run), no second purge request.
    assert_eq!(
        tel.poll_purge(&status_url).await.unwrap(),
        PurgePoll::Pending
    );
    assert_eq!(
        tel.poll_purge(&status_url).await.unwrap(),
        PurgePoll::Completed
    );
    assert_eq!(arm_srv.requests("POST", "/purge").len(), 1);
    // Budget (1/hour here, 50/hour by default) spent: deferred (a later run sends it), not sent.
    let deferred = tel.send_purge(LA, &bodies[0]).await.unwrap();
    assert!(
        matches!(&deferred, PurgeSend::Deferred { reason } if reason.contains("budget")),
        "{deferred:?}"
    );
    assert_eq!(arm_srv.requests("POST", "/purge").len(), 1);
}

/// A purge POST answered 503 is sent exactly once (a purge is not idempotent) and reported as
/// an error; the status of an operation the service no longer knows (404) is a failure.
#[tokio::test]
async fn purge_post_5xx_is_not_retried_and_unknown_operation_fails() {
    let arm_srv = serve(ARM_SCOPE, |c| {
        if c.req.method == "POST" {
            return (
                503,
                vec![],
                json!({"error": {"code": "ServiceUnavailable", "message": "try later"}}),
            );
        }
        (
            404,
            vec![],
            json!({"error": {"code": "ResourceNotFound", "message": "Purge operation not found."}}),
        )
    })
    .await;
    let tel = LogAnalyticsTelemetry::new(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        PurgeConfig {
            arm_endpoint: arm_srv.url(),
            query_endpoint: arm_srv.url(),
            tables: vec!["AmlRunEvent".into()],
        },
    );
    let body = json!({"table": "AmlRunEvent", "filters": [{"column": "Identity", "key": "oid", "operator": "==", "value": "11111111-2222-3333-4444-555555555555"}]});
    let err = tel.send_purge(LA, &body).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(arm_srv.requests("POST", "/purge").len(), 1);
    let status = format!(
        "{}{}/operations/purge-1?api-version=2020-08-01",
        arm_srv.url().as_str().trim_end_matches('/'),
        LA
    );
    assert!(matches!(
        tel.poll_purge(&status).await.unwrap(),
        PurgePoll::Failed { .. }
    ));
}

/// Diagnostic settings list (spec example `listDiagnosticSettings.json`, whose only setting
/// has an empty `workspaceId`): no Log Analytics destination from it; a setting with one adds
/// it.
#[test]
fn diagnostic_settings_name_the_log_analytics_destinations() {
    let list = example("monitor/diagnostic-settings-list.json");
    assert!(azureml_dsr::adapters::azure::arm::diagnostic_workspaces(&list).is_empty());
    let mut with = list.clone();
    with["value"][0]["properties"]["workspaceId"] = json!(LA);
    let dup = with["value"][0].clone();
    with["value"].as_array_mut().unwrap().push(dup);
    assert_eq!(
        azureml_dsr::adapters::azure::arm::diagnostic_workspaces(&with),
        vec![LA.to_string()]
    );
}

#[tokio::test]
async fn workspace_purge_filters_on_the_deleted_workspace_resource_id() {
    let arm_srv = serve(ARM_SCOPE, |c| {
        let ex = &example("loganalytics/workspaces-purge-resourceid.json")["responses"]["202"];
        let loc = ex["headers"]["x-ms-status-location"]
            .as_str()
            .unwrap()
            .replace("https://management.azure.com", c.base);
        (202, vec![("x-ms-status-location", loc)], ex["body"].clone())
    })
    .await;
    let query = serve(LOG_ANALYTICS_SCOPE, |_| {
        panic!("no query for a workspace purge")
    })
    .await;
    let tel = LogAnalyticsTelemetry::new(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        PurgeConfig {
            arm_endpoint: arm_srv.url(),
            query_endpoint: query.url(),
            tables: vec!["AmlRunEvent".into(), "AmlModelsEvent".into()],
        },
    );
    let st = tel.purge_workspace(&info_with_la()).await.unwrap();
    assert!(matches!(st, PurgeStatus::Pending { .. }));
    let posts = arm_srv.requests("POST", "/purge");
    assert_eq!(posts.len(), 2);
    for p in posts {
        let b: Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(b["filters"][0]["column"], "_ResourceId");
        assert_eq!(b["filters"][0]["value"], WS.to_ascii_lowercase());
    }
}

// ---------------------------------------------------------------- Service Bus

#[tokio::test]
async fn service_bus_send_carries_broker_properties_and_retries_503() {
    let server = serve(SERVICEBUS_SCOPE, |c| {
        assert_eq!(c.req.path, "/dsr-slice-jobs/messages");
        if c.n == 0 {
            return (503, vec![], Value::Null);
        }
        (201, vec![], Value::Null)
    })
    .await;
    let bus = ServiceBusSender::new(rest(SERVICEBUS_SCOPE), &server.base).unwrap();
    let mut msg = OutMessage::json("dsr-slice-jobs", "req-7/ws/jobs", &json!({"slice": 1}))
        .correlated("req-7")
        .scheduled_at(time::macros::datetime!(2026-11-28 21:00:00 UTC));
    msg.session_id = Some("req-7".into());
    msg.application_properties
        .insert("DsrKind".into(), json!("delete"));
    assert_eq!(bus.send(msg).await.unwrap(), SendOutcome::Enqueued);
    let sent = server.requests("POST", "/messages");
    assert_eq!(sent.len(), 2);
    let last = &sent[1];
    let bp: Value = serde_json::from_str(&last.headers["brokerproperties"]).unwrap();
    assert_eq!(
        bp,
        json!({"MessageId": "req-7/ws/jobs", "SessionId": "req-7", "CorrelationId": "req-7",
               "ScheduledEnqueueTimeUtc": "Sat, 28 Nov 2026 21:00:00 GMT"})
    );
    assert_eq!(last.headers["content-type"], "application/json");
    assert_eq!(last.headers["dsrkind"], "\"delete\"");
    assert_eq!(last.body, r#"{"slice":1}"#);
}

// ---------------------------------------------------------------- wiring

/// `wiring::build` in Azure mode builds every production adapter from the settings, with the
/// credential `azure_credential()` picks (managed identity here, because `IDENTITY_ENDPOINT` is
/// set), and they reach the configured endpoints; no local queue or store is involved.
#[tokio::test]
async fn azure_services_wires_production_adapters_from_the_environment() {
    let _ = credential(); // sets IDENTITY_ENDPOINT / IDENTITY_HEADER for azure_credential()
    let arm_srv = serve(ARM_SCOPE, |c| match c.req.path.as_str() {
        p if p == WS => (200, vec![], body("ml/workspace-get.json", "200")),
        p if p.ends_with("/datastores/workspaceblobstore") => {
            (200, vec![], body("ml/datastore-get.json", "200"))
        }
        _ => not_found(),
    })
    .await;
    let graph = serve(GRAPH_SCOPE, |_| {
        (200, vec![], example("graph/user-get.json"))
    })
    .await;
    let sb = serve(SERVICEBUS_SCOPE, |_| (201, vec![], Value::Null)).await;
    let env = azureml_dsr::settings::Env::from_pairs([
        ("DSR_MODE", "azure"),
        ("DSR_LOG_SALT", "a-test-salt-of-some-length"),
        (
            "DSR_STATE_ACCOUNT_URL",
            "https://dsrstate.blob.core.windows.net/",
        ),
        ("DSR_ARM_ENDPOINT", arm_srv.base.as_str()),
        ("DSR_GRAPH_ENDPOINT", graph.base.as_str()),
        ("DSR_SERVICEBUS_NAMESPACE", sb.base.as_str()),
    ]);
    let app = azureml_dsr::settings::AppSettings::load(&env, &Default::default()).unwrap();
    let wired = azureml_dsr::wiring::build(&app).unwrap();
    assert!(wired.queue.is_none(), "Azure mode opens no local queue");
    assert_eq!(wired.services.store.kind(), "azure-blob");
    assert_eq!(
        wired.services.files.kind(),
        "Azure Files (REST, Entra ID)",
        "notebooks go through the File API, not Blob"
    );
    let svc = wired.services;
    let info = svc.control.workspace(&ws()).await.unwrap();
    assert_eq!(info.storage_account, "teststorageaccount");
    let who = SubjectRef {
        object_id: None,
        upn: Some(Upn::parse("AdeleV@contoso.com").unwrap()),
        tenant_id: None,
        display_name: None,
    };
    assert!(svc.directory.lookup(&who).await.unwrap().is_some());
    svc.bus
        .send(OutMessage::json("dsr-results", "r-1", &json!({})))
        .await
        .unwrap();
    assert_eq!(sb.requests("POST", "/dsr-results/messages").len(), 1);
}

// ---------------------------------------------------------------- whole pipeline

mod pipeline {
    //! The same seeded workspaces processed twice: once with the local adapters, once with the
    //! production ARM and Graph adapters talking HTTP to the local ARM server
    //! (`adapters::local::arm_server`, pages of 2 items, 202 + Azure-AsyncOperation deletes) and
    //! a Graph fake, both serving the very same documents. The reports must match.

    use super::*;
    use azureml_dsr::adapters::local::arm_server::{self, ArmServerOptions};
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    use azureml_dsr::adapters::local::memory_bus::MemoryBus;
    use azureml_dsr::domain::report::FinalReport;
    use azureml_dsr::domain::request::RequestId;
    use azureml_dsr::domain::slice::{SliceCompletion, SliceTask};
    use azureml_dsr::functions::{aggregate, intake, slice, Delivery, Services, Settings};
    use azureml_dsr::ports::bus::queues;
    use azureml_dsr::ports::directory::DirectoryEntry;
    use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
    use azureml_dsr::wiring::{local_services, local_store, LocalPaths};

    fn graph_user(e: &DirectoryEntry) -> Value {
        json!({"id": e.object_id.to_string(),
               "userPrincipalName": e.upn.as_ref().map(|u| u.as_str()),
               "mail": e.mail.as_ref().map(|u| u.as_str()),
               "displayName": e.display_name})
    }

    /// Small pages so every listing follows nextLink; the token the MI credential issues.
    fn server_options() -> ArmServerOptions {
        ArmServerOptions {
            page_size: 2,
            bearer: Some(audience(ARM_SCOPE)),
            lro_polls: 1,
            retry_after: None,
            throttle: None,
        }
    }

    fn local_arm(srv: &arm_server::ArmServer) -> AzureMlControlPlane {
        let mut cfg = ArmConfig::new(Url::parse(&srv.base_url).unwrap());
        cfg.poll_interval = Duration::from_millis(5);
        AzureMlControlPlane::new(rest(ARM_SCOPE), cfg)
    }

    struct Run {
        _dir: tempfile::TempDir,
        bus: Arc<MemoryBus>,
        svc: Services,
        truth: SeedTruth,
        _servers: Vec<Server>,
        _arm: Option<arm_server::ArmServer>,
    }

    async fn setup(production: bool) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let paths = LocalPaths::new(dir.path());
        let store = local_store(&paths);
        let opts = SeedOptions {
            users: 4,
            runs_per_user: 4,
            ..Default::default()
        };
        let now = time::macros::datetime!(2026-11-01 12:00:00 UTC);
        let truth = seed(&store, &opts, now).await.unwrap();
        let directory = truth.directory();
        std::fs::write(paths.directory(), serde_json::to_vec(&directory).unwrap()).unwrap();
        let bus = Arc::new(MemoryBus::new());
        let settings = Settings {
            chunk_size: 5,
            ..Default::default()
        };
        let mut svc = local_services(&paths, store.clone(), bus.clone(), settings);
        svc.state().put_scope(&truth.workspaces).await.unwrap();
        let mut servers = Vec::new();
        let mut arm_server = None;
        if production {
            let srv = arm_server::start(store.clone(), server_options(), 0)
                .await
                .unwrap();
            svc.control = Arc::new(local_arm(&srv));
            arm_server = Some(srv);
            let graph = serve(GRAPH_SCOPE, move |c| {
                let key = c
                    .req
                    .path
                    .trim_start_matches("/v1.0/users")
                    .trim_start_matches('/');
                if key.is_empty() {
                    return (200, vec![], json!({"value": []}));
                }
                match directory.iter().find(|e| {
                    e.object_id.to_string() == key
                        || e.upn.as_ref().is_some_and(|u| u.as_str() == key)
                }) {
                    Some(e) => (200, vec![], graph_user(e)),
                    None => not_found(),
                }
            })
            .await;
            svc.directory = Arc::new(GraphDirectory::new(rest(GRAPH_SCOPE), graph.url()));
            servers.push(graph);
        }
        Run {
            _dir: dir,
            bus,
            svc,
            truth,
            _servers: servers,
            _arm: arm_server,
        }
    }

    async fn submit(r: &Run, id: &str, kind: &str, user: &str) -> FinalReport {
        let ws: Vec<String> = r.truth.workspaces.iter().map(|w| w.to_string()).collect();
        let body = json!({"schemaVersion": "1.0", "requestId": id, "type": kind, "dryRun": false,
            "subject": {"upn": r.truth.user(user).unwrap().upn}, "scope": {"workspaces": ws}});
        let d = Delivery {
            delivery_count: 1,
            ..Default::default()
        };
        intake::run(&r.svc, body.to_string().as_bytes(), &d)
            .await
            .unwrap();
        while let Some(m) = r.bus.pop() {
            match m.queue.as_str() {
                queues::COMPLETIONS => {
                    let c: SliceCompletion = serde_json::from_slice(&m.body).unwrap();
                    aggregate::run(&r.svc, &c).await.unwrap();
                }
                q if q.starts_with("dsr-slice-") => {
                    let t: SliceTask = serde_json::from_slice(&m.body).unwrap();
                    slice::run(&r.svc, &t, &d).await.unwrap();
                }
                _ => {}
            }
        }
        r.svc
            .state()
            .report(&RequestId::parse(id).unwrap())
            .await
            .unwrap()
            .expect("report written")
    }

    /// What must be equal: status, counts, per-slice status/notes and every item with its outcome.
    fn essence(r: &FinalReport) -> Value {
        let mut results: Vec<Value> = r
            .results
            .iter()
            .map(|s| {
                let mut items: Vec<String> = s
                    .items
                    .iter()
                    .map(|i| {
                        // A purge's operation id and request time differ from run to run.
                        let mut v = serde_json::to_value(i).unwrap();
                        if let Some(o) = v.as_object_mut() {
                            o.remove("operation");
                            o.remove("requestedAt");
                        }
                        v.to_string()
                    })
                    .collect();
                items.sort();
                json!({"key": s.key, "status": s.status, "reason": s.reason, "notes": s.notes, "items": items})
            })
            .collect();
        results.sort_by_key(|v| v["key"].as_str().unwrap().to_string());
        json!({"status": r.status, "counts": r.counts, "subject": r.subject_object_id, "results": results})
    }

    /// Workspaces_Get decides what a deletion event may do: 200 is a live workspace, 200 with
    /// `provisioningState: SoftDeleted` a recoverable one (and nothing else can be read from
    /// it), 404 a purged one. The production adapter reads the three states from the local ARM
    /// server as the local control plane holds them.
    #[tokio::test]
    async fn the_adapter_tells_live_soft_deleted_and_gone_workspaces_apart() {
        use azureml_dsr::ports::control_plane::{ControlPlaneError, WorkspaceState};
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(&LocalPaths::new(dir.path()));
        let opts = SeedOptions {
            users: 1,
            runs_per_user: 1,
            ..Default::default()
        };
        let now = time::macros::datetime!(2026-11-01 12:00:00 UTC);
        let truth = seed(&store, &opts, now).await.unwrap();
        let lcp = LocalControlPlane::new(store.clone());
        let srv = arm_server::start(store.clone(), server_options(), 0)
            .await
            .unwrap();
        let arm = local_arm(&srv);
        let ws = &truth.workspaces[0];
        assert_eq!(
            arm.workspace_state(ws).await.unwrap(),
            WorkspaceState::Active
        );
        // Datastores_List through the server: the defaults and a registered one.
        lcp.put_datastore(
            ws,
            &json!({"name": "projectdata", "properties": {"datastoreType": "AzureBlob",
                    "accountName": "datalake0", "containerName": "project"}}),
        )
        .await
        .unwrap();
        let listed = arm.datastores(ws).await.unwrap();
        assert_eq!(listed, lcp.datastores(ws).await.unwrap());
        assert_eq!(listed.len(), 4);
        lcp.soft_delete_workspace(ws).await.unwrap();
        assert_eq!(
            arm.workspace_state(ws).await.unwrap(),
            WorkspaceState::SoftDeleted
        );
        assert!(matches!(
            arm.workspace(ws).await,
            Err(ControlPlaneError::WorkspaceNotFound)
        ));
        lcp.recover_workspace(ws).await.unwrap();
        assert_eq!(
            arm.workspace_state(ws).await.unwrap(),
            WorkspaceState::Active
        );
        store
            .delete_container(
                azureml_dsr::adapters::local::control_plane::ARM_ACCOUNT,
                &LocalControlPlane::container(ws),
            )
            .await
            .unwrap();
        assert_eq!(arm.workspace_state(ws).await.unwrap(), WorkspaceState::Gone);
    }

    /// The local ARM server serves what the local control plane holds, in ARM's shapes: the
    /// production adapter reads the same workspace, pages to the same resources, and sees
    /// deletes, repeated deletes, running jobs, archived items, missing `api-version` and a wrong
    /// token the way ARM answers them.
    #[tokio::test]
    async fn local_arm_server_answers_like_arm_over_the_local_documents() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LocalPaths::new(dir.path());
        let store = local_store(&paths);
        let opts = SeedOptions {
            users: 3,
            runs_per_user: 3,
            ..Default::default()
        };
        let now = time::macros::datetime!(2026-11-01 12:00:00 UTC);
        let truth = seed(&store, &opts, now).await.unwrap();
        let lcp = LocalControlPlane::new(store.clone());
        let srv = arm_server::start(store.clone(), server_options(), 0)
            .await
            .unwrap();
        let arm = local_arm(&srv);
        let ws = &truth.workspaces[0];
        assert_eq!(
            arm.workspace(ws).await.unwrap(),
            lcp.workspace(ws).await.unwrap()
        );
        let ids = |v: Vec<Value>| -> Vec<String> {
            let mut ids: Vec<String> = v
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        };
        for kind in [
            ArmKind::Job,
            ArmKind::ModelVersion,
            ArmKind::DataVersion,
            ArmKind::Compute,
        ] {
            let want = ids(lcp.list_all(ws, kind).await.unwrap());
            assert!(!want.is_empty(), "{kind:?}: nothing seeded");
            assert_eq!(ids(arm.list_all(ws, kind).await.unwrap()), want, "{kind:?}");
        }
        // More jobs than one page: the adapter followed nextLink.
        assert!(lcp.list_all(ws, ArmKind::Job).await.unwrap().len() > 2);

        // An archived job is listed only with listViewType=All (which the adapter sends).
        let mut jobs = lcp.list_all(ws, ArmKind::Job).await.unwrap();
        // The first job by name, so it is on the first page the raw GETs below read.
        let mut archived = jobs.remove(0);
        archived["properties"]["isArchived"] = json!(true);
        lcp.put_resource(ws, ArmKind::Job, &archived).await.unwrap();
        let http = reqwest::Client::new();
        let get = |query: &'static str, bearer: String| {
            let url = format!("{}{ws}/jobs?{query}", srv.base_url);
            let http = http.clone();
            async move {
                let r = http
                    .get(url)
                    .header("authorization", bearer)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        let id = archived["id"].as_str().unwrap().to_string();
        let active = get("api-version=2024-10-01", audience(ARM_SCOPE)).await;
        let every = get(
            "api-version=2024-10-01&listViewType=All",
            audience(ARM_SCOPE),
        )
        .await;
        assert_eq!(active.0, 200);
        assert!(
            !active.1.contains(&id) && every.1.contains(&id),
            "{active:?}"
        );
        assert_eq!(get("listViewType=All", audience(ARM_SCOPE)).await.0, 400);
        assert_eq!(
            get("api-version=2024-10-01", "Bearer other".into()).await.0,
            401
        );

        // Delete: 202 + operation polled to Succeeded; again: 404, which the adapter reports as
        // NotFound (a redelivered slice counts it as deleted).
        assert_eq!(
            arm.delete(ws, ArmKind::Job, &id).await.unwrap(),
            ResourceDelete::Deleted
        );
        assert_eq!(
            arm.delete(ws, ArmKind::Job, &id).await.unwrap(),
            ResourceDelete::NotFound
        );
        assert!(!ids(arm.list_all(ws, ArmKind::Job).await.unwrap()).contains(&id));
        // A running job is refused (409), and stays.
        let mut running = jobs.pop().unwrap();
        running["properties"]["status"] = json!("Running");
        lcp.put_resource(ws, ArmKind::Job, &running).await.unwrap();
        let rid = running["id"].as_str().unwrap();
        assert!(matches!(
            arm.delete(ws, ArmKind::Job, rid).await.unwrap(),
            ResourceDelete::Refused(m) if m.contains("409")
        ));
        assert!(ids(arm.list_all(ws, ArmKind::Job).await.unwrap()).contains(&rid.to_string()));
        // Model versions and computes go the same way.
        for kind in [ArmKind::ModelVersion, ArmKind::Compute] {
            let vid = ids(lcp.list_all(ws, kind).await.unwrap()).pop().unwrap();
            assert_eq!(
                arm.delete(ws, kind, &vid).await.unwrap(),
                ResourceDelete::Deleted
            );
            assert!(!ids(lcp.list_all(ws, kind).await.unwrap()).contains(&vid));
        }
    }

    #[tokio::test]
    async fn export_and_delete_reports_match_the_local_adapters() {
        let local = setup(false).await;
        let prod = setup(true).await;
        for (id, kind) in [("EXP-9", "export"), ("DEL-9", "delete")] {
            let a = essence(&submit(&local, id, kind, "alice").await);
            let b = essence(&submit(&prod, id, kind, "alice").await);
            assert!(a["counts"]["items"].as_u64().unwrap() > 0, "{a:#}");
            // Her display-name-only assets (she shares the name with Ali) wait for review, which
            // outranks the delete's pending telemetry purge.
            let want = "needs_review";
            assert_eq!(a["status"], want, "{a:#}");
            let text = a.to_string();
            for kind in ["job", "modelVersion", "dataVersion", "compute"] {
                assert!(
                    text.contains(&format!("resourceType\\\":\\\"{kind}")),
                    "no {kind} items in the report"
                );
            }
            assert_eq!(a, b, "{kind}: production adapters disagree with local ones");
        }
    }
}

// ---------------------------------------------------------------- retry budget

/// One REST operation against a server that always answers 503 is sent exactly the stated
/// budget of times (`TRANSPORT_ATTEMPTS`, the default `max_retries` + 1): the pipeline retries,
/// nothing wraps it in more retries, and the caller gets a transient error.
#[tokio::test]
async fn rest_retry_budget() {
    use azureml_dsr::adapters::azure::retry::TRANSPORT_ATTEMPTS;
    let server = serve(ARM_SCOPE, |_| {
        (
            503,
            vec![],
            json!({"error": {"code": "ServerBusy", "message": "busy"}}),
        )
    })
    .await;
    // The default budget, with short waits.
    let retry = RetryConfig {
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryConfig::default()
    };
    let plane = AzureMlControlPlane::new(
        RestClient::new(credential(), ARM_SCOPE).with_retry(retry),
        ArmConfig::new(server.url()),
    );
    let r = plane.list(&ws(), ArmKind::Job, None).await;
    assert!(matches!(r, Err(ControlPlaneError::Transient(_))), "{r:?}");
    let sent = server.seen.lock().unwrap().len() as u32;
    assert_eq!(sent, TRANSPORT_ATTEMPTS, "ARM list sent {sent} times");
}
