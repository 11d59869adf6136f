//! A [`BlobStore`] wrapper that counts calls at the adapter boundary, per account and kind
//! (read / mutate). Proves "dry run performs zero mutating calls" and feeds benchmarks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::ports::blob::*;
use crate::ports::blob_layer::BlobLayer;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub reads: u64,
    pub mutations: u64,
}

pub struct CountingStore {
    inner: Arc<dyn BlobStore>,
    counts: Mutex<BTreeMap<String, CallCounts>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Self {
            inner,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Calls so far, by account.
    pub fn counts(&self) -> BTreeMap<String, CallCounts> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn read(&self, account: &str) {
        if let Ok(mut c) = self.counts.lock() {
            c.entry(account.to_string()).or_default().reads += 1;
        }
    }

    fn mutate(&self, account: &str, n: u64) {
        if let Ok(mut c) = self.counts.lock() {
            c.entry(account.to_string()).or_default().mutations += n;
        }
    }
}

/// Counts and forwards; `read_link` (no storage call) and `kind` forward uncounted through
/// [`BlobLayer`]'s defaults.
#[async_trait]
impl BlobLayer for CountingStore {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()> {
        self.mutate(account, 1);
        self.inner.create_container(account, container).await
    }
    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>> {
        self.read(account);
        self.inner.list_containers(account, prefix).await
    }
    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome> {
        self.mutate(account, 1);
        self.inner.delete_container(account, container).await
    }
    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max: u32,
    ) -> StoreResult<ListPage> {
        self.read(account);
        self.inner
            .list_page(account, container, prefix, marker, max)
            .await
    }
    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader> {
        self.read(&blob.account);
        self.inner.open(blob).await
    }
    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        ct: &str,
        cond: Condition,
        md: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        self.mutate(&blob.account, 1);
        self.inner.put(blob, body, ct, cond, md).await
    }
    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()> {
        self.read(&src.account);
        self.mutate(&dst.account, 1);
        self.inner.copy(src, dst).await
    }
    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome> {
        self.mutate(&blob.account, 1);
        self.inner.delete(blob).await
    }
    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        self.mutate(account, names.len() as u64);
        self.inner.delete_many(account, container, names).await
    }
    async fn stage_block(&self, blob: &BlobRef, id: &str, body: Bytes) -> StoreResult<()> {
        self.mutate(&blob.account, 1);
        self.inner.stage_block(blob, id, body).await
    }
    async fn commit_blocks(&self, blob: &BlobRef, ids: &[String], ct: &str) -> StoreResult<String> {
        self.mutate(&blob.account, 1);
        self.inner.commit_blocks(blob, ids, ct).await
    }
}
