//! Deadlines: extensions within the law, audited; timer warnings before and when missed.

use super::*;

#[tokio::test]
async fn an_extension_moves_the_deadline_past_the_original_within_the_law_and_is_audited() {
    let e = env(5).await;
    send_intake(&e, &request(&e, "LC-4", "export", "bob")).await;
    let original = lifecycle(&e, "LC-4").await.deadline;
    let ext = json!({"type": "extend", "version": 1, "requestId": "LC-4", "days": 20,
                     "reason": "the request covers twelve workspaces"});
    let out = send_intake(&e, &ext).await;
    assert!(
        matches!(
            out,
            IntakeOutcome::Control {
                outcome: ControlOutcome::Applied { changed: true, .. },
                ..
            }
        ),
        "{out:?}"
    );
    // Redelivered: not extended twice.
    send_intake(&e, &ext).await;
    let l = lifecycle(&e, "LC-4").await;
    assert_eq!(l.original_deadline, original);
    assert_eq!(l.deadline, original + Duration::days(20));
    assert_eq!(l.extensions.len(), 1);
    let msgs: Vec<Value> = lifecycle_messages(&e, "LC-4")
        .into_iter()
        .filter(|m| m["event"] == "deadline_extended")
        .collect();
    assert_eq!(msgs.len(), 1);
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert_eq!(msgs[0]["deadline"], fmt(original + Duration::days(20)));
    assert_eq!(msgs[0]["previousDeadline"], fmt(original));
    assert_eq!(msgs[0]["reason"], "the request covers twelve workspaces");
    let audit = e
        .store
        .list_all("dsrstate", "dsr-audit", "lifecycle/LC-4/")
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    let (bytes, _) = e
        .store
        .read_small(&e.svc.state().blob("dsr-audit", audit[0].name.clone()))
        .await
        .unwrap();
    let a: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(a["control"], "extend");
    assert_eq!(a["detail"]["days"], 20);
    // Beyond two further months: refused with the limit, nothing changes.
    let too_far = json!({"type": "extend", "version": 1, "requestId": "LC-4", "days": 45,
                         "reason": "still more"});
    let out = send_intake(&e, &too_far).await;
    assert_eq!(control_rejected(&out), Some("extension_beyond_legal_limit"));
    let rejected: Vec<Value> = lifecycle_messages(&e, "LC-4")
        .into_iter()
        .filter(|m| m["event"] == "control_rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("two further months"),
        "{rejected:?}"
    );
    assert_eq!(lifecycle(&e, "LC-4").await.deadline, l.deadline);
    // The export still finishes; its manifest carries the deadline in force.
    drive(&e).await;
    assert_eq!(lifecycle(&e, "LC-4").await.state, RequestState::Completed);
    let r = report(&e, "LC-4").await;
    assert_eq!(r.deadline, original + Duration::days(20));
    assert!(r.within_deadline);
}

#[tokio::test]
async fn the_timer_warns_before_the_deadline_and_when_it_is_missed_once_each() {
    let e = env(5).await;
    let now = OffsetDateTime::now_utc();
    let received = now - Duration::days(26);
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // Open (planned, never driven): due within 7 days.
    let mut open = request(&e, "LC-6", "export", "bob");
    open["receivedAt"] = rfc(received).into();
    send_intake(&e, &open).await;
    // Finished: never warned about.
    let mut done = request(&e, "LC-7", "export", "bob");
    done["receivedAt"] = rfc(received).into();
    send_intake(&e, &done).await;
    while let Some(m) = e.bus.pop() {
        // Only LC-7's work is delivered: LC-6 stays open.
        let is_lc6 = serde_json::from_slice::<Value>(&m.body)
            .ok()
            .is_some_and(|v| v["requestId"] == "LC-6");
        if !is_lc6 {
            deliver(&e.svc, &m).await;
        }
    }
    assert_eq!(lifecycle(&e, "LC-7").await.state, RequestState::Completed);
    let deadline = lifecycle(&e, "LC-6").await.deadline;
    assert!(deadline > now && deadline - now < Duration::days(7));

    let attempts = |kind: &str| {
        e.rec
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.queue == queues::RESULTS)
            .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
            .filter(|v| v["event"] == kind)
            .map(|v| v["requestId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let sweep = |at: OffsetDateTime| {
        let svc = e.svc.clone();
        async move {
            azureml_dsr::functions::retention::run(&svc, &timer(), at)
                .await
                .unwrap()
        }
    };
    let s = sweep(now).await;
    assert_eq!(s.deadline_warnings.len(), 1);
    sweep(now + Duration::hours(1)).await;
    assert_eq!(attempts("deadline_approaching"), vec!["LC-6"]);
    assert!(attempts("deadline_missed").is_empty());
    let late = deadline + Duration::hours(1);
    sweep(late).await;
    sweep(late + Duration::days(1)).await;
    assert_eq!(attempts("deadline_missed"), vec!["LC-6"]);
    assert_eq!(attempts("deadline_approaching"), vec!["LC-6"]);
    let l = lifecycle(&e, "LC-6").await;
    assert_eq!(l.warnings.len(), 2);
    // The warning is in the request's trace.
    let w = e
        .bus
        .sent()
        .into_iter()
        .find(|m| {
            serde_json::from_slice::<Value>(&m.body).is_ok_and(|v| v["event"] == "deadline_missed")
        })
        .unwrap();
    let tp = w.application_properties[DIAGNOSTIC_ID].as_str().unwrap();
    assert_eq!(TraceContext::parse(tp).unwrap().trace_id, l.trace_id);
}
