//! Request state and archived payloads expire; reports and the audit trail stay; held persons'
//! jobs of unknown creator are kept.

use super::*;

/// A finished request's working state (plan, inventories, chunks, completions) and the intake
/// archive go `state_retention_days` after the request finished; the report, the certificate
/// and the audit record stay; a request still in progress is kept however old it is.
#[tokio::test]
async fn finished_request_state_and_archived_payloads_expire_reports_and_audit_stay() {
    let e = env(HoldSet::default(), false).await;
    // The identity directory intake resolves subjects in.
    std::fs::write(
        LocalPaths::new(e._dir.path()).directory(),
        serde_json::to_vec(&e.truth.directory()).unwrap(),
    )
    .unwrap();
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    let upn = |u: &str| e.truth.user(u).unwrap().upn.clone();
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let done = json!({"schemaVersion": "1.0", "requestId": "OLD-1", "type": "delete",
        "subject": {"upn": upn("alice")}, "scope": {"workspaces": ws}});
    intake::run(&e.svc, done.to_string().as_bytes(), &d)
        .await
        .unwrap();
    drive(&e).await;
    // Planned, never driven: in progress.
    let open = json!({"schemaVersion": "1.0", "requestId": "OPEN-1", "type": "export",
        "subject": {"upn": upn("bob")}, "scope": {"workspaces": ws}});
    intake::run(&e.svc, open.to_string().as_bytes(), &d)
        .await
        .unwrap();
    let state = e.svc.state();
    let under = |prefix: &'static str| {
        let state = state.clone();
        async move {
            state
                .store
                .list_all("dsrstate", "dsr-state", prefix)
                .await
                .unwrap()
                .len()
        }
    };
    assert!(under("requests/OLD-1/").await > 2);
    let days = i64::from(e.svc.settings.state_retention_days);

    // Not yet due: nothing goes.
    let out = retention::run(&e.svc, &timer(false), e.now + Duration::days(days - 1))
        .await
        .unwrap();
    assert_eq!(out.expired_state, retention::ExpiredState::default());

    let out = retention::run(&e.svc, &timer(false), e.now + Duration::days(days + 1))
        .await
        .unwrap();
    assert_eq!(out.expired_state.requests, 1, "{out:?}");
    assert!(out.expired_state.archived_payloads >= 2, "{out:?}");
    assert_eq!(
        under("requests/OLD-1/").await,
        0,
        "the finished request's state is gone"
    );
    assert!(
        under("requests/OPEN-1/").await > 0,
        "a request in progress is kept"
    );
    let archive = state
        .store
        .list_all("dsrstate", "dsr-intake-archive", "")
        .await
        .unwrap();
    assert!(
        archive.is_empty(),
        "archived payloads are gone: {archive:?}"
    );
    for (container, name) in [("dsr-audit", "requests/OLD-1.json")] {
        assert!(
            state
                .store
                .read_small(&BlobRef::new("dsrstate", container, name))
                .await
                .is_ok(),
            "{container}/{name} must stay"
        );
    }
    assert!(
        !state
            .store
            .list_all("dsrstate", "dsr-reports", "OLD-1/")
            .await
            .unwrap()
            .is_empty(),
        "the deletion certificate stays"
    );
}

/// Issue 14, item 6: while a per-person hold exists in the workspace, an expired job whose
/// creator run history cannot tell (a run record without an object id) is not swept: it is
/// kept as held, and the report says why; the other expired jobs of its owner still go.
#[tokio::test]
async fn an_expired_job_of_unknown_creator_is_kept_while_a_person_is_held_and_reported() {
    use azureml_dsr::adapters::local::run_history::LocalRunHistory;
    use azureml_dsr::domain::slice::{Item, ItemStatus};
    let e0 = env(HoldSet::default(), false).await;
    let bob = e0.truth.user("bob").unwrap().object_id;
    drop(e0);
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-BOB".into(),
            reason: "litigation".into(),
            subject_object_id: Some(bob),
            workspace: None,
            resource_types: vec![],
        }],
    };
    let e = env(holds, false).await;
    let ws = e.truth.workspaces[0].clone();
    let old = old_jobs(&e);
    let alices: Vec<String> = e
        .truth
        .resources_of("alice")
        .into_iter()
        .filter(|r| r.contains("/jobs/"))
        .map(|r| r.rsplit('/').next().unwrap().to_string())
        .filter(|j| old.contains(j))
        .collect();
    assert!(alices.len() >= 2, "alice has expired jobs: {alices:?}");
    let unknown = alices[0].clone();
    // Its run record names nobody: a display name and a UPN, no object id.
    LocalRunHistory::new(e.store.clone())
        .put_run(
            &ws,
            &json!({"runId": unknown, "rootRunId": unknown, "dataContainerId": format!("dcid.{unknown}"),
                    "status": "Completed",
                    "createdBy": {"userName": "Alice Example", "upn": "alice@contoso.com", "userObjectId": null}}),
        )
        .await
        .unwrap();
    let before = snapshot(&e).await;
    let out = retention::run(&e.svc, &timer(false), e.now).await.unwrap();
    drive(&e).await;
    let after = snapshot(&e).await;
    let mut kept = 0;
    for k in before.keys() {
        if belongs_to_job(k, &unknown) {
            assert!(
                after.contains_key(k),
                "{k} of the unknown creator's job was swept"
            );
            kept += 1;
        } else if belongs_to_job(k, &alices[1]) {
            assert!(!after.contains_key(k), "{k} (alice's, known) survived");
        }
    }
    assert!(kept > 0);
    let report = e
        .svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse(&out.planned[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    let job = report
        .results
        .iter()
        .flat_map(|r| &r.items)
        .find(|o| matches!(&o.item, Item::Resource { id, .. } if id.ends_with(&format!("/jobs/{unknown}"))))
        .expect("the job is in the report");
    match &job.status {
        ItemStatus::Held { hold, reason } => {
            assert_eq!(hold, "LH-BOB");
            assert!(reason.contains("creator is unknown"), "{reason}");
        }
        other => panic!("not held: {other:?}"),
    }
}
