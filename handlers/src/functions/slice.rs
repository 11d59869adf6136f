//! The slice engine shared by the six `slice-*` functions: discover once (a frozen inventory),
//! process the inventory in bounded chunks (continuation messages), verify, store the result,
//! tell the aggregator. Every step is idempotent, so any redelivery or crash is harmless:
//! the inventory and each chunk's outcomes are created once; deletes of already-deleted items
//! are reported as deleted; exports overwrite the same export path with the same bytes.
//!
//! This file is the engine (authorise, step, process, verify); the two kinds of work sit beside
//! it in `slice/`: `export` and `erase`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::discovery::{discover, DiscoveryError};
use super::{Delivery, FnError, Services};
use crate::domain::request::RequestKind;
use crate::domain::slice::{
    Item, ItemOutcome, ItemPages, ItemStatus, PageSet, SliceCompletion, SliceResult, SliceStatus,
    SliceTask,
};
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, DeleteOutcome, StoreResult};
use crate::ports::bus::{queues, OutMessage};
use crate::ports::control_plane::ResourceDelete;
use crate::state::{InventoryEntry, StateStore, EXPORTS};

mod erase;
mod export;

use erase::{delete, remove_emptied_folders};
pub use erase::{delete_batches_in_flight, delete_blobs, DELETE_BATCH};
use export::export;
pub use export::{export_blob, EXPORT_FILE_MAX};

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
    if state.has_slice_result(&task.request_id, &task.key).await? {
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
        pages: None,
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
            // Written in pages of one chunk as it is found (`state::paged_inventory`); a
            // concurrent delivery that froze first wins, and both go on with its inventory.
            let mut pager = state.inventory_pager(
                task,
                svc.settings.chunk_size,
                task.kind != RequestKind::Export,
            );
            let found = discover(svc, task, &mut pager).await?;
            pager.push(found.entries).await?;
            let head = pager.finish(found.notes, found.candidates).await?;
            state.commit_inventory(task, head).await?
        }
    };
    let (_, chunks) = inventory.chunking(svc.settings.chunk_size);
    let chunk = task.chunk.min(chunks - 1);
    if cancelled {
        // This chunk and every later one are recorded as not done; chunks already stored
        // (finished before the cancel) keep their outcomes.
        let reason = crate::domain::lifecycle::cancelled_item_reason(task.kind);
        for c in chunk..chunks {
            if state.chunk(task, c).await?.is_some() {
                continue;
            }
            let skipped: Vec<ItemOutcome> = state
                .inventory_chunk(task, &inventory, c, svc.settings.chunk_size)
                .await
                .map_err(unreadable_page)?
                .into_iter()
                .map(|e| ItemOutcome {
                    item: e.item,
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
        let entries = state
            .inventory_chunk(task, &inventory, chunk, svc.settings.chunk_size)
            .await
            .map_err(unreadable_page)?;
        let outcomes = process(svc, task, &entries).await?;
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
    let checks = task.kind.mutates() && !task.dry_run && task.hold.is_none();
    if checks && task.resource_type == crate::domain::plan::ResourceType::Notebooks {
        remove_emptied_folders(svc, task).await?;
    }
    let mut items = Vec::new();
    let mut pages = None;
    if chunks == 1 {
        items = stored_chunk(state, task, 0).await?;
        if checks {
            verify(svc, task, &mut items).await?;
        }
    } else {
        // Paged (`state::paged_result`): one chunk's outcomes in memory at a time.
        let set = if checks {
            PageSet::Verified
        } else {
            PageSet::Chunks
        };
        let mut checked = Checked::default();
        let mut total = 0u64;
        for c in 0..chunks {
            let mut page = stored_chunk(state, task, c).await?;
            total += page.len() as u64;
            if checks {
                verify_with(svc, task, &mut page, &mut checked).await?;
                checked.forget_all_but_the_last_folder(&page);
                // Rewritten whole on a redelivery: the check is repeated, never half-kept.
                state
                    .store
                    .write_json(
                        &state.result_page_ref(&task.request_id, &task.key, set, c),
                        &page,
                    )
                    .await?;
            }
        }
        pages = Some(ItemPages {
            set,
            pages: chunks,
            items: total,
        });
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
        pages,
    };
    let n = result.item_count();
    state
        .store
        .create_json(&state.result_ref(&task.request_id, &task.key), &result)
        .await?;
    complete(svc, task).await?;
    info!(request = %task.request_id, slice = %task.key, items = n, "slice: finished");
    Ok(SliceStep::Finished { items: n as usize })
}

/// A chunk's stored outcomes (every chunk is stored before the last one finishes the slice).
async fn stored_chunk(
    state: &StateStore,
    task: &SliceTask,
    c: u32,
) -> Result<Vec<ItemOutcome>, FnError> {
    state
        .chunk(task, c)
        .await?
        .ok_or_else(|| FnError::Transient(format!("chunk {c} missing")))
}

/// A page of the frozen inventory that is missing or does not parse is refused like a whole
/// inventory that does not parse: the slice fails and nothing in the page is touched. A
/// transient read is retried.
fn unreadable_page(e: crate::ports::blob::StoreError) -> DiscoveryError {
    if e.is_transient() {
        e.into()
    } else {
        DiscoveryError::Permanent(
            "a page of the slice's stored inventory is missing or cannot be read (unknown resource kind or damaged document); nothing in it was changed".into(),
        )
    }
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
        pages: None,
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
    verify_with(svc, task, items, &mut Checked::default()).await
}

/// What [`verify`] has already listed or queried, kept across a paged slice's pages.
#[derive(Default)]
pub(crate) struct Checked {
    /// Names in each (account, container, folder) listed.
    listed: BTreeMap<(String, String, String), std::collections::HashSet<String>>,
    /// (destination, table) still holding the subject's records, once queried.
    telemetry_left: Option<std::collections::HashSet<(String, String)>>,
}

impl Checked {
    /// Keep only the listing of the page's last folder, the one the next page may continue:
    /// items come folder by folder, so memory stays one page's worth and each folder is still
    /// listed once.
    fn forget_all_but_the_last_folder(&mut self, page: &[ItemOutcome]) {
        let last = page.iter().rev().find_map(|o| match &o.item {
            Item::Blob {
                account,
                container,
                name,
                ..
            } => Some(folder_key(account, container, name)),
            _ => None,
        });
        self.listed.retain(|k, _| Some(k) == last.as_ref());
    }
}

fn folder_key(account: &str, container: &str, name: &str) -> (String, String, String) {
    let folder = name
        .rsplit_once('/')
        .map(|(f, _)| format!("{f}/"))
        .unwrap_or_default();
    (account.to_string(), container.to_string(), folder)
}

pub(crate) async fn verify_with(
    svc: &Services,
    task: &SliceTask,
    items: &mut [ItemOutcome],
    checked: &mut Checked,
) -> Result<(), DiscoveryError> {
    use std::collections::HashSet;
    let Checked {
        listed,
        telemetry_left,
    } = checked;
    for o in items.iter_mut() {
        let cancelled_skip = crate::domain::lifecycle::is_cancelled_skip(&o.status);
        // Gone from the live share is checked here; the share's snapshots are the follow-up's.
        let in_snapshots = matches!(o.status, ItemStatus::InShareSnapshots { .. });
        if !matches!(o.status, ItemStatus::Deleted { .. }) && !cancelled_skip && !in_snapshots {
            continue;
        }
        let seen: Option<&str> = match &o.item {
            Item::Blob {
                account,
                container,
                name,
                ..
            } => {
                let key = folder_key(account, container, name);
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
                    *telemetry_left = Some(left);
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
            (None, _) if in_snapshots => continue,
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
