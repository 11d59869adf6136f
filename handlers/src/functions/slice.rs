//! The slice engine shared by the six `slice-*` functions: discover once (a frozen inventory),
//! process the inventory in bounded chunks (continuation messages), verify, store the result,
//! tell the aggregator. Every step is idempotent, so any redelivery or crash is harmless:
//! the inventory and each chunk's outcomes are created once; deletes of already-deleted items
//! are reported as deleted; exports overwrite the same export path with the same bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::discovery::{discover, DiscoveryError};
use super::{Delivery, FnError, Services};
use crate::domain::request::RequestKind;
use crate::domain::slice::{
    Item, ItemOutcome, ItemStatus, SliceCompletion, SliceResult, SliceStatus, SliceTask,
};
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, DeleteOutcome, StoreResult};
use crate::ports::bus::{queues, OutMessage};
use crate::ports::control_plane::ResourceDelete;
use crate::state::{InventoryEntry, StateStore, EXPORTS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceStep {
    /// Processed a chunk and sent the continuation.
    Continued { next_chunk: u32 },
    /// Stored the final result and notified the aggregator.
    Finished { items: usize },
    /// The result was already stored (redelivery): notification repeated.
    AlreadyDone,
}

pub async fn run(
    svc: &Services,
    task: &SliceTask,
    delivery: &Delivery,
) -> Result<SliceStep, FnError> {
    let state = svc.state();
    authorised(&state, task).await?;
    if state
        .slice_result(&task.request_id, &task.key)
        .await?
        .is_some()
    {
        complete(svc, task).await?;
        return Ok(SliceStep::AlreadyDone);
    }
    match step(svc, &state, task).await {
        Ok(s) => Ok(s),
        Err(DiscoveryError::Permanent(reason)) => fail(svc, &state, task, reason).await,
        Err(DiscoveryError::Retry(e))
            if delivery.delivery_count >= svc.settings.max_delivery_count =>
        {
            // Last delivery: record the failure so the request ends partially_failed, not hung.
            fail(
                svc,
                &state,
                task,
                format!("gave up after {} deliveries: {e}", delivery.delivery_count),
            )
            .await
        }
        Err(DiscoveryError::Retry(e)) => {
            warn!(request = %task.request_id, slice = %task.key, delivery = delivery.delivery_count, error = %e, "slice: transient failure, will be retried");
            Err(e)
        }
    }
}

/// A slice acts only on what its request's plan says: the plan is stored before any task is
/// sent, so a task with no plan, or whose subject, kind, dry-run flag, workspace, resource
/// type or hold differ from the plan's slice, was not sent by intake (forged, corrupted or
/// stale) and is refused before anything is read or changed. The host retries and then
/// dead-letters it, so the message is kept.
async fn authorised(state: &StateStore, task: &SliceTask) -> Result<(), FnError> {
    let Some(plan) = state.plan(&task.request_id).await? else {
        warn!(request = %task.request_id, slice = %task.key, "slice: refused, no plan for this request");
        return Err(FnError::BadRequest(format!(
            "slice task refused: request {} has no plan",
            task.request_id
        )));
    };
    let matches = plan.slice(&task.key).is_some_and(|spec| {
        let expected = SliceTask {
            chunk: task.chunk,
            ..SliceTask::from_plan(&plan, spec)
        };
        expected == *task
    });
    if !matches {
        warn!(request = %task.request_id, slice = %task.key, "slice: refused, task does not match the plan");
        return Err(FnError::BadRequest(format!(
            "slice task refused: {} is not a slice of request {} as planned",
            task.key, task.request_id
        )));
    }
    Ok(())
}

async fn fail(
    svc: &Services,
    state: &StateStore,
    task: &SliceTask,
    reason: String,
) -> Result<SliceStep, FnError> {
    warn!(request = %task.request_id, slice = %task.key, reason = %reason, "slice: failed");
    let result = SliceResult {
        key: task.key.clone(),
        workspace: task.workspace.clone(),
        resource_type: task.resource_type,
        status: SliceStatus::Failed,
        reason: Some(reason),
        notes: vec![],
        items: vec![],
        review: vec![],
    };
    state
        .store
        .create_json(&state.result_ref(&task.request_id, &task.key), &result)
        .await?;
    complete(svc, task).await?;
    Ok(SliceStep::Finished { items: 0 })
}

async fn complete(svc: &Services, task: &SliceTask) -> Result<(), FnError> {
    let c = SliceCompletion {
        request_id: task.request_id.clone(),
        key: task.key.clone(),
    };
    svc.bus
        .send(
            OutMessage::json(queues::COMPLETIONS, c.message_id(), &c)
                .correlated(task.request_id.to_string()),
        )
        .await?;
    Ok(())
}

async fn step(
    svc: &Services,
    state: &StateStore,
    task: &SliceTask,
) -> Result<SliceStep, DiscoveryError> {
    // The request's lifecycle, read once per chunk: the first slice to start moves it to in
    // progress, and a cancel stops every slice before its next chunk. Retention sweeps have none.
    let cancelled = match super::lifecycle::load(state, &task.request_id).await? {
        Some(doc) if doc.cancel_requested() => true,
        Some(doc) => {
            if doc.state == crate::domain::lifecycle::RequestState::Planned {
                super::lifecycle::advance(
                    svc,
                    &task.request_id,
                    crate::domain::lifecycle::RequestState::InProgress,
                    None,
                )
                .await?;
            }
            false
        }
        None => false,
    };
    let stored = match state.inventory(task).await {
        Ok(inv) => inv,
        // An inventory that does not parse (an unknown resource kind, a damaged document) is
        // refused as a whole: the slice fails and nothing in it is touched.
        Err(e) if !e.is_transient() => {
            return Err(DiscoveryError::Permanent(
                "the slice's stored inventory cannot be read (unknown resource kind or damaged document); nothing was changed".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let inventory = match stored {
        Some(inv) => inv,
        None if cancelled => return finish_cancelled_before_start(svc, state, task).await,
        None => {
            let mut inv = discover(svc, task).await?;
            if task.kind != RequestKind::Export {
                inv = inv.without_copies();
            }
            if !state
                .store
                .create_json(&state.inventory_ref(task), &inv)
                .await?
            {
                // A concurrent delivery froze it first; use theirs so both agree.
                state
                    .inventory(task)
                    .await?
                    .ok_or_else(|| FnError::Transient("inventory vanished".into()))?
            } else {
                inv
            }
        }
    };
    let size = svc.settings.chunk_size.max(1);
    let chunks = inventory.entries.len().div_ceil(size).max(1) as u32;
    let chunk = task.chunk.min(chunks - 1);
    if cancelled {
        // This chunk and every later one are recorded as not done; chunks already stored
        // (finished before the cancel) keep their outcomes.
        let reason = crate::domain::lifecycle::cancelled_item_reason(task.kind);
        for c in chunk..chunks {
            if state.chunk(task, c).await?.is_some() {
                continue;
            }
            let start = (c as usize * size).min(inventory.entries.len());
            let end = (start + size).min(inventory.entries.len());
            let skipped: Vec<ItemOutcome> = inventory.entries[start..end]
                .iter()
                .map(|e| ItemOutcome {
                    item: e.item.clone(),
                    status: ItemStatus::Skipped {
                        reason: reason.clone(),
                    },
                })
                .collect();
            state
                .store
                .create_json(&state.chunk_ref(task, c), &skipped)
                .await?;
        }
        info!(request = %task.request_id, slice = %task.key, from_chunk = chunk, "slice: request cancelled; stopping before this chunk");
    } else if state.chunk(task, chunk).await?.is_none() {
        let start = chunk as usize * size;
        let end = (start + size).min(inventory.entries.len());
        let outcomes = process(svc, task, &inventory.entries[start..end]).await?;
        state
            .store
            .create_json(&state.chunk_ref(task, chunk), &outcomes)
            .await?;
    }
    if chunk + 1 < chunks && !cancelled {
        let mut next = task.clone();
        next.chunk = chunk + 1;
        svc.bus
            .send(
                OutMessage::json(&task.resource_type.queue(), next.message_id(), &next)
                    .correlated(task.request_id.to_string()),
            )
            .await
            .map_err(FnError::from)?;
        return Ok(SliceStep::Continued {
            next_chunk: chunk + 1,
        });
    }
    let mut items = Vec::with_capacity(inventory.entries.len());
    for c in 0..chunks {
        items.extend(
            state
                .chunk(task, c)
                .await?
                .ok_or_else(|| FnError::Transient(format!("chunk {c} missing")))?,
        );
    }
    if task.kind.mutates() && !task.dry_run && task.hold.is_none() {
        if task.resource_type == crate::domain::plan::ResourceType::Notebooks {
            remove_emptied_folders(svc, task).await?;
        }
        verify(svc, task, &mut items).await?;
    }
    let result = SliceResult {
        key: task.key.clone(),
        workspace: task.workspace.clone(),
        resource_type: task.resource_type,
        status: SliceStatus::Completed,
        reason: None,
        notes: inventory.notes.clone(),
        items,
        review: inventory
            .candidates
            .iter()
            .map(|c| c.review.clone())
            .collect(),
    };
    let n = result.items.len();
    state
        .store
        .create_json(&state.result_ref(&task.request_id, &task.key), &result)
        .await?;
    complete(svc, task).await?;
    info!(request = %task.request_id, slice = %task.key, items = n, "slice: finished");
    Ok(SliceStep::Finished { items: n })
}

/// A slice whose request was cancelled before it found anything: it records that it did
/// nothing, so the aggregator can finish the request.
async fn finish_cancelled_before_start(
    svc: &Services,
    state: &StateStore,
    task: &SliceTask,
) -> Result<SliceStep, DiscoveryError> {
    let result = SliceResult {
        key: task.key.clone(),
        workspace: task.workspace.clone(),
        resource_type: task.resource_type,
        status: SliceStatus::Completed,
        reason: None,
        notes: vec![crate::domain::lifecycle::CANCELLED_BEFORE_START.to_string()],
        items: vec![],
        review: vec![],
    };
    state
        .store
        .create_json(&state.result_ref(&task.request_id, &task.key), &result)
        .await?;
    complete(svc, task).await?;
    info!(request = %task.request_id, slice = %task.key, "slice: request cancelled before this slice started");
    Ok(SliceStep::Finished { items: 0 })
}

/// Check every item this slice deleted, directly, and record what the check saw: a blob by
/// name in a listing of its own folder, a share file by reading it, a resource by ARM GET.
/// (Running discovery again cannot do this: once a job resource is deleted its folders are no
/// longer discovered, so files that survived would pass as gone.) Telemetry deleted at once is
/// checked by querying the subject's records again; a pending purge is not "deleted" yet.
pub(crate) async fn verify(
    svc: &Services,
    task: &SliceTask,
    items: &mut [ItemOutcome],
) -> Result<(), DiscoveryError> {
    use std::collections::{BTreeMap, HashSet};
    let mut listed: BTreeMap<(String, String, String), HashSet<String>> = BTreeMap::new();
    let mut telemetry_left: Option<HashSet<(String, String)>> = None;
    for o in items.iter_mut() {
        let cancelled_skip = crate::domain::lifecycle::is_cancelled_skip(&o.status);
        if !matches!(o.status, ItemStatus::Deleted { .. }) && !cancelled_skip {
            continue;
        }
        let seen: Option<&str> = match &o.item {
            Item::Blob {
                account,
                container,
                name,
                ..
            } => {
                let folder = name
                    .rsplit_once('/')
                    .map(|(f, _)| format!("{f}/"))
                    .unwrap_or_default();
                let key = (account.clone(), container.clone(), folder);
                if !listed.contains_key(&key) {
                    let names = match svc.store.list_all(&key.0, &key.1, &key.2).await {
                        Ok(items) => items.into_iter().map(|b| b.name).collect(),
                        Err(crate::ports::blob::StoreError::NotFound(_)) => HashSet::new(),
                        Err(e) => return Err(e.into()),
                    };
                    listed.insert(key.clone(), names);
                }
                listed[&key]
                    .contains(name)
                    .then_some("still listed in its folder after the delete")
            }
            Item::File {
                account,
                share,
                path,
                ..
            } => {
                use crate::ports::file_share::ShareError;
                match svc.files.open(account, share, path).await {
                    Ok(_) => Some("still readable in the share after the delete"),
                    Err(
                        ShareError::FileNotFound(_)
                        | ShareError::DirectoryNotFound(_)
                        | ShareError::ShareNotFound(_),
                    ) => None,
                    Err(e) => {
                        return Err(
                            FnError::Transient(format!("verifying a share file: {e}")).into()
                        )
                    }
                }
            }
            Item::Resource { resource_type, id } => svc
                .control
                .exists(&task.workspace, *resource_type, id)
                .await?
                .then_some("ARM still returns it after the delete"),
            Item::Telemetry {
                table, destination, ..
            } => {
                if telemetry_left.is_none() {
                    let ws = svc.control.workspace(&task.workspace).await?;
                    let left = svc
                        .telemetry
                        .query(&ws, &task.subject)
                        .await
                        .map_err(|e| FnError::Transient(e.to_string()))?
                        .into_iter()
                        .filter(|t| !t.rows.is_empty())
                        .map(|t| (t.destination, t.table))
                        .collect();
                    telemetry_left = Some(left);
                }
                telemetry_left
                    .as_ref()
                    .is_some_and(|left| {
                        left.iter().any(|(d, t)| {
                            t == table && destination.as_deref().is_none_or(|x| x == d)
                        })
                    })
                    .then_some("the subject's records are still returned by a query")
            }
        };
        o.status = match (seen, cancelled_skip) {
            (None, _) => ItemStatus::Deleted { verified: true },
            // Not reached because of the cancel, and still there: exactly what it says.
            (Some(_), true) => continue,
            (Some(reason), false) => ItemStatus::Failed {
                reason: reason.into(),
            },
        };
    }
    Ok(())
}

pub(crate) async fn process(
    svc: &Services,
    task: &SliceTask,
    entries: &[InventoryEntry],
) -> Result<Vec<ItemOutcome>, FnError> {
    if task.dry_run {
        let status = if task.kind.mutates() {
            ItemStatus::WouldDelete
        } else {
            ItemStatus::WouldExport
        };
        return Ok(entries
            .iter()
            .map(|e| ItemOutcome {
                item: e.item.clone(),
                status: status.clone(),
            })
            .collect());
    }
    let hold = match (&task.hold, task.kind.mutates()) {
        (Some(h), true) => Some(h.clone()),
        (None, true) => current_hold(svc, task).await?,
        _ => None,
    };
    if let Some(hold) = &hold {
        return Ok(entries
            .iter()
            .map(|e| ItemOutcome {
                item: e.item.clone(),
                status: ItemStatus::Held {
                    hold: hold.id.clone(),
                    reason: hold.reason.clone(),
                },
            })
            .collect());
    }
    if task.kind == RequestKind::Export {
        return export(svc, task, entries).await;
    }
    // Items under their own hold are reported, never touched.
    let (held, free): (Vec<_>, Vec<_>) = entries
        .iter()
        .cloned()
        .enumerate()
        .partition(|(_, e)| e.hold.is_some());
    let free_entries: Vec<InventoryEntry> = free.iter().map(|(_, e)| e.clone()).collect();
    let done = delete(svc, task, &free_entries).await?;
    let mut out: Vec<Option<ItemOutcome>> = vec![None; entries.len()];
    for ((i, _), o) in free.into_iter().zip(done) {
        out[i] = Some(o);
    }
    for (i, e) in held {
        let h = e.hold.clone().unwrap_or(crate::domain::holds::HoldRef {
            id: String::new(),
            reason: String::new(),
        });
        out[i] = Some(ItemOutcome {
            item: e.item,
            status: ItemStatus::Held {
                hold: h.id,
                reason: h.reason,
            },
        });
    }
    Ok(out.into_iter().flatten().collect())
}

/// A legal hold placed after the request was planned still stops its deletions: the holds are
/// read again before every chunk that would change something. A hold list that cannot be read
/// never means "no holds": a transient failure retries the invocation (nothing deleted), one
/// that will not go away (a corrupt list) holds the slice and says so.
async fn current_hold(
    svc: &Services,
    task: &SliceTask,
) -> Result<Option<crate::domain::holds::HoldRef>, FnError> {
    match svc.state().holds().await {
        Ok(holds) => Ok(holds.find(task.subject.object_id, &task.workspace, task.resource_type)),
        Err(e) if e.is_transient() => Err(FnError::Transient(format!(
            "legal holds unreadable, nothing deleted: {e}"
        ))),
        Err(e) => Ok(Some(crate::domain::holds::HoldRef {
            id: "legal-holds-unreadable".into(),
            reason: format!(
                "the legal-hold list could not be read ({}); nothing was deleted",
                crate::logging::redact(&e.to_string())
            ),
        })),
    }
}

fn export_name(task: &SliceTask, rest: &str) -> String {
    format!(
        "{}{}/{}/{rest}",
        StateStore::export_prefix(&task.request_id),
        task.workspace.name(),
        task.resource_type.as_str()
    )
}

async fn export(
    svc: &Services,
    task: &SliceTask,
    entries: &[InventoryEntry],
) -> Result<Vec<ItemOutcome>, FnError> {
    let state = svc.state();
    futures::stream::iter(entries.iter().cloned())
        .map(|e| {
            let state = state.clone();
            async move {
                let status = match &e.item {
                    Item::Blob {
                        account,
                        container,
                        name,
                        ..
                    } => {
                        let src = BlobRef::new(account.clone(), container.clone(), name.clone());
                        let dst = state.blob(
                            EXPORTS,
                            export_name(task, &format!("files/{account}/{container}/{name}")),
                        );
                        export_blob(svc.store.as_ref(), &src, &dst).await?
                    }
                    Item::File {
                        account,
                        share,
                        path,
                        ..
                    } => {
                        let dst = state.blob(
                            EXPORTS,
                            export_name(task, &format!("files/{account}/{share}/{path}")),
                        );
                        export_file(svc, account, share, path, &dst).await?
                    }
                    Item::Resource { resource_type, id } => {
                        let leaf = id
                            .rsplit('/')
                            .take(3)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("_");
                        let leaf: String = leaf
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                        write_doc(
                            svc,
                            &state,
                            task,
                            &format!("resources/{resource_type}/{leaf}.json"),
                            e.doc.clone().unwrap_or_default(),
                        )
                        .await?
                    }
                    Item::Telemetry {
                        table, destination, ..
                    } => {
                        // One file per table and Log Analytics workspace (named by its last
                        // id segment): the same table can come from several.
                        let path = match destination.as_deref().and_then(|d| d.rsplit('/').next()) {
                            Some(la) => format!("telemetry/{la}/{table}.json"),
                            None => format!("telemetry/{table}.json"),
                        };
                        write_doc(svc, &state, task, &path, e.doc.clone().unwrap_or_default())
                            .await?
                    }
                };
                Ok(ItemOutcome {
                    item: e.item,
                    status,
                })
            }
        })
        .buffered(svc.settings.concurrency.max(1))
        .try_collect()
        .await
}

/// Export one blob: server-side copy to `dst`, then hash what was exported, streaming (the
/// manifest proves the bytes; memory stays bounded whatever the size).
pub async fn export_blob(
    store: &dyn BlobStore,
    src: &BlobRef,
    dst: &BlobRef,
) -> Result<ItemStatus, FnError> {
    match store.copy(src, dst).await {
        Ok(()) => {
            let mut reader = store.open(dst).await?;
            let mut h = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = reader.body.try_next().await? {
                size += chunk.len() as u64;
                h.update(&chunk);
            }
            Ok(ItemStatus::Exported {
                path: dst.name.clone(),
                sha256: hex::encode(h.finalize()),
                size,
                content_type: reader
                    .props
                    .content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
            })
        }
        Err(crate::ports::blob::StoreError::NotFound(_)) => Ok(ItemStatus::Skipped {
            reason: "deleted before it could be exported".into(),
        }),
        Err(e) => Err(FnError::from(e)),
    }
}

async fn write_doc(
    svc: &Services,
    state: &StateStore,
    task: &SliceTask,
    rel: &str,
    doc: serde_json::Value,
) -> Result<ItemStatus, FnError> {
    let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    let dst = state.blob(EXPORTS, export_name(task, rel));
    let sha = crate::domain::ids::sha256_hex(&body);
    let size = body.len() as u64;
    svc.store
        .put(
            &dst,
            bytes::Bytes::from(body),
            "application/json",
            crate::ports::blob::Condition::None,
            &BTreeMap::new(),
        )
        .await?;
    Ok(ItemStatus::Exported {
        path: dst.name,
        sha256: sha,
        size,
        content_type: "application/json".into(),
    })
}

/// Largest notebook-share file exported (read into memory to be written to the export area).
pub const EXPORT_FILE_MAX: u64 = 256 * 1024 * 1024;

/// Export one file of the share: read it through the file-share port (bounded), write it to
/// `dst`, hash what was written.
async fn export_file(
    svc: &Services,
    account: &str,
    share: &str,
    path: &str,
    dst: &BlobRef,
) -> Result<ItemStatus, FnError> {
    use crate::ports::file_share::ShareError;
    let mut reader = match svc.files.open(account, share, path).await {
        Ok(r) => r,
        Err(ShareError::FileNotFound(_)) => {
            return Ok(ItemStatus::Skipped {
                reason: "deleted before it could be exported".into(),
            })
        }
        Err(e) if e.is_transient() => return Err(FnError::Transient(e.to_string())),
        Err(e) => {
            return Ok(ItemStatus::Failed {
                reason: e.to_string(),
            })
        }
    };
    if reader.size > EXPORT_FILE_MAX {
        return Ok(ItemStatus::Failed {
            reason: format!(
                "file of {} bytes is larger than the {EXPORT_FILE_MAX}-byte export limit for share files",
                reader.size
            ),
        });
    }
    let mut buf = Vec::with_capacity(reader.size as usize);
    while let Some(chunk) = reader.body.try_next().await? {
        if (buf.len() + chunk.len()) as u64 > EXPORT_FILE_MAX {
            return Ok(ItemStatus::Failed {
                reason: "file grew beyond the export limit while being read".into(),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    let sha256 = crate::domain::ids::sha256_hex(&buf);
    let size = buf.len() as u64;
    let content_type = reader
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    svc.store
        .put(
            dst,
            bytes::Bytes::from(buf),
            &content_type,
            crate::ports::blob::Condition::None,
            &BTreeMap::new(),
        )
        .await?;
    Ok(ItemStatus::Exported {
        path: dst.name.clone(),
        sha256,
        size,
        content_type,
    })
}

/// After the subject's files are deleted: their folders under the notebook prefixes, deepest
/// first, the `Users/<alias>` folder itself last. A folder something is left in (a held or
/// failed file, a file written meanwhile) stays; verification reports what is left.
async fn remove_emptied_folders(svc: &Services, task: &SliceTask) -> Result<(), DiscoveryError> {
    use crate::ports::file_share::{FileShareExt, ShareError};
    let ws = svc.control.workspace(&task.workspace).await?;
    for prefix in task.subject.notebook_prefixes() {
        let tree = match svc
            .files
            .list_tree(&ws.storage_account, &ws.file_share, &prefix)
            .await
        {
            Ok(t) => t,
            Err(ShareError::DirectoryNotFound(_)) => continue,
            Err(e) => return Err(DiscoveryError::Retry(FnError::Transient(e.to_string()))),
        };
        for dir in tree.directories {
            match svc
                .files
                .delete_directory(&ws.storage_account, &ws.file_share, &dir)
                .await
            {
                Ok(_) | Err(ShareError::DirectoryNotEmpty(_)) => {}
                Err(e) if e.is_transient() => {
                    return Err(DiscoveryError::Retry(FnError::Transient(e.to_string())))
                }
                Err(e) => {
                    warn!(request = %task.request_id, slice = %task.key, error = %e, "slice: a notebooks folder could not be removed");
                }
            }
        }
    }
    Ok(())
}

fn delete_status(o: DeleteOutcome) -> ItemStatus {
    match o {
        // Already gone (an earlier delivery deleted it): verification confirms.
        DeleteOutcome::Deleted | DeleteOutcome::NotFound => ItemStatus::Deleted { verified: false },
        DeleteOutcome::Retained { until } => ItemStatus::RetainedUntil { until },
    }
}

/// Blobs per `delete_many` call (Blob Batch takes at most 256 sub-requests).
pub const DELETE_BATCH: usize = 256;

/// Batches of `delete_many` in flight at once, from the slice's concurrency setting: Blob Batch
/// requests are heavy for the service, so a few in flight saturate it.
pub fn delete_batches_in_flight(concurrency: usize) -> usize {
    concurrency.clamp(1, 4)
}

/// Erase `names` in one container: batches of [`DELETE_BATCH`], a bounded number in flight.
/// One result per name, same order.
pub async fn delete_blobs(
    store: &Arc<dyn BlobStore>,
    account: &str,
    container: &str,
    names: &[String],
    concurrency: usize,
) -> Result<Vec<StoreResult<DeleteOutcome>>, FnError> {
    let batches: Vec<(usize, Vec<String>)> = names
        .chunks(DELETE_BATCH)
        .map(<[String]>::to_vec)
        .enumerate()
        .collect();
    let mut results: Vec<(usize, Vec<StoreResult<DeleteOutcome>>)> = futures::stream::iter(batches)
        .map(|(b, batch)| {
            let (store, account, container) =
                (store.clone(), account.to_string(), container.to_string());
            async move {
                let r = store.delete_many(&account, &container, &batch).await?;
                Ok::<_, FnError>((b, r))
            }
        })
        .buffer_unordered(delete_batches_in_flight(concurrency))
        .try_collect()
        .await?;
    results.sort_by_key(|(b, _)| *b);
    Ok(results.into_iter().flat_map(|(_, r)| r).collect())
}

async fn delete(
    svc: &Services,
    task: &SliceTask,
    entries: &[InventoryEntry],
) -> Result<Vec<ItemOutcome>, FnError> {
    let mut statuses: Vec<Option<ItemStatus>> = vec![None; entries.len()];
    // Blobs: batched per container (Blob Batch in Azure), 256 per batch.
    let mut by_container: BTreeMap<(String, String), Vec<(usize, String)>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Item::Blob {
            account,
            container,
            name,
            ..
        } = &e.item
        {
            by_container
                .entry((account.clone(), container.clone()))
                .or_default()
                .push((i, name.clone()));
        }
    }
    for ((account, container), names) in by_container {
        let just_names: Vec<String> = names.iter().map(|(_, n)| n.clone()).collect();
        let results = delete_blobs(
            &svc.store,
            &account,
            &container,
            &just_names,
            svc.settings.concurrency,
        )
        .await?;
        for ((i, _), r) in names.into_iter().zip(results) {
            statuses[i] = Some(match r {
                Ok(o) => delete_status(o),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => ItemStatus::Failed {
                    reason: e.to_string(),
                },
            });
        }
    }
    // Files of the workspace's share (notebooks), one request each (the File API has no batch).
    let files: Vec<(usize, String, String, String)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.item {
            Item::File {
                account,
                share,
                path,
                ..
            } => Some((i, account.clone(), share.clone(), path.clone())),
            _ => None,
        })
        .collect();
    let done: Vec<(usize, ItemStatus)> = futures::stream::iter(files)
        .map(|(i, account, share, path)| async move {
            let status = match svc.files.delete_file(&account, &share, &path).await {
                Ok(o) => delete_status(o),
                Err(e) if e.is_transient() => return Err(FnError::Transient(e.to_string())),
                Err(e) => ItemStatus::Failed {
                    reason: e.to_string(),
                },
            };
            Ok((i, status))
        })
        .buffer_unordered(svc.settings.concurrency.max(1))
        .try_collect()
        .await?;
    for (i, status) in done {
        statuses[i] = Some(status);
    }
    // Management-plane resources after their files, so a retry still finds the files' owner.
    for (i, e) in entries.iter().enumerate() {
        match &e.item {
            Item::Resource { resource_type, id } => {
                // The kind was parsed with the inventory: there is no fallback kind to guess.
                statuses[i] = Some(
                    match svc
                        .control
                        .delete(&task.workspace, *resource_type, id)
                        .await?
                    {
                        ResourceDelete::Deleted | ResourceDelete::NotFound => {
                            ItemStatus::Deleted { verified: false }
                        }
                        ResourceDelete::Refused(reason) => ItemStatus::Failed { reason },
                    },
                );
            }
            Item::Telemetry { .. } => {}
            Item::Blob { .. } | Item::File { .. } => {}
        }
    }
    let has_telemetry = entries
        .iter()
        .any(|e| matches!(e.item, Item::Telemetry { .. }));
    if has_telemetry && !svc.settings.telemetry_purge_enabled {
        // Not purged is not deleted: the report must not say Completed for these records.
        for (i, e) in entries.iter().enumerate() {
            if matches!(e.item, Item::Telemetry { .. }) {
                statuses[i] = Some(ItemStatus::Failed {
                    reason: "telemetry purge is disabled (DSR_TELEMETRY_PURGE_ENABLED=false): the records remain".into(),
                });
            }
        }
    } else if has_telemetry {
        // Persisted, sent once, polled by the timer (functions::telemetry_purges).
        let ws = svc.control.workspace(&task.workspace).await?;
        let tel: Vec<(usize, Item)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.item, Item::Telemetry { .. }))
            .map(|(i, e)| (i, e.item.clone()))
            .collect();
        for (i, status) in super::telemetry_purges::purge_for_slice(
            svc,
            task,
            &ws,
            &tel,
            time::OffsetDateTime::now_utc(),
        )
        .await?
        {
            statuses[i] = Some(status);
        }
    }
    Ok(entries
        .iter()
        .zip(statuses)
        .map(|(e, s)| ItemOutcome {
            item: e.item.clone(),
            status: s.unwrap_or(ItemStatus::Failed {
                reason: "not processed".into(),
            }),
        })
        .collect())
}
