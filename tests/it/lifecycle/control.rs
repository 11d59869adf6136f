//! Bad control messages are rejected with a reason and kept.

use super::*;

#[tokio::test]
async fn bad_control_messages_are_rejected_with_a_reason_and_kept() {
    let e = env(5).await;
    send_intake(&e, &request(&e, "LC-5", "export", "carol")).await;
    let cases = [
        (
            json!({"type": "cancel", "requestId": "LC-5"}),
            "invalid_control",
        ),
        (
            json!({"type": "cancel", "version": 2, "requestId": "LC-5"}),
            "unsupported_version",
        ),
        (json!({"type": "cancel", "version": 1}), "invalid_control"),
        (
            json!({"type": "cancel", "version": 1, "requestId": "../x"}),
            "invalid_control",
        ),
        (
            json!({"type": "cancel", "version": 1, "requestId": "LC-5", "reasn": "typo"}),
            "invalid_control",
        ),
        (
            json!({"type": "cancel", "version": 1, "requestId": "LC-5", "reason": 7}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": 10}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": "ten", "reason": "x"}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": 0, "reason": "x"}),
            "invalid_control",
        ),
        (
            json!({"type": "extend", "version": 1, "requestId": "LC-5", "days": -3, "reason": "x"}),
            "invalid_control",
        ),
    ];
    for (body, code) in &cases {
        let out = send_intake(&e, body).await;
        assert_eq!(control_rejected(&out), Some(*code), "{body}");
        // Kept for audit, exactly as received.
        let sha = azureml_dsr::domain::ids::sha256_hex(body.to_string().as_bytes());
        let archived = e
            .store
            .list_all("dsrstate", "dsr-intake-archive", "")
            .await
            .unwrap();
        assert!(archived
            .iter()
            .any(|b| b.name.ends_with(&format!("{sha}.bin"))));
        assert!(e
            .store
            .read_small(
                &e.svc
                    .state()
                    .blob("dsr-audit", format!("control-rejected/{sha}.json"))
            )
            .await
            .is_ok());
    }
    let rejections: Vec<Value> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
        .filter(|m| m["event"] == "control_rejected")
        .collect();
    assert_eq!(rejections.len(), cases.len());
    for r in &rejections {
        assert!(r["reason"].as_str().is_some_and(|s| s.len() > 10), "{r}");
        assert!(r["control"].is_string(), "{r}");
    }
    // None of them touched the request.
    let l = lifecycle(&e, "LC-5").await;
    assert_eq!(l.state, RequestState::Planned);
    assert!(l.cancel.is_none() && l.extensions.is_empty());
    // A finished request cannot be cancelled.
    drive(&e).await;
    let out = send_intake(
        &e,
        &json!({"type": "cancel", "version": 1, "requestId": "LC-5"}),
    )
    .await;
    assert_eq!(control_rejected(&out), Some("not_cancellable"));
    assert_eq!(lifecycle(&e, "LC-5").await.state, RequestState::Completed);
}
