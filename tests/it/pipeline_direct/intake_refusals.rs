//! Intake refuses what it must: invalid requests, reused request ids, workspaces outside scope.

use super::*;

#[tokio::test]
async fn invalid_requests_are_rejected_with_a_reason_and_archived() {
    let e = env(HoldSet::default(), 50).await;
    let bad = br#"{"schemaVersion":"1.0","requestId":"BAD-1","type":"erase","subject":{"upn":"x@y.com"},"scope":{"workspaces":[]}}"#;
    intake_rejects(&e, bad, "invalid_field").await;
    // One result; the lifecycle messages (received, rejected) are counted in tests/lifecycle.rs.
    let msgs: Vec<_> = e
        .bus
        .sent()
        .into_iter()
        .filter(|m| !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body))
        .collect();
    assert_eq!(msgs.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&msgs[0].body).unwrap();
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["requestId"], "BAD-1");
    assert!(body["reason"].as_str().unwrap().contains("type"));
    let archived = e
        .store
        .list_all("dsrstate", "dsr-intake-archive", "")
        .await
        .unwrap();
    assert_eq!(archived.len(), 1);
    let mut unknown = request(&e, "U-1", "export", "alice", false);
    unknown["subject"] = json!({"upn": "nobody@contoso.com"});
    intake_rejects(&e, unknown.to_string().as_bytes(), "subject_not_found").await;
}

/// The result messages sent so far, as JSON.
fn results(e: &Env) -> Vec<serde_json::Value> {
    e.bus
        .sent()
        .into_iter()
        .filter(|m| {
            m.queue == queues::RESULTS
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        })
        .map(|m| serde_json::from_slice(&m.body).unwrap())
        .collect()
}

/// A second request reusing a requestId with other content is neither dropped by the bus nor
/// replayed as the first: it reaches intake, which rejects it with a reason the sender can read,
/// and both payloads stay archived.
#[tokio::test]
async fn a_reused_request_id_with_other_content_is_rejected_with_a_reason() {
    let e = env(HoldSet::default(), 100).await;
    let queue = azureml_dsr::wiring::open_local_queue(e._dir.path()).unwrap();
    let first = request(&e, "TWICE-1", "export", "alice", false).to_string();
    let second = request(&e, "TWICE-1", "delete", "bob", false).to_string();
    azureml_dsr::cli::requests::enqueue(&queue, first.clone().into_bytes())
        .await
        .unwrap();
    azureml_dsr::cli::requests::enqueue(&queue, second.clone().into_bytes())
        .await
        .unwrap();
    // A resend of the very same bytes is still a duplicate for the bus.
    azureml_dsr::cli::requests::enqueue(&queue, first.clone().into_bytes())
        .await
        .unwrap();
    let queued: Vec<Vec<u8>> = queue
        .peek(queues::INTAKE)
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(
        queued,
        vec![first.clone().into_bytes(), second.clone().into_bytes()],
        "the second request reaches intake; the resend of the first does not"
    );
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let out1 = intake::run(&e.svc, first.as_bytes(), &d).await.unwrap();
    assert!(matches!(out1, intake::IntakeOutcome::Planned { .. }));
    intake_rejects(&e, second.as_bytes(), "request_conflict").await;
    let rejected: Vec<_> = results(&e)
        .into_iter()
        .filter(|r| r["status"] == "rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["requestId"], "TWICE-1");
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("already used") && reason.contains("new requestId"),
        "{reason}"
    );
    let archived = e
        .store
        .list_all("dsrstate", "dsr-intake-archive", "")
        .await
        .unwrap();
    assert_eq!(archived.len(), 2, "both payloads are kept for audit");
    // The first request is carried out as planned; only the export ran.
    drive(&e, 1).await;
    assert_eq!(report(&e, "TWICE-1").await.kind.as_str(), "export");
}

/// A store that answers "not found" to the first read of a plan: the window in which two
/// deliveries race to create it.
struct PlanRace {
    inner: Arc<dyn BlobStore>,
    hidden: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl BlobLayer for PlanRace {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn kind(&self) -> &'static str {
        "plan-race"
    }
    async fn open(&self, b: &BlobRef) -> StoreResult<BlobReader> {
        if b.name.ends_with("/plan.json")
            && !self.hidden.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::NotFound(b.to_string()));
        }
        self.inner.open(b).await
    }
}

/// The same holds when the second request loses the race to create the plan.
#[tokio::test]
async fn a_reused_request_id_that_loses_the_plan_race_is_rejected() {
    let mut e = env(HoldSet::default(), 100).await;
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let first = request(&e, "RACE-1", "export", "alice", false).to_string();
    let second = request(&e, "RACE-1", "delete", "bob", false).to_string();
    intake::run(&e.svc, first.as_bytes(), &d).await.unwrap();
    e.svc.store = Arc::new(PlanRace {
        inner: e.store.clone(),
        hidden: Default::default(),
    });
    intake_rejects(&e, second.as_bytes(), "request_conflict").await;
}

/// Intake acts only on the configured workspaces, compared as ARM compares ids (any case); an
/// empty configuration refuses everything. Nothing is planned or sent for a refused request.
#[tokio::test]
async fn intake_refuses_workspaces_outside_the_configured_scope() {
    let e = env(HoldSet::default(), 100).await;
    let d = Delivery {
        delivery_count: 1,
        ..Default::default()
    };
    let other = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/elsewhere";
    let mut req = request(&e, "SCOPE-1", "delete", "alice", false);
    req["scope"]["workspaces"]
        .as_array_mut()
        .unwrap()
        .push(json!(other));
    intake_rejects(&e, req.to_string().as_bytes(), "workspace_out_of_scope").await;
    let r = results(&e);
    let reason = r[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("scope.workspaces[1]") && reason.contains("elsewhere"),
        "{reason}"
    );
    assert!(e
        .svc
        .state()
        .plan(&RequestId::parse("SCOPE-1").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(e
        .bus
        .sent()
        .iter()
        .all(|m| !m.queue.starts_with("dsr-slice-")));

    // The configured workspace, spelled in another case, is in scope.
    let upper = e.truth.workspaces[0].to_string().to_uppercase();
    let mut req = request(&e, "SCOPE-2", "export", "alice", true);
    req["scope"]["workspaces"] = json!([upper]);
    let out = intake::run(&e.svc, req.to_string().as_bytes(), &d)
        .await
        .unwrap();
    assert!(
        matches!(out, intake::IntakeOutcome::Planned { .. }),
        "{out:?}"
    );

    // No scope configured: every request is refused.
    e.svc.state().put_scope(&[]).await.unwrap();
    let req = request(&e, "SCOPE-3", "export", "alice", false);
    intake_rejects(&e, req.to_string().as_bytes(), "workspace_out_of_scope").await;
}
