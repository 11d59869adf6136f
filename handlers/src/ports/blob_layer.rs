//! The one way to wrap a [`BlobStore`]: implement [`BlobLayer`] (name the wrapped store in
//! [`BlobLayer::inner`], override only the calls the wrapper changes) and the blanket
//! `impl BlobStore for L: BlobLayer` below forwards everything else to the wrapped store's SAME
//! method. A wrapper therefore cannot drop a behaviour by forgetting a method (Blob Batch
//! turning into N single deletes, export links disappearing): every hook it does not write
//! forwards, and the forwarding is written once, here. [`BlobStore`] itself keeps no defaults,
//! so a store (file, memory, Azure) still has to implement every method.
//!
//! A wrapper that treats every call alike (fault injection, retries, call recording) overrides
//! [`BlobLayer::around`] instead of each method: it runs around every call with the call's
//! [`Op`], and may start the call once, several times (retries) or not at all (injected faults).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;

use crate::ports::blob::{
    BlobReader, BlobRef, BlobStore, Condition, DeleteOutcome, ListPage, StoreResult,
};

/// A boxed store call, as [`BlobStore`]'s methods return it.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

/// Which [`BlobStore`] method a call is, for [`BlobLayer::around`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateContainer,
    ListContainers,
    DeleteContainer,
    ListPage,
    Open,
    Put,
    Copy,
    Delete,
    ReadLink,
    Recoverable,
    DeleteMany,
    StageBlock,
    CommitBlocks,
}

impl Op {
    /// The method's name (`"delete_many"`), for logs and tests.
    pub fn name(self) -> &'static str {
        match self {
            Op::CreateContainer => "create_container",
            Op::ListContainers => "list_containers",
            Op::DeleteContainer => "delete_container",
            Op::ListPage => "list_page",
            Op::Open => "open",
            Op::Put => "put",
            Op::Copy => "copy",
            Op::Delete => "delete",
            Op::ReadLink => "read_link",
            Op::Recoverable => "recoverable",
            Op::DeleteMany => "delete_many",
            Op::StageBlock => "stage_block",
            Op::CommitBlocks => "commit_blocks",
        }
    }

    /// Whether the call can change stored data.
    pub(crate) fn mutates(self) -> bool {
        matches!(
            self,
            Op::CreateContainer
                | Op::DeleteContainer
                | Op::Put
                | Op::Copy
                | Op::Delete
                | Op::DeleteMany
                | Op::StageBlock
                | Op::CommitBlocks
        )
    }
}

/// A [`BlobStore`] wrapper. Every method has a default that forwards to [`Self::inner`]'s
/// method of the same name; override only what the wrapper changes.
#[async_trait]
pub trait BlobLayer: Send + Sync + 'static {
    /// The wrapped store.
    fn inner(&self) -> &dyn BlobStore;

    fn kind(&self) -> &'static str {
        self.inner().kind()
    }

    /// Runs around every call (after which the call's own hook below runs, inside `call`).
    /// `call` may be started any number of times; the default starts it once.
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        call: &'a (dyn Fn() -> StoreFuture<'a, T> + Send + Sync + 'a),
    ) -> StoreFuture<'a, T> {
        let _ = op;
        call()
    }

    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()> {
        self.inner().create_container(account, container).await
    }

    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner().list_containers(account, prefix).await
    }

    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome> {
        self.inner().delete_container(account, container).await
    }

    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        self.inner()
            .list_page(account, container, prefix, marker, max_results)
            .await
    }

    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader> {
        self.inner().open(blob).await
    }

    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        content_type: &str,
        condition: Condition,
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        self.inner()
            .put(blob, body, content_type, condition, metadata)
            .await
    }

    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()> {
        self.inner().copy(src, dst).await
    }

    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome> {
        self.inner().delete(blob).await
    }

    async fn read_link(
        &self,
        blob: &BlobRef,
        expiry: time::Duration,
    ) -> StoreResult<Option<String>> {
        self.inner().read_link(blob, expiry).await
    }

    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        self.inner().delete_many(account, container, names).await
    }

    async fn recoverable(
        &self,
        blob: &BlobRef,
        now: time::OffsetDateTime,
    ) -> StoreResult<Vec<String>> {
        self.inner().recoverable(blob, now).await
    }

    async fn stage_block(&self, blob: &BlobRef, block_id: &str, body: Bytes) -> StoreResult<()> {
        self.inner().stage_block(blob, block_id, body).await
    }

    async fn commit_blocks(
        &self,
        blob: &BlobRef,
        block_ids: &[String],
        content_type: &str,
    ) -> StoreResult<String> {
        self.inner()
            .commit_blocks(blob, block_ids, content_type)
            .await
    }

    async fn discard_stale_blocks(
        &self,
        account: &str,
        older_than: time::Duration,
    ) -> StoreResult<usize> {
        self.inner().discard_stale_blocks(account, older_than).await
    }
}

/// Each [`BlobStore`] method is [`BlobLayer::around`] its [`Op`], around the layer's hook of the
/// same name. Arguments taken by value are cloned per start of the call (a retry needs them
/// again).
#[async_trait]
impl<L: BlobLayer> BlobStore for L {
    fn kind(&self) -> &'static str {
        BlobLayer::kind(self)
    }

    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()> {
        let call = || BlobLayer::create_container(self, account, container);
        self.around(Op::CreateContainer, &call).await
    }

    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>> {
        let call = || BlobLayer::list_containers(self, account, prefix);
        self.around(Op::ListContainers, &call).await
    }

    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome> {
        let call = || BlobLayer::delete_container(self, account, container);
        self.around(Op::DeleteContainer, &call).await
    }

    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        let call = || {
            BlobLayer::list_page(
                self,
                account,
                container,
                prefix,
                marker.clone(),
                max_results,
            )
        };
        self.around(Op::ListPage, &call).await
    }

    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader> {
        let call = || BlobLayer::open(self, blob);
        self.around(Op::Open, &call).await
    }

    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        content_type: &str,
        condition: Condition,
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        let call = || {
            BlobLayer::put(
                self,
                blob,
                body.clone(),
                content_type,
                condition.clone(),
                metadata,
            )
        };
        self.around(Op::Put, &call).await
    }

    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()> {
        let call = || BlobLayer::copy(self, src, dst);
        self.around(Op::Copy, &call).await
    }

    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome> {
        let call = || BlobLayer::delete(self, blob);
        self.around(Op::Delete, &call).await
    }

    async fn read_link(
        &self,
        blob: &BlobRef,
        expiry: time::Duration,
    ) -> StoreResult<Option<String>> {
        let call = || BlobLayer::read_link(self, blob, expiry);
        self.around(Op::ReadLink, &call).await
    }

    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        let call = || BlobLayer::delete_many(self, account, container, names);
        self.around(Op::DeleteMany, &call).await
    }

    async fn recoverable(
        &self,
        blob: &BlobRef,
        now: time::OffsetDateTime,
    ) -> StoreResult<Vec<String>> {
        let call = || BlobLayer::recoverable(self, blob, now);
        self.around(Op::Recoverable, &call).await
    }

    async fn stage_block(&self, blob: &BlobRef, block_id: &str, body: Bytes) -> StoreResult<()> {
        let call = || BlobLayer::stage_block(self, blob, block_id, body.clone());
        self.around(Op::StageBlock, &call).await
    }

    async fn commit_blocks(
        &self,
        blob: &BlobRef,
        block_ids: &[String],
        content_type: &str,
    ) -> StoreResult<String> {
        let call = || BlobLayer::commit_blocks(self, blob, block_ids, content_type);
        self.around(Op::CommitBlocks, &call).await
    }

    /// Housekeeping of the wrapped store, not a storage call of its own: no hook around it.
    async fn discard_stale_blocks(
        &self,
        account: &str,
        older_than: time::Duration,
    ) -> StoreResult<usize> {
        BlobLayer::discard_stale_blocks(self, account, older_than).await
    }
}
