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
//! Both are [`BlobLayer`]s that override only [`BlobLayer::around`]: every [`BlobStore`] method
//! reaches the wrapped store's same method (`delete_many` stays one batch, `read_link` stays
//! the inner store's link), and the conformance suite (`tests/it/support/blob_conformance.rs`)
//! runs through each wrapper.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapters::azure::retry::{with_retries, RetryConfig};

use async_trait::async_trait;
use rand::{Rng, SeedableRng};

use crate::ports::blob::*;
use crate::ports::blob_layer::{BlobLayer, Op, StoreFuture};

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

#[async_trait]
impl BlobLayer for FaultyStore {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        call: &'a (dyn Fn() -> StoreFuture<'a, T> + Send + Sync + 'a),
    ) -> StoreFuture<'a, T> {
        let fault = self.roll(op.mutates());
        Box::pin(async move {
            match fault {
                Fault::Before => Err(FaultyStore::err()),
                Fault::After => {
                    let _ = call().await;
                    Err(FaultyStore::err())
                }
                Fault::None => call().await,
            }
        })
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
impl BlobLayer for RetryingStore {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        call: &'a (dyn Fn() -> StoreFuture<'a, T> + Send + Sync + 'a),
    ) -> StoreFuture<'a, T> {
        Box::pin(with_retries(&self.retry, op.name(), call))
    }
}
