//! Faults of workspace storage and unknown inventory: reported, partially failed, nothing
//! wrongly deleted, a dry run that mutates nothing.

use super::*;

#[tokio::test]
async fn a_job_that_cannot_be_deleted_is_reported_and_the_request_ends_partially_failed() {
    let e = env(HoldSet::default(), 50).await;
    // Mark one of carol's jobs as running: the control plane refuses to delete it.
    let job_id = e
        .truth
        .resources_of("carol")
        .into_iter()
        .find(|id| id.contains("/jobs/"))
        .unwrap()
        .clone();
    let cp = azureml_dsr::adapters::local::control_plane::LocalControlPlane::new(e.store.clone());
    let ws = &e.truth.workspaces[0];
    let page = azureml_dsr::ports::control_plane::ControlPlane::list_all(
        &cp,
        ws,
        azureml_dsr::ports::control_plane::ArmKind::Job,
    )
    .await
    .unwrap();
    let mut doc = page
        .into_iter()
        .find(|d| d["id"] == job_id.as_str())
        .unwrap();
    doc["properties"]["status"] = json!("Running");
    cp.put_resource(ws, azureml_dsr::ports::control_plane::ArmKind::Job, &doc)
        .await
        .unwrap();
    // Scope also names a workspace that does not exist: its slices fail, the request still ends.
    let gone = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/gone";
    let mut scope = e.svc.scope().await.unwrap();
    scope.push(azureml_dsr::domain::workspace::WorkspaceId::parse(gone).unwrap());
    e.svc.state().put_scope(&scope).await.unwrap();
    let mut req = request(&e, "DEL-PF", "delete", "carol", false);
    req["scope"]["workspaces"]
        .as_array_mut()
        .unwrap()
        .push(json!(gone));
    submit(&e, req, 1).await;
    let r = report(&e, "DEL-PF").await;
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
    let failed_items: Vec<_> = r
        .results
        .iter()
        .flat_map(|s| &s.items)
        .filter(|o| matches!(o.status, ItemStatus::Failed { .. }))
        .collect();
    assert_eq!(failed_items.len(), 1, "only the running job failed");
    assert!(matches!(&failed_items[0].item, Item::Resource { id, .. } if *id == job_id));
    let failed_slices: Vec<_> = r
        .slices
        .iter()
        .filter(|s| s.status == azureml_dsr::domain::slice::SliceStatus::Failed)
        .collect();
    assert_eq!(failed_slices.len(), 6);
    assert!(failed_slices
        .iter()
        .all(|s| s.reason.as_deref() == Some("workspace not found")));
    let result: serde_json::Value = serde_json::from_slice(
        &e.bus
            .sent()
            .into_iter()
            .find(|m| {
                m.queue == queues::RESULTS
                    && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
            })
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(result["status"], "partially_failed");
}

/// Delegates to a real store but answers every listing of one container with a transient error.
struct Flaky {
    inner: Arc<dyn BlobStore>,
    container_prefix: &'static str,
}

#[async_trait::async_trait]
impl BlobLayer for Flaky {
    fn inner(&self) -> &dyn BlobStore {
        &*self.inner
    }
    fn kind(&self) -> &'static str {
        "flaky"
    }
    async fn list_page(
        &self,
        a: &str,
        c: &str,
        p: &str,
        m: Option<String>,
        n: u32,
    ) -> StoreResult<ListPage> {
        if c.starts_with(self.container_prefix) {
            return Err(StoreError::Transient("503 Server Busy (injected)".into()));
        }
        self.inner.list_page(a, c, p, m, n).await
    }
}

#[tokio::test]
async fn a_slice_that_keeps_failing_is_recorded_failed_on_its_last_delivery() {
    let mut e = env(HoldSet::default(), 50).await;
    e.svc.store = Arc::new(Flaky {
        inner: e.store.clone(),
        container_prefix: "code-",
    });
    // The notebooks share is reached through the file-share port (locally: over the store).
    e.svc.files =
        Arc::new(azureml_dsr::adapters::local::blob_share::BlobFileShare::new(e.svc.store.clone()));
    let req = request(&e, "EXP-T", "export", "carol", false);
    intake::run(&e.svc, req.to_string().as_bytes(), &Delivery::default())
        .await
        .unwrap();
    let task: SliceTask = sent_task(&e, "dsr-slice-notebooks");
    let max = e.svc.settings.max_delivery_count;
    for n in 1..max {
        assert!(
            slice::run(
                &e.svc,
                &task,
                &Delivery {
                    delivery_count: n,
                    ..Default::default()
                }
            )
            .await
            .is_err(),
            "delivery {n} fails and will be retried"
        );
    }
    let out = slice::run(
        &e.svc,
        &task,
        &Delivery {
            delivery_count: max,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(out, slice::SliceStep::Finished { .. }));
    let result = e
        .svc
        .state()
        .slice_result(&task.request_id, &task.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        result.status,
        azureml_dsr::domain::slice::SliceStatus::Failed
    );
    assert!(result
        .reason
        .unwrap()
        .contains("gave up after 10 deliveries"));
    // The rest of the request still completes, as partially failed.
    drive(&e, 1).await;
    assert_eq!(
        report(&e, "EXP-T").await.status,
        FinalStatus::PartiallyFailed
    );
}

#[tokio::test]
async fn dry_run_makes_zero_mutating_calls_to_workspace_storage() {
    use azureml_dsr::adapters::counting::CountingStore;
    let mut e = env(HoldSet::default(), 3).await;
    let counting = Arc::new(CountingStore::new(e.store.clone()));
    let paths_dir = e._dir.path().to_path_buf();
    let svc = local_services(
        &LocalPaths::new(&paths_dir),
        counting.clone(),
        e.bus.clone(),
        Settings {
            chunk_size: 3,
            ..Default::default()
        },
    );
    e.svc = svc;
    submit(&e, request(&e, "DRY-C", "delete", "alice", true), 2).await;
    let counts = counting.counts();
    let ws_account = e.truth.infos[0].storage_account.clone();
    for account in [ws_account.as_str(), "armlocal", "telemetrylocal"] {
        let c = counts.get(account).cloned().unwrap_or_default();
        assert!(c.reads > 0, "{account} was read");
        assert_eq!(c.mutations, 0, "{account} was mutated during a dry run");
    }
    assert!(
        counts["dsrstate"].mutations > 0,
        "state (plan, inventory, report) is still written"
    );
    assert!(report(&e, "DRY-C").await.counts.would_delete > 0);
}

/// An inventory naming a resource kind the product does not know (here: a "datastore" whose id
/// is another user's compute) is refused as a whole: the slice fails, nothing is deleted. It
/// used to fall back to a compute delete.
#[tokio::test]
async fn an_unknown_resource_kind_in_an_inventory_deletes_nothing() {
    let e = env(HoldSet::default(), 100).await;
    let bob_compute = compute_of(&e, "bob");
    let body = request(&e, "KIND-1", "delete", "alice", false)
        .to_string()
        .into_bytes();
    intake::run(
        &e.svc,
        &body,
        &Delivery {
            delivery_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let task = sent_task(&e, "dsr-slice-jobs");
    let state = e.svc.state();
    state
        .store
        .write_json(
            &state.inventory_ref(&task),
            &json!({"entries": [{"item": {"kind": "resource", "resourceType": "datastore", "id": bob_compute}}], "notes": []}),
        )
        .await
        .unwrap();
    drive(&e, 1).await;
    assert_slice_refused(&e, "KIND-1", &task.key, &bob_compute).await;
}
