//! The blob store port: everything the product keeps or touches in Azure Blob Storage —
//! workspace data (`azureml*` containers), the export area, aggregator state and the audit trail.
//!
//! Accounts are named explicitly because a workspace's data lives in its own storage account,
//! separate from the product's state account.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use time::OffsetDateTime;

/// Address of one blob.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct BlobRef {
    pub account: String,
    pub container: String,
    pub name: String,
}

impl BlobRef {
    pub fn new(
        account: impl Into<String>,
        container: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            account: account.into(),
            container: container.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for BlobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.account, self.container, self.name)
    }
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobItem {
    pub name: String,
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    pub last_modified: Option<OffsetDateTime>,
    pub metadata: BTreeMap<String, String>,
}

/// One page of a listing; `next` is the opaque continuation marker.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<BlobItem>,
    pub next: Option<String>,
}

/// Write preconditions, used for exactly-once state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Unconditional overwrite.
    None,
    /// `If-None-Match: *` — create only; fails with [`StoreError::AlreadyExists`].
    IfNotExists,
    /// `If-Match: <etag>` — replace only that version; fails with [`StoreError::ConditionFailed`].
    IfMatch(String),
}

/// What a delete achieved. Erasure reports are built from this, so it must be honest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeleteOutcome {
    /// Gone, including versions and snapshots.
    Deleted,
    /// Deleted from view, but the account's soft-delete policy keeps it restorable until `until`.
    Retained {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// Nothing was there (already deleted, e.g. by an earlier delivery).
    NotFound,
}

/// Properties returned by a read.
#[derive(Debug, Clone)]
pub struct BlobProps {
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
}

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// A streaming read: never the whole (possibly large) blob in memory.
pub struct BlobReader {
    pub props: BlobProps,
    pub body: ByteStream,
}

/// A cause kept for the error chain (`std::error::Error::source`).
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Storage failures, by what the caller can do about them. Permanent: [`NotFound`],
/// [`AlreadyExists`], [`ConditionFailed`] and [`InvalidName`] repeat on every try; transient:
/// [`Transient`] and [`RetriesSpent`]; [`Other`] is unclassified (see `FnError`'s mapping).
///
/// [`NotFound`]: StoreError::NotFound
/// [`AlreadyExists`]: StoreError::AlreadyExists
/// [`ConditionFailed`]: StoreError::ConditionFailed
/// [`InvalidName`]: StoreError::InvalidName
/// [`Transient`]: StoreError::Transient
/// [`RetriesSpent`]: StoreError::RetriesSpent
/// [`Other`]: StoreError::Other
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("precondition failed: {0}")]
    ConditionFailed(String),
    #[error("invalid blob name: {0}")]
    InvalidName(String),
    /// Worth retrying at once (a fault no retry layer has seen yet: an injected fault, a batch
    /// response missing an item); the whole-operation layer retries it.
    #[error("transient storage error: {0}")]
    Transient(String),
    /// Transient (408/429/5xx, dropped connection), and the transport already retried it up to
    /// its budget (`adapters::azure::retry::TRANSPORT_ATTEMPTS`): worth retrying later, by a
    /// redelivery, never again at once.
    #[error("transient storage error, retries spent: {what}")]
    RetriesSpent {
        what: String,
        #[source]
        source: Cause,
    },
    #[error("storage error: {0}")]
    Other(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Transient(_) | StoreError::RetriesSpent { .. }
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Blob storage. Implementations: `adapters::local::fs_blob` (plain files) and
/// `adapters::azure::blob` (official Azure SDK, tested against Azurite).
/// A wrapper around another store implements [`super::blob_layer::BlobLayer`] instead, which
/// forwards every method it does not override.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Human-readable adapter name for logs and reports.
    fn kind(&self) -> &'static str;

    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()>;

    /// Container names in an account starting with `prefix`.
    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>>;

    /// Delete a whole container (workspace clean-up after a workspace purge).
    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome>;

    /// One page of blobs whose names start with `prefix`, in name order.
    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage>;

    /// Streaming read.
    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader>;

    /// Write a (small) blob, with a precondition. Returns the new ETag.
    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        content_type: &str,
        condition: Condition,
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<String>;

    /// Server-side copy `src` -> `dst` (overwrites `dst`). Used for exports.
    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()>;

    /// Complete erasure of one blob: the base blob, its snapshots and its versions.
    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome>;

    /// A time-limited, read-only link to a blob (export bundles), where the store can issue
    /// one: a user delegation SAS in Azure, a service SAS on Azurite; `None` locally.
    /// Required, like every method here: a wrapper cannot inherit a default and drop the link.
    async fn read_link(
        &self,
        blob: &BlobRef,
        expiry: time::Duration,
    ) -> StoreResult<Option<String>>;

    /// What of a deleted `blob` can still be read or restored, as of `now`, each piece described
    /// for a certificate ("present again", "soft-deleted copy, deleted …", "version …",
    /// "snapshot …"); empty when the blob is fully erased. The "retained until" follow-up
    /// (`functions::follow_up`) asks this once the retention date has passed. `now` is for
    /// stores that simulate soft delete (the local store applies the retention period itself);
    /// Azure expires soft-deleted data on its own. The default refuses, loudly: a store that
    /// cannot tell must never let a certificate say "fully erased".
    async fn recoverable(&self, blob: &BlobRef, now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let _ = now;
        Err(StoreError::Other(format!(
            "{}: this store cannot tell what of {blob} is recoverable",
            self.kind()
        )))
    }

    /// Erase many blobs of one container (Blob Batch in Azure). One result per name, same order.
    /// Required: a wrapper that inherited a one-by-one default would silently turn a batch into
    /// N requests. Stores without a batch API call [`delete_one_by_one`].
    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>>;

    /// Stage one block of a blob written in parts (Put Block in Azure): a blob too large to
    /// hold in memory (an export archive) is written block by block and appears only when
    /// [`BlobStore::commit_blocks`] commits the list. Block ids are ASCII letters, digits, `-`
    /// or `_`, at most 64 characters, all of the same length within one blob (Azure's rule).
    async fn stage_block(&self, blob: &BlobRef, block_id: &str, body: Bytes) -> StoreResult<()>;

    /// Make the staged blocks, in this order, the blob's whole content, replacing any blob of
    /// that name (Put Block List). Returns the new ETag. Until this call nothing is visible.
    async fn commit_blocks(
        &self,
        blob: &BlobRef,
        block_ids: &[String],
        content_type: &str,
    ) -> StoreResult<String>;

    /// Discard blocks staged in `account` more than `older_than` ago and never committed (a
    /// build that crashed or failed before its commit); returns how many blobs' blocks went.
    /// Azure discards uncommitted blocks by itself (after a week) and has no call for it, so
    /// by default this does nothing; stores that keep staged blocks themselves override it.
    async fn discard_stale_blocks(
        &self,
        _account: &str,
        _older_than: time::Duration,
    ) -> StoreResult<usize> {
        Ok(0)
    }
}

/// Checks a block id against [`BlobStore::stage_block`]'s rule (the local stores use the id as a
/// file name, so it must be checked before it touches the file system).
pub fn check_block_id(id: &str) -> StoreResult<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(StoreError::InvalidName(format!("block id {id:?}")));
    }
    Ok(())
}

/// [`BlobStore::delete_many`] for stores without a batch API: one [`BlobStore::delete`] per name.
pub async fn delete_one_by_one<S: BlobStore + ?Sized>(
    store: &S,
    account: &str,
    container: &str,
    names: &[String],
) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(
            store
                .delete(&BlobRef::new(account, container, name.clone()))
                .await,
        );
    }
    Ok(out)
}

/// Convenience helpers on top of any [`BlobStore`].
#[async_trait]
pub trait BlobStoreExt: BlobStore {
    /// Every blob under `prefix`, following continuation markers.
    async fn list_all(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
    ) -> StoreResult<Vec<BlobItem>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .list_page(account, container, prefix, marker, 5000)
                .await?;
            out.extend(page.items);
            match page.next {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    /// Read a small blob fully (state documents). Returns body and ETag.
    async fn read_small(&self, blob: &BlobRef) -> StoreResult<(Bytes, String)> {
        use futures::StreamExt;
        let mut reader = self.open(blob).await?;
        let mut buf = Vec::with_capacity(reader.props.size as usize);
        while let Some(chunk) = reader.body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok((Bytes::from(buf), reader.props.etag))
    }

    /// Whether a blob exists, without reading it: the body of the answer is dropped unread, so a
    /// check on a large document (a heavy slice's result) costs one round trip, not its bytes.
    async fn exists(&self, blob: &BlobRef) -> StoreResult<bool> {
        match self.open(blob).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Read a JSON document, `None` if absent.
    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        blob: &BlobRef,
    ) -> StoreResult<Option<T>> {
        match self.read_small(blob).await {
            Ok((bytes, _)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Other(format!("corrupt document {blob}: {e}"))),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a blob if absent (If-None-Match `*`). Returns `true` when this call created it;
    /// `false` when it already existed (another delivery created it first).
    async fn create_bytes(
        &self,
        blob: &BlobRef,
        body: Bytes,
        content_type: &str,
    ) -> StoreResult<bool> {
        match self
            .put(
                blob,
                body,
                content_type,
                Condition::IfNotExists,
                &BTreeMap::new(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists(_)) | Err(StoreError::ConditionFailed(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Create a JSON document if absent. Returns `true` when this call created it. State
    /// documents are written compact: a heavy slice's result or inventory page is machine state
    /// of up to a hundred thousand items, where indentation would double bytes and memory.
    async fn create_json<T: serde::Serialize + Sync>(
        &self,
        blob: &BlobRef,
        value: &T,
    ) -> StoreResult<bool> {
        let body = serde_json::to_vec(value).map_err(|e| StoreError::Other(e.to_string()))?;
        self.create_bytes(blob, Bytes::from(body), "application/json")
            .await
    }

    /// Overwrite a JSON document unconditionally.
    async fn write_json<T: serde::Serialize + Sync>(
        &self,
        blob: &BlobRef,
        value: &T,
    ) -> StoreResult<()> {
        let body = serde_json::to_vec(value).map_err(|e| StoreError::Other(e.to_string()))?;
        self.put(
            blob,
            Bytes::from(body),
            "application/json",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .map(|_| ())
    }
}

impl<T: BlobStore + ?Sized> BlobStoreExt for T {}
