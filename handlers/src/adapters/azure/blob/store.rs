//! The [`BlobStore`] port on [`AzureBlobStore`]: each method composed from the rooms beside it
//! (clients in the parent module, [`super::links`], [`super::erase`], [`super::batch`]).

use super::*;

#[async_trait]
impl BlobStore for AzureBlobStore {
    async fn read_link(
        &self,
        blob: &BlobRef,
        expiry: time::Duration,
    ) -> StoreResult<Option<String>> {
        Ok(Some(
            AzureBlobStore::read_link(self, blob, Some(expiry))
                .await?
                .to_string(),
        ))
    }

    fn kind(&self) -> &'static str {
        "azure-blob"
    }

    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()> {
        let acct = self.account(account)?;
        match acct
            .service
            .blob_container_client(container)
            .create(None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(map_err(
                e,
                &format!("create container {account}/{container}"),
            )),
        }
    }

    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>> {
        let acct = self.account(account)?;
        let options = BlobServiceClientListContainersOptions {
            // An empty `prefix=` is signed differently by Shared Key and the service: leave it out.
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            ..Default::default()
        };
        let what = format!("list containers of {account}");
        let mut pages = acct
            .service
            .list_containers(Some(options))
            .map_err(|e| map_err(e, &what))?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| map_err(e, &what))? {
            let page = page
                .into_model()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
            out.extend(page.container_items.into_iter().filter_map(|c| c.name));
        }
        Ok(out)
    }

    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome> {
        let policy = self.retention_policy(account).await?;
        let acct = self.account(account)?;
        match acct
            .service
            .blob_container_client(container)
            .delete(None)
            .await
        {
            // Blobs of a deleted container follow the blob soft-delete policy; container soft
            // delete is a management-plane setting, covered by `retention_override` if used.
            Ok(_) => Ok(policy.outcome(OffsetDateTime::now_utc(), false)),
            Err(e) if status_of(&e) == Some(404) => Ok(DeleteOutcome::NotFound),
            Err(e) => Err(map_err(
                e,
                &format!("delete container {account}/{container}"),
            )),
        }
    }

    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        let acct = self.account(account)?;
        let what = format!("list {account}/{container}");
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            marker,
            maxresults: Some(max_results.clamp(1, 5000) as i32),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        let container_client = acct.service.blob_container_client(container);
        // One request, retried by the pipeline alone (see `adapters::azure::retry`).
        let mut pages = container_client
            .list_blobs(Some(options))
            .map_err(|e| map_err(e, &what))?
            .into_pages();
        let page = match pages.try_next().await.map_err(|e| map_err(e, &what))? {
            Some(p) => p
                .into_model()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?,
            None => Default::default(),
        };
        let items = page
            .blob_items
            .into_iter()
            .filter_map(|b| {
                let name = b.name?;
                let props = b.properties.unwrap_or_default();
                Some(BlobItem {
                    name,
                    size: props.content_length.unwrap_or(0),
                    etag: etag_string(props.etag),
                    content_type: props.content_type,
                    last_modified: props.last_modified,
                    metadata: b
                        .metadata
                        .and_then(|m| m.values)
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                })
            })
            .collect();
        Ok(ListPage {
            items,
            next: page.next_marker.filter(|m| !m.is_empty()),
        })
    }

    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader> {
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_client(&blob.container, &blob.name);
        let options = BlobClientDownloadOptions {
            // Ranged GETs of READ_CHUNK, two in flight: memory stays bounded whatever the size.
            parallel: std::num::NonZero::new(2),
            partition_size: std::num::NonZero::new(READ_CHUNK),
            ..Default::default()
        };
        let what = format!("read {blob}");
        let result = client
            .download(Some(options))
            .await
            .map_err(|e| map_err(e, &what))?;
        let content_range = result
            .headers
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                "content-range",
            ))
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.parse::<u64>().ok());
        let props = BlobProps {
            size: content_range
                .or(result.properties.content_length)
                .unwrap_or(0),
            etag: etag_string(result.properties.etag.clone()),
            content_type: result.properties.content_type.clone(),
        };
        let body = result.body.map_err(move |e| map_err_unretried(&e, &what));
        Ok(BlobReader {
            props,
            body: Box::pin(body),
        })
    }

    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        content_type: &str,
        condition: Condition,
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_client(&blob.container, &blob.name);
        let mut options = BlobClientUploadOptions {
            blob_content_type: Some(content_type.to_string()),
            metadata: (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect()),
            ..Default::default()
        };
        match &condition {
            Condition::None => {}
            Condition::IfNotExists => options.if_none_match = Some(Etag::from("*")),
            Condition::IfMatch(etag) => options.if_match = Some(Etag::from(etag.clone())),
        }
        let what = format!("put {blob}");
        match client.upload(body.into(), Some(options)).await {
            Ok(r) => Ok(etag_string(r.etag)),
            Err(e) => Err(match (map_err(e, &what), &condition) {
                // Azure answers 409 to If-None-Match `*`, some emulators 412: same meaning.
                (StoreError::ConditionFailed(m), Condition::IfNotExists) => {
                    StoreError::AlreadyExists(m)
                }
                (other, _) => other,
            }),
        }
    }

    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()> {
        let src_acct = self.account(&src.account)?;
        let dst_acct = self.account(&dst.account)?;
        // The service, not us, reads the source: give it a short read-only SAS.
        let res = SasResource::Blob {
            container: &src.container,
            name: &src.name,
        };
        let sas = self
            .sas_for(&src.account, &src_acct, &res, COPY_SOURCE_SAS)
            .await?;
        let source = sas::with_sas(blob_url(&src_acct.url, &src.container, &src.name), &sas);
        let client = dst_acct.service.blob_client(&dst.container, &dst.name);
        let what = format!("copy {src} -> {dst}");
        let started = client
            .start_copy_from_url(source.to_string(), None)
            .await
            .map_err(|e| map_err(e, &what))?;
        let mut status = started
            .copy_status()
            .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
        let deadline = Instant::now() + self.cfg.copy_timeout;
        loop {
            match status {
                Some(CopyStatus::Success) | None => return Ok(()),
                Some(CopyStatus::Failed) | Some(CopyStatus::Aborted) => {
                    let props = client.get_properties(None).await.ok();
                    let desc = props
                        .and_then(|p| p.copy_status_description().ok().flatten())
                        .unwrap_or_default();
                    return Err(StoreError::Transient(format!(
                        "{what}: copy did not complete: {desc}"
                    )));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(StoreError::Transient(format!(
                    "{what}: copy still pending after timeout"
                )));
            }
            tokio::time::sleep(self.cfg.copy_poll).await;
            let props = client
                .get_properties(None)
                .await
                .map_err(|e| map_err(e, &what))?;
            status = props
                .copy_status()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
        }
    }

    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome> {
        // Each request of the delete is retried by the pipeline; a failure that spent those
        // retries is not worth repeating the whole delete for at once (see `adapters::azure::retry`).
        self.delete_once(blob, &AtomicBool::new(false)).await
    }

    /// One listing of the blob's name with `include=deleted,snapshots,versions` (List Blobs,
    /// REST API 2019-12-12+: soft-deleted entries carry `Deleted`, `DeletedTime` and
    /// `RemainingRetentionDays`; versions `VersionId`/`IsCurrentVersion`; snapshots `Snapshot`).
    /// An account or emulator refusing `versions` (400/501) is asked again without it.
    async fn recoverable(&self, blob: &BlobRef, _now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_container_client(&blob.container);
        let what = format!("list recoverable {blob}");
        let mut with_versions = true;
        'attempt: loop {
            let mut include = vec![
                ListBlobsIncludeItem::Deleted,
                ListBlobsIncludeItem::Snapshots,
            ];
            if with_versions {
                include.push(ListBlobsIncludeItem::Versions);
            }
            let options = BlobContainerClientListBlobsOptions {
                prefix: Some(blob.name.clone()),
                include: Some(include),
                maxresults: Some(5000),
                ..Default::default()
            };
            let mut pages = client
                .list_blobs(Some(options))
                .map_err(|e| map_err(e, &what))?
                .into_pages();
            let mut out = Vec::new();
            loop {
                let page = match pages.try_next().await {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(out),
                    Err(e) if with_versions && matches!(status_of(&e), Some(400 | 501)) => {
                        with_versions = false;
                        continue 'attempt;
                    }
                    Err(e) => return Err(map_err(e, &what)),
                };
                let page = page
                    .into_model()
                    .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
                for item in page.blob_items {
                    if item.name.as_deref() != Some(blob.name.as_str()) {
                        continue;
                    }
                    let props = item.properties.unwrap_or_default();
                    out.push(if item.deleted == Some(true) {
                        match (props.deleted_time, props.remaining_retention_days) {
                            (Some(t), Some(d)) => format!(
                                "soft-deleted copy (deleted {t}, {d} day(s) of retention left)"
                            ),
                            (Some(t), None) => format!("soft-deleted copy (deleted {t})"),
                            _ => "soft-deleted copy".to_string(),
                        }
                    } else if let Some(s) = item.snapshot {
                        format!("snapshot {s}")
                    } else if let (Some(v), false) =
                        (item.version_id, item.is_current_version == Some(true))
                    {
                        format!("previous version {v}")
                    } else {
                        "the blob itself (present again: restored or re-created)".to_string()
                    });
                }
            }
        }
    }

    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        let policy = self.retention_policy(account).await?;
        let acct = self.account(account)?;
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(BATCH_MAX) {
            // Retries a response missing items; the request itself is the pipeline's to retry.
            let statuses = with_retries(&self.cfg.retry, "blob batch", || {
                self.batch_delete(&acct, container, chunk)
            })
            .await?;
            for (name, (status, code)) in chunk.iter().zip(statuses) {
                let blob = BlobRef::new(account, container, name.clone());
                out.push(match status {
                    202 => Ok(DeleteOutcome::Deleted),
                    404 => Ok(DeleteOutcome::NotFound),
                    s => Err(map_status(s, code.as_deref(), &format!("delete {blob}"))),
                });
            }
        }
        // Versions and soft-deleted pieces are not reachable by the batched deletes. One listing
        // of the names' common prefix finds them for the whole batch (not one listing per blob).
        let found: Vec<usize> = out
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.is_ok().then_some(i))
            .collect();
        let found_names: Vec<String> = found.iter().map(|&i| names[i].clone()).collect();
        let leftovers = self
            .purge_leftovers_many(&acct, account, container, &found_names, &policy)
            .await?;
        let mut updates = Vec::with_capacity(found.len());
        for (i, (leftovers, purged)) in found.into_iter().zip(leftovers) {
            let was_found = !matches!(out[i], Ok(DeleteOutcome::NotFound));
            let outcome = if !was_found && !leftovers {
                DeleteOutcome::NotFound
            } else {
                policy.outcome(OffsetDateTime::now_utc(), purged)
            };
            updates.push((i, outcome));
        }
        for (i, outcome) in updates {
            out[i] = Ok(outcome);
        }
        Ok(out)
    }

    async fn stage_block(&self, blob: &BlobRef, block_id: &str, body: Bytes) -> StoreResult<()> {
        crate::ports::blob::check_block_id(block_id)?;
        let acct = self.account(&blob.account)?;
        let client = acct
            .service
            .blob_client(&blob.container, &blob.name)
            .block_blob_client();
        let len = body.len() as u64;
        client
            .stage_block(block_id.as_bytes(), len, body.into(), None)
            .await
            .map(|_| ())
            .map_err(|e| map_err(e, &format!("stage block {block_id} of {blob}")))
    }

    async fn commit_blocks(
        &self,
        blob: &BlobRef,
        block_ids: &[String],
        content_type: &str,
    ) -> StoreResult<String> {
        let acct = self.account(&blob.account)?;
        let client = acct
            .service
            .blob_client(&blob.container, &blob.name)
            .block_blob_client();
        let what = format!("commit {} blocks of {blob}", block_ids.len());
        let list = BlockLookupList {
            latest: Some(block_ids.iter().map(|id| id.as_bytes().to_vec()).collect()),
            ..Default::default()
        };
        let content = list
            .try_into()
            .map_err(|e: azure_core::Error| StoreError::Other(format!("{what}: {e}")))?;
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(content_type.to_string()),
            ..Default::default()
        };
        match client.commit_block_list(content, Some(options)).await {
            Ok(r) => Ok(etag_string(r.etag().ok().flatten())),
            Err(e) => Err(map_err(e, &what)),
        }
    }
}
