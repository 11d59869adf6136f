//! Operator views and actions on the queue file beside delivery: resubmitting a dead letter,
//! counts, pending work, peeks, the dead-letter sub-queue, queue names, and the timer status the
//! local runtime persists between runs.

use super::*;

impl LocalQueue {
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
