//! Workspace telemetry in Log Analytics behind the [`TelemetryStore`] port: export through the
//! Log Analytics query API, erasure through the workspace purge API.
//!
//! - **Where**: every Log Analytics workspace the Azure ML workspace's diagnostic settings send
//!   to (where `Aml*` tables are), plus the one behind its Application Insights component; both
//!   found by the ARM adapter. If the diagnostic settings could not be read, the search fails
//!   rather than reporting nothing found.
//! - **Who**: per table, the column (and for `dynamic` columns, the key) of the identity map in
//!   `domain::telemetry`, built from the Azure Monitor table reference. Tables are configurable
//!   (default: every covered table).
//! - **Query** (`POST {query}/v1{workspaceResourceId}/query`, audience
//!   `https://api.loganalytics.io`): one KQL query per table and destination. A table that does
//!   not exist in the workspace answers 400 "Failed to resolve table" and counts as empty.
//! - **Purge** (`POST {arm}{workspaceResourceId}/purge?api-version=2020-08-01`, body
//!   `{table, filters:[{column, key?, operator:"==", value}]}`) answers 202 with
//!   `x-ms-status-location`. A purge is not idempotent and the service allows about 50 per hour
//!   per workspace, so the POST goes through a client **without automatic retries**: a 5xx or a
//!   lost answer is reported to the caller, which records it and does not resend on its own.
//!   A 429 or an empty process budget ([`PurgeBudget`]) is `Deferred`: the caller keeps the
//!   purge as to-send and a later timer run sends it. Purges are only planned for tables where
//!   the query finds the subject (the budget is scarce). Batching several identities into one
//!   `in` filter is not done: the port purges one subject at a time.
//! - **Status** (`GET x-ms-status-location`, `{"status": "pending" | "completed"}`, the
//!   documented `WorkspacePurgeStatusResponse`; the enum has no failure value): another status
//!   value, or a 4xx (e.g. 404: the service no longer knows the operation), is a failure; a 5xx
//!   is transient (the caller polls again later and gives up after the purge SLA, 30 days).
//! - **Whole workspace** (after an Azure ML workspace is deleted): one purge per table with
//!   `_ResourceId == <the Azure ML workspace id>`, i.e. only records the deleted workspace
//!   itself emitted — never the whole Application Insights component, which can be shared.
//!   These are remembered in memory only (see docs/reliability.md).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::http::{Method, Url};
use bytes::Bytes;
use serde_json::{json, Value};

use super::rest::{join, same_origin, RestClient, RestError};
use super::retry::RetryConfig;
use crate::domain::raw_json::RawJson;
use crate::domain::subject::ResolvedSubject;
use crate::domain::telemetry::{export_query, identity_column, IdentityColumn};
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::telemetry::*;

pub const PURGE_API_VERSION: &str = "2020-08-01";
pub const LOG_ANALYTICS_SCOPE: &str = "https://api.loganalytics.io/.default";

/// At most `capacity` purge requests in any rolling `window`, in this process.
pub struct PurgeBudget {
    capacity: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl PurgeBudget {
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            window,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Take one request; `Err(wait)` when the budget is spent.
    pub fn take(&self) -> Result<(), Duration> {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            sent.pop_front();
        }
        if sent.len() >= self.capacity {
            let oldest = *sent.front().expect("non-empty when full");
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        sent.push_back(now);
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct PurgeConfig {
    /// ARM endpoint (purge and its status).
    pub arm_endpoint: Url,
    /// Log Analytics query endpoint, `https://api.loganalytics.io`.
    pub query_endpoint: Url,
    /// Tables searched and purged; each must be in the identity map.
    pub tables: Vec<String>,
}

pub struct LogAnalyticsTelemetry {
    /// Status polls (GET, safe to retry).
    arm: RestClient,
    /// Purge POSTs: the same audience with no automatic retry.
    purge_post: RestClient,
    query: RestClient,
    cfg: PurgeConfig,
    budget: PurgeBudget,
    /// Whole-workspace purges in flight: (log analytics workspace, table, value) -> status URL.
    in_flight: Mutex<HashMap<(String, String, String), Url>>,
}

fn map(e: RestError) -> TelemetryError {
    match e {
        RestError::Transient(m) => TelemetryError::Transient(m),
        RestError::Other(m) => TelemetryError::Other(m),
    }
}

/// Table names go into KQL and URLs: letters, digits and `_` only.
fn valid_table(t: &str) -> bool {
    !t.is_empty() && t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A client that sends each request exactly once (for the purge POST).
pub(crate) fn no_retry(client: RestClient) -> RestClient {
    client.with_retry(RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    })
}

impl LogAnalyticsTelemetry {
    pub fn new(arm: RestClient, query: RestClient, cfg: PurgeConfig) -> Self {
        Self::with_budget(
            arm,
            query,
            cfg,
            PurgeBudget::new(50, Duration::from_secs(3600)),
        )
    }

    pub fn with_budget(
        arm: RestClient,
        query: RestClient,
        cfg: PurgeConfig,
        budget: PurgeBudget,
    ) -> Self {
        Self {
            purge_post: no_retry(arm.clone()),
            arm,
            query,
            cfg,
            budget,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The configured tables with their identity columns; a table without one is an error.
    fn tables(&self) -> Result<Vec<&'static IdentityColumn>, TelemetryError> {
        self.cfg
            .tables
            .iter()
            .map(|t| {
                if !valid_table(t) {
                    return Err(TelemetryError::Other(format!("invalid table name {t:?}")));
                }
                identity_column(t).ok_or_else(|| {
                    TelemetryError::Other(format!("table {t} has no identity column in the map"))
                })
            })
            .collect()
    }

    /// Rows of a KQL query (built from validated parts only) against one workspace.
    async fn rows(&self, la: &str, kql: &str) -> Result<Vec<RawJson>, TelemetryError> {
        let url = join(
            &self.cfg.query_endpoint,
            &format!("v1/{}/query", la.trim_start_matches('/')),
        )
        .map_err(map)?;
        let body = json!({ "query": kql });
        let r = self
            .query
            .send(Method::Post, &url, Some(Bytes::from(body.to_string())), &[])
            .await
            .map_err(map)?;
        if r.status == 400 && String::from_utf8_lossy(&r.body).contains("Failed to resolve table") {
            return Ok(Vec::new());
        }
        if r.status != 200 {
            return Err(map(r.error()));
        }
        Ok(rows_as_objects(&r.json().map_err(map)?))
    }

    fn purge_url(&self, la: &str) -> Result<Url, TelemetryError> {
        let la = la.trim_start_matches('/');
        if !la.to_ascii_lowercase().starts_with("subscriptions/") {
            return Err(TelemetryError::Other(
                "purge destination is not a workspace resource id".into(),
            ));
        }
        let mut url = join(&self.cfg.arm_endpoint, &format!("{la}/purge")).map_err(map)?;
        url.query_pairs_mut()
            .append_pair("api-version", PURGE_API_VERSION);
        Ok(url)
    }

    /// One purge POST (never retried here).
    async fn post_purge(&self, la: &str, body: &Value) -> Result<PurgeSend, TelemetryError> {
        if let Err(wait) = self.budget.take() {
            return Ok(PurgeSend::Deferred {
                reason: format!(
                    "purge budget (50 requests/hour) spent; next slot in {}s",
                    wait.as_secs()
                ),
            });
        }
        let url = self.purge_url(la)?;
        let r = self
            .purge_post
            .send(Method::Post, &url, Some(Bytes::from(body.to_string())), &[])
            .await
            .map_err(map)?;
        if r.status == 429 {
            return Ok(PurgeSend::Deferred {
                reason: format!(
                    "the service throttled the purge (429, Retry-After {})",
                    r.header("retry-after").unwrap_or("absent")
                ),
            });
        }
        if r.status != 202 && r.status != 200 {
            return Err(map(r.error()));
        }
        let status_url = r
            .header("x-ms-status-location")
            .and_then(|s| Url::parse(s).ok())
            .ok_or_else(|| {
                TelemetryError::Other("purge accepted without x-ms-status-location".into())
            })?;
        if !same_origin(&self.cfg.arm_endpoint, &status_url) {
            return Err(TelemetryError::Other(
                "purge status location is not on the ARM endpoint".into(),
            ));
        }
        let operation_id = operation_id(&status_url)
            .or_else(|| {
                r.json().ok().and_then(|v| {
                    v.get("operationId")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
            })
            .unwrap_or_else(|| status_url.to_string());
        Ok(PurgeSend::Accepted {
            operation_id,
            status_url: status_url.to_string(),
        })
    }

    /// Start (or look up) the whole-workspace purge of `table` rows where `column == value`.
    async fn purge_table(
        &self,
        la: &str,
        table: &str,
        column: &str,
        value: &str,
    ) -> Result<PurgeStatus, TelemetryError> {
        let key = (
            la.to_ascii_lowercase(),
            table.to_string(),
            value.to_string(),
        );
        let known = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(status_url) = known {
            return match self.poll_purge(status_url.as_str()).await? {
                PurgePoll::Completed => {
                    self.in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    Ok(PurgeStatus::Completed { removed: 0 })
                }
                PurgePoll::Pending => Ok(PurgeStatus::Pending {
                    operation_id: operation_id(&status_url)
                        .unwrap_or_else(|| status_url.to_string()),
                }),
                PurgePoll::Failed { reason } => {
                    self.in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    Err(TelemetryError::Other(format!("purge failed: {reason}")))
                }
            };
        }
        let body = json!({
            "table": table,
            "filters": [{ "column": column, "operator": "==", "value": value }]
        });
        match self.post_purge(la, &body).await? {
            PurgeSend::Deferred { reason } => Err(TelemetryError::Transient(reason)),
            PurgeSend::Accepted {
                operation_id,
                status_url,
            } => {
                if let Ok(u) = Url::parse(&status_url) {
                    self.in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, u);
                }
                Ok(PurgeStatus::Pending { operation_id })
            }
        }
    }
}

/// `.../operations/purge-<guid>?api-version=...` -> `purge-<guid>`.
fn operation_id(status_url: &Url) -> Option<String> {
    status_url
        .path_segments()?
        .next_back()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Query API tables (`{tables:[{columns:[{name}], rows:[[...]]}]}`) as JSON objects.
fn rows_as_objects(v: &Value) -> Vec<RawJson> {
    let mut out = Vec::new();
    for t in v
        .get("tables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cols: Vec<&str> = t
            .get("columns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        for row in t
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(cells) = row.as_array() else {
                continue;
            };
            let obj: serde_json::Map<String, Value> = cols
                .iter()
                .zip(cells)
                .map(|(c, v)| (c.to_string(), v.clone()))
                .collect();
            out.push(RawJson::of(&Value::Object(obj)));
        }
    }
    out
}

/// The workspace's Log Analytics destinations, or why they are unknown.
fn destinations(ws: &WorkspaceInfo) -> Result<Vec<String>, TelemetryError> {
    if let Some(e) = &ws.diagnostic_settings_error {
        return Err(TelemetryError::Transient(format!(
            "the workspace's diagnostic settings could not be read ({e}); telemetry not searched"
        )));
    }
    Ok(ws.log_analytics_destinations())
}

#[async_trait]
impl TelemetryStore for LogAnalyticsTelemetry {
    async fn query(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<TelemetryRows>, TelemetryError> {
        let las = destinations(ws)?;
        if las.is_empty() {
            tracing::warn!(workspace = %ws.id, "no diagnostic setting or Application Insights sends this workspace's logs to Log Analytics; telemetry not searched");
        }
        // The object id is a parsed GUID, quoted as a KQL literal.
        let oid = subject.object_id.to_string();
        let tables = self.tables()?;
        let mut out = Vec::new();
        for la in &las {
            for col in &tables {
                let rows = self.rows(la, &export_query(col, &oid)).await?;
                if !rows.is_empty() {
                    out.push(TelemetryRows {
                        destination: la.clone(),
                        table: col.table.to_string(),
                        rows,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn purge_workspace(&self, ws: &WorkspaceInfo) -> Result<PurgeStatus, TelemetryError> {
        let las = ws.log_analytics_destinations();
        // Log Analytics stores _ResourceId lower-cased.
        let rid = ws.id.to_string().to_ascii_lowercase();
        let mut pending = Vec::new();
        for la in &las {
            for col in self.tables()? {
                if let PurgeStatus::Pending { operation_id } =
                    self.purge_table(la, col.table, "_ResourceId", &rid).await?
                {
                    pending.push(operation_id);
                }
            }
        }
        Ok(if pending.is_empty() {
            PurgeStatus::Completed { removed: 0 }
        } else {
            PurgeStatus::Pending {
                operation_id: pending.join(","),
            }
        })
    }

    async fn purge_plan(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<PlannedPurge>, TelemetryError> {
        Ok(plan_purges(self.query(ws, subject).await?, subject))
    }

    async fn send_purge(
        &self,
        destination: &str,
        body: &Value,
    ) -> Result<PurgeSend, TelemetryError> {
        self.post_purge(destination, body).await
    }

    async fn poll_purge(&self, status_url: &str) -> Result<PurgePoll, TelemetryError> {
        let url = Url::parse(status_url)
            .map_err(|_| TelemetryError::Other("purge status location is not a URL".into()))?;
        if !same_origin(&self.cfg.arm_endpoint, &url) {
            return Err(TelemetryError::Other(
                "purge status location is not on the ARM endpoint".into(),
            ));
        }
        let r = self.arm.get(&url).await.map_err(map)?;
        if (400..500).contains(&r.status) && r.status != 429 {
            return Ok(PurgePoll::Failed {
                reason: format!("status answered {}: {}", r.status, r.message()),
            });
        }
        if r.status != 200 {
            return Err(TelemetryError::Transient(format!(
                "purge status answered {}",
                r.status
            )));
        }
        let v = r.json().map_err(map)?;
        Ok(match v.get("status").and_then(Value::as_str) {
            Some(s) if s.eq_ignore_ascii_case("completed") => PurgePoll::Completed,
            Some(s) if s.eq_ignore_ascii_case("pending") => PurgePoll::Pending,
            other => PurgePoll::Failed {
                reason: format!("status {other:?}"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_beyond_capacity() {
        let b = PurgeBudget::new(2, Duration::from_secs(3600));
        assert!(b.take().is_ok());
        assert!(b.take().is_ok());
        let wait = b.take().unwrap_err();
        assert!(wait > Duration::from_secs(3590));
        let b = PurgeBudget::new(1, Duration::from_millis(0));
        assert!(b.take().is_ok());
        assert!(b.take().is_ok());
    }

    #[test]
    fn query_rows_become_objects() {
        let v = json!({"tables":[{"name":"PrimaryResult","columns":[{"name":"TimeGenerated","type":"datetime"},{"name":"Identity","type":"string"}],"rows":[["2026-01-01T00:00:00Z","a"],["2026-01-02T00:00:00Z","b"]]}]});
        let rows = rows_as_objects(&v);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].to_value()["Identity"], "b");
    }

    #[test]
    fn table_names_are_validated() {
        assert!(valid_table("AmlRunEvent"));
        assert!(!valid_table("x | take 1"));
        assert!(!valid_table(""));
    }

    #[test]
    fn operation_id_from_status_location() {
        let u = Url::parse("https://management.azure.com/subscriptions/s/resourceGroups/r/providers/microsoft.operationalinsights/workspaces/t/operations/purge-970318e7-b859-4edb-8903-83b1b54d0b74?api-version=2020-08-01").unwrap();
        assert_eq!(
            operation_id(&u).as_deref(),
            Some("purge-970318e7-b859-4edb-8903-83b1b54d0b74")
        );
    }
}
