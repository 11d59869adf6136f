//! Azure ML management plane (ARM, `Microsoft.MachineLearningServices`, api-version pinned to
//! [`ARM_API_VERSION`]) behind the [`ControlPlane`] port: the workspace and what it is connected
//! to, jobs, model and data versions, computes; deletes as long-running operations.
//!
//! Decisions, and why:
//! - **Everything is listed with `listViewType=All`**: archived jobs and assets still hold
//!   personal data; archiving is never an erasure.
//! - **Jobs are filtered client-side** (ARM has no creator filter) by `functions::discovery`.
//!   A job's `systemData.createdBy` is a display name; who created it is in the run-history
//!   data plane (`adapters::azure::run_history`), which discovery asks.
//! - **Model and data versions** are two-level (containers, then versions per container). The
//!   port pages with one opaque `next_link`, so for these kinds it is a small cursor
//!   (`dsr-cursor:` + JSON) carrying the containers' nextLink, the containers still to visit
//!   and the current versions' nextLink.
//! - **Tokens only go to the configured endpoint**: a `nextLink`, `Location` or
//!   `Azure-AsyncOperation` on another origin is refused, not followed.
//! - **A container that vanished mid-listing** (404 on its versions) has no versions; only a 404
//!   on the first containers page means the workspace is gone.
//! - **Deletes are honest**: 404 is `NotFound` (a retried DELETE whose first 202 was lost in
//!   transit meets 404; the slice counts it as deleted); 409/423 (running, locked), 400 and 403 are
//!   `Refused` with the service's message (the report lists the item as failed); a delete that
//!   has not finished within `max_poll` is a transient error (the redelivered message repeats the
//!   idempotent DELETE). A failed or cancelled operation is `Refused`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::http::{Method, Url};
use serde_json::Value;

use super::rest::{join, same_origin, Reply, RestClient, RestError};
use crate::domain::workspace::WorkspaceId;
use crate::ports::control_plane::*;

mod control_plane;

/// Machine Learning Services REST API version used for every call.
pub(crate) const ARM_API_VERSION: &str = "2024-10-01";
/// Application Insights components API (to find the Log Analytics workspace behind it).
pub(crate) const APP_INSIGHTS_API_VERSION: &str = "2020-02-02";
/// Azure Monitor diagnostic settings API (`Microsoft.Insights/diagnosticSettings`, spec
/// `monitor/.../2021-05-01-preview/diagnosticsSettings_API.json`).
pub(crate) const DIAGNOSTIC_SETTINGS_API_VERSION: &str = "2021-05-01-preview";

/// `properties.workspaceId` of every diagnostic setting in a list answer
/// (`{"value":[{"properties":{"workspaceId"}}]}`, example `listDiagnosticSettings.json`). A
/// setting that sends only to storage or Event Hubs has an empty or absent `workspaceId`.
pub fn diagnostic_workspaces(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in list
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(w) = str_at(s, "/properties/workspaceId").filter(|w| !w.trim().is_empty()) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(w)) {
                out.push(w.to_string());
            }
        }
    }
    out
}
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
const CURSOR_PREFIX: &str = "dsr-cursor:";

#[derive(Debug, Clone)]
pub struct ArmConfig {
    /// `https://management.azure.com` (sovereign clouds and tests: something else).
    pub endpoint: Url,
    pub api_version: String,
    /// Poll interval when the service gives no `Retry-After`.
    pub poll_interval: Duration,
    /// Give up waiting for one long-running delete after this long (reported as transient).
    pub max_poll: Duration,
}

impl ArmConfig {
    pub fn new(endpoint: Url) -> Self {
        Self {
            endpoint,
            api_version: ARM_API_VERSION.into(),
            poll_interval: Duration::from_secs(5),
            max_poll: Duration::from_secs(300),
        }
    }
}

pub struct AzureMlControlPlane {
    rest: RestClient,
    cfg: ArmConfig,
}

/// Position in a two-level (container -> versions) listing.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    containers_next: Option<String>,
    pending: VecDeque<String>,
    versions_next: Option<String>,
}

impl Cursor {
    fn encode(&self) -> String {
        format!(
            "{CURSOR_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }
    fn decode(s: &str) -> Result<Self, ControlPlaneError> {
        s.strip_prefix(CURSOR_PREFIX)
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| ControlPlaneError::Other(format!("not a listing cursor: {s:.80}")))
    }
    fn more(&self) -> bool {
        self.versions_next.is_some() || !self.pending.is_empty() || self.containers_next.is_some()
    }
}

fn map(e: RestError) -> ControlPlaneError {
    match e {
        RestError::Transient(m) => ControlPlaneError::Transient(m),
        RestError::Other(m) => ControlPlaneError::Other(m),
    }
}

/// Last segment of an ARM id (`.../storageAccounts/<name>` -> `<name>`).
fn last_segment(id: &str) -> Option<String> {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl AzureMlControlPlane {
    pub fn new(rest: RestClient, cfg: ArmConfig) -> Self {
        Self { rest, cfg }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ControlPlaneError> {
        let mut url = join(&self.cfg.endpoint, path).map_err(map)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", &self.cfg.api_version);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// `<ws>/<collection>[/<name>/versions]` with `name` encoded as one path segment.
    fn child_url(
        &self,
        ws: &WorkspaceId,
        collection: &str,
        container: Option<&str>,
    ) -> Result<Url, ControlPlaneError> {
        let mut url = self.url(&format!("{ws}/{collection}"), &[("listViewType", "All")])?;
        if let Some(name) = container {
            url.path_segments_mut()
                .map_err(|_| ControlPlaneError::Other("endpoint cannot be a base".into()))?
                .push(name)
                .push("versions");
        }
        Ok(url)
    }

    /// A URL the service handed us (nextLink, Location): followed only on our own endpoint.
    fn followable(&self, link: &str) -> Result<Url, ControlPlaneError> {
        let url = Url::parse(link).map_err(|e| {
            ControlPlaneError::Other(format!("bad link from service {link:.120}: {e}"))
        })?;
        if !same_origin(&self.cfg.endpoint, &url) {
            return Err(ControlPlaneError::Other(format!(
                "refusing to send credentials to {} (not the configured ARM endpoint)",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    async fn get_json(&self, url: &Url) -> Result<Option<Value>, ControlPlaneError> {
        let r = self.rest.get(url).await.map_err(map)?;
        match r.status {
            200 => r.json().map(Some).map_err(map),
            404 => Ok(None),
            _ => Err(map(r.error())),
        }
    }

    async fn page(&self, url: &Url) -> Result<ResourcePage, ControlPlaneError> {
        let v = self
            .get_json(url)
            .await?
            .ok_or(ControlPlaneError::WorkspaceNotFound)?;
        Self::parse_page(&v)
    }

    /// Every item of a list, following `nextLink` on our own endpoint only.
    async fn all_pages(&self, mut url: Url) -> Result<Vec<Value>, ControlPlaneError> {
        let mut out = Vec::new();
        loop {
            let page = self.page(&url).await?;
            out.extend(page.value);
            match page.next_link {
                Some(link) => url = self.followable(&link)?,
                None => return Ok(out),
            }
        }
    }

    fn parse_page(v: &Value) -> Result<ResourcePage, ControlPlaneError> {
        let value = match v.get("value") {
            Some(Value::Array(a)) => a.clone(),
            _ => {
                return Err(ControlPlaneError::Other(
                    "list response without a value array".into(),
                ))
            }
        };
        let next_link = str_at(v, "/nextLink").map(str::to_string);
        Ok(ResourcePage { value, next_link })
    }

    /// One GET of a datastore; `None` when the workspace has no such datastore.
    async fn datastore(
        &self,
        ws: &WorkspaceId,
        name: &str,
    ) -> Result<Option<Value>, ControlPlaneError> {
        let url = self.url(&format!("{ws}/datastores/{name}"), &[])?;
        self.get_json(&url).await
    }

    /// The Log Analytics workspace a workspace-based Application Insights component writes to.
    async fn log_analytics_of(&self, app_insights: &str) -> Option<String> {
        let mut url = join(&self.cfg.endpoint, app_insights).ok()?;
        url.query_pairs_mut()
            .append_pair("api-version", APP_INSIGHTS_API_VERSION);
        match self.rest.get(&url).await {
            Ok(r) if r.status == 200 => r
                .json()
                .ok()
                .and_then(|v| str_at(&v, "/properties/WorkspaceResourceId").map(str::to_string)),
            Ok(r) => {
                tracing::warn!(status = r.status, "cannot read the Application Insights component; telemetry purge will be unavailable");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Application Insights component");
                None
            }
        }
    }

    /// The Log Analytics workspaces the workspace's diagnostic settings send to (Aml* tables
    /// exist only there). `Err` carries why they could not be read.
    async fn diagnostic_destinations(&self, ws: &WorkspaceId) -> Result<Vec<String>, String> {
        let mut url = join(
            &self.cfg.endpoint,
            &format!("{ws}/providers/Microsoft.Insights/diagnosticSettings"),
        )
        .map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("api-version", DIAGNOSTIC_SETTINGS_API_VERSION);
        match self.rest.get(&url).await {
            Ok(r) if r.status == 200 => r
                .json()
                .map(|v| diagnostic_workspaces(&v))
                .map_err(|e| e.to_string()),
            Ok(r) => Err(format!(
                "diagnostic settings answered {}: {}",
                r.status,
                r.message()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn list_versions(
        &self,
        ws: &WorkspaceId,
        collection: &str,
        next_link: Option<String>,
    ) -> Result<ResourcePage, ControlPlaneError> {
        let mut cur = match next_link {
            Some(s) => Cursor::decode(&s)?,
            None => {
                let page = self.page(&self.child_url(ws, collection, None)?).await?;
                Cursor {
                    containers_next: page.next_link,
                    pending: page
                        .value
                        .iter()
                        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect(),
                    versions_next: None,
                }
            }
        };
        loop {
            let page = if let Some(vn) = cur.versions_next.take() {
                self.page(&self.followable(&vn)?).await?
            } else if let Some(name) = cur.pending.pop_front() {
                // A container deleted between the containers page and its versions (a listing
                // resumed from a cursor much later) has no versions left: not a missing workspace.
                let url = self.child_url(ws, collection, Some(&name))?;
                match self.get_json(&url).await? {
                    Some(v) => Self::parse_page(&v)?,
                    None => continue,
                }
            } else if let Some(cn) = cur.containers_next.take() {
                let page = self.page(&self.followable(&cn)?).await?;
                cur.containers_next = page.next_link;
                cur.pending = page
                    .value
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect();
                continue;
            } else {
                return Ok(ResourcePage::default());
            };
            cur.versions_next = page.next_link;
            return Ok(ResourcePage {
                value: page.value,
                next_link: cur.more().then(|| cur.encode()),
            });
        }
    }

    /// Whether `id` is a resource of `kind` directly inside `ws` (never delete anything else).
    fn owned(ws: &WorkspaceId, kind: ArmKind, id: &str) -> bool {
        let base = ws.to_string();
        if id.len() <= base.len()
            || !id.is_char_boundary(base.len())
            || !id[..base.len()].eq_ignore_ascii_case(&base)
        {
            return false;
        }
        let rest: Vec<&str> = id[base.len()..].split('/').collect();
        let ok = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['?', '#', '%']);
        match (kind, rest.as_slice()) {
            (ArmKind::Job, ["", c, n]) => c.eq_ignore_ascii_case("jobs") && ok(n),
            (ArmKind::Compute, ["", c, n]) => c.eq_ignore_ascii_case("computes") && ok(n),
            (ArmKind::Schedule, ["", c, n]) => c.eq_ignore_ascii_case("schedules") && ok(n),
            (ArmKind::ModelVersion, ["", c, n, v, x]) => {
                c.eq_ignore_ascii_case("models")
                    && v.eq_ignore_ascii_case("versions")
                    && ok(n)
                    && ok(x)
            }
            (ArmKind::DataVersion, ["", c, n, v, x]) => {
                c.eq_ignore_ascii_case("data")
                    && v.eq_ignore_ascii_case("versions")
                    && ok(n)
                    && ok(x)
            }
            _ => false,
        }
    }

    /// Await a long-running operation that answered 202.
    async fn poll(&self, accepted: &Reply) -> Result<ResourceDelete, ControlPlaneError> {
        let async_op = accepted.header("azure-asyncoperation").map(str::to_string);
        let location = accepted.header("location").map(str::to_string);
        let Some(link) = async_op.clone().or(location) else {
            // 202 without anything to poll: the service accepted the delete.
            return Ok(ResourceDelete::Deleted);
        };
        let url = self.followable(&link)?;
        let start = Instant::now();
        let mut wait = accepted.retry_after().unwrap_or(self.cfg.poll_interval);
        loop {
            if start.elapsed() + wait > self.cfg.max_poll {
                return Err(ControlPlaneError::Transient(format!(
                    "delete still running after {:?}; it will be checked again",
                    start.elapsed()
                )));
            }
            tokio::time::sleep(wait).await;
            let r = self.rest.get(&url).await.map_err(map)?;
            wait = r.retry_after().unwrap_or(self.cfg.poll_interval);
            if async_op.is_some() {
                // Azure-AsyncOperation: a status document.
                if r.status == 404 {
                    return Ok(ResourceDelete::Deleted);
                }
                if !r.is_success() {
                    return Err(map(r.error()));
                }
                let v = r.json().map_err(map)?;
                let status = str_at(&v, "/status").unwrap_or("InProgress");
                match status.to_ascii_lowercase().as_str() {
                    "succeeded" => return Ok(ResourceDelete::Deleted),
                    "failed" | "canceled" | "cancelled" => {
                        let msg = str_at(&v, "/error/message").unwrap_or("no reason given");
                        return Ok(ResourceDelete::Refused(format!("delete {status}: {msg}")));
                    }
                    _ => continue,
                }
            }
            // Location: 202 while running; 200/204 done; 404 gone (the Job delete example's
            // Location is the job itself).
            match r.status {
                202 => continue,
                200 | 201 | 204 | 404 => return Ok(ResourceDelete::Deleted),
                409 | 423 | 400 | 403 => return Ok(ResourceDelete::Refused(r.message())),
                _ => return Err(map(r.error())),
            }
        }
    }

    async fn delete_url(&self, url: &Url) -> Result<ResourceDelete, ControlPlaneError> {
        let r = self
            .rest
            .send(Method::Delete, url, None, &[])
            .await
            .map_err(map)?;
        match r.status {
            200 | 204 => Ok(ResourceDelete::Deleted),
            202 => self.poll(&r).await,
            404 => Ok(ResourceDelete::NotFound),
            400 | 403 | 409 | 423 => Ok(ResourceDelete::Refused(r.message())),
            _ => Err(map(r.error())),
        }
    }
}

#[cfg(test)]
mod tests;
