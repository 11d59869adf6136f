//! Event Grid and timer triggers: retries with backoff, schedules, past-due runs at start-up.

use super::*;

#[tokio::test]
async fn event_grid_event_is_delivered_and_retried_with_backoff() {
    let e = env(
        16,
        &[(
            "workspace-deleted",
            json!({"type": "eventGridTrigger", "direction": "in", "name": "event"}),
        )],
    );
    let h = Handler::start(|_, _, n| (if n == 0 { 500 } else { 200 }, Duration::ZERO)).await;
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/functions-host/msdocs-eventgrid-subscription-resource-delete-success.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let event = if let Value::Array(a) = &fixture {
        a[0].clone()
    } else {
        fixture.clone()
    };
    let q = event_grid_queue("workspace-deleted");
    let id = event["id"].as_str().unwrap_or("evt-1").to_string();
    e.queue.send_blocking(&msg(&q, &id, event.clone())).unwrap();

    let opts = DispatcherOptions {
        event_grid_retry_delays: vec![Duration::from_millis(300)],
        ..fast_options()
    };
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    let queue = e.queue.clone();
    let q2 = q.clone();
    let done = async move {
        while queue.counts(&q2).unwrap().completed == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), d.run(done))
        .await
        .unwrap()
        .unwrap();

    let calls = h.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body["Data"]["event"], event);
    assert_eq!(calls[0].body["Metadata"]["data"], event["data"]);
    assert_eq!(
        calls[0].body["Metadata"]["sys"]["MethodName"],
        json!("workspace-deleted")
    );
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(300));
    assert_eq!(
        e.queue.counts(&q).unwrap(),
        QueueCounts {
            completed: 1,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn timer_fires_on_schedule_and_persists_its_status() {
    let timer = json!({"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "%TICK%", "useMonitor": true});
    let e = env(16, &[("retention-sweep", timer)]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let mut opts = fast_options();
    opts.settings.insert("TICK".into(), "* * * * * *".into());
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, opts).unwrap();
    d.run(tokio::time::sleep(Duration::from_millis(2300)))
        .await
        .unwrap();

    let calls = h.calls();
    assert!(
        (2..=3).contains(&calls.len()),
        "{} timer invocations",
        calls.len()
    );
    let t0 = &calls[0].body["Data"]["timer"];
    assert_eq!(t0["Schedule"], json!({"AdjustForDST": true}));
    assert_eq!(t0["IsPastDue"], json!(false));
    assert_eq!(
        t0["ScheduleStatus"]["Last"],
        json!("0001-01-01T00:00:00+00:00")
    );
    assert_eq!(
        calls[1].body["Data"]["timer"]["ScheduleStatus"]["Last"],
        t0["ScheduleStatus"]["Next"]
    );
    assert_eq!(
        calls[0].body["Metadata"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["sys"]
    );
    let status = e.queue.timer_status("retention-sweep").unwrap().unwrap();
    assert!(status.next > status.last);
}

#[tokio::test]
async fn missed_occurrence_runs_at_startup_as_past_due() {
    let timer = json!({"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 0 * * * *", "useMonitor": true});
    let e = env(16, &[("retention-sweep", timer)]);
    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let now = OffsetDateTime::now_utc();
    let missed = TimerStatus {
        last: now - Duration::from_secs(7200),
        next: now - Duration::from_secs(3600),
        last_updated: now - Duration::from_secs(7200),
    };
    e.queue
        .set_timer_status("retention-sweep", &missed)
        .unwrap();
    let d = Dispatcher::new(&e.root, e.queue.clone(), &h.base_url, fast_options()).unwrap();
    d.run(tokio::time::sleep(Duration::from_millis(500)))
        .await
        .unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    let t = &calls[0].body["Data"]["timer"];
    assert_eq!(t["IsPastDue"], json!(true));
    assert!(t["ScheduleStatus"]["Next"]
        .as_str()
        .unwrap()
        .ends_with("+00:00"));
    let status = e.queue.timer_status("retention-sweep").unwrap().unwrap();
    assert_eq!(status.last.unix_timestamp(), missed.next.unix_timestamp());
    assert!(status.next > now);
}
