//! An in-memory message bus with MessageId duplicate detection, for driving functions directly
//! in tests (the durable bus is `sqlite_queue`).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};

#[derive(Default)]
pub struct MemoryBus {
    inner: Mutex<(
        VecDeque<OutMessage>,
        HashSet<(String, String)>,
        Vec<OutMessage>,
    )>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Next message in send order.
    pub fn pop(&self) -> Option<OutMessage> {
        self.inner.lock().ok()?.0.pop_front()
    }

    /// Every message ever accepted (not dropped as a duplicate), in order.
    pub fn sent(&self) -> Vec<OutMessage> {
        self.inner.lock().map(|g| g.2.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl MessageBus for MemoryBus {
    async fn send(&self, m: OutMessage) -> Result<SendOutcome, BusError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| BusError::Other("poisoned".into()))?;
        if !g.1.insert((m.queue.clone(), m.message_id.clone())) {
            return Ok(SendOutcome::Duplicate);
        }
        g.0.push_back(m.clone());
        g.2.push(m);
        Ok(SendOutcome::Enqueued)
    }
}
