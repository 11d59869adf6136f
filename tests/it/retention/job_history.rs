//! The job-history sweep: exactly the expired runs, idempotent, holds and dry run honoured, off
//! unless enabled, report-first, and refused when it would delete too large a share.

use super::*;

#[tokio::test]
async fn sweep_deletes_exactly_the_expired_job_history_and_is_idempotent() {
    let e = env(HoldSet::default(), false).await;
    let before = snapshot(&e).await;
    let old = old_jobs(&e);
    assert!(
        !old.is_empty() && old.len() < e.truth.job_created.len(),
        "the seed has both old and recent jobs"
    );
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert_eq!(out.planned.len(), 1);
    drive(&e).await;
    let after = snapshot(&e).await;
    for (k, v) in &before {
        let expired = old.iter().any(|j| belongs_to_job(k, j));
        if expired {
            assert!(!after.contains_key(k), "expired {k} survived");
        } else if !k.starts_with("armlocal/")
            || k.contains("/jobs/")
            || k.contains("/models/")
            || k.contains("/data/")
            || k.contains("/computes/")
        {
            assert_eq!(after.get(k), Some(v), "{k} changed");
        }
    }
    let id = out.planned[0].clone();
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.status, FinalStatus::Completed);
    assert_eq!(report.counts.deleted, report.counts.verified_gone);
    assert!(e
        .store
        .read_small(&BlobRef::new(
            "dsrstate",
            "dsr-audit",
            format!("requests/{id}.json")
        ))
        .await
        .is_ok());

    // Twice in a row: the same state, still one report and one result message.
    let again = retention::run(&e.svc, &timer(true), e.now).await.unwrap();
    assert_eq!(again.resumed, vec![id.clone()]);
    drive(&e).await;
    assert_eq!(snapshot(&e).await, after);
    assert_eq!(
        e.bus
            .sent()
            .iter()
            .filter(|m| m.queue == "dsr-results"
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
            .count(),
        1
    );
}

#[tokio::test]
async fn sweep_honours_holds_and_dry_run() {
    // Dry run: nothing changes.
    let e = env(HoldSet::default(), true).await;
    let before = snapshot(&e).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    assert_eq!(snapshot(&e).await, before);

    // A person under legal hold keeps their old jobs; everyone else's expire.
    let e0 = env(HoldSet::default(), false).await;
    let bob = e0.truth.user("bob").unwrap().object_id;
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-1".into(),
            reason: "litigation".into(),
            subject_object_id: Some(bob),
            workspace: None,
            resource_types: vec![],
        }],
    };
    let e = env(holds, false).await;
    let before = snapshot(&e).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let after = snapshot(&e).await;
    let bobs_jobs: Vec<String> = e
        .truth
        .resources_of("bob")
        .into_iter()
        .filter(|r| r.contains("/jobs/"))
        .map(|r| r.rsplit('/').next().unwrap().to_string())
        .collect();
    let old = old_jobs(&e);
    let mut held = 0;
    for k in before.keys() {
        if let Some(j) = old.iter().find(|j| belongs_to_job(k, j)) {
            if bobs_jobs.contains(j) {
                assert!(after.contains_key(k), "held {k} was deleted");
                held += 1;
            } else {
                assert!(!after.contains_key(k), "{k} survived");
            }
        }
    }
    assert!(held > 0, "bob has expired jobs in the seed");

    // A workspace-wide hold: nothing is deleted.
    let ws = e0.truth.workspaces[0].clone();
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-2".into(),
            reason: "audit".into(),
            subject_object_id: None,
            workspace: Some(ws),
            resource_types: vec![],
        }],
    };
    let e = env(holds, false).await;
    let before = snapshot(&e).await;
    retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    assert_eq!(snapshot(&e).await, before);
}

#[tokio::test]
async fn the_job_history_sweep_is_off_unless_enabled() {
    let mut e = env(HoldSet::default(), false).await;
    e.svc.settings.job_retention_enabled = false;
    let before = snapshot(&e).await;
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert!(out.job_history_disabled);
    assert!(out.planned.is_empty() && out.resumed.is_empty());
    drive(&e).await;
    assert_eq!(snapshot(&e).await, before);
}

#[tokio::test]
async fn the_first_sweep_after_enabling_only_reports_then_the_next_deletes() {
    let e = env_with(HoldSet::default(), false, 100).await;
    let before = snapshot(&e).await;
    let first = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert_eq!(first.planned.len(), 1);
    assert!(first.planned[0].starts_with("RETDRY-"), "{first:?}");
    drive(&e).await;
    assert_eq!(
        snapshot(&e).await,
        before,
        "the first sweep changed something"
    );
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&first.planned[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(report.dry_run);
    assert!(
        report.counts.items > 0,
        "the dry run reports what it would delete"
    );
    // The next sweep deletes.
    let second = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    assert!(
        second.planned.iter().any(|id| id.starts_with("RET-")),
        "{second:?}"
    );
    drive(&e).await;
    assert_ne!(snapshot(&e).await, before);
}

#[tokio::test]
async fn a_sweep_that_would_delete_too_large_a_share_deletes_nothing() {
    let e = env_with(HoldSet::default(), false, 20).await;
    // Acknowledge the first run so this one would delete.
    let state = e.svc.state();
    state.ensure_containers().await.unwrap();
    state
        .store
        .write_json(
            &state.blob("dsr-state", retention::DRY_RUN_DOC),
            &retention::DryRunRecord {
                retention_days: 180,
                at: e.now,
            },
        )
        .await
        .unwrap();
    let old = old_jobs(&e);
    assert!(
        old.len() * 100 > e.truth.job_created.len() * 20,
        "the seed expires more than 20% of the jobs"
    );
    let before = snapshot(&e).await;
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    assert_eq!(
        snapshot(&e).await,
        before,
        "the guard let a deletion through"
    );
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&out.planned[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.counts.deleted, 0);
    assert!(report.counts.held > 0);
    assert!(
        report.results.iter().any(|r| r
            .notes
            .iter()
            .any(|n| n.contains("DSR_JOB_RETENTION_MAX_SHARE"))),
        "the report does not say why"
    );
}
