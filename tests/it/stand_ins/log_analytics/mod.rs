//! Log Analytics stand-in: the query API (`api.loganalytics.io`) and the ARM workspace purge API
//! (`management.azure.com`), over rows the test holds per workspace and table.
//!
//! Query API (`OperationalInsights.json` data-plane v1, example `oms-post-example.json` =
//! `tests/fixtures/azure-rest/loganalytics/query-post.json`):
//! - `POST /v1/workspaces/{workspaceId}/query` and the resource-centric
//!   `POST /v1/{workspaceResourceId}/query` (what `purge.rs` calls), body `{"query": "<KQL>"}`;
//!   answer `{"tables":[{"name":"PrimaryResult","columns":[{"name","type"}],"rows":[[..]]}]}`;
//! - KQL: the subset the product sends — `Table | where Col == "v" [and ...]` with `==`, `=~`,
//!   `!=`, `!~`, `tostring(DynamicCol) has "term"` (`has`: whole term, case-insensitive, as
//!   KQL's string operators describe it), plus `| take N`; anything else is a 400 syntax
//!   error;
//! - errors use the documented `errorResponse` (`{"error":{"code","message","innererror"}}`):
//!   an unknown table is 400 `BadArgumentError` / `SEM0100` "Failed to resolve table or column
//!   expression named 'X'"; an unknown workspace 404 `WorkspaceNotFoundError`; no token 401
//!   `AuthorizationRequiredError`, a token for another audience 403 `InvalidTokenError`;
//!   injected throttling 429 `ThrottledError` with `Retry-After`.
//!
//! Purge API (`WorkspacePurge.json` 2020-08-01, examples `WorkspacesPurge*.json`):
//! - `POST {ws}/purge?api-version=2020-08-01` body `{"table","filters":[{"column","operator",
//!   "value","key"}]}` → 202, header `x-ms-status-location: {arm}{ws}/operations/purge-<guid>?
//!   api-version=2020-08-01`, body `{"operationId": "purge-<guid>"}`;
//! - `GET` of the status location → `{"status": "pending" | "completed"}`.
//! - Filters follow the spec: all filters must hold (AND); operators `==`, `=~`, `in`, `in~`,
//!   `>`, `>=`, `<`, `<=`, `between` "with the same behavior as in a KQL query"; `key` names a
//!   property of a `dynamic` column (custom dimensions). The request is validated when it is
//!   posted (unknown table/column/operator → 400); rows are removed when the purge completes.
//! - Switches: how many status polls stay `pending` ([`LogAnalyticsStandIn::set_pending_polls`]),
//!   purges that fail (status answers 500 from then on), rejected posts (400), 429 +
//!   `Retry-After` on posts.
//!
//! The ARM half is a router layer ([`LogAnalyticsStandIn::arm_router`]) so it can wrap another
//! ARM stand-in (the local ARM server) on the same origin, which is where the production adapter
//! sends purges (`DSR_ARM_ENDPOINT`); [`LogAnalyticsStandIn::arm_url`] is a standalone server
//! with nothing behind the purge routes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::identity::{check_bearer, TokenProblem};
use super::server::{json_reply, percent_decode, request_id, BackgroundServer, Faults, Log, Seen};

pub const LOG_ANALYTICS_AUDIENCES: &[&str] = &[
    "https://api.loganalytics.io",
    "https://api.loganalytics.azure.com",
];
pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
];
pub const PURGE_API_VERSION: &str = "2020-08-01";

#[derive(Debug, Clone)]
struct Table {
    /// (name, type) in order; types as the query API reports them (`string`, `datetime`,
    /// `long`, `real`, `bool`, `dynamic`, ...).
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    fn col(&self, name: &str) -> Option<(usize, &str)> {
        self.columns
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.columns[i].1.as_str()))
    }
}

#[derive(Debug, Clone)]
struct Workspace {
    /// As given by the test (ARM id).
    resource_id: String,
    /// The workspace (customer) id GUID the `/v1/workspaces/{id}` form uses.
    customer_id: String,
    tables: BTreeMap<String, Table>,
}

/// How a purge ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeState {
    Pending,
    Completed,
    /// The status endpoint answers 500 for it; nothing is removed.
    Failed,
}

/// One purge request, for assertions.
#[derive(Debug, Clone)]
pub struct PurgeRecord {
    pub operation_id: String,
    /// Lower-cased workspace resource id.
    pub workspace: String,
    pub table: String,
    pub filters: Vec<Value>,
    pub state: PurgeState,
    /// Status polls answered so far.
    pub polls: u32,
    /// Rows removed on completion.
    pub removed: usize,
}

struct Purge {
    record: PurgeRecord,
    pending_left: u32,
    filters: Vec<Filter>,
}

struct LaState {
    workspaces: Mutex<BTreeMap<String, Workspace>>,
    purges: Mutex<Vec<Purge>>,
    pending_polls: Mutex<u32>,
    fail_purges: Faults,
    reject_purges: Faults,
    throttle_purges: Faults,
    throttle_queries: Faults,
    retry_after_secs: Mutex<u64>,
    query_log: Log,
    arm_log: Log,
}

/// A running Log Analytics stand-in (query server + standalone ARM purge server).
pub struct LogAnalyticsStandIn {
    query: BackgroundServer,
    arm: BackgroundServer,
    state: Arc<LaState>,
}

/// Lower-cased `/subscriptions/.../workspaces/{name}`: ARM ids compare case-insensitively.
fn ws_key(resource_id: &str) -> String {
    format!("/{}", resource_id.trim_matches('/').to_ascii_lowercase())
}

impl LogAnalyticsStandIn {
    pub fn start() -> LogAnalyticsStandIn {
        let state = Arc::new(LaState {
            workspaces: Mutex::new(BTreeMap::new()),
            purges: Mutex::new(Vec::new()),
            pending_polls: Mutex::new(0),
            fail_purges: Faults::default(),
            reject_purges: Faults::default(),
            throttle_purges: Faults::default(),
            throttle_queries: Faults::default(),
            retry_after_secs: Mutex::new(1),
            query_log: Log::default(),
            arm_log: Log::default(),
        });
        let query_app = axum::Router::new()
            .fallback(query_handler)
            .with_state(state.clone());
        let query = BackgroundServer::start("log analytics query", query_app);
        let arm =
            BackgroundServer::start("log analytics purge (ARM)", arm_router_for(&state, None));
        LogAnalyticsStandIn { query, arm, state }
    }

    /// Query API endpoint (`DSR_LOGANALYTICS_ENDPOINT`), `http://127.0.0.1:<port>`.
    pub fn query_url(&self) -> &str {
        &self.query.base_url
    }

    /// A standalone ARM endpoint serving only the purge routes.
    pub fn arm_url(&self) -> &str {
        &self.arm.base_url
    }

    /// The purge routes in front of `inner` (e.g. `arm_server::router(..)`): purge requests are
    /// answered here, everything else goes to `inner` (404 ARM error when `None`).
    pub fn arm_router(&self, inner: Option<axum::Router>) -> axum::Router {
        arm_router_for(&self.state, inner)
    }

    /// Register a Log Analytics workspace; returns its workspace (customer) id.
    pub fn add_workspace(&self, resource_id: &str) -> String {
        let customer_id =
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, ws_key(resource_id).as_bytes())
                .to_string();
        self.state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ws_key(resource_id))
            .or_insert_with(|| Workspace {
                resource_id: resource_id.to_string(),
                customer_id: customer_id.clone(),
                tables: BTreeMap::new(),
            });
        customer_id
    }

    /// Create (or replace) a table with `(name, type)` columns.
    pub fn add_table(&self, resource_id: &str, table: &str, columns: &[(&str, &str)]) {
        self.add_workspace(resource_id);
        let mut ws = self
            .state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(w) = ws.get_mut(&ws_key(resource_id)) {
            w.tables.insert(
                table.to_string(),
                Table {
                    columns: columns
                        .iter()
                        .map(|(n, t)| (n.to_string(), t.to_string()))
                        .collect(),
                    rows: Vec::new(),
                },
            );
        }
    }

    /// Append rows given as objects keyed by column name (missing columns are null).
    pub fn insert(&self, resource_id: &str, table: &str, rows: &[Value]) {
        let mut ws = self
            .state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let t = ws
            .get_mut(&ws_key(resource_id))
            .and_then(|w| w.tables.get_mut(table))
            .unwrap_or_else(|| panic!("test setup: no table {table} in {resource_id}"));
        for r in rows {
            let row = t
                .columns
                .iter()
                .map(|(n, _)| r.get(n).cloned().unwrap_or(Value::Null))
                .collect();
            t.rows.push(row);
        }
    }

    /// The rows of a table now, as objects.
    pub fn rows(&self, resource_id: &str, table: &str) -> Vec<Value> {
        let ws = self
            .state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(t) = ws
            .get(&ws_key(resource_id))
            .and_then(|w| w.tables.get(table))
        else {
            return Vec::new();
        };
        t.rows
            .iter()
            .map(|r| {
                Value::Object(
                    t.columns
                        .iter()
                        .zip(r)
                        .map(|((n, _), v)| (n.clone(), v.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    /// Status polls a new purge answers `pending` before `completed`.
    pub fn set_pending_polls(&self, n: u32) {
        *self
            .state
            .pending_polls
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = n;
    }

    /// The next `n` accepted purges fail (their status answers 500; no row is removed).
    pub fn fail_next_purges(&self, n: u32) {
        self.state.fail_purges.set(n);
    }

    /// The next `n` purge requests are refused with 400.
    pub fn reject_next_purges(&self, n: u32) {
        self.state.reject_purges.set(n);
    }

    /// The next `n` purge requests answer 429 with `Retry-After: secs`.
    pub fn throttle_purges(&self, n: u32, secs: u64) {
        *self
            .state
            .retry_after_secs
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = secs;
        self.state.throttle_purges.set(n);
    }

    /// The next `n` queries answer 429 with `Retry-After: secs`.
    pub fn throttle_queries(&self, n: u32, secs: u64) {
        *self
            .state
            .retry_after_secs
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = secs;
        self.state.throttle_queries.set(n);
    }

    pub fn purges(&self) -> Vec<PurgeRecord> {
        self.state
            .purges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.record.clone())
            .collect()
    }

    pub fn query_requests(&self) -> Vec<Seen> {
        self.state.query_log.all()
    }

    pub fn arm_requests(&self) -> Vec<Seen> {
        self.state.arm_log.all()
    }
}

mod kql;
mod purge_api;
mod query_api;
mod values;
use kql::*;
use purge_api::*;
use query_api::*;
use values::*;
