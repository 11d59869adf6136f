//! Export and delete return and remove exactly the subject's items (the generator's truth),
//! once, even when delivered twice; dry run counts the same and changes nothing.

use super::*;

#[tokio::test]
async fn export_returns_exactly_the_subjects_items() {
    let e = env(HoldSet::default(), 7).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "EXP-1", "export", "alice", false), 1).await;
    let r = report(&e, "EXP-1").await;
    // Alice's display name is also Ali's: assets only that name ties to her wait for review.
    assert_eq!(r.status, FinalStatus::NeedsReview);
    let listed: Vec<&str> = r
        .results
        .iter()
        .flat_map(|s| &s.review)
        .map(|i| i.resource_id.as_str())
        .collect();
    for who in ["alice", "ali"] {
        for (id, owner) in &e.truth.resources {
            if *owner == azureml_dsr::seed::review_owner(who) {
                assert!(listed.contains(&id.as_str()), "{id} is listed for review");
            }
        }
    }
    assert!(!listed.is_empty());
    let exported_blobs = r.blob_keys();
    let mut expected: Vec<String> = e.truth.blobs_of("alice").into_iter().cloned().collect();
    expected.sort();
    assert_eq!(exported_blobs, expected);
    let mut resources: Vec<String> = r
        .results
        .iter()
        .flat_map(|s| s.items.iter())
        .filter_map(|o| match &o.item {
            Item::Resource { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    resources.sort();
    let mut expected_res: Vec<String> =
        e.truth.resources_of("alice").into_iter().cloned().collect();
    expected_res.sort();
    assert_eq!(resources, expected_res);
    for o in r.results.iter().flat_map(|s| s.items.iter()) {
        let ItemStatus::Exported { path, sha256, .. } = &o.status else {
            panic!("not exported: {o:?}")
        };
        let (bytes, _) = e
            .store
            .read_small(&BlobRef::new("dsrstate", "dsr-exports", path.clone()))
            .await
            .unwrap();
        assert_eq!(&azureml_dsr::domain::ids::sha256_hex(&bytes), sha256);
    }
    assert_eq!(
        snapshot(&e).await,
        before,
        "export must not change workspace data"
    );
    let results: Vec<_> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .collect();
    assert_eq!(results.len(), 1);
}

#[tokio::test]
async fn delete_removes_subject_items_and_nothing_else_even_when_delivered_twice() {
    let e = env(HoldSet::default(), 5).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "DEL-1", "delete", "alice", false), 2).await;
    let r = report(&e, "DEL-1").await;
    // Everything is done but the telemetry purge (completed on a later timer poll) and the
    // display-name-only assets, which wait for a person's review (untouched: see below).
    assert_eq!(r.status, FinalStatus::NeedsReview, "{:#?}", r.slices);
    let after = snapshot(&e).await;
    for b in e.truth.blobs_of("alice") {
        assert!(!after.contains_key(b), "alice's blob survived: {b}");
    }
    for (k, v) in &before {
        let owner = e.truth.blobs.get(k).map(String::as_str);
        if owner == Some("alice") || k.starts_with("armlocal/") || k.starts_with("telemetrylocal/")
        {
            continue;
        }
        assert_eq!(
            after.get(k),
            Some(v),
            "collateral change to {k} (owner {owner:?})"
        );
    }
    for (id, owner) in &e.truth.resources {
        assert_eq!(
            arm_present(&after, id),
            owner != "alice",
            "{id} owned by {owner}"
        );
    }
    assert!(r.counts.deleted > 0 && r.counts.deleted == r.counts.verified_gone);
    assert_eq!(r.counts.failed, 0);
    let results: Vec<_> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .collect();
    assert_eq!(results.len(), 1, "exactly one result message");
    assert!(r
        .results
        .iter()
        .any(|s| s.notes.iter().any(|n| n.contains("shared"))));
}

/// A slice acts only on a task its request's plan contains: a forged or corrupted task (another
/// subject, a dry run turned real, no plan at all) is refused before anything is changed.
#[tokio::test]
async fn slice_tasks_that_are_not_in_the_plan_are_refused_and_change_nothing() {
    let e = env(HoldSet::default(), 1000).await;
    let before = snapshot(&e).await;
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let body = request(&e, "FORGE-1", "delete", "alice", true).to_string();
    intake::run(&e.svc, body.as_bytes(), &d).await.unwrap();
    let genuine: SliceTask = sent_task(&e, "dsr-slice-jobs");
    let bob = e.truth.user("bob").unwrap();
    let mut other_subject = genuine.clone();
    other_subject.subject.object_id = bob.object_id;
    other_subject.dry_run = false;
    let mut made_real = genuine.clone();
    made_real.dry_run = false;
    let mut no_plan = genuine.clone();
    no_plan.request_id = RequestId::parse("FORGE-2").unwrap();
    no_plan.dry_run = false;
    let mut other_workspace = genuine.clone();
    other_workspace.key = "elsewhere-jobs".into();
    for (what, task) in [
        ("another subject", other_subject),
        ("dry run made real", made_real),
        ("no plan", no_plan),
        ("unplanned slice key", other_workspace),
    ] {
        let out = slice::run(&e.svc, &task, &d).await;
        assert!(
            matches!(&out, Err(azureml_dsr::functions::FnError::BadRequest(m)) if m.contains("refused")),
            "{what}: {out:?}"
        );
    }
    assert_eq!(snapshot(&e).await, before, "a refused task changed data");
    let state = e.svc.state();
    assert!(state
        .slice_result(&genuine.request_id, &genuine.key)
        .await
        .unwrap()
        .is_none());
    // The genuine task still runs (a dry run: still nothing changes).
    slice::run(&e.svc, &genuine, &d).await.unwrap();
    assert!(state
        .slice_result(&genuine.request_id, &genuine.key)
        .await
        .unwrap()
        .is_some());
    assert_eq!(snapshot(&e).await, before);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_counts_the_same() {
    let e = env(HoldSet::default(), 1000).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "DRY-1", "delete", "bob", true), 1).await;
    let r = report(&e, "DRY-1").await;
    assert_eq!(snapshot(&e).await, before);
    assert_eq!(r.counts.deleted, 0);
    assert_eq!(
        r.counts.would_delete as usize,
        e.truth.blobs_of("bob").len() + e.truth.resources_of("bob").len() + 1
    );
}
