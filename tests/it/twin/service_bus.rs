//! `ServiceBusSender` against the Service Bus stand-in: sends land in the local queue with
//! their broker properties.

use super::*;

#[tokio::test]
async fn service_bus_sends_land_in_the_local_queue_with_their_properties() {
    let dir = tempfile::tempdir().unwrap();
    let queue = LocalQueue::open(dir.path().join("queue.db")).unwrap();
    let sb = ServiceBusStandIn::start(queue.clone(), &["dsr-slice-jobs", "dsr-results"]);
    let bus = ServiceBusSender::new(rest(SERVICEBUS_SCOPE), sb.base_url()).unwrap();

    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        - time::Duration::seconds(5);
    let mut msg = OutMessage::json("dsr-slice-jobs", "req-7/ws/jobs", &json!({"slice": 1}))
        .correlated("req-7")
        .scheduled_at(at);
    msg.session_id = Some("req-7".into());
    msg.application_properties
        .insert("DsrKind".into(), json!("delete"));
    msg.application_properties
        .insert("Attempt".into(), json!(2));
    msg.application_properties
        .insert("DryRun".into(), json!(false));
    // One throttling fault (503, error 50009): retried.
    sb.throttle_next(1);
    assert_eq!(bus.send(msg.clone()).await.unwrap(), SendOutcome::Enqueued);
    // The same MessageId again: 201 as the service answers, dropped by duplicate detection.
    assert_eq!(bus.send(msg.clone()).await.unwrap(), SendOutcome::Enqueued);
    let statuses: Vec<u16> = sb.requests().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [503, 201, 201]);
    let accepted = sb.accepted();
    assert_eq!(accepted.len(), 2);
    assert!(!accepted[0].duplicate && accepted[1].duplicate);
    let got = &accepted[0].message;
    assert_eq!(got.message_id, "req-7/ws/jobs");
    assert_eq!(got.session_id.as_deref(), Some("req-7"));
    assert_eq!(got.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(got.scheduled_enqueue_time, Some(at));
    assert_eq!(got.body, br#"{"slice":1}"#);
    assert_eq!(got.content_type, "application/json");
    // Header names arrive lower-cased; values keep their JSON types.
    assert_eq!(
        got.application_properties.get("dsrkind"),
        Some(&json!("delete"))
    );
    assert_eq!(got.application_properties.get("attempt"), Some(&json!(2)));
    assert_eq!(
        got.application_properties.get("dryrun"),
        Some(&json!(false))
    );
    assert_eq!(
        got.application_properties.len(),
        3,
        "{:?}",
        got.application_properties
    );

    // What the Functions-host stand-in would deliver: one message, with the same properties.
    let d = queue.receive("dsr-slice-jobs").unwrap().expect("delivered");
    assert_eq!(d.message_id, "req-7/ws/jobs");
    assert_eq!(d.session_id.as_deref(), Some("req-7"));
    assert_eq!(d.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(d.body, br#"{"slice":1}"#);
    assert_eq!(d.application_properties.get("attempt"), Some(&json!(2)));
    assert!(queue.receive("dsr-slice-jobs").unwrap().is_none());

    // Unknown queue: 404 with Service Bus's error body, not retried.
    let err = bus
        .send(OutMessage::json("dsr-nope", "m1", &json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BusError::Other(m) if m.contains("404") && m.contains("could not be found")),
        "{err}"
    );
    // Wrong audience: 401.
    let wrong = ServiceBusSender::new(rest(GRAPH_SCOPE), sb.base_url()).unwrap();
    let err = wrong
        .send(OutMessage::json("dsr-results", "m2", &json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BusError::Other(m) if m.contains("401")),
        "{err}"
    );
    // Malformed BrokerProperties: 400.
    let r = http()
        .post(format!("{}/dsr-results/messages", sb.base_url()))
        .bearer_auth(IdentityStandIn::shared().token_for("https://servicebus.azure.net"))
        .header("BrokerProperties", "{not json")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("<Error><Code>400</Code><Detail>"));
    assert_eq!(queue.peek("dsr-results").unwrap().len(), 0);
}
