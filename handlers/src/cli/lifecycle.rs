//! `cancel` and `extend`: the control messages a ticketing system sends, put on the local
//! intake queue (the same envelope as in Azure, `schemas/dsr-control-*.schema.json`); `run`
//! delivers them and `status` shows what they did.

use crate::settings::LocalSettings;
use crate::wiring::open_queue;

/// A `cancel` control message.
pub fn cancel_message(request_id: &str, reason: Option<&str>) -> serde_json::Value {
    let mut m = serde_json::json!({"type": "cancel", "version": 1, "requestId": request_id});
    if let Some(r) = reason {
        m["reason"] = r.into();
    }
    m
}

/// An `extend` control message.
pub fn extend_message(request_id: &str, days: u32, reason: &str) -> serde_json::Value {
    serde_json::json!({"type": "extend", "version": 1, "requestId": request_id, "days": days, "reason": reason})
}

pub async fn send(local: &LocalSettings, msg: serde_json::Value, json: bool) -> anyhow::Result<()> {
    let kind = msg["type"].as_str().unwrap_or_default().to_string();
    let id = super::requests::enqueue(&*open_queue(local)?, serde_json::to_vec(&msg)?).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"requestId": id, "control": kind, "queued": true})
        );
    } else {
        println!("Queued {kind} for {id} on the intake queue.");
        println!("Process it with `azureml-dsr run --until-idle`, then `azureml-dsr status {id}`.");
    }
    Ok(())
}
