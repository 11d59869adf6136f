//! Which column of each Azure ML Log Analytics table identifies a person, and the KQL and purge
//! filters built from it (pure).
//!
//! Source: the Azure Monitor table reference (MicrosoftDocs/azure-reference-other,
//! `azure-monitor-ref/tables/<table>.md`, published at
//! `learn.microsoft.com/azure/azure-monitor/reference/tables/<table>`), one citation per entry
//! below. The reference types `Identity` as `dynamic` in most `Aml*` tables but documents no
//! property names inside it ("the identity of the user or application that performed the
//! operation"), so for a dynamic column:
//! - **export** matches the whole value: `tostring(Identity) has "<oid>"`. `has` looks for the
//!   object id as a whole term of the serialised JSON, which is where any claim carrying it ends
//!   up whatever its key; a GUID is specific enough that a substring match is not needed, and
//!   `has` uses the term index;
//! - **purge** cannot: the purge API's operators are `==, =~, in, in~, >, >=, <, <=, between`
//!   (`WorkspacePurge.json` 2020-08-01) and a dynamic column needs `key`. The key is therefore
//!   *observed*: [`keys_holding`] finds the top-level properties of the rows the export query
//!   returned whose value is the object id, and one purge filter per key is sent. A row whose
//!   object id sits deeper than the top level cannot be purged by key; that table is reported
//!   as failed, never as deleted.
//!
//! String columns (`AmlRunStatusChangedEvent.Identity`, `AmlOnlineEndpointTrafficLog
//! .IdentityData`) use `==` for both. Tables not listed are not covered (see README).

use serde_json::{json, Value};

use crate::domain::raw_json::RawJson;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    String,
    Dynamic,
}

/// The column of `table` that holds the identity of the user who caused the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdentityColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub kind: ColumnType,
    /// Where the type comes from.
    pub reference: &'static str,
}

const REF: &str = "https://learn.microsoft.com/azure/azure-monitor/reference/tables/";

macro_rules! col {
    ($t:literal, $c:literal, $k:ident) => {
        IdentityColumn {
            table: $t,
            column: $c,
            kind: ColumnType::$k,
            reference: concat!(
                "https://learn.microsoft.com/azure/azure-monitor/reference/tables/",
                $t
            ),
        }
    };
}

/// The covered tables. Each type is the one the table reference gives (`azure-monitor-ref/
/// tables/<table lower-case>.md`): `AmlRunEvent`, `AmlDataStoreEvent`, `AmlModelsEvent`,
/// `AmlPipelineEvent` have `Identity dynamic`; `AmlRunStatusChangedEvent` has `Identity
/// string`; `AmlOnlineEndpointTrafficLog` has `IdentityData string` ("the identity data from
/// the user client (JWT OID)").
pub(crate) const IDENTITY_COLUMNS: &[IdentityColumn] = &[
    col!("AmlRunEvent", "Identity", Dynamic),
    col!("AmlRunStatusChangedEvent", "Identity", String),
    col!("AmlDataStoreEvent", "Identity", Dynamic),
    col!("AmlModelsEvent", "Identity", Dynamic),
    col!("AmlPipelineEvent", "Identity", Dynamic),
    col!("AmlOnlineEndpointTrafficLog", "IdentityData", String),
];

/// The identity column of `table`, if the table is covered (table names are case-sensitive in
/// KQL).
pub(crate) fn identity_column(table: &str) -> Option<&'static IdentityColumn> {
    IDENTITY_COLUMNS.iter().find(|c| c.table == table)
}

/// The reference page of a covered table (for docs and errors).
pub fn reference_base() -> &'static str {
    REF
}

/// A KQL string literal. The values this module quotes are parsed GUIDs, but quoting is done
/// properly anyway.
fn kql_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The export query: every record of the table whose identity column names `object_id`.
pub(crate) fn export_query(col: &IdentityColumn, object_id: &str) -> String {
    match col.kind {
        ColumnType::String => format!(
            "{} | where {} == {}",
            col.table,
            col.column,
            kql_str(object_id)
        ),
        ColumnType::Dynamic => format!(
            "{} | where tostring({}) has {}",
            col.table,
            col.column,
            kql_str(object_id)
        ),
    }
}

/// Top-level properties of the dynamic column, in the rows the export query returned, whose
/// value is `object_id` (compared case-insensitively, as GUIDs are). The value may be stored as
/// an object or as JSON text. Sorted, without duplicates.
pub(crate) fn keys_holding(col: &IdentityColumn, rows: &[RawJson], object_id: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for row in rows {
        // One row parsed at a time: the rows stay text (`RawJson`).
        let mut row = row.to_value();
        let v = match row.get_mut(col.column).map(Value::take) {
            Some(Value::String(s)) => serde_json::from_str::<Value>(&s).unwrap_or(Value::Null),
            Some(v) => v,
            None => continue,
        };
        if let Some(obj) = v.as_object() {
            for (k, v) in obj {
                if v.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(object_id))
                {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The purge bodies (`{table, filters:[{column, key?, operator, value}]}`) that remove the
/// subject's records of the table, given the rows the export query found. `Err` names why the
/// records cannot be addressed by a purge filter.
pub(crate) fn purge_bodies(
    col: &IdentityColumn,
    rows: &[RawJson],
    object_id: &str,
) -> Result<Vec<Value>, String> {
    match col.kind {
        ColumnType::String => Ok(vec![json!({
            "table": col.table,
            "filters": [{"column": col.column, "operator": "==", "value": object_id}],
        })]),
        ColumnType::Dynamic => {
            let keys = keys_holding(col, rows, object_id);
            if keys.is_empty() {
                return Err(format!(
                    "{}.{} holds the subject below its top level: no purge filter (column, key) can address these records",
                    col.table, col.column
                ));
            }
            Ok(keys
                .into_iter()
                .map(|key| {
                    json!({
                        "table": col.table,
                        "filters": [{"column": col.column, "key": key, "operator": "==", "value": object_id}],
                    })
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn map_covers_the_tables_with_their_reference_types() {
        let run = identity_column("AmlRunEvent").unwrap();
        assert_eq!((run.column, run.kind), ("Identity", ColumnType::Dynamic));
        let st = identity_column("AmlRunStatusChangedEvent").unwrap();
        assert_eq!((st.column, st.kind), ("Identity", ColumnType::String));
        let ep = identity_column("AmlOnlineEndpointTrafficLog").unwrap();
        assert_eq!((ep.column, ep.kind), ("IdentityData", ColumnType::String));
        assert!(identity_column("AmlComputeClusterEvent").is_none());
        assert!(run.reference.starts_with(reference_base()));
    }

    #[test]
    fn export_query_does_not_compare_a_dynamic_column_as_a_string() {
        let run = identity_column("AmlRunEvent").unwrap();
        assert_eq!(
            export_query(run, OID),
            format!("AmlRunEvent | where tostring(Identity) has \"{OID}\"")
        );
        let st = identity_column("AmlRunStatusChangedEvent").unwrap();
        assert_eq!(
            export_query(st, OID),
            format!("AmlRunStatusChangedEvent | where Identity == \"{OID}\"")
        );
        assert_eq!(kql_str("a\"b\\"), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn purge_on_a_dynamic_column_carries_the_observed_key() {
        let run = identity_column("AmlRunEvent").unwrap();
        let rows = [
            json!({"Identity": {"UserObjectId": OID.to_uppercase(), "UserName": "x"}}),
            json!({"Identity": format!("{{\"UserObjectId\":\"{OID}\"}}")}),
        ]
        .map(|r| RawJson::of(&r));
        let bodies = purge_bodies(run, &rows, OID).unwrap();
        assert_eq!(
            bodies,
            vec![
                json!({"table": "AmlRunEvent", "filters": [{"column": "Identity", "key": "UserObjectId", "operator": "==", "value": OID}]})
            ]
        );
        // Nested deeper: not addressable, said so.
        let deep = [RawJson::of(&json!({"Identity": {"claims": {"oid": OID}}}))];
        assert!(purge_bodies(run, &deep, OID).is_err());
        let st = identity_column("AmlRunStatusChangedEvent").unwrap();
        assert_eq!(
            purge_bodies(st, &[], OID).unwrap()[0]["filters"][0],
            json!({"column": "Identity", "operator": "==", "value": OID})
        );
    }
}

/// Where a persisted purge stands. `ToSend` is sent by the next slice or timer run;
/// `Sending` marks a POST whose answer was not recorded (a crash in between): it is never
/// resent automatically, because a purge is not idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeState {
    ToSend,
    Sending,
    Pending,
    Completed,
    Failed,
}

impl PurgeState {
    pub(crate) fn is_open(self) -> bool {
        !matches!(self, PurgeState::Completed | PurgeState::Failed)
    }
}

/// One purge of one table in one Log Analytics workspace, as kept in the state account
/// (`dsr-state/purges/<request>/<slice>/<id>.json`) from before it is sent until it ends.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeRecord {
    pub request_id: super::request::RequestId,
    pub slice_key: String,
    /// Log Analytics workspace resource id (the local container in local mode).
    pub destination: String,
    pub table: String,
    /// The purge request body `{table, filters}` (holds the subject's object id, like the
    /// plan; never logged).
    pub body: Value,
    pub state: PurgeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub requested_at: Option<time::OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<time::OffsetDateTime>,
    /// Why it failed, or why it is not sent yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PurgeRecord {
    /// A stable name for the record: the same purge planned twice (a redelivered slice) lands
    /// on the same document.
    pub fn name(&self) -> String {
        let key = format!(
            "{}\n{}\n{}",
            self.destination.to_ascii_lowercase(),
            self.table,
            self.body
        );
        super::ids::sha256_hex(key.as_bytes())[..24].to_string()
    }

    /// The item status this purge gives its table, while it is open or once it ended.
    pub(crate) fn item_status(&self) -> super::slice::ItemStatus {
        use super::slice::ItemStatus;
        match self.state {
            PurgeState::Completed => ItemStatus::Deleted { verified: false },
            PurgeState::Failed => ItemStatus::Failed {
                reason: format!(
                    "telemetry purge {} failed: {}",
                    self.operation_id.as_deref().unwrap_or("(not accepted)"),
                    self.reason.as_deref().unwrap_or("no reason given")
                ),
            },
            PurgeState::ToSend | PurgeState::Sending => ItemStatus::Pending {
                operation: format!(
                    "not yet sent: {}",
                    self.reason
                        .as_deref()
                        .unwrap_or("waiting for the purge rate limit")
                ),
                requested_at: None,
            },
            PurgeState::Pending => ItemStatus::Pending {
                operation: self.operation_id.clone().unwrap_or_default(),
                requested_at: self.requested_at,
            },
        }
    }
}

/// The combined status of the purges of one table: failed if any failed, pending while any is
/// open, deleted once all completed.
pub(crate) fn combined_status(records: &[&PurgeRecord]) -> Option<super::slice::ItemStatus> {
    use super::slice::ItemStatus;
    let statuses: Vec<ItemStatus> = records.iter().map(|r| r.item_status()).collect();
    statuses
        .iter()
        .find(|s| matches!(s, ItemStatus::Failed { .. }))
        .or_else(|| {
            statuses
                .iter()
                .find(|s| matches!(s, ItemStatus::Pending { .. }))
        })
        .or_else(|| statuses.first())
        .cloned()
}
