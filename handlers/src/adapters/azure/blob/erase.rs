//! Complete erasure of a blob: the base blob, then what versioning and soft delete keep
//! (versions, snapshots), judged against the account's soft-delete policy (cached), so the
//! [`DeleteOutcome`] of a delete tells the truth.

use super::*;

impl AzureBlobStore {
    /// The account's soft-delete policy (cached for a few minutes).
    pub(crate) async fn retention_policy(&self, account: &str) -> StoreResult<RetentionPolicy> {
        if let Some(p) = self.cfg.retention_override {
            return Ok(p);
        }
        if let Some((at, p)) = self.retention.lock().expect("retention lock").get(account) {
            if at.elapsed() < RETENTION_TTL {
                return Ok(*p);
            }
        }
        let acct = self.account(account)?;
        // One request, retried by the pipeline alone (see `adapters::azure::retry`).
        let props = acct
            .service
            .get_properties(None)
            .await
            .map_err(|e| map_err(e, &format!("service properties of {account}")))?
            .into_model()
            .map_err(|e| StoreError::Other(format!("service properties of {account}: {e}")))?;
        let policy = match props.delete_retention_policy {
            Some(r) if r.enabled == Some(true) => RetentionPolicy {
                enabled: true,
                days: r.days.unwrap_or(0).max(0) as u32,
                allow_permanent_delete: r.allow_permanent_delete.unwrap_or(false),
            },
            _ => RetentionPolicy::OFF,
        };
        self.retention
            .lock()
            .expect("retention lock")
            .insert(account.to_string(), (Instant::now(), policy));
        Ok(policy)
    }

    /// [`Self::purge_leftovers`] for many blobs of one container, with one listing of their
    /// longest common prefix instead of one per blob. Listings come in name order, so if the
    /// prefix holds much more than these blobs (the listing passes a budget), the names not yet
    /// reached fall back to one listing each. Same result per name as `purge_leftovers`.
    pub(super) async fn purge_leftovers_many(
        &self,
        acct: &Arc<Account>,
        account: &str,
        container: &str,
        names: &[String],
        policy: &RetentionPolicy,
    ) -> StoreResult<Vec<(bool, bool)>> {
        let permanent = policy.enabled && policy.allow_permanent_delete;
        if names.is_empty() || (self.cfg.versioning == Versioning::Off && !permanent) {
            return Ok(vec![(false, false); names.len()]);
        }
        let per_name = |names: Vec<(usize, String)>| async move {
            futures::stream::iter(names)
                .map(|(i, name)| async move {
                    let blob = BlobRef::new(account, container, name);
                    Ok::<_, StoreError>((i, self.purge_leftovers(acct, &blob, policy).await?))
                })
                .buffer_unordered(8)
                .try_collect::<Vec<_>>()
                .await
        };
        if names.len() == 1 {
            return Ok(per_name(vec![(0, names[0].clone())])
                .await?
                .into_iter()
                .map(|(_, r)| r)
                .collect());
        }
        let prefix = common_prefix(names);
        let mut include = vec![ListBlobsIncludeItem::Versions];
        if permanent {
            include.extend([
                ListBlobsIncludeItem::Snapshots,
                ListBlobsIncludeItem::Deleted,
            ]);
        }
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let budget = (names.len() * 8).max(5000);
        let client = acct.service.blob_container_client(container);
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            include: Some(include),
            maxresults: Some(5000),
            ..Default::default()
        };
        let what = format!("list versions {account}/{container}/{prefix}*");
        let mut pages = client
            .list_blobs(Some(options))
            .map_err(|e| map_err(e, &what))?
            .into_pages();
        let mut leftovers: Vec<Vec<Piece>> = vec![Vec::new(); names.len()];
        let mut scanned = 0usize;
        // Every name up to and including this one has been seen by the listing.
        let mut covered_up_to: Option<String> = None;
        let mut complete = false;
        loop {
            let page = match pages.try_next().await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    complete = true;
                    break;
                }
                // An emulator or account without versioning may reject include=versions.
                Err(e) if matches!(status_of(&e), Some(400 | 501)) => {
                    return Ok(vec![(false, false); names.len()])
                }
                Err(e) => return Err(map_err(e, &what)),
            };
            let page = page
                .into_model()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
            let more = page.next_marker.as_deref().is_some_and(|m| !m.is_empty());
            for item in page.blob_items {
                scanned += 1;
                let Some(name) = item.name else { continue };
                if let Some(&i) = index.get(name.as_str()) {
                    if item.version_id.is_some() || item.snapshot.is_some() {
                        leftovers[i].push((item.version_id, item.snapshot));
                    }
                }
                covered_up_to = Some(name);
            }
            if !more {
                complete = true;
                break;
            }
            if scanned > budget {
                break;
            }
        }
        // Names the listing did not reach: one listing each. A name equal to the last one seen
        // may have more versions on the next page, so it is not covered either.
        let uncovered: Vec<(usize, String)> = if complete {
            Vec::new()
        } else {
            names
                .iter()
                .enumerate()
                .filter(|(_, n)| covered_up_to.as_deref().is_none_or(|c| n.as_str() >= c))
                .map(|(i, n)| (i, n.clone()))
                .collect()
        };
        let mut result = vec![(false, false); names.len()];
        for &(i, _) in &uncovered {
            leftovers[i].clear();
        }
        for (i, r) in per_name(uncovered).await? {
            result[i] = r;
        }
        let deletes: Vec<(usize, Vec<Piece>)> = leftovers
            .into_iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .collect();
        let done: Vec<(usize, (bool, bool))> = futures::stream::iter(deletes)
            .map(|(i, pieces)| async move {
                let blob = BlobRef::new(account, container, names[i].clone());
                self.delete_pieces(acct, &blob, pieces, permanent).await?;
                Ok::<_, StoreError>((i, (true, permanent)))
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        for (i, r) in done {
            result[i] = r;
        }
        Ok(result)
    }

    /// After the base blob is gone: remove what versioning and soft delete keep. Returns
    /// (found any version or snapshot, all of them permanently removed).
    pub(super) async fn purge_leftovers(
        &self,
        acct: &Account,
        blob: &BlobRef,
        policy: &RetentionPolicy,
    ) -> StoreResult<(bool, bool)> {
        let permanent = policy.enabled && policy.allow_permanent_delete;
        if self.cfg.versioning == Versioning::Off && !permanent {
            return Ok((false, false));
        }
        let mut include = vec![ListBlobsIncludeItem::Versions];
        if permanent {
            include.extend([
                ListBlobsIncludeItem::Snapshots,
                ListBlobsIncludeItem::Deleted,
            ]);
        }
        let container = acct.service.blob_container_client(&blob.container);
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(blob.name.clone()),
            include: Some(include),
            ..Default::default()
        };
        let pager = container
            .list_blobs(Some(options))
            .map_err(|e| map_err(e, &format!("list versions {blob}")))?;
        let mut pages = pager.into_pages();
        let mut leftovers = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // An emulator or account without versioning may reject include=versions.
                Err(e) if matches!(status_of(&e), Some(400 | 501)) => return Ok((false, false)),
                Err(e) => return Err(map_err(e, &format!("list versions {blob}"))),
            };
            let page = page
                .into_model()
                .map_err(|e| StoreError::Other(format!("list versions {blob}: {e}")))?;
            for item in page.blob_items {
                if item.name.as_deref() != Some(blob.name.as_str()) {
                    continue;
                }
                if item.version_id.is_some() || item.snapshot.is_some() {
                    leftovers.push((item.version_id, item.snapshot));
                }
            }
        }
        let found = !leftovers.is_empty();
        self.delete_pieces(acct, blob, leftovers, permanent).await?;
        Ok((found, found && permanent))
    }

    /// Delete the given versions/snapshots of `blob` (soft, then permanently if `permanent`).
    pub(super) async fn delete_pieces(
        &self,
        acct: &Account,
        blob: &BlobRef,
        leftovers: Vec<Piece>,
        permanent: bool,
    ) -> StoreResult<()> {
        let client = acct.service.blob_client(&blob.container, &blob.name);
        for (version_id, snapshot) in leftovers {
            let target = |delete_type: Option<BlobDeleteType>| BlobClientDeleteOptions {
                version_id: version_id.clone(),
                snapshot: snapshot.clone(),
                blob_delete_type: delete_type,
                ..Default::default()
            };
            // Soft delete first (a no-op error if already soft-deleted), then permanently.
            match client.delete(Some(target(None))).await {
                Ok(_) => {}
                Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
                Err(e) => return Err(map_err(e, &format!("delete version of {blob}"))),
            }
            if permanent {
                match client
                    .delete(Some(target(Some(BlobDeleteType::Permanent))))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if status_of(&e) == Some(404) => {}
                    Err(e) => {
                        return Err(map_err(e, &format!("permanently delete version of {blob}")))
                    }
                }
            }
        }
        Ok(())
    }

    /// `deleted_earlier` survives retries: if an earlier attempt removed the base blob and then
    /// failed, the retry's 404 must not turn into `NotFound`.
    pub(super) async fn delete_once(
        &self,
        blob: &BlobRef,
        deleted_earlier: &AtomicBool,
    ) -> StoreResult<DeleteOutcome> {
        // Read the policy before deleting: if it cannot be known, do not delete and then lie.
        let policy = self.retention_policy(&blob.account).await?;
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_client(&blob.container, &blob.name);
        let options = BlobClientDeleteOptions {
            delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
            ..Default::default()
        };
        let base_found = match client.delete(Some(options)).await {
            Ok(_) => {
                deleted_earlier.store(true, Ordering::SeqCst);
                true
            }
            Err(e) if status_of(&e) == Some(404) => deleted_earlier.load(Ordering::SeqCst),
            Err(e) => return Err(map_err(e, &format!("delete {blob}"))),
        };
        let (leftovers, purged) = self.purge_leftovers(&acct, blob, &policy).await?;
        if !base_found && !leftovers {
            return Ok(DeleteOutcome::NotFound);
        }
        Ok(policy.outcome(OffsetDateTime::now_utc(), purged))
    }
}

/// A version or snapshot of a blob: (version id, snapshot).
pub(super) type Piece = (Option<String>, Option<String>);

/// Longest common prefix of `names` (on char boundaries).
pub(super) fn common_prefix(names: &[String]) -> &str {
    let Some(first) = names.first() else {
        return "";
    };
    let mut end = first.len();
    for n in &names[1..] {
        end = first
            .char_indices()
            .zip(n.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(end);
    }
    &first[..end]
}
