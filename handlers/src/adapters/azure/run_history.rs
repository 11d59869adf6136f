//! Azure ML run history behind the [`RunHistory`] port: the workspace's regional data plane,
//! `https://<region>.api.azureml.ms/history/v1.0/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<w>/runs/<runId>`
//! (`GET`, model `Run`) and `.../runs/<runId>/children` (`GET`, model `PaginatedRunList`:
//! `value`, `continuationToken`, `nextLink`), as azure-ai-ml's generated run-history client
//! calls them (`_restclient/runhistory/operations/_runs_operations.py`, `get` and `get_child`).
//! The token audience is Azure Resource Manager's (`https://management.azure.com/.default`, the
//! client's default credential scope).
//!
//! Decisions, and why:
//! - **The endpoint comes from the workspace's ARM `location`** through a template
//!   (`DSR_RUN_HISTORY_ENDPOINT`, default `https://{region}.api.azureml.ms`). A location that is
//!   not a plain region name is refused: a token must never go to a host a document chose.
//! - **Paging follows `nextLink`** (what the SDK's pager does) only on the same origin; without
//!   one, a `continuationToken` is sent back as `$continuationtoken` on the same path.
//! - **404 on a run is "unknown"**, never "nobody's": discovery leaves such a job untouched.
//! - Error texts are redacted: they can quote run ids and URLs.

use async_trait::async_trait;
use azure_core::http::Url;
use serde_json::Value;

use super::rest::{join, same_origin, Reply, RestClient, RestError};
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::run_history::*;

/// Token audience of the run-history client (its default `credential_scopes`).
pub const RUN_HISTORY_SCOPE: &str = "https://management.azure.com/.default";

pub struct AzureRunHistory {
    rest: RestClient,
    /// An https URL, possibly with `{region}` in its host.
    endpoint_template: String,
}

fn map(e: RestError) -> RunHistoryError {
    match e {
        RestError::Transient(m) => RunHistoryError::Transient(crate::logging::redact(&m)),
        RestError::Other(m) => RunHistoryError::Other(crate::logging::redact(&m)),
    }
}

fn reply_error(r: &Reply) -> RunHistoryError {
    map(r.error())
}

/// An Azure region name as ARM writes `location` (`westeurope`, `eastus2euap`).
fn valid_region(r: &str) -> bool {
    !r.is_empty() && r.len() <= 40 && r.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A run id as run history accepts one (`^[a-zA-Z0-9][\w-]{0,255}$`, the generated client's
/// pattern): one path segment, nothing to encode.
fn valid_run_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 256
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl AzureRunHistory {
    pub fn new(rest: RestClient, endpoint_template: impl Into<String>) -> Self {
        Self {
            rest,
            endpoint_template: endpoint_template.into(),
        }
    }

    /// The data-plane base URL for `ws`.
    pub fn base(&self, ws: &WorkspaceInfo) -> Result<Url, RunHistoryError> {
        let raw = if self.endpoint_template.contains("{region}") {
            let region = ws
                .location
                .as_deref()
                .map(str::to_ascii_lowercase)
                .filter(|r| valid_region(r))
                .ok_or_else(|| {
                    RunHistoryError::Other(
                        "the workspace has no usable location (region) for its run-history endpoint"
                            .into(),
                    )
                })?;
            self.endpoint_template.replace("{region}", &region)
        } else {
            self.endpoint_template.clone()
        };
        Url::parse(&raw).map_err(|e| RunHistoryError::Other(format!("run-history endpoint: {e}")))
    }

    fn run_url(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
        tail: &str,
    ) -> Result<Url, RunHistoryError> {
        if !valid_run_id(run_id) {
            return Err(RunHistoryError::Other(
                "a run id run history cannot hold".into(),
            ));
        }
        join(
            &self.base(ws)?,
            &format!("history/v1.0{}/runs/{run_id}{tail}", ws.id),
        )
        .map_err(map)
    }
}

#[async_trait]
impl RunHistory for AzureRunHistory {
    async fn run(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
    ) -> Result<Option<RunRecord>, RunHistoryError> {
        let url = self.run_url(ws, run_id, "")?;
        let r = self.rest.get(&url).await.map_err(map)?;
        match r.status {
            200 => Ok(RunRecord::from_doc(r.json().map_err(map)?)),
            404 => Ok(None),
            _ => Err(reply_error(&r)),
        }
    }

    async fn children(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
        next: Option<String>,
    ) -> Result<RunPage, RunHistoryError> {
        let first = self.run_url(ws, run_id, "/children")?;
        let url = match next {
            None => first.clone(),
            Some(n) => {
                let u = Url::parse(&n)
                    .map_err(|_| RunHistoryError::Other("not a continuation link".into()))?;
                if !same_origin(&first, &u) {
                    return Err(RunHistoryError::Other(
                        "a continuation link to another host was not followed".into(),
                    ));
                }
                u
            }
        };
        let r = self.rest.get(&url).await.map_err(map)?;
        match r.status {
            200 => {}
            // The run is gone (deleted meanwhile): it has no children to walk.
            404 => return Ok(RunPage::default()),
            _ => return Err(reply_error(&r)),
        }
        let body = r.json().map_err(map)?;
        let value = body
            .get("value")
            .and_then(Value::as_array)
            .map(|a| a.iter().cloned().filter_map(RunRecord::from_doc).collect())
            .unwrap_or_default();
        let next_link = body
            .get("nextLink")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let token = body
            .get("continuationToken")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let next = match (next_link, token) {
            (Some(link), _) => Some(link.to_string()),
            (None, Some(tok)) => {
                let mut u = first;
                u.query_pairs_mut().append_pair("$continuationtoken", tok);
                Some(u.to_string())
            }
            (None, None) => None,
        };
        Ok(RunPage { value, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_and_regions_are_plain() {
        for ok in ["a", "pipeline_job_1", "0-x_Y"] {
            assert!(valid_run_id(ok), "{ok}");
        }
        for bad in [
            "",
            "_a",
            "a/b",
            "a b",
            "..",
            "a%2f",
            "a?b",
            &"a".repeat(257),
        ] {
            assert!(!valid_run_id(bad), "{bad}");
        }
        assert!(valid_region("westeurope"));
        for bad in ["", "evil.com", "a/b", "x:1", "west europe"] {
            assert!(!valid_region(bad), "{bad}");
        }
    }
}
