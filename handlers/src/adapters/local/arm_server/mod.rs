//! Local ARM server: the subset of the Azure Resource Manager REST API for
//! `Microsoft.MachineLearningServices` that the production adapter
//! ([`crate::adapters::azure::arm::AzureMlControlPlane`]) calls, served over HTTP on 127.0.0.1
//! from the [`LocalControlPlane`] documents (account `armlocal` of a blob store).
//!
//! What it is for: running the production ARM adapter — paging, long-running deletes, retries —
//! without Azure, in the pipeline tests and in the chaos trials, where it sits behind a
//! fault-injecting proxy (`DSR_ARM_ENDPOINT` points the local runtime at it). It is a test
//! double, not an emulator: what it serves is what the adapter needs, shaped as the REST API spec
//! examples are, and it answers the way ARM does where the adapter's correctness depends on it:
//! - lists page through `nextLink` (`$skipToken` = the last name served, so a page boundary
//!   survives deletions between pages, as ARM's continuation tokens do) with a configurable page
//!   size; `listViewType` defaults to `ActiveOnly` (archived jobs and versions are hidden unless
//!   the caller asks for `All`);
//! - model and data versions are two-level: containers, then versions per container (a
//!   container exists while it has versions; listing the versions of one that does not is 404);
//! - deletes answer 202 with `Azure-AsyncOperation` and `Location`; the operation reports
//!   `InProgress` a configurable number of times, then `Succeeded`; deleting what is gone is 404,
//!   a running job is 409; a compute delete without `underlyingResourceAction` is 400;
//! - every request must carry `api-version` (400) and the expected bearer token (401).
//!
//! Links (`nextLink`, operation URLs) are built from `X-Forwarded-Host` or `Host`, so a client
//! that reaches the server through a proxy is sent back through the proxy (the production adapter
//! refuses links to any other origin).

use crate::adapters::percent_decode;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::arm_throttle::{Admission, ArmThrottle, OpClass};
use super::control_plane::{LocalControlPlane, ARM_ACCOUNT};
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, StoreError};
use crate::ports::control_plane::{
    ArmKind, ControlPlane, ControlPlaneError, Datastore, ResourceDelete, WorkspaceState,
};

mod documents;

/// The token the local runtime sends to a local ARM server (and the server expects) unless
/// `DSR_ARM_TOKEN` says otherwise. It grants nothing anywhere else.
pub const LOCAL_ARM_TOKEN: &str = "local-arm-token";

#[derive(Debug, Clone)]
pub struct ArmServerOptions {
    /// Items per list page; small values make every listing page.
    pub page_size: usize,
    /// The exact `Authorization` header every request must carry; `None` accepts any.
    pub bearer: Option<String>,
    /// How many polls of a delete's operation answer `InProgress` before `Succeeded`.
    pub lro_polls: u32,
    /// `Retry-After` (seconds) on 202 and in-progress answers; `None` leaves the poll interval
    /// to the client.
    pub retry_after: Option<u64>,
    /// ARM's token buckets (429 + `Retry-After` when one is empty; see
    /// [`super::arm_throttle`]); `None`: never throttled.
    pub throttle: Option<super::arm_throttle::ThrottleOptions>,
}

impl Default for ArmServerOptions {
    fn default() -> Self {
        Self {
            page_size: 100,
            bearer: Some(format!("Bearer {LOCAL_ARM_TOKEN}")),
            lro_polls: 1,
            retry_after: None,
            throttle: None,
        }
    }
}

struct Shared {
    store: Arc<dyn BlobStore>,
    lcp: LocalControlPlane,
    opts: ArmServerOptions,
    /// Long-running operations: id -> in-progress polls left.
    ops: Mutex<HashMap<String, u32>>,
    throttle: Option<Arc<ArmThrottle>>,
}

/// The router; serve it with `axum::serve` on a 127.0.0.1 listener (or use [`start`]).
pub fn router(store: Arc<dyn BlobStore>, opts: ArmServerOptions) -> axum::Router {
    let throttle = opts.throttle.map(|t| Arc::new(ArmThrottle::new(t)));
    router_with_throttle(store, opts, throttle)
}

/// [`router`] with the caller's throttle (to read its 429 count); `opts.throttle` is ignored.
pub fn router_with_throttle(
    store: Arc<dyn BlobStore>,
    opts: ArmServerOptions,
    throttle: Option<Arc<ArmThrottle>>,
) -> axum::Router {
    let shared = Arc::new(Shared {
        lcp: LocalControlPlane::new(store.clone()),
        store,
        opts,
        ops: Mutex::new(HashMap::new()),
        throttle,
    });
    axum::Router::new().fallback(handle).with_state(shared)
}

/// A running server; stopped when dropped.
pub struct ArmServer {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ArmServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind 127.0.0.1 on `port` (0: any free port) and serve in the background.
pub async fn start(
    store: Arc<dyn BlobStore>,
    opts: ArmServerOptions,
    port: u16,
) -> std::io::Result<ArmServer> {
    let throttle = opts.throttle.map(|t| Arc::new(ArmThrottle::new(t)));
    start_with_throttle(store, opts, port, throttle).await
}

/// [`start`] with the caller's throttle (to read its 429 count); `opts.throttle` is ignored.
pub async fn start_with_throttle(
    store: Arc<dyn BlobStore>,
    opts: ArmServerOptions,
    port: u16,
    throttle: Option<Arc<ArmThrottle>>,
) -> std::io::Result<ArmServer> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let app = router_with_throttle(store, opts, throttle);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "local ARM server stopped");
        }
    });
    Ok(ArmServer { base_url, task })
}

const OPS_PREFIX: &str = "/providers/Microsoft.MachineLearningServices/locations/local/";

fn reply(status: u16, v: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(v),
    )
        .into_response()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    reply(status, json!({"error": {"code": code, "message": message}}))
}

fn not_found() -> Response {
    error(404, "ResourceNotFound", "The resource was not found.")
}

/// A store failure is the server's problem: 500, which the client retries.
fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "local ARM server: store error");
    error(500, "InternalServerError", "store error")
}

fn cp_error(e: ControlPlaneError) -> Response {
    match e {
        ControlPlaneError::WorkspaceNotFound => not_found(),
        e => internal(e),
    }
}

fn base_of(headers: &HeaderMap) -> String {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get("host"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn handle(
    State(st): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(want) = &st.opts.bearer {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return error(
                401,
                "AuthenticationFailed",
                "missing or unexpected bearer token",
            );
        }
    }
    // ARM throttles before the request reaches the resource provider; every answer says how
    // many requests of its class remain.
    let mut remaining = None;
    if let Some(t) = &st.throttle {
        let class = OpClass::of(method.as_str());
        match t.admit(class) {
            Admission::Admitted { remaining: n } => remaining = Some((class, n)),
            Admission::Refused { retry_after_secs } => {
                let mut r = reply(429, ArmThrottle::refusal_body(class, retry_after_secs));
                r.headers_mut()
                    .insert("retry-after", retry_after_secs.into());
                r.headers_mut()
                    .insert(class.remaining_header(), 0u64.into());
                return r;
            }
        }
    }
    let mut r = handle_admitted(&st, method, uri, headers).await;
    if let Some((class, n)) = remaining {
        r.headers_mut().insert(class.remaining_header(), n.into());
    }
    r
}

async fn handle_admitted(
    st: &Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let q = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    if q("api-version").is_none_or(str::is_empty) {
        return error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let base = base_of(&headers);
    let path = uri.path();
    if let Some(op) = path.strip_prefix(OPS_PREFIX) {
        return st.operation(op, &base, q("api-version").unwrap_or_default());
    }
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    if segs.len() >= 8
        && segs[5].eq_ignore_ascii_case("Microsoft.Insights")
        && segs[6].eq_ignore_ascii_case("components")
        && method == Method::GET
    {
        return st.app_insights(&format!("/{}", segs.join("/"))).await;
    }
    let ws =
        match (segs.len() >= 8).then(|| WorkspaceId::parse(&format!("/{}", segs[..8].join("/")))) {
            Some(Ok(ws)) => ws,
            _ => return not_found(),
        };
    let rest: Vec<&str> = segs[8..].iter().map(String::as_str).collect();
    let info = match st.lcp.workspace(&ws).await {
        Ok(i) => i,
        // ARM still returns a soft-deleted workspace itself (and nothing under it).
        Err(ControlPlaneError::WorkspaceNotFound)
            if method == Method::GET
                && rest.is_empty()
                && matches!(
                    st.lcp.workspace_state(&ws).await,
                    Ok(WorkspaceState::SoftDeleted)
                ) =>
        {
            return reply(
                200,
                json!({
                    "id": ws.to_string(), "name": ws.name(), "type": "Microsoft.MachineLearningServices/workspaces",
                    "location": "local", "properties": {"provisioningState": "SoftDeleted"},
                }),
            );
        }
        Err(e) => return cp_error(e),
    };
    let all_views = q("listViewType").is_some_and(|v| v.eq_ignore_ascii_case("All"));
    let after = q("$skipToken").map(str::to_string);
    match (method, rest.as_slice()) {
        (Method::GET, []) => {
            let storage = format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
                ws.subscription(),
                ws.resource_group(),
                info.storage_account
            );
            reply(
                200,
                json!({
                    "id": ws.to_string(), "name": ws.name(), "type": "Microsoft.MachineLearningServices/workspaces",
                    "location": info.location.as_deref().unwrap_or("local"), "tags": info.tags,
                    "properties": {
                        "storageAccount": storage, "keyVault": info.key_vault,
                        "applicationInsights": info.app_insights, "provisioningState": "Succeeded",
                    },
                }),
            )
        }
        (Method::GET, ["providers", p, "diagnosticSettings"])
            if p.eq_ignore_ascii_case("Microsoft.Insights") =>
        {
            // DiagnosticSettings_List (shape of the spec's `listDiagnosticSettings.json`): one
            // setting per recorded Log Analytics destination.
            let value: Vec<Value> = info
                .diagnostic_destinations
                .iter()
                .enumerate()
                .map(|(i, la)| {
                    json!({
                        "id": format!("{ws}/providers/microsoft.insights/diagnosticSettings/dsr-local-{i}"),
                        "type": "Microsoft.Insights/diagnosticSettings",
                        "name": format!("dsr-local-{i}"),
                        "properties": {
                            "workspaceId": la,
                            "logs": [{"categoryGroup": "allLogs", "enabled": true}],
                        },
                    })
                })
                .collect();
            reply(200, json!({ "value": value }))
        }
        (Method::GET, ["datastores", name]) => {
            let props = match *name {
                "workspaceblobstore" => {
                    json!({"datastoreType": "AzureBlob", "accountName": info.storage_account, "containerName": info.blobstore_container})
                }
                "workspaceartifactstore" => {
                    json!({"datastoreType": "AzureBlob", "accountName": info.storage_account, "containerName": info.artifact_container})
                }
                "workspaceworkingdirectory" if !info.file_share.is_empty() => {
                    json!({"datastoreType": "AzureFile", "accountName": info.storage_account, "fileShareName": info.file_share})
                }
                _ => {
                    // A registered datastore beyond the defaults.
                    return match st.lcp.datastore_documents(&ws).await {
                        Ok(docs) => match docs.into_iter().find(|d| d["name"] == *name) {
                            Some(d) => reply(200, d),
                            None => not_found(),
                        },
                        Err(e) => cp_error(e),
                    };
                }
            };
            reply(
                200,
                json!({"id": format!("{ws}/datastores/{name}"), "name": name, "properties": props}),
            )
        }
        (Method::GET, ["datastores"]) => {
            // Datastores_List: the defaults, then the registered ones (one page: a workspace
            // has few).
            let mut value: Vec<Value> = Datastore::defaults(&info)
                .into_iter()
                .map(|d| {
                    let share = d.datastore_type.eq_ignore_ascii_case("AzureFile");
                    let mut props = json!({"datastoreType": d.datastore_type, "accountName": d.account});
                    props[if share { "fileShareName" } else { "containerName" }] = json!(d.container);
                    json!({"id": format!("{ws}/datastores/{}", d.name), "name": d.name, "properties": props})
                })
                .collect();
            match st.lcp.datastore_documents(&ws).await {
                Ok(docs) => value.extend(docs),
                Err(e) => return cp_error(e),
            }
            reply(200, json!({ "value": value }))
        }
        (Method::GET, [c]) if matches!(*c, "jobs" | "computes" | "schedules") => {
            // Computes are never archived; jobs honour listViewType.
            let hide = *c == "jobs" && !all_views;
            st.documents(&ws, &format!("{c}/"), after, hide, &base, path, &query)
                .await
        }
        // OnlineEndpoints_List / BatchEndpoints_List: the endpoints that have deployment
        // documents; OnlineDeployments_List / BatchDeployments_List: those documents.
        (Method::GET, [c]) if matches!(*c, "onlineEndpoints" | "batchEndpoints") => {
            st.containers(&ws, c, after, &base, path, &query).await
        }
        (Method::GET, [c, endpoint, "deployments"])
            if matches!(*c, "onlineEndpoints" | "batchEndpoints") =>
        {
            st.documents(
                &ws,
                &format!("{c}/{endpoint}/deployments/"),
                after,
                false,
                &base,
                path,
                &query,
            )
            .await
        }
        (Method::GET, [c]) if matches!(*c, "models" | "data") => {
            st.containers(&ws, c, after, &base, path, &query).await
        }
        (Method::GET, [c, name, "versions"]) if matches!(*c, "models" | "data") => {
            // The local documents hold no empty containers: a container exists while it has
            // versions, and listing one that does not is 404, as for any missing parent.
            match st.names(&ws, &format!("{c}/{name}/")).await {
                Ok(n) if n.is_empty() => return not_found(),
                Ok(_) => {}
                Err(e) => return internal(e),
            }
            st.documents(
                &ws,
                &format!("{c}/{name}/"),
                after,
                !all_views,
                &base,
                path,
                &query,
            )
            .await
        }
        (Method::GET, _) => match kind_of(&rest) {
            Some(kind) => st.one(&ws, kind, &format!("{ws}/{}", rest.join("/"))).await,
            None => not_found(),
        },
        (Method::DELETE, _) => {
            let Some(kind) = kind_of(&rest) else {
                return error(405, "MethodNotAllowed", "not deletable here");
            };
            if kind == ArmKind::Compute && q("underlyingResourceAction").is_none() {
                return error(
                    400,
                    "BadRequest",
                    "underlyingResourceAction (Delete or Detach) is required",
                );
            }
            let id = format!("{ws}/{}", rest.join("/"));
            match st.lcp.delete(&ws, kind, &id).await {
                Ok(ResourceDelete::Deleted) => {
                    st.accepted(&base, q("api-version").unwrap_or_default())
                }
                Ok(ResourceDelete::NotFound) => not_found(),
                Ok(ResourceDelete::Refused(m)) => error(409, "Conflict", &m),
                Err(e) => cp_error(e),
            }
        }
        _ => error(405, "MethodNotAllowed", "method not supported"),
    }
}

fn kind_of(rest: &[&str]) -> Option<ArmKind> {
    match rest {
        ["jobs", _] => Some(ArmKind::Job),
        ["computes", _] => Some(ArmKind::Compute),
        ["schedules", _] => Some(ArmKind::Schedule),
        ["models", _, "versions", _] => Some(ArmKind::ModelVersion),
        ["data", _, "versions", _] => Some(ArmKind::DataVersion),
        _ => None,
    }
}

fn archived(doc: &Value) -> bool {
    doc.pointer("/properties/isArchived")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `base` + `path` with the request's query, `$skipToken` replaced by `token`.
fn next_link(base: &str, path: &str, query: &[(String, String)], token: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        if !k.eq_ignore_ascii_case("$skipToken") {
            q.append_pair(k, v);
        }
    }
    q.append_pair("$skipToken", token);
    format!("{base}{path}?{}", q.finish())
}

/// The credential the local runtime uses for a local ARM server: a fixed token, never fetched
/// from anywhere (so `DSR_ARM_ENDPOINT` in local mode needs no Azure login).
pub struct LocalArmToken(String);

impl LocalArmToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for LocalArmToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalArmToken(..)")
    }
}

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for LocalArmToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        Ok(azure_core::credentials::AccessToken::new(
            self.0.clone(),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

#[cfg(test)]
mod tests;
