//! Documented examples are accepted; rejected requests are recorded, may be sent again, and expire.

use super::*;

fn repo_file(rel: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// The documented examples are what the service accepts and sends: each control example (in
/// `examples/` and in its schema) is carried out, and each lifecycle-message example reads as
/// the message type the service sends.
#[tokio::test]
async fn the_documented_examples_are_accepted_and_match_the_messages_sent() {
    let e = env(5).await;
    let mut examples = vec![
        repo_file("examples/control-extend.json"),
        repo_file("examples/control-cancel.json"),
    ];
    for schema in [
        "schemas/dsr-control-extend.schema.json",
        "schemas/dsr-control-cancel.schema.json",
    ] {
        examples.extend(repo_file(schema)["examples"].as_array().unwrap().clone());
    }
    for (i, mut ex) in examples.into_iter().enumerate() {
        let id = format!("LC-EX-{i}");
        send_intake(&e, &request(&e, &id, "export", "alice")).await;
        ex["requestId"] = id.clone().into();
        let out = send_intake(&e, &ex).await;
        assert!(
            matches!(
                out,
                IntakeOutcome::Control {
                    outcome: ControlOutcome::Applied { changed: true, .. },
                    ..
                }
            ),
            "{ex}: {out:?}"
        );
    }
    let schema = repo_file("schemas/dsr-lifecycle-message.schema.json");
    let events: Vec<&str> = schema["properties"]["event"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for ex in schema["examples"].as_array().unwrap() {
        let m: azureml_dsr::functions::lifecycle::LifecycleMessage =
            serde_json::from_value(ex.clone()).unwrap_or_else(|err| panic!("{ex}: {err}"));
        assert!(events.contains(&m.event.as_str()));
    }
    // Every state the schema lists is one the service has, and the other way round.
    let states: Vec<String> = schema["$defs"]["state"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let ours: Vec<String> = RequestState::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    assert_eq!(states, ours);
    // And every message this test's requests produced has a documented event.
    for m in e.bus.sent().iter().filter(|m| m.queue == queues::RESULTS) {
        if azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body) {
            let v: Value = serde_json::from_slice(&m.body).unwrap();
            assert!(events.contains(&v["event"].as_str().unwrap()), "{v}");
            assert_eq!(m.application_properties["DsrMessage"], "lifecycle");
        }
    }
}

/// A request refused at intake is `rejected` in its lifecycle (with the reason); sent again,
/// corrected, under the same id it starts over.
#[tokio::test]
async fn a_rejected_request_is_recorded_and_may_be_sent_again_corrected() {
    let e = env(5).await;
    let mut bad = request(&e, "LC-8", "export", "bob");
    bad["scope"]["workspaces"] = json!([
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/not-in-scope"
    ]);
    let out = send_intake(&e, &bad).await;
    assert!(matches!(out, IntakeOutcome::Rejected { .. }), "{out:?}");
    let l = lifecycle(&e, "LC-8").await;
    use RequestState::*;
    assert_eq!(history(&l), vec![Received, Rejected]);
    assert!(l.history[1]
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("not among the workspaces")));
    assert_eq!(announced_states(&e, "LC-8"), vec!["received", "rejected"]);
    send_intake(&e, &request(&e, "LC-8", "export", "bob")).await;
    drive(&e).await;
    let l = lifecycle(&e, "LC-8").await;
    assert_eq!(
        history(&l),
        vec![Received, Rejected, Received, Planned, InProgress, Completed]
    );
    assert_eq!(
        announced_states(&e, "LC-8"),
        vec![
            "received",
            "rejected",
            "received",
            "planned",
            "in_progress",
            "completed"
        ]
    );
}

/// A rejected request's lifecycle (it never gets a report, so it is not removed with a finished
/// request's state) goes after the state retention period; an open request's stays.
#[tokio::test]
async fn a_rejected_requests_lifecycle_expires_with_the_state_retention_period() {
    let e = env(5).await;
    let mut bad = request(&e, "LC-9", "export", "alice");
    bad["subject"] = json!({"upn": "nobody@contoso.com"});
    send_intake(&e, &bad).await;
    send_intake(&e, &request(&e, "LC-10", "export", "bob")).await;
    assert_eq!(lifecycle(&e, "LC-9").await.state, RequestState::Rejected);
    let later =
        OffsetDateTime::now_utc() + Duration::days(e.svc.settings.state_retention_days as i64 + 1);
    let out = azureml_dsr::functions::retention::run(&e.svc, &timer(), later)
        .await
        .unwrap();
    assert_eq!(out.expired_state.rejected_lifecycles, 1, "{out:?}");
    let state = e.svc.state();
    let gone = azureml_dsr::functions::lifecycle::load(&state, &RequestId::parse("LC-9").unwrap())
        .await
        .unwrap();
    assert!(gone.is_none());
    assert_eq!(lifecycle(&e, "LC-10").await.state, RequestState::Planned);
}
