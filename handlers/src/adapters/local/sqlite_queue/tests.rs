//! Unit tests of `adapters::local::sqlite_queue`.

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
