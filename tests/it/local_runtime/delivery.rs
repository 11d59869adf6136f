//! Queue delivery: redelivery and host encoding, dead letter, unreachable handler, duplicates,
//! scheduled messages.

use super::*;

#[tokio::test]
async fn redelivery_500_500_200_and_host_encoding() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, n| (if n < 2 { 500 } else { 200 }, Duration::ZERO)).await;
    let mut m = msg(
        "dsr-intake",
        "req-1",
        json!({"requestId": "r1", "kind": "delete"}),
    )
    .correlated("corr-1");
    m.application_properties
        .insert("tenant".into(), json!("t1"));
    assert_eq!(e.queue.send_blocking(&m).unwrap(), SendOutcome::Enqueued);

    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();

    let calls = h.calls();
    let counts: Vec<&Value> = calls.iter().map(|c| md(c, "DeliveryCount")).collect();
    assert_eq!(counts, [&json!("1"), &json!("2"), &json!("3")]);
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );

    let c = &calls[0];
    assert_eq!(c.function, "dsr-intake");
    assert_eq!(
        decode_data(&c.body["Data"]["message"]),
        json!({"requestId": "r1", "kind": "delete"})
    );
    assert_eq!(md(c, "MessageId"), &json!("\"req-1\""));
    assert_eq!(md(c, "CorrelationId"), &json!("\"corr-1\""));
    assert_eq!(md(c, "ContentType"), &json!("\"application/json\""));
    assert_eq!(md(c, "ApplicationProperties"), &json!({"tenant": "t1"}));
    assert_eq!(md(c, "UserProperties"), &json!({"tenant": "t1"}));
    assert_eq!(md(c, "MessageActions"), &json!({}));
    assert_eq!(md(c, "ExpiresAtUtc"), &json!("9999-12-31T23:59:59"));
    // Body properties merged into Metadata as JSON-encoded strings (the host's quirk).
    assert_eq!(md(c, "requestId"), &json!("\"r1\""));
    let seq: i64 = md(c, "SequenceNumber").as_str().unwrap().parse().unwrap();
    assert!(seq > 0);
    let enq = md(c, "EnqueuedTimeUtc").as_str().unwrap();
    assert_eq!(enq.len(), 19, "naive seconds-precision datetime: {enq}");
    assert_eq!(
        md(c, "EnqueuedTime").as_str().unwrap(),
        format!("{enq}+00:00")
    );
    assert_eq!(c.body["Metadata"]["sys"]["MethodName"], json!("dsr-intake"));
    assert!(c.body["Metadata"]["sys"]["UtcNow"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // A fresh lock token per delivery.
    assert_ne!(md(&calls[0], "LockToken"), md(&calls[1], "LockToken"));
    assert!(c.headers["x-azure-functions-invocationid"]
        .to_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .is_ok());
    assert!(c.headers.contains_key("x-azure-functions-hostversion"));
    assert!(c.headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("Azure-Functions-Host/4"));
    assert_eq!(c.headers["content-type"], "application/json");
}

#[tokio::test]
async fn dead_letter_after_max_delivery_count() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (500, Duration::ZERO)).await;
    e.queue
        .send_blocking(&msg("dsr-intake", "poison", json!({"x": 1})))
        .unwrap();
    let opts = DispatcherOptions {
        max_delivery_count: 3,
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h.calls().len(), 3);
    let dl = e.queue.dead_letters("dsr-intake").unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some(MAX_DELIVERY_COUNT_EXCEEDED)
    );
    assert_eq!(dl[0].delivery_count, 3);
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            dead_lettered: 1,
            ..Default::default()
        }
    );

    // Replay after the "fix": delivered once more, with DeliveryCount 1.
    e.queue
        .resubmit_dead_letter("dsr-intake", dl[0].sequence_number)
        .unwrap();
    let h2 = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h2.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h2.calls().len(), 1);
    assert_eq!(md(&h2.calls()[0], "DeliveryCount"), &json!("1"));
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn unreachable_handler_abandons_until_dead_letter() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    // Bind then drop: nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    e.queue
        .send_blocking(&msg("dsr-intake", "m", json!({})))
        .unwrap();
    let opts = DispatcherOptions {
        max_delivery_count: 2,
        ..fast_options()
    };
    let d = Dispatcher::new(
        &e.root,
        e.queue.clone(),
        format!("http://127.0.0.1:{port}"),
        opts,
    )
    .unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            dead_lettered: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn duplicate_message_id_is_delivered_once() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    assert_eq!(
        e.queue
            .send_blocking(&msg("dsr-intake", "same", json!({"a": 1})))
            .unwrap(),
        SendOutcome::Enqueued
    );
    assert_eq!(
        e.queue
            .send_blocking(&msg("dsr-intake", "same", json!({"a": 2})))
            .unwrap(),
        SendOutcome::Duplicate
    );
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        decode_data(&calls[0].body["Data"]["message"]),
        json!({"a": 1})
    );
}

#[tokio::test]
async fn scheduled_message_is_not_delivered_before_its_time() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let at = OffsetDateTime::now_utc() + Duration::from_millis(800);
    e.queue
        .send_blocking(&msg("dsr-intake", "later", json!({})).scheduled_at(at))
        .unwrap();
    e.queue
        .send_blocking(&msg("dsr-intake", "now", json!({})))
        .unwrap();
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(h.calls().len(), 1);
    assert_eq!(md(&h.calls()[0], "MessageId"), &json!("\"now\""));
    assert_eq!(
        e.queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            scheduled: 1,
            completed: 1,
            ..Default::default()
        }
    );

    tokio::time::sleep(Duration::from_millis(900)).await;
    d.drain_until_idle(Duration::from_secs(10)).await.unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(md(&calls[1], "MessageId"), &json!("\"later\""));
    assert!(calls[1].at >= at);
}
