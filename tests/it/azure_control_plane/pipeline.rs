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
use azureml_dsr::functions::{intake, Services, Settings};
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
                e.object_id.to_string() == key || e.upn.as_ref().is_some_and(|u| u.as_str() == key)
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
    intake::run(
        &r.svc,
        body.to_string().as_bytes(),
        &crate::support::pipeline::delivery(),
    )
    .await
    .unwrap();
    crate::support::pipeline::drive(&r.svc, &r.bus, 1).await;
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
