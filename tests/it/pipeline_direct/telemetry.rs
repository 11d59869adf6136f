//! Telemetry purges across timer runs and the certificate v2 they produce.

use super::*;

/// The telemetry rows of `user` left in the local tables.
async fn telemetry_rows_of(e: &Env, user: &str) -> usize {
    let oid = e.truth.user(user).unwrap().object_id.to_string();
    let mut n = 0;
    for c in e
        .store
        .list_containers("telemetrylocal", "ws-")
        .await
        .unwrap()
    {
        for b in e.store.list_all("telemetrylocal", &c, "").await.unwrap() {
            let (bytes, _) = e
                .store
                .read_small(&BlobRef::new("telemetrylocal", &c, b.name))
                .await
                .unwrap();
            n += String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| l.contains(&oid))
                .count();
        }
    }
    n
}

/// A purge that stays pending across two timer runs, then completes: the report says
/// "completed — telemetry purge pending (operation …, requested …)" until then, the rows go
/// only when the purge completes, and a new certificate version says completed (with an audit
/// record of the change and a second result message).
#[tokio::test]
async fn telemetry_purge_pending_across_two_timer_runs_then_certificate_v2_completed() {
    use azureml_dsr::adapters::local::telemetry::LocalTelemetry;
    let mut e = env(HoldSet::default(), 1000).await;
    e.svc.telemetry = Arc::new(LocalTelemetry::new(e.store.clone()).with_pending_polls(2));
    // Through the retention-sweep timer function itself (job retention is off by default).
    let timer = azureml_dsr::protocol::timer::TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: false,
    };
    let sweep = |now| {
        let (svc, timer) = (&e.svc, &timer);
        async move {
            Ok::<_, ()>(
                azureml_dsr::functions::retention::run(svc, timer, now)
                    .await
                    .unwrap()
                    .purges,
            )
        }
    };
    assert!(telemetry_rows_of(&e, "bob").await > 0);
    submit(&e, request(&e, "DEL-T1", "delete", "bob", false), 1).await;
    let v1 = certificate(&e, "DEL-T1", "certificate.json").await.unwrap();
    assert_eq!(v1.status, FinalStatus::CompletedPurgePending);
    let md = String::from_utf8(
        e.store
            .read_small(&BlobRef::new(
                "dsrstate",
                "dsr-reports",
                "DEL-T1/certificate.md",
            ))
            .await
            .unwrap()
            .0
            .to_vec(),
    )
    .unwrap();
    assert!(
        md.contains("completed — telemetry purge pending (operation purge-")
            && md.contains("requested "),
        "{md}"
    );
    let now = time::OffsetDateTime::now_utc();
    for run in 0..2 {
        let s = sweep(now + time::Duration::hours(run)).await.unwrap();
        assert!(s.still_open > 0 && s.revised.is_empty(), "run {run}: {s:?}");
        assert!(
            telemetry_rows_of(&e, "bob").await > 0,
            "rows go only on completion"
        );
        assert!(certificate(&e, "DEL-T1", "certificate.v2.json")
            .await
            .is_none());
    }
    let s = sweep(now + time::Duration::hours(2)).await.unwrap();
    assert_eq!(s.revised, ["DEL-T1"], "{s:?}");
    assert_eq!(telemetry_rows_of(&e, "bob").await, 0);
    assert!(
        telemetry_rows_of(&e, "carol").await > 0,
        "only the subject's rows"
    );
    let v2 = certificate(&e, "DEL-T1", "certificate.v2.json")
        .await
        .unwrap();
    assert_eq!(v2.status, FinalStatus::Completed, "{:#?}", v2.counts);
    assert_eq!(v2.counts.pending, 0);
    // The first version is unchanged; the change is audited; a second result message.
    assert_eq!(
        certificate(&e, "DEL-T1", "certificate.json").await.unwrap(),
        v1
    );
    let audit: serde_json::Value = e
        .store
        .read_json(&BlobRef::new(
            "dsrstate",
            "dsr-audit",
            "requests/DEL-T1.v2.json",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audit["previousStatus"], "completed_purge_pending");
    assert_eq!(audit["status"], "completed");
    let results = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .count();
    assert_eq!(results, 2);
    // Nothing left to poll; a further run changes nothing.
    let s = sweep(now + time::Duration::hours(3)).await.unwrap();
    assert_eq!(s, Default::default());
}

/// A purge that fails: the new certificate version says partially failed, naming the purge.
#[tokio::test]
async fn telemetry_purge_that_fails_gives_a_failed_certificate_v2() {
    use azureml_dsr::adapters::local::telemetry::LocalTelemetry;
    use azureml_dsr::functions::telemetry_purges::sweep;
    let mut e = env(HoldSet::default(), 1000).await;
    e.svc.telemetry = Arc::new(LocalTelemetry::new(e.store.clone()).with_failing_purges());
    submit(&e, request(&e, "DEL-T2", "delete", "bob", false), 1).await;
    assert_eq!(
        certificate(&e, "DEL-T2", "certificate.json")
            .await
            .unwrap()
            .status,
        FinalStatus::CompletedPurgePending
    );
    let s = sweep(&e.svc, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(s.revised, ["DEL-T2"]);
    let v2 = certificate(&e, "DEL-T2", "certificate.v2.json")
        .await
        .unwrap();
    assert_eq!(v2.status, FinalStatus::PartiallyFailed);
    let failed: Vec<&ItemStatus> = v2
        .results
        .iter()
        .flat_map(|r| &r.items)
        .filter(|i| matches!(i.item, Item::Telemetry { .. }))
        .map(|i| &i.status)
        .collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|s| matches!(s, ItemStatus::Failed { reason } if reason.contains("purge"))),
        "{failed:?}"
    );
    assert!(
        telemetry_rows_of(&e, "bob").await > 0,
        "a failed purge removes nothing"
    );
}
