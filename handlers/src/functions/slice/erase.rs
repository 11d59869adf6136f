//! The delete half of a slice: blobs in Blob Batch calls (a bounded number in flight),
//! resources through the control plane, notebook files and then the folders they emptied.

use super::*;

/// After the subject's files are deleted: their folders under the notebook prefixes, deepest
/// first, the `Users/<alias>` folder itself last. A folder something is left in (a held or
/// failed file, a file written meanwhile) stays; verification reports what is left.
pub(super) async fn remove_emptied_folders(
    svc: &Services,
    task: &SliceTask,
) -> Result<(), DiscoveryError> {
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

pub(super) fn delete_status(o: DeleteOutcome) -> ItemStatus {
    match o {
        // Already gone (an earlier delivery deleted it): verification confirms.
        DeleteOutcome::Deleted | DeleteOutcome::NotFound => ItemStatus::Deleted { verified: false },
        DeleteOutcome::Retained { until } => ItemStatus::RetainedUntil { until },
    }
}

/// A file deleted from a share that has snapshots is not erased yet: each snapshot taken while
/// it existed still holds it. Asked once per share, after the deletes (a snapshot taken during
/// them is seen too); the item then says so, with the date the follow-up re-checks it (share
/// snapshots have no expiry to wait for). Snapshots that cannot be listed are reported as such,
/// never as "none".
async fn share_snapshots(
    svc: &Services,
    entries: &[InventoryEntry],
    statuses: &mut [Option<ItemStatus>],
) -> Result<(), FnError> {
    let recheck_on = time::OffsetDateTime::now_utc()
        + time::Duration::days(i64::from(svc.settings.share_snapshot_recheck_days));
    let mut known: BTreeMap<(String, String), Option<u32>> = BTreeMap::new();
    for (e, status) in entries.iter().zip(statuses.iter_mut()) {
        let Item::File { account, share, .. } = &e.item else {
            continue;
        };
        if !matches!(status, Some(ItemStatus::Deleted { .. })) {
            continue;
        }
        let key = (account.clone(), share.clone());
        let snapshots = match known.get(&key) {
            Some(n) => *n,
            None => {
                let n = match svc.files.retention(account, share).await {
                    Ok(r) => Some(u32::try_from(r.snapshots.len()).unwrap_or(u32::MAX)),
                    Err(e) if e.is_transient() => return Err(FnError::Transient(e.to_string())),
                    Err(e) => {
                        warn!(error = %e, "slice: the share's snapshots could not be listed after a delete");
                        None
                    }
                };
                known.insert(key, n);
                n
            }
        };
        if snapshots != Some(0) {
            *status = Some(ItemStatus::InShareSnapshots {
                snapshots,
                recheck_on,
            });
        }
    }
    Ok(())
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

pub(super) async fn delete(
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
    share_snapshots(svc, entries, &mut statuses).await?;
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
        for (i, status) in crate::functions::telemetry_purges::purge_for_slice(
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
