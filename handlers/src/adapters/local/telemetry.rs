//! Local telemetry: Log Analytics tables as JSON-lines blobs (`<Table>.jsonl`, one record per
//! line) under account `telemetrylocal`, container `ws-<workspace key>` (the one "destination"
//! of a local workspace). Who a record belongs to follows the same identity map as Azure
//! (`domain::telemetry`): a `dynamic` column such as `AmlRunEvent.Identity` is a JSON object.
//!
//! Purges keep Azure's semantics so the pipeline's pending state is exercised locally: a purge
//! is *accepted* (an operation document in container `purge-operations`), answers `pending` to
//! the first `pending_polls` status polls, and removes the rows only when a poll completes it
//! (the table rewritten without them, guarded by If-Match so a concurrent writer is never
//! overwritten). [`LocalTelemetry::with_failing_purges`] makes accepted purges fail instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::domain::raw_json::RawJson;
use crate::domain::subject::ResolvedSubject;
use crate::domain::telemetry::{identity_column, ColumnType, IdentityColumn};
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, Condition, StoreError};
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::telemetry::*;

pub(crate) const TELEMETRY_ACCOUNT: &str = "telemetrylocal";
/// Where accepted purges wait for their polls.
pub(crate) const OPERATIONS_CONTAINER: &str = "purge-operations";
const STATUS_SCHEME: &str = "local-purge:";

pub struct LocalTelemetry {
    store: Arc<dyn BlobStore>,
    pending_polls: u32,
    fail: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    container: String,
    body: Value,
    polls_left: u32,
    fail: bool,
    status: String,
}

impl LocalTelemetry {
    pub fn new(store: Arc<dyn BlobStore>) -> Self {
        Self {
            store,
            pending_polls: 0,
            fail: false,
        }
    }

    /// Status polls a new purge answers `pending` before it completes (default 0: the first
    /// poll, always later than the request, completes it).
    pub fn with_pending_polls(mut self, n: u32) -> Self {
        self.pending_polls = n;
        self
    }

    /// Accepted purges fail on their first poll (the rows stay).
    pub fn with_failing_purges(mut self) -> Self {
        self.fail = true;
        self
    }

    pub fn container(ws: &WorkspaceInfo) -> String {
        format!("ws-{}", ws.id.key())
    }

    async fn tables(&self, container: &str) -> Result<Vec<String>, TelemetryError> {
        match self.store.list_all(TELEMETRY_ACCOUNT, container, "").await {
            Ok(items) => Ok(items
                .into_iter()
                .filter_map(|i| i.name.strip_suffix(".jsonl").map(str::to_string))
                .collect()),
            Err(StoreError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(map(e)),
        }
    }

    fn op_ref(id: &str) -> BlobRef {
        BlobRef::new(
            TELEMETRY_ACCOUNT,
            OPERATIONS_CONTAINER,
            format!("{id}.json"),
        )
    }

    /// Remove the rows every filter of `body` matches from the table (If-Match loop).
    async fn apply(&self, container: &str, body: &Value) -> Result<u64, TelemetryError> {
        let table = body
            .get("table")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let filters: Vec<Value> = body
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let blob = BlobRef::new(TELEMETRY_ACCOUNT, container, format!("{table}.jsonl"));
        loop {
            let (bytes, etag) = match self.store.read_small(&blob).await {
                Ok(r) => r,
                Err(StoreError::NotFound(_)) => return Ok(0),
                Err(e) => return Err(map(e)),
            };
            let text = String::from_utf8_lossy(&bytes);
            let mut kept = String::with_capacity(text.len());
            let mut removed = 0u64;
            for line in text.lines() {
                let hit = serde_json::from_str::<Value>(line)
                    .ok()
                    .is_some_and(|row| filters.iter().all(|f| filter_matches(&row, f)));
                if hit {
                    removed += 1;
                } else {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            if removed == 0 {
                return Ok(0);
            }
            match self
                .store
                .put(
                    &blob,
                    Bytes::from(kept),
                    "application/x-ndjson",
                    Condition::IfMatch(etag),
                    &BTreeMap::new(),
                )
                .await
            {
                Ok(_) => return Ok(removed),
                Err(StoreError::ConditionFailed(_)) => continue,
                Err(e) => return Err(map(e)),
            }
        }
    }
}

fn map(e: StoreError) -> TelemetryError {
    if e.is_transient() {
        TelemetryError::Transient(e.to_string())
    } else {
        TelemetryError::Other(e.to_string())
    }
}

/// The `==` purge filter `{column, key?, value}`, GUIDs compared case-insensitively.
fn filter_matches(row: &Value, f: &Value) -> bool {
    let Some(column) = f.get("column").and_then(Value::as_str) else {
        return false;
    };
    let mut cell = row.get(column).cloned().unwrap_or(Value::Null);
    if let Some(key) = f.get("key").and_then(Value::as_str) {
        if let Value::String(s) = &cell {
            cell = serde_json::from_str(s).unwrap_or(Value::Null);
        }
        cell = cell.get(key).cloned().unwrap_or(Value::Null);
    }
    match (cell.as_str(), f.get("value").and_then(Value::as_str)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// What the export query matches (`domain::telemetry::export_query`): `==` on a string column,
/// the object id as a term of the serialised value of a dynamic one.
fn is_subject(col: &IdentityColumn, row: &Value, oid: &str) -> bool {
    match (col.kind, row.get(col.column)) {
        (ColumnType::String, Some(Value::String(s))) => s.eq_ignore_ascii_case(oid),
        (ColumnType::Dynamic, Some(v)) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            text.to_ascii_lowercase()
                .contains(&oid.to_ascii_lowercase())
        }
        _ => false,
    }
}

#[async_trait]
impl TelemetryStore for LocalTelemetry {
    async fn query(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<TelemetryRows>, TelemetryError> {
        let container = Self::container(ws);
        let oid = subject.object_id.to_string();
        let mut out = Vec::new();
        for table in self.tables(&container).await? {
            // Tables outside the identity map are not covered, as in Azure.
            let Some(col) = identity_column(&table) else {
                continue;
            };
            let (bytes, _) = self
                .store
                .read_small(&BlobRef::new(
                    TELEMETRY_ACCOUNT,
                    &container,
                    format!("{table}.jsonl"),
                ))
                .await
                .map_err(map)?;
            // Each line parsed only to test it; the subject's rows are kept as their text.
            let rows: Vec<RawJson> = String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| {
                    serde_json::from_str::<Value>(l).is_ok_and(|v| is_subject(col, &v, &oid))
                })
                .filter_map(RawJson::parse)
                .collect();
            if !rows.is_empty() {
                out.push(TelemetryRows {
                    destination: container.clone(),
                    table,
                    rows,
                });
            }
        }
        Ok(out)
    }

    async fn purge_workspace(&self, ws: &WorkspaceInfo) -> Result<PurgeStatus, TelemetryError> {
        let container = Self::container(ws);
        let mut removed = 0u64;
        for table in self.tables(&container).await? {
            let blob = BlobRef::new(TELEMETRY_ACCOUNT, &container, format!("{table}.jsonl"));
            let (bytes, _) = self.store.read_small(&blob).await.map_err(map)?;
            removed += bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64;
        }
        self.store
            .delete_container(TELEMETRY_ACCOUNT, &container)
            .await
            .map_err(map)?;
        Ok(PurgeStatus::Completed { removed })
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
        self.store
            .create_container(TELEMETRY_ACCOUNT, OPERATIONS_CONTAINER)
            .await
            .map_err(map)?;
        let id = format!("purge-{}", uuid::Uuid::new_v4());
        let op = Operation {
            container: destination.to_string(),
            body: body.clone(),
            polls_left: self.pending_polls,
            fail: self.fail,
            status: "pending".into(),
        };
        self.store
            .write_json(&Self::op_ref(&id), &op)
            .await
            .map_err(map)?;
        Ok(PurgeSend::Accepted {
            status_url: format!("{STATUS_SCHEME}{id}"),
            operation_id: id,
        })
    }

    async fn poll_purge(&self, status_url: &str) -> Result<PurgePoll, TelemetryError> {
        let Some(id) = status_url
            .strip_prefix(STATUS_SCHEME)
            .filter(|id| id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        else {
            return Ok(PurgePoll::Failed {
                reason: "not a local purge operation".into(),
            });
        };
        let r = Self::op_ref(id);
        let Some(mut op) = self.store.read_json::<Operation>(&r).await.map_err(map)? else {
            return Ok(PurgePoll::Failed {
                reason: format!("purge operation {id} not found"),
            });
        };
        let poll = if op.status == "completed" {
            PurgePoll::Completed
        } else if op.fail || op.status == "failed" {
            op.status = "failed".into();
            PurgePoll::Failed {
                reason: "the purge operation failed".into(),
            }
        } else if op.polls_left > 0 {
            op.polls_left -= 1;
            PurgePoll::Pending
        } else {
            self.apply(&op.container, &op.body).await?;
            op.status = "completed".into();
            PurgePoll::Completed
        };
        self.store.write_json(&r, &op).await.map_err(map)?;
        Ok(poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_read_a_key_of_a_dynamic_column() {
        let row = json!({"Identity": {"oid": "AB"}, "IdentityData": "ab"});
        assert!(filter_matches(
            &row,
            &json!({"column": "Identity", "key": "oid", "operator": "==", "value": "ab"})
        ));
        assert!(!filter_matches(
            &row,
            &json!({"column": "Identity", "operator": "==", "value": "ab"})
        ));
        assert!(filter_matches(
            &row,
            &json!({"column": "IdentityData", "operator": "==", "value": "AB"})
        ));
    }
}
