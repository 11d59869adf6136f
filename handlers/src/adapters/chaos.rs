//! Test mode for the reliability suite: a [`BlobStore`] that fails a seeded fraction of calls
//! (429/500/503-like transient errors), sometimes AFTER the call took effect (a response lost
//! mid-body), and a retrying wrapper standing in for the retry policy the Azure SDK pipeline
//! applies in production. Enabled only by `DSR_CHAOS_FAULT_RATE`.
//!
//! The retrying wrapper is [`with_retries`], the one whole-operation retry layer: it retries the
//! injected faults ([`StoreError::Transient`], which no transport saw) and never a failure the
//! inner store's transport already retried ([`StoreError::RetriesSpent`]), so over the Azure
//! store attempts do not multiply.
//!
//! Both wrappers implement every [`BlobStore`] method by hand: the trait has no default
//! methods, so a wrapper that forgot one (`delete_many`, `read_link`) would not compile, and the
//! conformance suite (`tests/it/support/blob_conformance.rs`) runs through each wrapper.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapters::azure::retry::{with_retries, RetryConfig};

use async_trait::async_trait;
use bytes::Bytes;
use rand::{Rng, SeedableRng};

use crate::ports::blob::*;

pub struct FaultyStore {
    inner: Arc<dyn BlobStore>,
    rate: f64,
    rng: Mutex<rand::rngs::StdRng>,
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Before,
    After,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn BlobStore>, rate: f64, seed: u64) -> Self {
        Self {
            inner,
            rate,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
        }
    }

    fn roll(&self, mutating: bool) -> Fault {
        let Ok(mut rng) = self.rng.lock() else {
            return Fault::None;
        };
        if rng.gen::<f64>() >= self.rate {
            return Fault::None;
        }
        if mutating && rng.gen_bool(0.5) {
            Fault::After
        } else {
            Fault::Before
        }
    }

    fn err() -> StoreError {
        StoreError::Transient("injected fault: 503 Server Busy".into())
    }
}

macro_rules! faulty {
    ($self:ident, $mutating:expr, $call:expr) => {{
        match $self.roll($mutating) {
            Fault::Before => Err(FaultyStore::err()),
            Fault::After => {
                let _ = $call.await;
                Err(FaultyStore::err())
            }
            Fault::None => $call.await,
        }
    }};
}

#[async_trait]
impl BlobStore for FaultyStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn create_container(&self, a: &str, c: &str) -> StoreResult<()> {
        faulty!(self, true, self.inner.create_container(a, c))
    }
    async fn list_containers(&self, a: &str, p: &str) -> StoreResult<Vec<String>> {
        faulty!(self, false, self.inner.list_containers(a, p))
    }
    async fn delete_container(&self, a: &str, c: &str) -> StoreResult<DeleteOutcome> {
        faulty!(self, true, self.inner.delete_container(a, c))
    }
    async fn list_page(
        &self,
        a: &str,
        c: &str,
        p: &str,
        m: Option<String>,
        n: u32,
    ) -> StoreResult<ListPage> {
        faulty!(self, false, self.inner.list_page(a, c, p, m.clone(), n))
    }
    async fn open(&self, b: &BlobRef) -> StoreResult<BlobReader> {
        faulty!(self, false, self.inner.open(b))
    }
    async fn put(
        &self,
        b: &BlobRef,
        body: Bytes,
        ct: &str,
        cond: Condition,
        md: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        faulty!(
            self,
            true,
            self.inner.put(b, body.clone(), ct, cond.clone(), md)
        )
    }
    async fn copy(&self, s: &BlobRef, d: &BlobRef) -> StoreResult<()> {
        faulty!(self, true, self.inner.copy(s, d))
    }
    async fn delete(&self, b: &BlobRef) -> StoreResult<DeleteOutcome> {
        faulty!(self, true, self.inner.delete(b))
    }
    async fn read_link(&self, b: &BlobRef, e: time::Duration) -> StoreResult<Option<String>> {
        faulty!(self, false, self.inner.read_link(b, e))
    }
    async fn delete_many(
        &self,
        a: &str,
        c: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        faulty!(self, true, self.inner.delete_many(a, c, names))
    }
}

/// Retries transient errors with exponential backoff (what the SDK pipeline does in Azure).
/// A retried create-if-absent whose first attempt took effect reports `AlreadyExists`, and a
/// retried delete reports `NotFound`: callers treat both as success, which is the point.
pub struct RetryingStore {
    inner: Arc<dyn BlobStore>,
    retry: RetryConfig,
}

impl RetryingStore {
    /// At most `attempts` tries per call (short waits: the faults are injected, not real load).
    pub fn new(inner: Arc<dyn BlobStore>, attempts: u32) -> Self {
        Self {
            inner,
            retry: RetryConfig {
                max_retries: attempts.max(1) - 1,
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(80),
                max_total: Duration::from_secs(60),
            },
        }
    }
}

#[async_trait]
impl BlobStore for RetryingStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn create_container(&self, a: &str, c: &str) -> StoreResult<()> {
        with_retries(&self.retry, "create container", || {
            self.inner.create_container(a, c)
        })
        .await
    }
    async fn list_containers(&self, a: &str, p: &str) -> StoreResult<Vec<String>> {
        with_retries(&self.retry, "list containers", || {
            self.inner.list_containers(a, p)
        })
        .await
    }
    async fn delete_container(&self, a: &str, c: &str) -> StoreResult<DeleteOutcome> {
        with_retries(&self.retry, "delete container", || {
            self.inner.delete_container(a, c)
        })
        .await
    }
    async fn list_page(
        &self,
        a: &str,
        c: &str,
        p: &str,
        m: Option<String>,
        n: u32,
    ) -> StoreResult<ListPage> {
        with_retries(&self.retry, "list", || {
            self.inner.list_page(a, c, p, m.clone(), n)
        })
        .await
    }
    async fn open(&self, b: &BlobRef) -> StoreResult<BlobReader> {
        with_retries(&self.retry, "open", || self.inner.open(b)).await
    }
    async fn put(
        &self,
        b: &BlobRef,
        body: Bytes,
        ct: &str,
        cond: Condition,
        md: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        with_retries(&self.retry, "put", || {
            self.inner.put(b, body.clone(), ct, cond.clone(), md)
        })
        .await
    }
    async fn copy(&self, s: &BlobRef, d: &BlobRef) -> StoreResult<()> {
        with_retries(&self.retry, "copy", || self.inner.copy(s, d)).await
    }
    async fn delete(&self, b: &BlobRef) -> StoreResult<DeleteOutcome> {
        with_retries(&self.retry, "delete", || self.inner.delete(b)).await
    }
    async fn read_link(&self, b: &BlobRef, e: time::Duration) -> StoreResult<Option<String>> {
        with_retries(&self.retry, "read link", || self.inner.read_link(b, e)).await
    }
    async fn delete_many(
        &self,
        a: &str,
        c: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        with_retries(&self.retry, "delete many", || {
            self.inner.delete_many(a, c, names)
        })
        .await
    }
}
