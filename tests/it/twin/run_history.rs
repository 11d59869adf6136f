//! The run-history adapter against the run-history stand-in: who created a run (object id,
//! tenant, display name, a null UPN), its data container, its children over several pages (by
//! `continuationToken` and by `nextLink`), grandchildren, 404 as "unknown", 429 honoured, and
//! only ARM-audience tokens, sent to the configured host only.

use super::*;
use azureml_dsr::adapters::azure::run_history::{AzureRunHistory, RUN_HISTORY_SCOPE};
use azureml_dsr::ports::run_history::{RunHistory, RunHistoryError};
use stand_ins::run_history::RunHistoryStandIn;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn fixture(name: &str) -> Value {
    let p = format!(
        "{}/../tests/fixtures/azure-rest/runhistory/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The fixture's pipeline run, its six steps (one with a grandchild), and Bob's run.
fn runs() -> Vec<Value> {
    let parent = fixture("run-get.json");
    let step = fixture("run-children.json")["value"][0].clone();
    let mut out = vec![parent];
    for i in 0..6 {
        let mut s = step.clone();
        s["runId"] = json!(format!("pipeline_job_1_step_{i}"));
        s["dataContainerId"] = json!(format!("dcid.pipeline_job_1_step_{i}"));
        out.push(s);
    }
    let mut grandchild = step.clone();
    grandchild["runId"] = json!("pipeline_job_1_step_0_trial_0");
    grandchild["parentRunId"] = json!("pipeline_job_1_step_0");
    out.push(grandchild);
    out.push(json!({"runId": "bob_job", "dataContainerId": "dcid.bob_job",
        "createdBy": {"userObjectId": BOB, "userTenantId": TENANT, "userName": "Alice Example", "upn": null}}));
    out
}

fn ws_info(location: Option<&str>) -> WorkspaceInfo {
    let mut i = info();
    i.location = location.map(str::to_string);
    i
}

#[tokio::test]
async fn reads_creators_and_walks_children_over_pages() {
    let rh = RunHistoryStandIn::start(runs(), 2);
    let adapter = AzureRunHistory::new(rest(RUN_HISTORY_SCOPE), rh.base_url());
    let ws = ws_info(None);

    let run = adapter.run(&ws, "pipeline_job_1").await.unwrap().unwrap();
    let c = run.creator.clone().unwrap();
    assert_eq!(
        c.object_id.unwrap().to_string(),
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(c.tenant_id.unwrap().to_string(), TENANT);
    assert_eq!(c.upn, None, "upn is null in the record");
    assert_eq!(c.display_name.as_deref(), Some("Alice Example"));
    assert_eq!(
        run.data_container_id.as_deref(),
        Some("dcid.pipeline_job_1")
    );
    // The namesake's run: same display name, another object id.
    let bob = adapter.run(&ws, "bob_job").await.unwrap().unwrap();
    assert_ne!(bob.creator.unwrap().object_id, c.object_id);
    // Unknown run: 404 is "no record", not an error and not "nobody's".
    assert!(adapter.run(&ws, "no_such_run").await.unwrap().is_none());

    // Six children over three pages, plus a grandchild: each once, parents first.
    let all = adapter.descendants(&ws, "pipeline_job_1").await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(
        ids.iter().position(|i| *i == "pipeline_job_1_step_0")
            < ids
                .iter()
                .position(|i| *i == "pipeline_job_1_step_0_trial_0")
    );
    let seen = rh.requests();
    let children_calls: Vec<_> = seen
        .iter()
        .filter(|s| s.path.ends_with("/runs/pipeline_job_1/children"))
        .collect();
    assert_eq!(children_calls.len(), 3, "three pages");
    assert_eq!(
        children_calls[1].query("$continuationtoken"),
        Some("offset-2")
    );
    // The path the generated client builds, and an ARM-audience token on every call.
    assert!(seen
        .iter()
        .any(|s| s.path == format!("/history/v1.0{ML_WS}/runs/pipeline_job_1")));
    assert!(seen.iter().all(|s| s.status != 401));

    // The same walk when the service pages by nextLink.
    rh.use_next_link(true);
    assert_eq!(
        adapter
            .descendants(&ws, "pipeline_job_1")
            .await
            .unwrap()
            .len(),
        7
    );
}

#[tokio::test]
async fn throttling_is_waited_out_and_other_audiences_are_refused() {
    let rh = RunHistoryStandIn::start(runs(), 10);
    let adapter = AzureRunHistory::new(rest(RUN_HISTORY_SCOPE), rh.base_url());
    let ws = ws_info(None);
    rh.throttle_next(2);
    let started = Instant::now();
    assert!(adapter.run(&ws, "pipeline_job_1").await.unwrap().is_some());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    assert_eq!(rh.requests().iter().filter(|s| s.status == 429).count(), 2);
    // A token for Graph is refused by the service: a permanent error, not "no record".
    let wrong = AzureRunHistory::new(rest(GRAPH_SCOPE), rh.base_url());
    assert!(matches!(
        wrong.run(&ws, "pipeline_job_1").await,
        Err(RunHistoryError::Other(_))
    ));
    // Throttled for longer than the retry budget: transient (the slice is redelivered).
    rh.throttle_next(50);
    assert!(matches!(
        adapter.run(&ws, "pipeline_job_1").await,
        Err(RunHistoryError::Transient(_))
    ));
}

#[tokio::test]
async fn the_endpoint_is_the_workspaces_region_and_never_a_host_a_document_names() {
    let adapter = AzureRunHistory::new(rest(RUN_HISTORY_SCOPE), "https://{region}.api.azureml.ms");
    assert_eq!(
        adapter.base(&ws_info(Some("WestEurope"))).unwrap().as_str(),
        "https://westeurope.api.azureml.ms/"
    );
    for bad in [None, Some(""), Some("evil.com/x"), Some("a.b"), Some("x:1")] {
        assert!(adapter.base(&ws_info(bad)).is_err(), "{bad:?}");
    }
    // A nextLink to another host is not followed (the token would go there).
    let rh = RunHistoryStandIn::start(runs(), 2);
    let local = AzureRunHistory::new(rest(RUN_HISTORY_SCOPE), rh.base_url());
    assert!(local
        .children(
            &ws_info(None),
            "pipeline_job_1",
            Some("https://evil.example/x".into())
        )
        .await
        .is_err());
    assert!(rh.requests().is_empty());
}
