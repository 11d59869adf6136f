//! Test mode for the reliability suite: a [`BlobStore`] that fails a seeded fraction of calls
//! (429/500/503-like transient errors), sometimes AFTER the call took effect (a response lost
//! mid-body), and a retrying wrapper with backoff standing in for the retry policy the Azure SDK
//! pipeline applies in production. Enabled only by `DSR_CHAOS_FAULT_RATE`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

/// Retries transient errors with exponential backoff (what the SDK pipeline does in Azure).
/// A retried create-if-absent whose first attempt took effect reports `AlreadyExists`, and a
/// retried delete reports `NotFound`: callers treat both as success, which is the point.
pub struct RetryingStore {
    inner: Arc<dyn BlobStore>,
    attempts: u32,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn BlobStore>, attempts: u32) -> Self {
        Self {
            inner,
            attempts: attempts.max(1),
        }
    }
}

macro_rules! retrying {
    ($self:ident, $call:expr) => {{
        let mut n = 0;
        loop {
            match $call.await {
                Err(e) if e.is_transient() && n + 1 < $self.attempts => {
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5 << n)).await;
                }
                other => break other,
            }
        }
    }};
}

#[async_trait]
impl BlobStore for RetryingStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn create_container(&self, a: &str, c: &str) -> StoreResult<()> {
        retrying!(self, self.inner.create_container(a, c))
    }
    async fn list_containers(&self, a: &str, p: &str) -> StoreResult<Vec<String>> {
        retrying!(self, self.inner.list_containers(a, p))
    }
    async fn delete_container(&self, a: &str, c: &str) -> StoreResult<DeleteOutcome> {
        retrying!(self, self.inner.delete_container(a, c))
    }
    async fn list_page(
        &self,
        a: &str,
        c: &str,
        p: &str,
        m: Option<String>,
        n: u32,
    ) -> StoreResult<ListPage> {
        retrying!(self, self.inner.list_page(a, c, p, m.clone(), n))
    }
    async fn open(&self, b: &BlobRef) -> StoreResult<BlobReader> {
        retrying!(self, self.inner.open(b))
    }
    async fn put(
        &self,
        b: &BlobRef,
        body: Bytes,
        ct: &str,
        cond: Condition,
        md: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        retrying!(self, self.inner.put(b, body.clone(), ct, cond.clone(), md))
    }
    async fn copy(&self, s: &BlobRef, d: &BlobRef) -> StoreResult<()> {
        retrying!(self, self.inner.copy(s, d))
    }
    async fn delete(&self, b: &BlobRef) -> StoreResult<DeleteOutcome> {
        retrying!(self, self.inner.delete(b))
    }
}
