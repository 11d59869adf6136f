//! Local telemetry: Application Insights tables as JSON-lines blobs (`<Table>.jsonl`, one record
//! per line, the user in column `Identity` as in `AmlRunEvent`) under account `telemetrylocal`,
//! container `ws-<workspace key>`. Purge rewrites the table without the subject's rows, guarded
//! by If-Match so a concurrent writer is never overwritten.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::domain::subject::ResolvedSubject;
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, Condition, StoreError};
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::telemetry::*;

pub const TELEMETRY_ACCOUNT: &str = "telemetrylocal";
pub const IDENTITY_COLUMN: &str = "Identity";

pub struct LocalTelemetry {
    store: Arc<dyn BlobStore>,
}

impl LocalTelemetry {
    pub fn new(store: Arc<dyn BlobStore>) -> Self {
        Self { store }
    }

    pub fn container(ws: &WorkspaceInfo) -> String {
        format!("ws-{}", ws.id.key())
    }

    async fn tables(&self, ws: &WorkspaceInfo) -> Result<Vec<String>, TelemetryError> {
        match self
            .store
            .list_all(TELEMETRY_ACCOUNT, &Self::container(ws), "")
            .await
        {
            Ok(items) => Ok(items
                .into_iter()
                .map(|i| i.name)
                .filter(|n| n.ends_with(".jsonl"))
                .collect()),
            Err(StoreError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(map(e)),
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

fn is_subject(line: &str, subject: &ResolvedSubject) -> Option<Value> {
    let v: Value = serde_json::from_str(line).ok()?;
    let id = v.get(IDENTITY_COLUMN)?.as_str()?;
    subject.matches_object_id(id).then_some(v)
}

#[async_trait]
impl TelemetryStore for LocalTelemetry {
    async fn query(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<(String, Vec<Value>)>, TelemetryError> {
        let mut out = Vec::new();
        for table in self.tables(ws).await? {
            let (bytes, _) = self
                .store
                .read_small(&BlobRef::new(
                    TELEMETRY_ACCOUNT,
                    Self::container(ws),
                    &table,
                ))
                .await
                .map_err(map)?;
            let text = String::from_utf8_lossy(&bytes);
            let rows: Vec<Value> = text
                .lines()
                .filter_map(|l| is_subject(l, subject))
                .collect();
            if !rows.is_empty() {
                out.push((table.trim_end_matches(".jsonl").to_string(), rows));
            }
        }
        Ok(out)
    }

    async fn purge_workspace(&self, ws: &WorkspaceInfo) -> Result<PurgeStatus, TelemetryError> {
        let mut removed = 0u64;
        for table in self.tables(ws).await? {
            let blob = BlobRef::new(TELEMETRY_ACCOUNT, Self::container(ws), &table);
            let (bytes, _) = self.store.read_small(&blob).await.map_err(map)?;
            removed += bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64;
        }
        self.store
            .delete_container(TELEMETRY_ACCOUNT, &Self::container(ws))
            .await
            .map_err(map)?;
        Ok(PurgeStatus::Completed { removed })
    }

    async fn purge(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<(String, PurgeStatus)>, TelemetryError> {
        let mut out = Vec::new();
        for table in self.tables(ws).await? {
            let blob = BlobRef::new(TELEMETRY_ACCOUNT, Self::container(ws), &table);
            loop {
                let (bytes, etag) = self.store.read_small(&blob).await.map_err(map)?;
                let text = String::from_utf8_lossy(&bytes);
                let mut kept = String::with_capacity(text.len());
                let mut removed = 0u64;
                for line in text.lines() {
                    if is_subject(line, subject).is_some() {
                        removed += 1;
                    } else {
                        kept.push_str(line);
                        kept.push('\n');
                    }
                }
                if removed == 0 {
                    break;
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
                    Ok(_) => {
                        out.push((
                            table.trim_end_matches(".jsonl").to_string(),
                            PurgeStatus::Completed { removed },
                        ));
                        break;
                    }
                    Err(StoreError::ConditionFailed(_)) => continue,
                    Err(e) => return Err(map(e)),
                }
            }
        }
        Ok(out)
    }
}
