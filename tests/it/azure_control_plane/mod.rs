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

mod arm_deletes;
mod arm_reads;
mod graph;
mod log_analytics;
mod pipeline;
mod retry_budget;
mod service_bus;
mod wiring;
