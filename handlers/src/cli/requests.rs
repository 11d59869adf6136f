//! `submit`, `status` and `report`: what a ticketing system and a privacy engineer do locally.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::adapters::local::sqlite_queue::LocalQueue;
use crate::domain::request::{DsrRequest, RequestId};
use crate::ports::blob::{BlobRef, StoreError};
use crate::ports::bus::{queues, MessageBus, OutMessage};
use crate::settings::{AppSettings, LocalSettings};
use crate::wiring::{open_queue, LocalPaths};

#[derive(Args, Debug, Clone)]
pub struct SubmitArgs {
    /// A request file (JSON, see schemas/dsr-request.schema.json). Flags build one otherwise.
    pub file: Option<PathBuf>,
    #[arg(long = "type", value_parser = ["export", "delete"])]
    pub kind: Option<String>,
    #[arg(long)]
    pub upn: Option<String>,
    #[arg(long)]
    pub object_id: Option<String>,
    /// Workspace ARM id; repeat for several; default: every seeded workspace.
    #[arg(long = "workspace")]
    pub workspaces: Vec<String>,
    #[arg(long)]
    pub request_id: Option<String>,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_parser = ["gdpr", "ccpa"])]
    pub regulation: Option<String>,
}

/// Build the request body from flags.
pub(crate) fn request_from_flags(
    paths: &LocalPaths,
    a: &SubmitArgs,
) -> anyhow::Result<serde_json::Value> {
    let mut workspaces = a.workspaces.clone();
    if workspaces.is_empty() {
        let truth: crate::seed::SeedTruth =
            serde_json::from_slice(&std::fs::read(paths.truth()).map_err(|_| {
                anyhow::anyhow!(
                    "no --workspace given and no seeded workspace in {} (run `azureml-dsr seed`)",
                    paths.root.display()
                )
            })?)?;
        workspaces = truth.workspaces.iter().map(|w| w.to_string()).collect();
    }
    let mut subject = serde_json::Map::new();
    if let Some(u) = &a.upn {
        subject.insert("upn".into(), u.clone().into());
    }
    if let Some(o) = &a.object_id {
        subject.insert("objectId".into(), o.clone().into());
    }
    let id = a
        .request_id
        .clone()
        .unwrap_or_else(|| format!("DSR-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    Ok(serde_json::json!({
        "schemaVersion": "1.0", "requestId": id, "type": a.kind.clone().unwrap_or_else(|| "export".into()),
        "subject": subject, "scope": {"workspaces": workspaces}, "dryRun": a.dry_run,
        "regulation": a.regulation.clone().unwrap_or_else(|| "gdpr".into()),
        "receivedAt": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
    }))
}

/// Enqueue raw request bytes on the intake queue. MessageId = `<requestId>:<content hash>`, so
/// the bus drops only a resend of the same bytes; another request reusing a requestId reaches
/// intake, which rejects it with a reason (a MessageId of the requestId alone made the bus drop
/// it silently, and the sender saw the first request's result as if it were the second's).
pub async fn enqueue(queue: &LocalQueue, body: Vec<u8>) -> anyhow::Result<String> {
    let sha = crate::domain::ids::sha256_hex(&body);
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("requestId")
                .and_then(|r| r.as_str())
                .map(str::to_string)
        })
        .filter(|r| RequestId::parse(r).is_ok())
        .unwrap_or_else(|| sha.clone());
    let message_id = intake_message_id(&id, &sha);
    let mut msg = OutMessage::json(queues::INTAKE, message_id, &serde_json::Value::Null);
    msg.body = body;
    queue.send(msg).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(id)
}

/// The intake MessageId for a request id and the SHA-256 of its bytes (at most 64 + 1 + 32
/// characters, within Service Bus's 128).
pub(crate) fn intake_message_id(request_id: &str, body_sha256: &str) -> String {
    format!("{request_id}:{}", &body_sha256[..32.min(body_sha256.len())])
}

pub async fn submit(local: &LocalSettings, a: &SubmitArgs, json: bool) -> anyhow::Result<()> {
    let paths = LocalPaths::new(&local.data_dir);
    let body = match &a.file {
        Some(f) => std::fs::read(f)?,
        None => serde_json::to_vec(&request_from_flags(&paths, a)?)?,
    };
    // Validate locally for a friendly message, but submit anyway: intake rejects and archives.
    let check = DsrRequest::parse(&body);
    let id = enqueue(&*open_queue(local)?, body).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"requestId": id, "queued": true, "valid": check.is_ok()})
        );
    } else {
        println!("Queued request {id} on {}.", queues::INTAKE);
        if let Err(r) = check {
            println!("Note: intake will reject it: {} ({})", r.reason, r.code);
        }
        println!("Process it with `azureml-dsr run --until-idle`, then `azureml-dsr status {id}`.");
    }
    Ok(())
}

/// The request id, parsed, and the state store it lives in (either mode).
fn open_state(
    app: &AppSettings,
    id: &str,
) -> anyhow::Result<(RequestId, crate::state::StateStore)> {
    let rid = RequestId::parse(id).map_err(anyhow::Error::msg)?;
    Ok((rid, crate::wiring::build_state(app)?))
}

pub async fn status(app: &AppSettings, id: &str, json: bool) -> anyhow::Result<()> {
    let (rid, state) = open_state(app, id)?;
    let plan = state.plan(&rid).await?;
    // The head only: its status and counts are all this prints, and a paged report's items
    // would be the whole request's (a million items took 1.2 GB to read whole).
    let report = state.report_head(&rid).await?;
    let done = if plan.is_some() {
        state.completed_keys(&rid).await?.len()
    } else {
        0
    };
    let (phase, detail) = match (&plan, &report) {
        (_, Some(r)) => (
            // The status as the result message and the report spell it (snake_case).
            serde_json::to_value(r.status)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            format!("{} items; finished {}", r.counts.items, r.finished_at),
        ),
        (Some(p), None) => (
            "in_progress".to_string(),
            format!(
                "{done}/{} slices done; deadline {}",
                p.slices.len(),
                p.deadline
            ),
        ),
        (None, None) => (
            "unknown".to_string(),
            "no plan: not received yet, or rejected (see the dsr-results queue)".to_string(),
        ),
    };
    // The lifecycle, where the request has one: its state is the one the ticketing system was
    // told, with the history of changes, the deadline in force and any extensions.
    let lifecycle = crate::functions::lifecycle::load(&state, &rid)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let phase = lifecycle
        .as_ref()
        .map(|l| l.state.as_str().to_string())
        .unwrap_or(phase);
    if json {
        println!(
            "{}",
            serde_json::json!({"requestId": id, "status": phase, "detail": detail, "slicesDone": done, "slices": plan.map(|p| p.slices.len()), "lifecycle": lifecycle})
        );
    } else {
        println!("{id}: {phase} — {detail}");
        if let Some(l) = &lifecycle {
            println!(
                "  deadline {} (original {})",
                l.deadline, l.original_deadline
            );
            for h in &l.history {
                match &h.reason {
                    Some(r) => println!("  {}  {} ({r})", h.at, h.state),
                    None => println!("  {}  {}", h.at, h.state),
                }
            }
            for x in &l.extensions {
                println!(
                    "  {}  deadline extended by {} days to {}: {}",
                    x.at, x.days, x.deadline_after, x.reason
                );
            }
            for w in &l.warnings {
                println!(
                    "  {}  {} sent (deadline {})",
                    w.at,
                    w.kind.as_str(),
                    w.deadline
                );
            }
        }
    }
    Ok(())
}

pub async fn report(app: &AppSettings, id: &str, json: bool) -> anyhow::Result<()> {
    let (rid, state) = open_state(app, id)?;
    let plan = state.plan(&rid).await?;
    // The newest version as stored (telemetry purges and review decisions add versions), copied
    // out as it streams: the document of record, byte for byte (the audit record hashes it),
    // and at a million items hundreds of MB that parsing whole took 1.2 GB of memory.
    if let Some(plan) = &plan {
        if let Some((_, blob)) = crate::functions::review::latest_report_ref(&state, plan)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            let blob = if json {
                blob
            } else {
                let md = blob.name.strip_suffix(".json").unwrap_or(&blob.name);
                BlobRef::new(&blob.account, &blob.container, format!("{md}.md"))
            };
            if print_blob(&state, &blob).await? {
                return Ok(());
            }
        }
    }
    let newest = match plan {
        Some(plan) => crate::functions::review::latest_report(&state, &plan)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map(|(_, r)| r),
        None => None,
    };
    let r = match newest {
        Some(r) => r,
        None => state
            .report(&rid)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no report for {id} yet"))?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", crate::domain::report::render_markdown(&r));
    }
    Ok(())
}

/// Copy a stored document to standard output a chunk at a time, ending with a newline;
/// `false` if there is no such blob.
async fn print_blob(state: &crate::state::StateStore, blob: &BlobRef) -> anyhow::Result<bool> {
    use futures::TryStreamExt;
    use std::io::Write;
    let mut reader = match state.store.open(blob).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut last = b'\n';
    while let Some(chunk) = reader.body.try_next().await? {
        if let Some(b) = chunk.last() {
            last = *b;
        }
        out.write_all(&chunk)?;
    }
    if last != b'\n' {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(true)
}

/// Queue events for an Event Grid function; `run` delivers them with the host's envelope and
/// Event Grid's retry schedule. MessageId = event id, so injecting the same file twice is harmless.
pub(crate) async fn inject_events(
    local: &LocalSettings,
    file: &Path,
    function: &str,
    json: bool,
) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file)?)?;
    let events = match v {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let queue = open_queue(local)?;
    let mut ids = Vec::new();
    for ev in events {
        let id = ev
            .get("id")
            .and_then(|i| i.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| crate::domain::ids::sha256_hex(ev.to_string().as_bytes()));
        let msg = OutMessage::json(
            &crate::runtime::dispatcher::event_grid_queue(function),
            id.clone(),
            &ev,
        );
        queue.send(msg).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.push(id);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"function": function, "events": ids})
        );
    } else {
        println!(
            "Queued {} event(s) for {function}; `azureml-dsr run --until-idle` delivers them.",
            ids.len()
        );
    }
    Ok(())
}
