//! Telemetry discovery: the subject's rows in the workspace's Log Analytics tables (one
//! query per workspace), each table an entry carrying its rows for the export.

use super::DiscoveryError;
use crate::domain::raw_json::RawJson;
use crate::domain::slice::{Item, SliceTask};
use crate::functions::{FnError, Services};
use crate::ports::control_plane::WorkspaceInfo;
use crate::state::{Inventory, InventoryEntry};

pub(super) async fn telemetry(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
) -> Result<Inventory, DiscoveryError> {
    let tables = svc
        .telemetry
        .query(ws, &task.subject)
        .await
        .map_err(|e| DiscoveryError::Retry(FnError::Transient(e.to_string())))?;
    let entries = tables
        .into_iter()
        .map(|t| InventoryEntry {
            item: Item::Telemetry {
                table: t.table,
                records: t.rows.len() as u64,
                destination: Some(t.destination),
            },
            doc: Some(RawJson::array(&t.rows)),
            doc_sha256: None,
            hold: None,
        })
        .collect();
    Ok(Inventory {
        entries,
        notes: vec![],
        candidates: vec![],
        pages: None,
    })
}
