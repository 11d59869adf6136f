//! A request's states, each announced once in one trace; cancel before start and during a delete.

use super::*;

#[tokio::test]
async fn a_delete_passes_through_its_states_each_announced_once_in_one_trace() {
    let e = env(5).await;
    let body = request(&e, "LC-1", "delete", "bob");
    send_intake(&e, &body).await;
    // A redelivered request re-announces nothing new.
    send_intake(&e, &body).await;
    drive(&e).await;
    let l = lifecycle(&e, "LC-1").await;
    use RequestState::*;
    let expected = vec![Received, Planned, InProgress, CompletedPurgePending];
    assert_eq!(history(&l), expected);
    assert_eq!(
        announced_states(&e, "LC-1"),
        expected.iter().map(|s| s.as_str()).collect::<Vec<_>>()
    );
    // Every message the pipeline sent for it carries the same W3C trace.
    let traces: std::collections::BTreeSet<String> = e
        .bus
        .sent()
        .iter()
        .map(|m| {
            let tp = m.application_properties[DIAGNOSTIC_ID].as_str().unwrap();
            TraceContext::parse(tp)
                .unwrap_or_else(|| panic!("bad traceparent {tp}"))
                .trace_id
        })
        .collect();
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert_eq!(traces.into_iter().next().unwrap(), l.trace_id);
    let status = lifecycle_messages(&e, "LC-1");
    assert!(status.iter().all(|m| m["deadline"].is_string()));
}

#[tokio::test]
async fn cancel_before_start_stops_the_request_and_changes_nothing() {
    let e = env(5).await;
    let before = snapshot(&e).await;
    send_intake(&e, &request(&e, "LC-2", "delete", "alice")).await;
    let cancel = json!({"type": "cancel", "version": 1, "requestId": "LC-2", "reason": "subject withdrew the request"});
    let out = send_intake(&e, &cancel).await;
    assert_eq!(
        out,
        IntakeOutcome::Control {
            kind: "cancel".into(),
            outcome: ControlOutcome::Applied {
                request_id: "LC-2".into(),
                changed: true
            }
        }
    );
    // A redelivered cancel changes nothing more.
    let again = send_intake(&e, &cancel).await;
    assert!(matches!(
        again,
        IntakeOutcome::Control {
            outcome: ControlOutcome::Applied { changed: false, .. },
            ..
        }
    ));
    drive(&e).await;
    assert_eq!(
        snapshot(&e).await,
        before,
        "a cancelled request changed data"
    );
    let r = report(&e, "LC-2").await;
    assert_eq!(r.status, FinalStatus::Cancelled);
    assert_eq!(r.counts.items, 0);
    assert!(r
        .results
        .iter()
        .all(|s| s.notes.iter().any(|n| n == CANCELLED_BEFORE_START)));
    let l = lifecycle(&e, "LC-2").await;
    use RequestState::*;
    assert_eq!(history(&l), vec![Received, Planned, Cancelled]);
    assert_eq!(
        l.history.last().unwrap().reason.as_deref(),
        Some("subject withdrew the request")
    );
    assert_eq!(
        announced_states(&e, "LC-2"),
        vec!["received", "planned", "cancelled"]
    );
    // The ticketing system also gets the final result, cancelled.
    let finals: Vec<Value> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| m.queue == queues::RESULTS)
        .filter(|m| !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
        .map(|m| serde_json::from_slice(&m.body).unwrap())
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0]["status"], "cancelled");
    // The cancel is in the request's audit trail.
    let audit = e
        .store
        .list_all("dsrstate", "dsr-audit", "lifecycle/LC-2/")
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
}

/// ARM id -> whether its document is still in the local control plane's store.
fn arm_present(snapshot: &BTreeMap<String, String>, id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    let n = parts.len();
    let suffix = if id.contains("/versions/") {
        format!("/{}/{}/{}.json", parts[n - 4], parts[n - 3], parts[n - 1])
    } else {
        format!("/{}/{}.json", parts[n - 2], parts[n - 1])
    };
    snapshot
        .keys()
        .any(|k| k.starts_with("armlocal/") && k.ends_with(&suffix))
}

#[tokio::test]
async fn cancel_during_a_delete_finishes_the_chunk_and_the_certificate_lists_what_was_and_was_not_deleted(
) {
    // Two items per chunk: the jobs slice takes several chunks.
    let e = env(2).await;
    send_intake(&e, &request(&e, "LC-3", "delete", "alice")).await;
    let mut cancelled = false;
    while let Some(m) = e.bus.pop() {
        if !cancelled && m.queue == queues::SLICE_JOBS {
            let t: SliceTask = serde_json::from_slice(&m.body).unwrap();
            if t.chunk == 1 {
                // Chunk 0 of the jobs slice is done; the cancel arrives before chunk 1.
                let c = json!({"type": "cancel", "version": 1, "requestId": "LC-3"});
                let out = send_intake(&e, &c).await;
                assert!(matches!(
                    out,
                    IntakeOutcome::Control {
                        outcome: ControlOutcome::Applied { changed: true, .. },
                        ..
                    }
                ));
                cancelled = true;
            }
        }
        deliver(&e.svc, &m).await;
    }
    assert!(cancelled, "the jobs slice never reached a second chunk");
    let r = report(&e, "LC-3").await;
    assert_eq!(r.status, FinalStatus::Cancelled);
    let after = snapshot(&e).await;
    let (mut deleted, mut not_deleted) = (0, 0);
    for o in r.results.iter().flat_map(|s| &s.items) {
        let present = match &o.item {
            Item::Blob { .. } => Some(after.contains_key(&o.item.blob_key().unwrap())),
            Item::Resource { id, .. } => Some(arm_present(&after, id)),
            _ => None,
        };
        match &o.status {
            ItemStatus::Deleted { verified } => {
                assert!(verified, "{o:?}");
                if let Some(p) = present {
                    assert!(!p, "reported deleted but still there: {o:?}");
                }
                deleted += 1;
            }
            // A telemetry purge requested before the cancel runs on in Log Analytics.
            ItemStatus::Pending { .. } => {}
            s if is_cancelled_skip(s) => {
                if let Some(p) = present {
                    assert!(p, "reported not deleted but gone: {o:?}");
                }
                not_deleted += 1;
            }
            other => panic!("unexpected outcome {other:?} for {:?}", o.item),
        }
    }
    assert!(deleted > 0, "nothing was deleted before the cancel");
    assert!(not_deleted > 0, "the cancel stopped nothing");
    // The jobs slice kept exactly its first chunk's deletes.
    let jobs = r
        .results
        .iter()
        .find(|s| s.resource_type == azureml_dsr::domain::plan::ResourceType::Jobs)
        .unwrap();
    let jobs_deleted = jobs
        .items
        .iter()
        .filter(|o| matches!(o.status, ItemStatus::Deleted { .. }))
        .count();
    assert_eq!(jobs_deleted, 2, "{:#?}", jobs.items);
    // The certificate a person reads says it too.
    let md = azureml_dsr::domain::report::render_markdown(&r);
    assert!(md.contains("not deleted"), "{md}");
    assert!(md.contains("deleted, verified gone"), "{md}");
    let l = lifecycle(&e, "LC-3").await;
    assert_eq!(l.state, RequestState::Cancelled);
    assert_eq!(
        history(&l),
        vec![
            RequestState::Received,
            RequestState::Planned,
            RequestState::InProgress,
            RequestState::Cancelled
        ]
    );
}
