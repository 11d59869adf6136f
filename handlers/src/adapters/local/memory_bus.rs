//! An in-memory message bus with MessageId duplicate detection, for driving functions directly
//! in tests (the durable bus is `sqlite_queue`).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};

#[derive(Default)]
struct Inner {
    pending: VecDeque<OutMessage>,
    seen: HashSet<(String, String)>,
    sent: Vec<OutMessage>,
}

#[derive(Default)]
pub struct MemoryBus {
    inner: Mutex<Inner>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Next message in send order.
    pub fn pop(&self) -> Option<OutMessage> {
        self.inner.lock().ok()?.pending.pop_front()
    }

    /// Every message ever accepted (not dropped as a duplicate), in order.
    pub fn sent(&self) -> Vec<OutMessage> {
        self.inner
            .lock()
            .map(|g| g.sent.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl MessageBus for MemoryBus {
    async fn send(&self, m: OutMessage) -> Result<SendOutcome, BusError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| BusError::Other("poisoned".into()))?;
        if !g.seen.insert((m.queue.clone(), m.message_id.clone())) {
            return Ok(SendOutcome::Duplicate);
        }
        g.pending.push_back(m.clone());
        g.sent.push(m);
        Ok(SendOutcome::Enqueued)
    }
}
