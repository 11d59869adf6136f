//! In-memory blob store: the blob port with no I/O at all, for measuring the handler's own
//! overhead (the bench's "handler, storage excluded" row) and for tests that need a store but
//! not its durability. Same semantics as the file store where the pipeline relies on them:
//! validated names, conditional writes, ordered paged listings, containers created on first
//! write. Deletes are always permanent (no soft-delete policy); nothing survives the process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use super::fs_blob::{validate_account, validate_container, validate_name};
use crate::ports::blob::*;

#[derive(Clone)]
struct Entry {
    body: Bytes,
    etag: String,
    content_type: String,
    modified: OffsetDateTime,
    metadata: BTreeMap<String, String>,
}

type Container = BTreeMap<String, Entry>;

#[derive(Default)]
pub struct MemoryBlobStore {
    /// (account, container) -> blobs by name. One lock: operations are short and never await.
    data: Mutex<BTreeMap<(String, String), Container>>,
    etags: AtomicU64,
    /// Blocks staged and not yet committed, by blob and block id (as Azure keeps them).
    staged: Mutex<BTreeMap<(BlobRef, String), Bytes>>,
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(account: &str, container: &str) -> StoreResult<(String, String)> {
        validate_account(account)?;
        validate_container(container)?;
        Ok((account.to_string(), container.to_string()))
    }

    fn blob_key(blob: &BlobRef) -> StoreResult<(String, String)> {
        validate_name(&blob.name)?;
        Self::key(&blob.account, &blob.container)
    }

    fn next_etag(&self) -> String {
        format!("\"m{}\"", self.etags.fetch_add(1, Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Container>> {
        // A panic while holding the lock cannot leave a half-written entry (inserts are single
        // map operations), so a poisoned lock is still consistent.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()> {
        let key = Self::key(account, container)?;
        self.lock().entry(key).or_default();
        Ok(())
    }

    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>> {
        validate_account(account)?;
        Ok(self
            .lock()
            .keys()
            .filter(|(a, c)| a == account && c.starts_with(prefix))
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome> {
        let key = Self::key(account, container)?;
        Ok(match self.lock().remove(&key) {
            Some(_) => DeleteOutcome::Deleted,
            None => DeleteOutcome::NotFound,
        })
    }

    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        let key = Self::key(account, container)?;
        let data = self.lock();
        let Some(blobs) = data.get(&key) else {
            return Ok(ListPage::default());
        };
        let max = max_results.max(1) as usize;
        let start = marker.unwrap_or_default();
        let mut items: Vec<BlobItem> = blobs
            .range::<String, _>((
                std::ops::Bound::Excluded(&start),
                std::ops::Bound::Unbounded,
            ))
            .filter(|(n, _)| n.starts_with(prefix))
            .take(max + 1)
            .map(|(name, e)| BlobItem {
                name: name.clone(),
                size: e.body.len() as u64,
                etag: e.etag.clone(),
                content_type: Some(e.content_type.clone()),
                last_modified: Some(e.modified),
                metadata: e.metadata.clone(),
            })
            .collect();
        let next = if items.len() > max {
            items.pop();
            items.last().map(|i| i.name.clone())
        } else {
            None
        };
        Ok(ListPage { items, next })
    }

    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader> {
        let key = Self::blob_key(blob)?;
        let entry = self
            .lock()
            .get(&key)
            .and_then(|c| c.get(&blob.name))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(blob.to_string()))?;
        Ok(BlobReader {
            props: BlobProps {
                size: entry.body.len() as u64,
                etag: entry.etag,
                content_type: Some(entry.content_type),
            },
            body: Box::pin(futures::stream::iter([Ok(entry.body)])),
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
        let key = Self::blob_key(blob)?;
        let etag = self.next_etag();
        let mut data = self.lock();
        let blobs = data.entry(key).or_default();
        match (&condition, blobs.get(&blob.name)) {
            (Condition::IfNotExists, Some(_)) => {
                return Err(StoreError::AlreadyExists(blob.to_string()))
            }
            (Condition::IfMatch(want), Some(e)) if &e.etag != want => {
                return Err(StoreError::ConditionFailed(blob.to_string()))
            }
            (Condition::IfMatch(_), None) => {
                return Err(StoreError::ConditionFailed(blob.to_string()))
            }
            _ => {}
        }
        blobs.insert(
            blob.name.clone(),
            Entry {
                body,
                etag: etag.clone(),
                content_type: content_type.to_string(),
                modified: OffsetDateTime::now_utc(),
                metadata: metadata.clone(),
            },
        );
        Ok(etag)
    }

    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()> {
        let src_key = Self::blob_key(src)?;
        let dst_key = Self::blob_key(dst)?;
        let etag = self.next_etag();
        let mut data = self.lock();
        let mut entry = data
            .get(&src_key)
            .and_then(|c| c.get(&src.name))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(src.to_string()))?;
        entry.etag = etag;
        entry.modified = OffsetDateTime::now_utc();
        data.entry(dst_key)
            .or_default()
            .insert(dst.name.clone(), entry);
        Ok(())
    }

    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome> {
        let key = Self::blob_key(blob)?;
        Ok(
            match self.lock().get_mut(&key).and_then(|c| c.remove(&blob.name)) {
                Some(_) => DeleteOutcome::Deleted,
                None => DeleteOutcome::NotFound,
            },
        )
    }

    /// No soft delete in memory: only the blob itself can be there.
    async fn recoverable(&self, blob: &BlobRef, _now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let key = Self::blob_key(blob)?;
        let present = self
            .lock()
            .get(&key)
            .is_some_and(|c| c.contains_key(&blob.name));
        Ok(if present {
            vec!["the blob itself (present again: restored or re-created)".to_string()]
        } else {
            Vec::new()
        })
    }

    /// No links locally: the export is read from the store directly.
    async fn read_link(
        &self,
        _blob: &BlobRef,
        _expiry: time::Duration,
    ) -> StoreResult<Option<String>> {
        Ok(None)
    }

    /// No batch API: one delete per name.
    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        delete_one_by_one(self, account, container, names).await
    }

    async fn stage_block(&self, blob: &BlobRef, block_id: &str, body: Bytes) -> StoreResult<()> {
        Self::blob_key(blob)?;
        check_block_id(block_id)?;
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((blob.clone(), block_id.to_string()), body);
        Ok(())
    }

    async fn commit_blocks(
        &self,
        blob: &BlobRef,
        block_ids: &[String],
        content_type: &str,
    ) -> StoreResult<String> {
        let key = Self::blob_key(blob)?;
        let body = {
            let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
            let mut body = Vec::new();
            for id in block_ids {
                let block = staged
                    .get(&(blob.clone(), id.clone()))
                    .ok_or_else(|| StoreError::Other(format!("{blob}: block {id} not staged")))?;
                body.extend_from_slice(block);
            }
            // Committing discards every other uncommitted block of the blob, as Azure does.
            staged.retain(|(b, _), _| b != blob);
            Bytes::from(body)
        };
        let etag = self.next_etag();
        self.lock().entry(key).or_default().insert(
            blob.name.clone(),
            Entry {
                body,
                etag: etag.clone(),
                content_type: content_type.to_string(),
                modified: OffsetDateTime::now_utc(),
                metadata: BTreeMap::new(),
            },
        );
        Ok(etag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::blob::BlobStoreExt;

    fn b(name: &str) -> BlobRef {
        BlobRef::new("acct", "cont", name)
    }

    async fn put(
        s: &MemoryBlobStore,
        name: &str,
        body: &'static [u8],
        c: Condition,
    ) -> StoreResult<String> {
        s.put(
            &b(name),
            Bytes::from_static(body),
            "application/json",
            c,
            &BTreeMap::new(),
        )
        .await
    }

    #[tokio::test]
    async fn conditional_writes() {
        let s = MemoryBlobStore::new();
        let e1 = put(&s, "a/b.json", b"1", Condition::IfNotExists)
            .await
            .unwrap();
        assert!(matches!(
            put(&s, "a/b.json", b"2", Condition::IfNotExists).await,
            Err(StoreError::AlreadyExists(_))
        ));
        let e2 = put(&s, "a/b.json", b"22", Condition::IfMatch(e1.clone()))
            .await
            .unwrap();
        assert_ne!(e1, e2);
        assert!(matches!(
            put(&s, "a/b.json", b"3", Condition::IfMatch(e1)).await,
            Err(StoreError::ConditionFailed(_))
        ));
        assert!(matches!(
            put(&s, "nope.json", b"3", Condition::IfMatch(e2)).await,
            Err(StoreError::ConditionFailed(_))
        ));
        assert_eq!(
            s.read_small(&b("a/b.json")).await.unwrap().0,
            Bytes::from_static(b"22")
        );
    }

    #[tokio::test]
    async fn paging_is_ordered_and_prefix_scoped() {
        let s = MemoryBlobStore::new();
        for i in (0..25).rev() {
            put(&s, &format!("p/{i:03}"), b"x", Condition::None)
                .await
                .unwrap();
        }
        put(&s, "q/other", b"x", Condition::None).await.unwrap();
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let page = s.list_page("acct", "cont", "p/", marker, 10).await.unwrap();
            assert!(page.items.len() <= 10);
            names.extend(page.items.into_iter().map(|i| i.name));
            match page.next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let want: Vec<String> = (0..25).map(|i| format!("p/{i:03}")).collect();
        assert_eq!(names, want);
    }

    #[tokio::test]
    async fn hostile_names_rejected_and_deletes_are_exact() {
        let s = MemoryBlobStore::new();
        for bad in ["../x", "/abs", "a//b", "a\\b", ""] {
            assert!(
                matches!(
                    put(&s, bad, b"x", Condition::None).await,
                    Err(StoreError::InvalidName(_))
                ),
                "{bad:?} accepted"
            );
        }
        put(&s, "keep/a", b"x", Condition::None).await.unwrap();
        put(&s, "gone/a", b"x", Condition::None).await.unwrap();
        assert_eq!(
            s.delete(&b("gone/a")).await.unwrap(),
            DeleteOutcome::Deleted
        );
        assert_eq!(
            s.delete(&b("gone/a")).await.unwrap(),
            DeleteOutcome::NotFound
        );
        assert!(s.read_small(&b("keep/a")).await.is_ok());
        s.copy(&b("keep/a"), &b("copy/a")).await.unwrap();
        assert!(matches!(
            s.copy(&b("gone/a"), &b("copy/b")).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
