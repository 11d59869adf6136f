//! `ServiceBusSender`: broker properties and 503 retries.

use super::*;

#[tokio::test]
async fn service_bus_send_carries_broker_properties_and_retries_503() {
    let server = serve(SERVICEBUS_SCOPE, |c| {
        assert_eq!(c.req.path, "/dsr-slice-jobs/messages");
        if c.n == 0 {
            return (503, vec![], Value::Null);
        }
        (201, vec![], Value::Null)
    })
    .await;
    let bus = ServiceBusSender::new(rest(SERVICEBUS_SCOPE), &server.base).unwrap();
    let mut msg = OutMessage::json("dsr-slice-jobs", "req-7/ws/jobs", &json!({"slice": 1}))
        .correlated("req-7")
        .scheduled_at(time::macros::datetime!(2026-11-28 21:00:00 UTC));
    msg.session_id = Some("req-7".into());
    msg.application_properties
        .insert("DsrKind".into(), json!("delete"));
    assert_eq!(bus.send(msg).await.unwrap(), SendOutcome::Enqueued);
    let sent = server.requests("POST", "/messages");
    assert_eq!(sent.len(), 2);
    let last = &sent[1];
    let bp: Value = serde_json::from_str(&last.headers["brokerproperties"]).unwrap();
    assert_eq!(
        bp,
        json!({"MessageId": "req-7/ws/jobs", "SessionId": "req-7", "CorrelationId": "req-7",
               "ScheduledEnqueueTimeUtc": "Sat, 28 Nov 2026 21:00:00 GMT"})
    );
    assert_eq!(last.headers["content-type"], "application/json");
    assert_eq!(last.headers["dsrkind"], "\"delete\"");
    assert_eq!(last.body, r#"{"slice":1}"#);
}
