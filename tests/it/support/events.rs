//! Trigger payloads the tests build from the project's fixtures.

use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::protocol::eventgrid::GridEvent;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The derived Event Grid fixture of a workspace delete (`ResourceDeleteSuccess`), pointed at
/// `ws`, at `at`; `purge` adds `forceToPurge=true` to the request URL (a delete without soft
/// delete).
pub fn workspace_delete_event(ws: &WorkspaceId, purge: bool, at: OffsetDateTime) -> GridEvent {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/functions-host/derived-eventgrid-aml-workspace-delete-request.json"
    ))
    .unwrap();
    let raw = raw
        .replace("{subscription-id}", ws.subscription())
        .replace("{resource-group}", ws.resource_group())
        .replace("{workspace-name}", ws.name())
        .replace(
            "2025-01-02T03:04:05.6789012Z",
            &at.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        );
    let mut v: Value = serde_json::from_str(&raw).unwrap();
    let mut ev = v["Data"]["eventGridEvent"].take();
    if purge {
        let url = ev["data"]["httpRequest"]["url"]
            .as_str()
            .unwrap()
            .to_string();
        ev["data"]["httpRequest"]["url"] = json!(format!("{url}&forceToPurge=true"));
    }
    ev["id"] = json!(format!("evt-{purge}-{}", at.unix_timestamp()));
    GridEvent::from_value(&ev).unwrap()
}
