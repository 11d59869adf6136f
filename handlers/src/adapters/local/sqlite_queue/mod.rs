//! `LocalQueue`: a durable message queue in one SQLite file that mimics the Azure Service Bus
//! semantics the product relies on (peek-lock, DeliveryCount, dead-lettering, MessageId duplicate
//! detection, scheduled enqueue, FIFO by sequence number), so the pipeline runs and is tested on
//! one machine.
//!
//! Durability and concurrency choices:
//! - WAL journal, so a reader (a CLI listing counts) never blocks the dispatcher and vice versa.
//! - `synchronous=FULL`: an acknowledged `send` is the point where a caller may complete its own
//!   incoming message; with NORMAL a power loss could roll back such a send and silently lose a
//!   data-subject request. The cost is one fsync per commit, which a local runtime can afford.
//! - Every mutation runs in a `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so
//!   two processes on the same file cannot both read the same message as receivable and both
//!   lock it, and a reader never has to upgrade to a writer (which fails with SQLITE_BUSY without
//!   honouring the busy timeout). A busy timeout absorbs the brief contention between processes.
//! - Completed messages keep only their metadata (for counts); their body is erased, because
//!   bodies carry personal data and nothing needs them after completion.
//!
//! Delivery (send, receive, settle) lives here; operator views and actions in `admin`, unit tests
//! in `tests`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::OffsetDateTime;

use crate::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};

mod admin;

/// Dead-letter reason Service Bus uses when DeliveryCount exceeds MaxDeliveryCount.
pub const MAX_DELIVERY_COUNT_EXCEEDED: &str = "MaxDeliveryCountExceeded";

const STATE_ACTIVE: i64 = 0;
const STATE_DEAD_LETTERED: i64 = 1;
const STATE_COMPLETED: i64 = 2;

/// Settings of a store handle. Service Bus sets these per queue; locally one set applies to every
/// queue of the file, and the dispatcher may override lock duration and max delivery count per
/// receive (`receive_with`).
#[derive(Debug, Clone)]
pub struct LocalQueueOptions {
    /// Service Bus default: 10.
    pub max_delivery_count: u32,
    /// Service Bus default: 60 s.
    pub lock_duration: Duration,
    /// Service Bus default when duplicate detection is on: 10 minutes.
    pub duplicate_detection_window: Duration,
    /// How long a statement waits for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// Reliability test mode: receive in random order instead of FIFO.
    pub shuffle: bool,
}

impl Default for LocalQueueOptions {
    fn default() -> Self {
        Self {
            max_delivery_count: 10,
            lock_duration: Duration::from_secs(60),
            duplicate_detection_window: Duration::from_secs(600),
            busy_timeout: Duration::from_secs(10),
            shuffle: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The lock token is unknown, was already settled, or its lock expired (Service Bus
    /// `MessageLockLost`): the message may already be with another receiver.
    #[error("the lock on the message was lost (expired, settled or unknown lock token)")]
    LockLost,
    #[error("no dead-lettered message with sequence number {0}")]
    NotFound(i64),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored application properties are not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl QueueError {
    /// SQLITE_BUSY/LOCKED after the busy timeout: another process held the file; retrying helps.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueueError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

impl From<QueueError> for BusError {
    fn from(e: QueueError) -> Self {
        if e.is_transient() {
            BusError::Transient(e.to_string())
        } else {
            BusError::Other(e.to_string())
        }
    }
}

/// A message received under a peek-lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub queue: String,
    pub message_id: String,
    pub lock_token: String,
    /// 1 on the first delivery, +1 on every later one.
    pub delivery_count: u32,
    pub enqueued_time: OffsetDateTime,
    pub sequence_number: i64,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub correlation_id: Option<String>,
    pub session_id: Option<String>,
    pub application_properties: BTreeMap<String, serde_json::Value>,
    pub scheduled_enqueue_time: Option<OffsetDateTime>,
    /// When the lock expires unless renewed.
    pub locked_until: OffsetDateTime,
}

/// A stored message as listed by `peek` and `dead_letters` (no lock taken).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub queue: String,
    pub message_id: String,
    pub sequence_number: i64,
    pub delivery_count: u32,
    pub enqueued_time: OffsetDateTime,
    pub scheduled_enqueue_time: Option<OffsetDateTime>,
    /// Set while a receiver holds a lock that has not expired.
    pub locked_until: Option<OffsetDateTime>,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub correlation_id: Option<String>,
    pub session_id: Option<String>,
    pub application_properties: BTreeMap<String, serde_json::Value>,
    pub dead_letter_reason: Option<String>,
    pub dead_letter_description: Option<String>,
}

/// Message counts of one queue. The categories are disjoint: `active` = receivable now,
/// `scheduled` = not receivable before a future instant (scheduled enqueue or retry back-off),
/// `locked` = held by a receiver whose lock has not expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub active: u64,
    pub scheduled: u64,
    pub locked: u64,
    pub dead_lettered: u64,
    pub completed: u64,
}

/// Per-receive settings (the dispatcher's options override the store defaults).
#[derive(Debug, Clone, Copy)]
pub struct ReceiveOptions {
    pub lock_duration: Duration,
    pub max_delivery_count: u32,
}

/// Durable status of a timer function, as the Functions host's schedule monitor keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerStatus {
    pub last: OffsetDateTime,
    pub next: OffsetDateTime,
    pub last_updated: OffsetDateTime,
}

/// Handle on the queue file. Cheap to clone; clones share one connection. Open several handles
/// (in one or several processes) on the same file to get independent connections.
#[derive(Clone)]
pub struct LocalQueue {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    options: LocalQueueOptions,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("path", &self.inner.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    queue           TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    state           INTEGER NOT NULL,
    body            BLOB    NOT NULL,
    content_type    TEXT,
    correlation_id  TEXT,
    session_id      TEXT,
    app_props       TEXT    NOT NULL,
    enqueued_at     INTEGER NOT NULL,
    scheduled_at    INTEGER,
    not_before      INTEGER NOT NULL,
    delivery_count  INTEGER NOT NULL DEFAULT 0,
    max_delivery    INTEGER,
    lock_token      TEXT,
    locked_until    INTEGER,
    dl_reason       TEXT,
    dl_description  TEXT,
    settled_at      INTEGER
);
CREATE INDEX IF NOT EXISTS messages_receivable ON messages(queue, state, seq);
CREATE UNIQUE INDEX IF NOT EXISTS messages_lock ON messages(lock_token) WHERE lock_token IS NOT NULL;
CREATE TABLE IF NOT EXISTS dedup (
    queue       TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (queue, message_id)
);
CREATE INDEX IF NOT EXISTS dedup_sent_at ON dedup(sent_at);
CREATE TABLE IF NOT EXISTS timer_status (
    function      TEXT PRIMARY KEY,
    last          INTEGER NOT NULL,
    next          INTEGER NOT NULL,
    last_updated  INTEGER NOT NULL
);
";

const MESSAGE_COLUMNS: &str = "queue, message_id, seq, delivery_count, enqueued_at, scheduled_at, \
     locked_until, body, content_type, correlation_id, session_id, app_props, dl_reason, dl_description";

/// Times are stored as Unix microseconds (Service Bus resolution is coarser).
fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

fn now_micros() -> i64 {
    to_micros(OffsetDateTime::now_utc())
}

fn stored_from_row(row: &rusqlite::Row<'_>, now: i64) -> rusqlite::Result<(StoredMessage, String)> {
    let locked_until: Option<i64> = row.get(6)?;
    let props: String = row.get(11)?;
    Ok((
        StoredMessage {
            queue: row.get(0)?,
            message_id: row.get(1)?,
            sequence_number: row.get(2)?,
            delivery_count: row.get::<_, i64>(3)? as u32,
            enqueued_time: from_micros(row.get(4)?),
            scheduled_enqueue_time: row.get::<_, Option<i64>>(5)?.map(from_micros),
            locked_until: locked_until.filter(|&t| t > now).map(from_micros),
            body: row.get(7)?,
            content_type: row.get(8)?,
            correlation_id: row.get(9)?,
            session_id: row.get(10)?,
            application_properties: BTreeMap::new(),
            dead_letter_reason: row.get(12)?,
            dead_letter_description: row.get(13)?,
        },
        props,
    ))
}

impl LocalQueue {
    /// Open (creating if needed) the queue file with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QueueError> {
        Self::open_with(path, LocalQueueOptions::default())
    }

    pub(crate) fn open_with(
        path: impl AsRef<Path>,
        options: LocalQueueOptions,
    ) -> Result<Self, QueueError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path)?;
        conn.busy_timeout(options.busy_timeout)?;
        // journal_mode returns a row, so it is read rather than executed.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        // Schema creation also takes the write lock first: two processes opening a fresh file at
        // the same moment must not interleave their CREATE statements.
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
                options,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn options(&self) -> &LocalQueueOptions {
        &self.inner.options
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        // A poisoned mutex only means another thread panicked mid-call; SQLite rolled back its
        // open transaction when the Transaction guard dropped, so the connection is usable.
        let mut guard = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Run a blocking store call on the blocking thread pool (for async callers).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&LocalQueue) -> Result<T, QueueError> + Send + 'static,
    {
        let q = self.clone();
        tokio::task::spawn_blocking(move || f(&q))
            .await
            .map_err(|e| QueueError::Join(e.to_string()))?
    }

    /// Send one message. A MessageId already sent to the same queue within the duplicate
    /// detection window is dropped (`SendOutcome::Duplicate`), as Service Bus does.
    pub fn send_blocking(&self, message: &OutMessage) -> Result<SendOutcome, QueueError> {
        self.send_many_blocking(std::slice::from_ref(message))
            .map(|mut v| v.remove(0))
    }

    /// Send several messages in one transaction (one fsync).
    pub fn send_many_blocking(
        &self,
        messages: &[OutMessage],
    ) -> Result<Vec<SendOutcome>, QueueError> {
        let window = micros(self.inner.options.duplicate_detection_window);
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_micros();
            tx.execute(
                "DELETE FROM dedup WHERE sent_at <= ?1",
                params![now - window],
            )?;
            let mut outcomes = Vec::with_capacity(messages.len());
            for m in messages {
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO dedup(queue, message_id, sent_at) VALUES (?1, ?2, ?3)",
                    params![m.queue, m.message_id, now],
                )?;
                if inserted == 0 {
                    outcomes.push(SendOutcome::Duplicate);
                    continue;
                }
                insert_message(&tx, m, now)?;
                outcomes.push(SendOutcome::Enqueued);
            }
            tx.commit()?;
            Ok(outcomes)
        })
    }

    /// Receive the next message of `queue` under a peek-lock with the store's default options.
    pub fn receive(&self, queue: &str) -> Result<Option<Delivery>, QueueError> {
        let o = &self.inner.options;
        self.receive_with(
            queue,
            ReceiveOptions {
                lock_duration: o.lock_duration,
                max_delivery_count: o.max_delivery_count,
            },
        )
    }

    /// Receive the next receivable message (FIFO by sequence number): active, due, and not
    /// locked (an expired lock counts as released). A message whose DeliveryCount has already
    /// reached `max_delivery_count` is dead-lettered instead of being delivered again.
    pub fn receive_with(
        &self,
        queue: &str,
        opts: ReceiveOptions,
    ) -> Result<Option<Delivery>, QueueError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_micros();
            let order = if self.options().shuffle { "random()" } else { "seq" };
            let delivery = loop {
                let row = tx
                    .query_row(
                        &format!(
                            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE queue = ?1 AND state = ?2 \
                             AND not_before <= ?3 AND (locked_until IS NULL OR locked_until <= ?3) \
                             ORDER BY {order} LIMIT 1"
                        ),
                        params![queue, STATE_ACTIVE, now],
                        |r| stored_from_row(r, now),
                    )
                    .optional()?;
                let Some((m, props)) = row else { break None };
                if m.delivery_count >= opts.max_delivery_count {
                    dead_letter_row(
                        &tx,
                        m.sequence_number,
                        MAX_DELIVERY_COUNT_EXCEEDED,
                        &format!("Message could not be consumed after {} delivery attempts.", opts.max_delivery_count),
                        now,
                    )?;
                    continue;
                }
                let token = uuid::Uuid::new_v4().to_string();
                let locked_until = now + micros(opts.lock_duration);
                tx.execute(
                    "UPDATE messages SET delivery_count = delivery_count + 1, lock_token = ?1, \
                     locked_until = ?2, max_delivery = ?3 WHERE seq = ?4",
                    params![token, locked_until, opts.max_delivery_count, m.sequence_number],
                )?;
                break Some(Delivery {
                    queue: m.queue,
                    message_id: m.message_id,
                    lock_token: token,
                    delivery_count: m.delivery_count + 1,
                    enqueued_time: m.enqueued_time,
                    sequence_number: m.sequence_number,
                    body: m.body,
                    content_type: m.content_type,
                    correlation_id: m.correlation_id,
                    session_id: m.session_id,
                    application_properties: serde_json::from_str(&props)?,
                    scheduled_enqueue_time: m.scheduled_enqueue_time,
                    locked_until: from_micros(locked_until),
                });
            };
            tx.commit()?;
            Ok(delivery)
        })
    }

    /// Find the row held by a live lock, or fail with `LockLost`.
    fn locked_row(
        tx: &rusqlite::Transaction<'_>,
        lock_token: &str,
        now: i64,
    ) -> Result<(i64, i64, Option<i64>), QueueError> {
        tx.query_row(
            "SELECT seq, delivery_count, max_delivery FROM messages \
             WHERE lock_token = ?1 AND state = ?2 AND locked_until > ?3",
            params![lock_token, STATE_ACTIVE, now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or(QueueError::LockLost)
    }

    /// Settle successfully: the message is gone from the queue (its body is erased).
    pub(crate) fn complete(&self, lock_token: &str) -> Result<(), QueueError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_micros();
            let (seq, _, _) = Self::locked_row(&tx, lock_token, now)?;
            tx.execute(
                "UPDATE messages SET state = ?1, body = x'', lock_token = NULL, locked_until = NULL, \
                 settled_at = ?2 WHERE seq = ?3",
                params![STATE_COMPLETED, now, seq],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Release the lock so the message is receivable again at once (DeliveryCount grows on the
    /// next receive). If the delivery count is exhausted, it is dead-lettered now, as Service Bus
    /// does on the abandon that reaches MaxDeliveryCount.
    pub(crate) fn abandon(&self, lock_token: &str) -> Result<(), QueueError> {
        self.abandon_after(lock_token, Duration::ZERO)
    }

    /// Like `abandon`, but the message stays invisible for `delay` (Event Grid-style back-off).
    pub(crate) fn abandon_after(
        &self,
        lock_token: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_micros();
            let (seq, count, max) = Self::locked_row(&tx, lock_token, now)?;
            match max {
                Some(max) if count >= max => dead_letter_row(
                    &tx,
                    seq,
                    MAX_DELIVERY_COUNT_EXCEEDED,
                    &format!("Message could not be consumed after {max} delivery attempts."),
                    now,
                )?,
                _ => {
                    tx.execute(
                        "UPDATE messages SET lock_token = NULL, locked_until = NULL, not_before = ?1 WHERE seq = ?2",
                        params![now + micros(delay), seq],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Move the locked message to the dead-letter sub-queue with a reason and description.
    pub(crate) fn dead_letter(
        &self,
        lock_token: &str,
        reason: &str,
        description: &str,
    ) -> Result<(), QueueError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_micros();
            let (seq, _, _) = Self::locked_row(&tx, lock_token, now)?;
            dead_letter_row(&tx, seq, reason, description, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Extend a live lock by `lock_duration` from now (the Functions host renews locks while an
    /// invocation runs). Returns the new expiry.
    pub(crate) fn renew_lock(
        &self,
        lock_token: &str,
        lock_duration: Duration,
    ) -> Result<OffsetDateTime, QueueError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_micros();
            let (seq, _, _) = Self::locked_row(&tx, lock_token, now)?;
            let until = now + micros(lock_duration);
            tx.execute(
                "UPDATE messages SET locked_until = ?1 WHERE seq = ?2",
                params![until, seq],
            )?;
            tx.commit()?;
            Ok(from_micros(until))
        })
    }
}

fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    m: &OutMessage,
    now: i64,
) -> Result<(), QueueError> {
    let scheduled = m.scheduled_enqueue_time.map(to_micros);
    tx.execute(
        "INSERT INTO messages(queue, message_id, state, body, content_type, correlation_id, session_id, \
         app_props, enqueued_at, scheduled_at, not_before) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            m.queue,
            m.message_id,
            STATE_ACTIVE,
            m.body,
            m.content_type,
            m.correlation_id,
            m.session_id,
            serde_json::to_string(&m.application_properties)?,
            now,
            scheduled,
            scheduled.map_or(now, |s| s.max(now)),
        ],
    )?;
    Ok(())
}

fn dead_letter_row(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    reason: &str,
    description: &str,
    now: i64,
) -> Result<(), QueueError> {
    tx.execute(
        "UPDATE messages SET state = ?1, lock_token = NULL, locked_until = NULL, dl_reason = ?2, \
         dl_description = ?3, settled_at = ?4 WHERE seq = ?5",
        params![STATE_DEAD_LETTERED, reason, description, now, seq],
    )?;
    Ok(())
}

#[async_trait]
impl MessageBus for LocalQueue {
    async fn send(&self, message: OutMessage) -> Result<SendOutcome, BusError> {
        Ok(self.blocking(move |q| q.send_blocking(&message)).await?)
    }

    /// One transaction for the whole batch: all or nothing, and one fsync.
    async fn send_all(&self, messages: Vec<OutMessage>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.blocking(move |q| q.send_many_blocking(&messages))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
