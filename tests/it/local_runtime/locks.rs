//! Locks and concurrency: expired locks redeliver, renewal prevents it, `maxConcurrentCalls` holds.

use super::*;

#[tokio::test]
async fn expired_lock_is_redelivered_while_the_first_invocation_hangs() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, n| {
        (
            200,
            if n == 0 {
                Duration::from_millis(1200)
            } else {
                Duration::ZERO
            },
        )
    })
    .await;
    e.queue
        .send_blocking(&msg("dsr-intake", "slow", json!({})))
        .unwrap();
    let opts = DispatcherOptions {
        lock_duration: Duration::from_millis(300),
        max_auto_lock_renewal: Duration::ZERO,
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    let calls = h.calls();
    let counts: Vec<&Value> = calls.iter().map(|c| md(c, "DeliveryCount")).collect();
    assert_eq!(counts, [&json!("1"), &json!("2")]);
    // The first invocation's late completion hit a lost lock; only the redelivery completed.
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn lock_renewal_prevents_redelivery_of_a_slow_invocation() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (200, Duration::from_millis(1000))).await;
    e.queue
        .send_blocking(&msg("dsr-intake", "slow", json!({})))
        .unwrap();
    let opts = DispatcherOptions {
        lock_duration: Duration::from_millis(300),
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h.calls().len(), 1);
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn in_flight_invocations_never_exceed_max_concurrent_calls() {
    let e = env(
        3,
        &[
            ("slice-data", sb("dsr-slice-data")),
            ("slice-jobs", sb("dsr-slice-jobs")),
        ],
    );
    let h = Handler::start(|_, _, _| (200, Duration::from_millis(60))).await;
    let batch: Vec<_> = (0..20)
        .map(|i| msg("dsr-slice-data", &format!("m{i}"), json!({"i": i})))
        .collect();
    e.queue.send_many_blocking(&batch).unwrap();
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.calls().len(), 20);
    assert_eq!(h.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(
        e.queue.counts("dsr-slice-data").unwrap(),
        QueueCounts {
            completed: 20,
            ..Default::default()
        }
    );
}
