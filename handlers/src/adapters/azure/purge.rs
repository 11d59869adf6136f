//! Workspace telemetry in Log Analytics behind the [`TelemetryStore`] port: export through the
//! Log Analytics query API, erasure through the workspace purge API.
//!
//! - **Where**: the Log Analytics workspace behind the Azure ML workspace's (workspace-based)
//!   Application Insights component, found by the ARM adapter. Tables are configurable
//!   (default `AmlRunEvent`); the subject is matched on column `Identity` by Entra object id.
//! - **Query** (`POST {query}/v1{workspaceResourceId}/query`, audience
//!   `https://api.loganalytics.io`): one KQL query per table. A table that does not exist in the
//!   workspace answers 400 "Failed to resolve table" and counts as empty.
//! - **Purge** (`POST {arm}{workspaceResourceId}/purge?api-version=2020-08-01` with
//!   `{table, filters:[{column:"Identity", operator:"==", value}]}`) answers 202 with
//!   `x-ms-status-location`. The purge is only requested for tables where the query finds the
//!   subject (the budget is scarce), and the status URL is polled by later calls: until it says
//!   `completed` the table is `Pending{operation_id}` (the purge id, e.g. `purge-<guid>`).
//!   Microsoft's SLA for a purge is 30 days.
//! - **50 requests per hour**: the service throttles purges per workspace. A per-process token
//!   bucket ([`PurgeBudget`], 50 per rolling hour by default) guards the POSTs; when it is empty
//!   the call fails as *transient* so the slice message is redelivered later, instead of
//!   burning the service's budget on 429s. The port purges one subject at a time, so batching
//!   several identities into one `in` filter is not done here; the daily volume of DSRs per
//!   workspace is expected to stay well below the budget. Redeliveries of the same slice do not
//!   spend budget twice in one process: operations are remembered by (workspace, table, subject).
//! - **Whole workspace** (after an Azure ML workspace is deleted): one purge per table with
//!   `_ResourceId == <the Azure ML workspace id>`, i.e. only records the deleted workspace
//!   itself emitted — never the whole Application Insights component, which can be shared.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::http::{Method, Url};
use bytes::Bytes;
use serde_json::{json, Value};

use super::rest::{join, same_origin, RestClient, RestError};
use crate::domain::subject::ResolvedSubject;
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::telemetry::*;

pub const PURGE_API_VERSION: &str = "2020-08-01";
pub const LOG_ANALYTICS_SCOPE: &str = "https://api.loganalytics.io/.default";
pub const IDENTITY_COLUMN: &str = "Identity";

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
    /// Tables holding the subject's records in column `Identity`.
    pub tables: Vec<String>,
}

pub struct LogAnalyticsTelemetry {
    arm: RestClient,
    query: RestClient,
    cfg: PurgeConfig,
    budget: PurgeBudget,
    /// (log analytics workspace, table, filter value) -> status URL of the purge in flight.
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
            arm,
            query,
            cfg,
            budget,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn tables(&self) -> Result<&[String], TelemetryError> {
        match self.cfg.tables.iter().find(|t| !valid_table(t)) {
            Some(bad) => Err(TelemetryError::Other(format!("invalid table name {bad:?}"))),
            None => Ok(&self.cfg.tables),
        }
    }

    /// Rows of `table` matching `filter` (a KQL predicate built from validated parts only).
    async fn rows(
        &self,
        la: &str,
        table: &str,
        filter: &str,
    ) -> Result<Vec<Value>, TelemetryError> {
        let url = join(
            &self.cfg.query_endpoint,
            &format!("v1/{}/query", la.trim_start_matches('/')),
        )
        .map_err(map)?;
        let body = json!({ "query": format!("{table} | where {filter}") });
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

    /// Start (or look up) the purge of `table` rows where `column == value`.
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
            let status = self.status(&status_url).await?;
            if matches!(status, PurgeStatus::Completed { .. }) {
                self.in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            }
            return Ok(status);
        }
        if let Err(wait) = self.budget.take() {
            return Err(TelemetryError::Transient(format!(
                "purge budget (50 requests/hour) spent; next slot in {}s",
                wait.as_secs()
            )));
        }
        let mut url = join(&self.cfg.arm_endpoint, &format!("{la}/purge")).map_err(map)?;
        url.query_pairs_mut()
            .append_pair("api-version", PURGE_API_VERSION);
        let body = json!({
            "table": table,
            "filters": [{ "column": column, "operator": "==", "value": value }]
        });
        let r = self
            .arm
            .send(Method::Post, &url, Some(Bytes::from(body.to_string())), &[])
            .await
            .map_err(map)?;
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
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, status_url);
        Ok(PurgeStatus::Pending { operation_id })
    }

    /// `GET x-ms-status-location`: `{"status": "pending" | "completed"}`.
    pub async fn status(&self, status_url: &Url) -> Result<PurgeStatus, TelemetryError> {
        let r = self.arm.get(status_url).await.map_err(map)?;
        if r.status != 200 {
            return Err(map(r.error()));
        }
        let v = r.json().map_err(map)?;
        match v.get("status").and_then(Value::as_str) {
            Some(s) if s.eq_ignore_ascii_case("completed") => {
                Ok(PurgeStatus::Completed { removed: 0 })
            }
            _ => Ok(PurgeStatus::Pending {
                operation_id: operation_id(status_url).unwrap_or_else(|| status_url.to_string()),
            }),
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
fn rows_as_objects(v: &Value) -> Vec<Value> {
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
            out.push(Value::Object(obj));
        }
    }
    out
}

fn la_of(ws: &WorkspaceInfo) -> Option<&str> {
    ws.log_analytics_workspace
        .as_deref()
        .filter(|s| !s.is_empty())
}

#[async_trait]
impl TelemetryStore for LogAnalyticsTelemetry {
    async fn query(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<(String, Vec<Value>)>, TelemetryError> {
        let Some(la) = la_of(ws) else {
            tracing::warn!(workspace = %ws.id, "no Log Analytics workspace behind the workspace's Application Insights; telemetry not searched");
            return Ok(Vec::new());
        };
        // The object id is a parsed GUID: safe to place in KQL.
        let filter = format!("{IDENTITY_COLUMN} == \"{}\"", subject.object_id);
        let mut out = Vec::new();
        for table in self.tables()? {
            let rows = self.rows(la, table, &filter).await?;
            if !rows.is_empty() {
                out.push((table.clone(), rows));
            }
        }
        Ok(out)
    }

    async fn purge_workspace(&self, ws: &WorkspaceInfo) -> Result<PurgeStatus, TelemetryError> {
        let Some(la) = la_of(ws) else {
            return Ok(PurgeStatus::Completed { removed: 0 });
        };
        // Log Analytics stores _ResourceId lower-cased.
        let rid = ws.id.to_string().to_ascii_lowercase();
        let mut pending = Vec::new();
        for table in self.tables()? {
            if let PurgeStatus::Pending { operation_id } =
                self.purge_table(la, table, "_ResourceId", &rid).await?
            {
                pending.push(operation_id);
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

    async fn purge(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<(String, PurgeStatus)>, TelemetryError> {
        let Some(la) = la_of(ws) else {
            return Ok(Vec::new());
        };
        let oid = subject.object_id.to_string();
        let filter = format!("{IDENTITY_COLUMN} == \"{oid}\"");
        let mut out = Vec::new();
        for table in self.tables()? {
            let key = (la.to_ascii_lowercase(), table.clone(), oid.clone());
            let in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&key);
            // Spend purge budget only where the subject has records.
            if !in_flight && self.rows(la, table, &filter).await?.is_empty() {
                out.push((table.clone(), PurgeStatus::Completed { removed: 0 }));
                continue;
            }
            let status = self.purge_table(la, table, IDENTITY_COLUMN, &oid).await?;
            out.push((table.clone(), status));
        }
        Ok(out)
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
        assert_eq!(rows[1]["Identity"], "b");
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
