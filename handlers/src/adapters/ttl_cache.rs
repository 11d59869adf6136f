//! A small time-to-live cache with single flight, shared by the caching decorators of the
//! control plane (`cached_control`) and of run history (`cached_run_history`): concurrent
//! callers of one key share one read, errors are not kept, expired entries are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

type Cell<T> = Arc<OnceCell<T>>;

/// Entries by key, each with its creation time; at most `max` live entries (beyond that a read
/// is not kept, so memory stays bounded whatever a request touches).
pub(crate) struct Slots<T> {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<String, (Instant, Cell<T>)>>,
}

impl<T: Clone> Slots<T> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, usize::MAX)
    }

    pub(crate) fn bounded(ttl: Duration, max: usize) -> Self {
        Slots {
            ttl,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The cell for `key`: the live one, or a fresh one in place of an expired one.
    fn cell(&self, key: &str) -> Cell<T> {
        let now = Instant::now();
        let Ok(mut map) = self.map.lock() else {
            // A poisoned lock (a panic elsewhere) only costs the cache: a fresh read.
            return Arc::new(OnceCell::new());
        };
        // Drop expired entries so the map stays bounded by the workspaces in use.
        map.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        if map.len() >= self.max && !map.contains_key(key) {
            return Arc::new(OnceCell::new());
        }
        map.entry(key.to_string())
            .or_insert_with(|| (now, Arc::new(OnceCell::new())))
            .1
            .clone()
    }

    /// The live value for `key`, or the one `read` returns (one read for concurrent callers);
    /// a failed read is not kept: the next caller reads again.
    pub(crate) async fn get_or_try<E, F, Fut>(&self, key: &str, read: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let cell = self.cell(key);
        cell.get_or_try_init(read).await.cloned()
    }

    pub(crate) fn forget_prefix(&self, prefix: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|k, _| !k.starts_with(prefix));
        }
    }
}
