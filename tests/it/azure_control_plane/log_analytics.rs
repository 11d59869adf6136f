//! Log Analytics query and purge (`LogAnalyticsTelemetry`), diagnostic settings, workspace purges.

use super::*;

fn info_with_la() -> WorkspaceInfo {
    workspace_info(ws(), "teststorageaccount", LA)
}

#[tokio::test]
async fn telemetry_query_purge_pending_then_completed_within_budget() {
    const ALICE: &str = "11111111-2222-3333-4444-555555555555";
    // Query API (`api.loganalytics.io`): rows for any subject.
    let query = serve(LOG_ANALYTICS_SCOPE, |c| {
        assert_eq!(c.req.path, format!("/v1{LA}/query"));
        let q: Value = serde_json::from_str(&c.req.body).unwrap();
        let kql = q["query"].as_str().unwrap();
        // A string identity column (table reference: `AmlRunStatusChangedEvent.Identity string`).
        assert!(
            kql.starts_with("AmlRunStatusChangedEvent | where Identity == \""),
            "{kql}"
        );
        let oid = kql.split('"').nth(1).unwrap();
        (
            200,
            vec![],
            json!({"tables": [{"name": "PrimaryResult",
                "columns": [{"name": "TimeGenerated", "type": "datetime"}, {"name": "Identity", "type": "string"}],
                "rows": [["2026-11-01T10:00:00Z", oid]]}]}),
        )
    })
    .await;
    // ARM purge (WorkspacesPurge.json) and its status location.
    let arm_srv = serve(ARM_SCOPE, |c| {
        if c.req.method == "POST" {
            assert_eq!(c.req.path, format!("{LA}/purge"));
            assert_eq!(
                c.req.query.get("api-version").map(String::as_str),
                Some("2020-08-01")
            );
            let ex = &example("loganalytics/workspaces-purge.json")["responses"]["202"];
            let loc = ex["headers"]["x-ms-status-location"]
                .as_str()
                .unwrap()
                .replace("https://management.azure.com", c.base);
            return (202, vec![("x-ms-status-location", loc)], ex["body"].clone());
        }
        assert!(c
            .req
            .path
            .ends_with("/operations/purge-970318e7-b859-4edb-8903-83b1b54d0b74"));
        if c.n == 0 {
            (200, vec![], json!({"status": "pending"}))
        } else {
            (200, vec![], json!({"status": "completed"}))
        }
    })
    .await;
    let cfg = PurgeConfig {
        arm_endpoint: arm_srv.url(),
        query_endpoint: query.url(),
        tables: vec!["AmlRunStatusChangedEvent".into()],
    };
    let tel = LogAnalyticsTelemetry::with_budget(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        cfg,
        PurgeBudget::new(1, Duration::from_secs(3600)),
    );
    let info = info_with_la();
    let rows = tel.query(&info, &subject(ALICE)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].rows[0].to_value()["Identity"], ALICE);
    assert_eq!(rows[0].destination, LA);

    let op = "purge-970318e7-b859-4edb-8903-83b1b54d0b74".to_string();
    let plan = tel.purge_plan(&info, &subject(ALICE)).await.unwrap();
    let bodies = plan[0].bodies.clone().unwrap();
    assert_eq!(
        bodies,
        vec![
            json!({"table": "AmlRunStatusChangedEvent", "filters": [{"column": "Identity", "operator": "==", "value": ALICE}]})
        ]
    );
    let PurgeSend::Accepted {
        operation_id,
        status_url,
    } = tel.send_purge(LA, &bodies[0]).await.unwrap()
    else {
        panic!("not accepted")
    };
    assert_eq!(operation_id, op);
    let posts = arm_srv.requests("POST", "/purge");
    assert_eq!(posts.len(), 1);
    let sent: Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(sent, bodies[0]);
    // The status location is polled (a later timer run), no second purge request.
    assert_eq!(
        tel.poll_purge(&status_url).await.unwrap(),
        PurgePoll::Pending
    );
    assert_eq!(
        tel.poll_purge(&status_url).await.unwrap(),
        PurgePoll::Completed
    );
    assert_eq!(arm_srv.requests("POST", "/purge").len(), 1);
    // Budget (1/hour here, 50/hour by default) spent: deferred (a later run sends it), not sent.
    let deferred = tel.send_purge(LA, &bodies[0]).await.unwrap();
    assert!(
        matches!(&deferred, PurgeSend::Deferred { reason } if reason.contains("budget")),
        "{deferred:?}"
    );
    assert_eq!(arm_srv.requests("POST", "/purge").len(), 1);
}

/// A purge POST answered 503 is sent exactly once (a purge is not idempotent) and reported as
/// an error; the status of an operation the service no longer knows (404) is a failure.
#[tokio::test]
async fn purge_post_5xx_is_not_retried_and_unknown_operation_fails() {
    let arm_srv = serve(ARM_SCOPE, |c| {
        if c.req.method == "POST" {
            return (
                503,
                vec![],
                json!({"error": {"code": "ServiceUnavailable", "message": "try later"}}),
            );
        }
        (
            404,
            vec![],
            json!({"error": {"code": "ResourceNotFound", "message": "Purge operation not found."}}),
        )
    })
    .await;
    let tel = LogAnalyticsTelemetry::new(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        PurgeConfig {
            arm_endpoint: arm_srv.url(),
            query_endpoint: arm_srv.url(),
            tables: vec!["AmlRunEvent".into()],
        },
    );
    let body = json!({"table": "AmlRunEvent", "filters": [{"column": "Identity", "key": "oid", "operator": "==", "value": "11111111-2222-3333-4444-555555555555"}]});
    let err = tel.send_purge(LA, &body).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(arm_srv.requests("POST", "/purge").len(), 1);
    let status = format!(
        "{}{}/operations/purge-1?api-version=2020-08-01",
        arm_srv.url().as_str().trim_end_matches('/'),
        LA
    );
    assert!(matches!(
        tel.poll_purge(&status).await.unwrap(),
        PurgePoll::Failed { .. }
    ));
}

/// Diagnostic settings list (spec example `listDiagnosticSettings.json`, whose only setting
/// has an empty `workspaceId`): no Log Analytics destination from it; a setting with one adds
/// it.
#[test]
fn diagnostic_settings_name_the_log_analytics_destinations() {
    let list = example("monitor/diagnostic-settings-list.json");
    assert!(azureml_dsr::adapters::azure::arm::diagnostic_workspaces(&list).is_empty());
    let mut with = list.clone();
    with["value"][0]["properties"]["workspaceId"] = json!(LA);
    let dup = with["value"][0].clone();
    with["value"].as_array_mut().unwrap().push(dup);
    assert_eq!(
        azureml_dsr::adapters::azure::arm::diagnostic_workspaces(&with),
        vec![LA.to_string()]
    );
}

#[tokio::test]
async fn workspace_purge_filters_on_the_deleted_workspace_resource_id() {
    let arm_srv = serve(ARM_SCOPE, |c| {
        let ex = &example("loganalytics/workspaces-purge-resourceid.json")["responses"]["202"];
        let loc = ex["headers"]["x-ms-status-location"]
            .as_str()
            .unwrap()
            .replace("https://management.azure.com", c.base);
        (202, vec![("x-ms-status-location", loc)], ex["body"].clone())
    })
    .await;
    let query = serve(LOG_ANALYTICS_SCOPE, |_| {
        panic!("no query for a workspace purge")
    })
    .await;
    let tel = LogAnalyticsTelemetry::new(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        PurgeConfig {
            arm_endpoint: arm_srv.url(),
            query_endpoint: query.url(),
            tables: vec!["AmlRunEvent".into(), "AmlModelsEvent".into()],
        },
    );
    let st = tel.purge_workspace(&info_with_la()).await.unwrap();
    assert!(matches!(st, PurgeStatus::Pending { .. }));
    let posts = arm_srv.requests("POST", "/purge");
    assert_eq!(posts.len(), 2);
    for p in posts {
        let b: Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(b["filters"][0]["column"], "_ResourceId");
        assert_eq!(b["filters"][0]["value"], WS.to_ascii_lowercase());
    }
}
