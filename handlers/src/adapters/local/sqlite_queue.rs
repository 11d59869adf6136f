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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::OffsetDateTime;

use crate::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};

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

    /// Re-send a dead-lettered message as a new message (new sequence number, DeliveryCount 0).
    /// Duplicate detection is bypassed: replaying is a deliberate operator action and the id is,
    /// by construction, one the queue has already seen. Returns the new sequence number.
    pub fn resubmit_dead_letter(
        &self,
        queue: &str,
        sequence_number: i64,
    ) -> Result<i64, QueueError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_micros();
            let changed = tx.execute(
                "INSERT INTO messages(queue, message_id, state, body, content_type, correlation_id, \
                 session_id, app_props, enqueued_at, scheduled_at, not_before) \
                 SELECT queue, message_id, ?1, body, content_type, correlation_id, session_id, app_props, \
                 ?2, NULL, ?2 FROM messages WHERE queue = ?3 AND seq = ?4 AND state = ?5",
                params![STATE_ACTIVE, now, queue, sequence_number, STATE_DEAD_LETTERED],
            )?;
            if changed == 0 {
                return Err(QueueError::NotFound(sequence_number));
            }
            let new_seq = tx.last_insert_rowid();
            tx.execute("DELETE FROM messages WHERE seq = ?1", params![sequence_number])?;
            tx.commit()?;
            Ok(new_seq)
        })
    }

    pub fn counts(&self, queue: &str) -> Result<QueueCounts, QueueError> {
        self.with_conn(|conn| {
            let now = now_micros();
            let c = conn.query_row(
                "SELECT \
                   COALESCE(SUM(state = 0 AND (locked_until IS NULL OR locked_until <= ?2) AND not_before <= ?2), 0), \
                   COALESCE(SUM(state = 0 AND (locked_until IS NULL OR locked_until <= ?2) AND not_before > ?2), 0), \
                   COALESCE(SUM(state = 0 AND locked_until > ?2), 0), \
                   COALESCE(SUM(state = 1), 0), \
                   COALESCE(SUM(state = 2), 0) \
                 FROM messages WHERE queue = ?1",
                params![queue, now],
                |r| {
                    Ok(QueueCounts {
                        active: r.get::<_, i64>(0)? as u64,
                        scheduled: r.get::<_, i64>(1)? as u64,
                        locked: r.get::<_, i64>(2)? as u64,
                        dead_lettered: r.get::<_, i64>(3)? as u64,
                        completed: r.get::<_, i64>(4)? as u64,
                    })
                },
            )?;
            Ok(c)
        })
    }

    /// Messages that are receivable now or held by a live lock, over several queues, read in one
    /// statement (a consistent snapshot: a handler that sends before it completes is never seen
    /// as "nothing pending").
    pub fn pending(&self, queues: &[String]) -> Result<u64, QueueError> {
        self.with_conn(|conn| {
            let now = now_micros();
            let mut stmt = conn.prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND state = 0 \
                 AND (locked_until > ?2 OR not_before <= ?2)",
            )?;
            // One read transaction so all queues are counted at the same instant.
            let mut total = 0u64;
            conn.execute_batch("BEGIN")
                .and_then(|_| {
                    for q in queues {
                        total += stmt.query_row(params![q, now], |r| r.get::<_, i64>(0))? as u64;
                    }
                    Ok(())
                })
                .and_then(|_| conn.execute_batch("COMMIT"))
                .inspect_err(|_| {
                    let _ = conn.execute_batch("ROLLBACK");
                })?;
            Ok(total)
        })
    }

    /// Active messages (including scheduled and locked ones) in sequence order, without locking.
    pub fn peek(&self, queue: &str) -> Result<Vec<StoredMessage>, QueueError> {
        self.list(queue, STATE_ACTIVE)
    }

    /// The dead-letter sub-queue, in sequence order.
    pub fn dead_letters(&self, queue: &str) -> Result<Vec<StoredMessage>, QueueError> {
        self.list(queue, STATE_DEAD_LETTERED)
    }

    fn list(&self, queue: &str, state: i64) -> Result<Vec<StoredMessage>, QueueError> {
        self.with_conn(|conn| {
            let now = now_micros();
            let mut stmt =
                conn.prepare(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE queue = ?1 AND state = ?2 ORDER BY seq"))?;
            let rows = stmt.query_map(params![queue, state], |r| stored_from_row(r, now))?;
            let mut out = Vec::new();
            for row in rows {
                let (mut m, props) = row?;
                m.application_properties = serde_json::from_str(&props)?;
                out.push(m);
            }
            Ok(out)
        })
    }

    /// Queue names present in the file (any state).
    pub fn queues(&self) -> Result<Vec<String>, QueueError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare("SELECT DISTINCT queue FROM messages ORDER BY queue")?;
            let names = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(names)
        })
    }

    pub fn timer_status(&self, function: &str) -> Result<Option<TimerStatus>, QueueError> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT last, next, last_updated FROM timer_status WHERE function = ?1",
                    params![function],
                    |r| {
                        Ok(TimerStatus {
                            last: from_micros(r.get(0)?),
                            next: from_micros(r.get(1)?),
                            last_updated: from_micros(r.get(2)?),
                        })
                    },
                )
                .optional()?)
        })
    }

    pub fn set_timer_status(&self, function: &str, status: &TimerStatus) -> Result<(), QueueError> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO timer_status(function, last, next, last_updated) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(function) DO UPDATE SET last = excluded.last, next = excluded.next, \
                 last_updated = excluded.last_updated",
                params![function, to_micros(status.last), to_micros(status.next), to_micros(status.last_updated)],
            )?;
            Ok(())
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
mod tests {
    use super::*;

    fn msg(queue: &str, id: &str) -> OutMessage {
        OutMessage::json(queue, id, &serde_json::json!({ "id": id }))
    }

    fn fast(lock: Duration, max: u32) -> ReceiveOptions {
        ReceiveOptions {
            lock_duration: lock,
            max_delivery_count: max,
        }
    }

    fn open(dir: &tempfile::TempDir) -> LocalQueue {
        LocalQueue::open(dir.path().join("q.sqlite")).unwrap()
    }

    #[test]
    fn fifo_and_delivery_count_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        for i in 0..3 {
            assert_eq!(
                q.send_blocking(&msg("a", &format!("m{i}"))).unwrap(),
                SendOutcome::Enqueued
            );
        }
        let d0 = q.receive("a").unwrap().unwrap();
        assert_eq!((d0.message_id.as_str(), d0.delivery_count), ("m0", 1));
        let d1 = q.receive("a").unwrap().unwrap();
        assert_eq!(d1.message_id, "m1");
        assert!(d1.sequence_number > d0.sequence_number);
        q.complete(&d0.lock_token).unwrap();
        // Settling twice is a lost lock, as in Service Bus.
        assert!(matches!(
            q.complete(&d0.lock_token),
            Err(QueueError::LockLost)
        ));
        q.abandon(&d1.lock_token).unwrap();
        let again = q.receive("a").unwrap().unwrap();
        assert_eq!((again.message_id.as_str(), again.delivery_count), ("m1", 2));
        assert_eq!(
            q.counts("a").unwrap(),
            QueueCounts {
                active: 1,
                scheduled: 0,
                locked: 1,
                dead_lettered: 0,
                completed: 1
            }
        );
        assert!(q.receive("other").unwrap().is_none());
    }

    #[test]
    fn duplicate_message_id_is_dropped_within_window() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        assert_eq!(
            q.send_blocking(&msg("a", "same")).unwrap(),
            SendOutcome::Enqueued
        );
        assert_eq!(
            q.send_blocking(&msg("a", "same")).unwrap(),
            SendOutcome::Duplicate
        );
        // Duplicate detection is per queue.
        assert_eq!(
            q.send_blocking(&msg("b", "same")).unwrap(),
            SendOutcome::Enqueued
        );
        assert_eq!(q.peek("a").unwrap().len(), 1);
        // Still a duplicate after the first copy was completed.
        let d = q.receive("a").unwrap().unwrap();
        q.complete(&d.lock_token).unwrap();
        assert_eq!(
            q.send_blocking(&msg("a", "same")).unwrap(),
            SendOutcome::Duplicate
        );
        assert_eq!(q.counts("a").unwrap().active, 0);
    }

    #[test]
    fn duplicate_window_expires() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LocalQueueOptions {
            duplicate_detection_window: Duration::from_millis(100),
            ..Default::default()
        };
        let q = LocalQueue::open_with(dir.path().join("q.sqlite"), opts).unwrap();
        assert_eq!(
            q.send_blocking(&msg("a", "x")).unwrap(),
            SendOutcome::Enqueued
        );
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(
            q.send_blocking(&msg("a", "x")).unwrap(),
            SendOutcome::Enqueued
        );
        assert_eq!(q.counts("a").unwrap().active, 2);
    }

    #[test]
    fn expired_lock_is_redelivered_and_stale_token_fails() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.send_blocking(&msg("a", "m")).unwrap();
        let d1 = q
            .receive_with("a", fast(Duration::from_millis(100), 10))
            .unwrap()
            .unwrap();
        assert!(
            q.receive("a").unwrap().is_none(),
            "locked message must not be receivable"
        );
        std::thread::sleep(Duration::from_millis(150));
        assert!(matches!(
            q.complete(&d1.lock_token),
            Err(QueueError::LockLost)
        ));
        let d2 = q.receive("a").unwrap().unwrap();
        assert_eq!(d2.delivery_count, 2);
        assert_ne!(d1.lock_token, d2.lock_token);
        assert!(matches!(
            q.abandon(&d1.lock_token),
            Err(QueueError::LockLost)
        ));
        q.complete(&d2.lock_token).unwrap();
        assert_eq!(q.counts("a").unwrap().completed, 1);
    }

    #[test]
    fn renew_lock_keeps_message_locked() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.send_blocking(&msg("a", "m")).unwrap();
        let d = q
            .receive_with("a", fast(Duration::from_millis(150), 10))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        q.renew_lock(&d.lock_token, Duration::from_millis(300))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(q.receive("a").unwrap().is_none());
        q.complete(&d.lock_token).unwrap();
    }

    #[test]
    fn dead_letter_after_max_delivery_count() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.send_blocking(&msg("a", "poison")).unwrap();
        for n in 1..=3 {
            let d = q
                .receive_with("a", fast(Duration::from_secs(60), 3))
                .unwrap()
                .unwrap();
            assert_eq!(d.delivery_count, n);
            q.abandon(&d.lock_token).unwrap();
        }
        assert!(q
            .receive_with("a", fast(Duration::from_secs(60), 3))
            .unwrap()
            .is_none());
        let dl = q.dead_letters("a").unwrap();
        assert_eq!(dl.len(), 1);
        assert_eq!(
            dl[0].dead_letter_reason.as_deref(),
            Some(MAX_DELIVERY_COUNT_EXCEEDED)
        );
        assert_eq!(dl[0].delivery_count, 3);
        assert_eq!(
            q.counts("a").unwrap(),
            QueueCounts {
                dead_lettered: 1,
                ..Default::default()
            }
        );

        // Replay: a new message with a fresh delivery count, despite the known MessageId.
        let new_seq = q.resubmit_dead_letter("a", dl[0].sequence_number).unwrap();
        assert!(new_seq > dl[0].sequence_number);
        let d = q.receive("a").unwrap().unwrap();
        assert_eq!(
            (d.message_id.as_str(), d.delivery_count, d.sequence_number),
            ("poison", 1, new_seq)
        );
        assert_eq!(d.body, br#"{"id":"poison"}"#);
        assert!(matches!(
            q.resubmit_dead_letter("a", dl[0].sequence_number),
            Err(QueueError::NotFound(_))
        ));
    }

    #[test]
    fn expired_lock_at_max_count_is_dead_lettered_on_next_receive() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.send_blocking(&msg("a", "m")).unwrap();
        q.receive_with("a", fast(Duration::from_millis(50), 1))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(80));
        assert!(q
            .receive_with("a", fast(Duration::from_millis(50), 1))
            .unwrap()
            .is_none());
        assert_eq!(q.counts("a").unwrap().dead_lettered, 1);
    }

    #[test]
    fn explicit_dead_letter_keeps_reason_and_description() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.send_blocking(&msg("a", "m")).unwrap();
        let d = q.receive("a").unwrap().unwrap();
        q.dead_letter(&d.lock_token, "InvalidRequest", "schema version 9 unknown")
            .unwrap();
        let dl = q.dead_letters("a").unwrap();
        assert_eq!(dl[0].dead_letter_reason.as_deref(), Some("InvalidRequest"));
        assert_eq!(
            dl[0].dead_letter_description.as_deref(),
            Some("schema version 9 unknown")
        );
    }

    #[test]
    fn scheduled_message_is_not_receivable_before_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        let at = OffsetDateTime::now_utc() + Duration::from_millis(300);
        q.send_blocking(&msg("a", "later").scheduled_at(at))
            .unwrap();
        q.send_blocking(&msg("a", "now")).unwrap();
        assert_eq!(
            q.counts("a").unwrap(),
            QueueCounts {
                active: 1,
                scheduled: 1,
                ..Default::default()
            }
        );
        let d = q.receive("a").unwrap().unwrap();
        assert_eq!(d.message_id, "now");
        assert!(q.receive("a").unwrap().is_none());
        std::thread::sleep(Duration::from_millis(350));
        let d = q.receive("a").unwrap().unwrap();
        assert_eq!(d.message_id, "later");
        assert_eq!(d.scheduled_enqueue_time.map(to_micros), Some(to_micros(at)));
    }

    #[test]
    fn properties_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        let mut m = msg("a", "p").correlated("corr");
        m.session_id = Some("s".into());
        m.application_properties
            .insert("tenant".into(), serde_json::json!("t1"));
        m.application_properties
            .insert("attempt".into(), serde_json::json!(2));
        q.send_blocking(&m).unwrap();
        let d = q.receive("a").unwrap().unwrap();
        assert_eq!(d.correlation_id.as_deref(), Some("corr"));
        assert_eq!(d.session_id.as_deref(), Some("s"));
        assert_eq!(d.content_type.as_deref(), Some("application/json"));
        assert_eq!(d.application_properties, m.application_properties);
        assert_eq!(d.body, m.body);
    }

    /// Simulated kill -9: locks taken, the handle dropped without settling, the file reopened.
    #[test]
    fn restart_loses_nothing_and_counts_the_interrupted_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let n = 200;
        {
            let q = LocalQueue::open(&path).unwrap();
            let batch: Vec<_> = (0..n).map(|i| msg("a", &format!("m{i:03}"))).collect();
            assert!(q
                .send_many_blocking(&batch)
                .unwrap()
                .iter()
                .all(|o| *o == SendOutcome::Enqueued));
            // The lock must outlast the 37 receives even on a loaded machine: a lock that
            // expired mid-loop would hand the same message out again (flaky at 200 ms).
            for _ in 0..37 {
                q.receive_with("a", fast(Duration::from_millis(2000), 10))
                    .unwrap()
                    .unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(2100));
        let q = LocalQueue::open(&path).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        while let Some(d) = q.receive("a").unwrap() {
            assert!(seen
                .insert(d.message_id.clone(), d.delivery_count)
                .is_none());
            q.complete(&d.lock_token).unwrap();
        }
        assert_eq!(seen.len(), n);
        assert_eq!(seen.values().filter(|&&c| c == 2).count(), 37);
        assert_eq!(seen.values().filter(|&&c| c == 1).count(), n - 37);
        assert_eq!(
            q.counts("a").unwrap(),
            QueueCounts {
                completed: n as u64,
                ..Default::default()
            }
        );
    }

    /// Two handles (two connections, as two processes would have) never deliver one message twice.
    #[test]
    fn two_connections_on_one_file_share_work_without_double_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let a = LocalQueue::open(&path).unwrap();
        let b = LocalQueue::open(&path).unwrap();
        let batch: Vec<_> = (0..100).map(|i| msg("a", &format!("m{i}"))).collect();
        a.send_many_blocking(&batch).unwrap();
        let handles: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|q| {
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    while let Some(d) = q.receive("a").unwrap() {
                        q.complete(&d.lock_token).unwrap();
                        ids.push(d.message_id);
                    }
                    ids
                })
            })
            .collect();
        let mut all: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
        assert_eq!(b.counts("a").unwrap().completed, 100);
    }

    #[test]
    fn timer_status_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let t = OffsetDateTime::from_unix_timestamp(1_735_786_800).unwrap();
        let s = TimerStatus {
            last: t,
            next: t + Duration::from_secs(86_400),
            last_updated: t,
        };
        LocalQueue::open(&path)
            .unwrap()
            .set_timer_status("sweep", &s)
            .unwrap();
        assert_eq!(
            LocalQueue::open(&path)
                .unwrap()
                .timer_status("sweep")
                .unwrap(),
            Some(s)
        );
    }

    #[tokio::test]
    async fn message_bus_impl_sends() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        let bus: &dyn MessageBus = &q;
        assert_eq!(
            bus.send(msg("a", "x")).await.unwrap(),
            SendOutcome::Enqueued
        );
        assert_eq!(
            bus.send(msg("a", "x")).await.unwrap(),
            SendOutcome::Duplicate
        );
        bus.send_all(vec![msg("a", "y"), msg("a", "x")])
            .await
            .unwrap();
        assert_eq!(q.counts("a").unwrap().active, 2);
    }
}
