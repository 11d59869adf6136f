//! `LogAnalyticsTelemetry` against the Log Analytics stand-in: query, purge that stays pending,
//! throttling, wrong audience, the documented purge filter operators.

use super::*;

/// `AmlRunEvent.Identity` is `dynamic` and `AmlRunStatusChangedEvent.Identity` a string (Azure
/// Monitor table reference). The reference names no property inside the dynamic value; these
/// rows carry the object id under `oid` (illustrative), once as an object and once as JSON
/// text, as ingestion may keep either.
fn seeded_la() -> LogAnalyticsStandIn {
    let la = LogAnalyticsStandIn::start();
    la.add_table(
        LA_WS,
        "AmlRunEvent",
        &[
            ("TimeGenerated", "datetime"),
            ("Identity", "dynamic"),
            ("_ResourceId", "string"),
            ("RunId", "string"),
            ("Duration", "long"),
            ("Properties", "dynamic"),
        ],
    );
    let rid = ML_WS.to_ascii_lowercase();
    la.insert(
        LA_WS,
        "AmlRunEvent",
        &[
            json!({"TimeGenerated": "2026-11-01T10:00:00Z", "Identity": {"oid": ALICE}, "_ResourceId": rid, "RunId": "r1", "Duration": 10, "Properties": {"user": "alice", "team": "a"}}),
            json!({"TimeGenerated": "2026-11-02T10:00:00Z", "Identity": {"oid": ALICE}, "_ResourceId": rid, "RunId": "r2", "Duration": 200, "Properties": {"user": "alice", "team": "b"}}),
            json!({"TimeGenerated": "2026-11-03T10:00:00Z", "Identity": format!("{{\"oid\":\"{BOB}\"}}"), "_ResourceId": rid, "RunId": "r3", "Duration": 30, "Properties": "{\"user\":\"bob\",\"team\":\"a\"}"}),
            json!({"TimeGenerated": "2026-11-04T10:00:00Z", "Identity": {"oid": BOB}, "_ResourceId": "/subscriptions/x/other", "RunId": "r4", "Duration": 40, "Properties": {"user": "bob"}}),
        ],
    );
    la.add_table(
        LA_WS,
        "AmlRunStatusChangedEvent",
        &[
            ("TimeGenerated", "datetime"),
            ("Identity", "string"),
            ("RunId", "string"),
        ],
    );
    la.insert(
        LA_WS,
        "AmlRunStatusChangedEvent",
        &[
            json!({"TimeGenerated": "2026-11-01T10:00:00Z", "Identity": ALICE, "RunId": "r1"}),
            json!({"TimeGenerated": "2026-11-03T10:00:00Z", "Identity": BOB, "RunId": "r3"}),
        ],
    );
    la
}

fn telemetry(la: &LogAnalyticsStandIn, tables: &[&str]) -> LogAnalyticsTelemetry {
    LogAnalyticsTelemetry::with_budget(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        PurgeConfig {
            arm_endpoint: url(la.arm_url()),
            query_endpoint: url(la.query_url()),
            tables: tables.iter().map(|t| t.to_string()).collect(),
        },
        PurgeBudget::new(50, Duration::from_secs(3600)),
    )
}

/// The `RunId` of rows as the adapter returns them (`RawJson`) or as the stand-in stores them.
fn run_ids<T: serde::Serialize>(rows: &[T]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            serde_json::to_value(r).unwrap()["RunId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Send every planned purge once, as the slice does; the accepted status URLs.
async fn send_all(tel: &LogAnalyticsTelemetry, oid: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for p in tel.purge_plan(&info(), &subject(oid)).await.unwrap() {
        for body in p.bodies.unwrap() {
            match tel.send_purge(&p.destination, &body).await.unwrap() {
                PurgeSend::Accepted { status_url, .. } => urls.push(status_url),
                d => panic!("{d:?}"),
            }
        }
    }
    urls
}

#[tokio::test]
async fn log_analytics_query_then_purge_stays_pending_then_removes_only_the_subject() {
    let la = seeded_la();
    la.set_pending_polls(2);
    // `AmlModelsEvent` does not exist here: the query API's 400 "Failed to resolve table"
    // counts as empty in the adapter.
    let tel = telemetry(
        &la,
        &["AmlRunEvent", "AmlModelsEvent", "AmlRunStatusChangedEvent"],
    );
    let found = tel.query(&info(), &subject(ALICE)).await.unwrap();
    let tables: Vec<&str> = found.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(tables, ["AmlRunEvent", "AmlRunStatusChangedEvent"]);
    assert_eq!(found[0].destination, LA_WS);
    assert_eq!(run_ids(&found[0].rows), ["r1", "r2"]);
    assert_eq!(found[0].rows[0].to_value()["Properties"]["team"], "a");
    assert_eq!(run_ids(&found[1].rows), ["r1"]);
    let statuses: Vec<u16> = la.query_requests().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 400, 200]);
    // The dynamic column is searched as a whole (`has`), the string column with `==`.
    let kql: Vec<String> = la
        .query_requests()
        .iter()
        .map(|s| {
            serde_json::from_slice::<Value>(&s.body).unwrap()["query"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kql[0],
        format!("AmlRunEvent | where tostring(Identity) has \"{ALICE}\"")
    );
    assert_eq!(
        kql[2],
        format!("AmlRunStatusChangedEvent | where Identity == \"{ALICE}\"")
    );
    // Bob's JSON-text identity is found too.
    let bob = tel.query(&info(), &subject(BOB)).await.unwrap();
    assert_eq!(run_ids(&bob[0].rows), ["r3", "r4"]);

    let urls = send_all(&tel, ALICE).await;
    assert_eq!(urls.len(), 2);
    let filters: Vec<Value> = la.purges().iter().map(|p| json!(p.filters)).collect();
    assert_eq!(
        filters,
        [
            json!([{"column": "Identity", "key": "oid", "operator": "==", "value": ALICE}]),
            json!([{"column": "Identity", "operator": "==", "value": ALICE}]),
        ]
    );
    // Two polls pending, then completed; the rows go only then.
    for _ in 0..2 {
        for u in &urls {
            assert_eq!(tel.poll_purge(u).await.unwrap(), PurgePoll::Pending);
        }
        assert_eq!(la.rows(LA_WS, "AmlRunEvent").len(), 4);
    }
    for u in &urls {
        assert_eq!(tel.poll_purge(u).await.unwrap(), PurgePoll::Completed);
    }
    assert_eq!(run_ids(&la.rows(LA_WS, "AmlRunEvent")), ["r3", "r4"]);
    assert_eq!(run_ids(&la.rows(LA_WS, "AmlRunStatusChangedEvent")), ["r3"]);
    let p = &la.purges()[0];
    assert_eq!((p.state, p.polls, p.removed), (PurgeState::Completed, 3, 2));
    assert_eq!(
        la.arm_requests()
            .iter()
            .filter(|s| s.method == "POST")
            .count(),
        2
    );

    // Whole-workspace purge: `_ResourceId == <ml workspace, lower-cased>` removes Bob's row in
    // that workspace and keeps the one from elsewhere. (It purges every configured table without
    // querying first; a table the workspace lacks is a 400 here, so only existing tables.)
    la.set_pending_polls(0);
    let err = tel.purge_workspace(&info()).await.unwrap_err();
    assert!(
        matches!(&err, TelemetryError::Other(m) if m.contains("AmlModelsEvent")),
        "{err}"
    );
    let tel = telemetry(&la, &["AmlRunEvent"]);
    let st = tel.purge_workspace(&info()).await.unwrap();
    assert!(matches!(st, PurgeStatus::Pending { .. }));
    let st = tel.purge_workspace(&info()).await.unwrap();
    assert!(matches!(st, PurgeStatus::Completed { .. }), "{st:?}");
    assert_eq!(run_ids(&la.rows(LA_WS, "AmlRunEvent")), ["r4"]);
}

#[tokio::test]
async fn log_analytics_throttling_failure_and_wrong_audience() {
    let la = seeded_la();
    let tel = telemetry(&la, &["AmlRunEvent"]);
    // 429 on the purge POST: deferred (a later timer run sends it), not retried.
    la.throttle_purges(1, 1);
    let plan = tel.purge_plan(&info(), &subject(ALICE)).await.unwrap();
    let body = plan[0].bodies.clone().unwrap().remove(0);
    let st = tel.send_purge(LA_WS, &body).await.unwrap();
    assert!(matches!(st, PurgeSend::Deferred { .. }), "{st:?}");
    let st = tel.send_purge(LA_WS, &body).await.unwrap();
    assert!(matches!(st, PurgeSend::Accepted { .. }), "{st:?}");
    let posts: Vec<u16> = la
        .arm_requests()
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.status)
        .collect();
    assert_eq!(posts, [429, 202]);
    // 429 on the query API is waited out.
    la.throttle_queries(1, 1);
    assert_eq!(
        tel.query(&info(), &subject(BOB)).await.unwrap()[0]
            .rows
            .len(),
        2
    );

    // A failed purge: its status answers 500 (retried, then transient: the timer polls again
    // and gives up after the SLA); rows stay.
    la.fail_next_purges(1);
    let urls = send_all(&tel, BOB).await;
    let err = tel.poll_purge(&urls[0]).await.unwrap_err();
    assert!(
        matches!(err, TelemetryError::Transient(ref m) if m.contains("500")),
        "{err}"
    );
    assert_eq!(la.rows(LA_WS, "AmlRunEvent").len(), 4);

    // Tokens for the wrong audience: query API 403, ARM 401; neither is retried as transient.
    let swapped = LogAnalyticsTelemetry::new(
        rest(LOG_ANALYTICS_SCOPE),
        rest(ARM_SCOPE),
        PurgeConfig {
            arm_endpoint: url(la.arm_url()),
            query_endpoint: url(la.query_url()),
            tables: vec!["AmlRunEvent".into()],
        },
    );
    let err = swapped.query(&info(), &subject(ALICE)).await.unwrap_err();
    assert!(
        matches!(&err, TelemetryError::Other(m) if m.contains("403")),
        "{err}"
    );
    let r = http()
        .post(format!("{}{LA_WS}/purge?api-version=2020-08-01", la.arm_url()))
        .bearer_auth(IdentityStandIn::shared().token_for("https://api.loganalytics.io"))
        .json(&json!({"table": "AmlRunEvent", "filters": [{"column": "Identity", "key": "oid", "operator": "==", "value": ALICE}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenAudience");
}

/// Post a purge straight to the stand-in and poll it to the end; returns the run ids left.
async fn purge_directly(
    la: &LogAnalyticsStandIn,
    body: Value,
) -> Result<Vec<String>, (u16, Value)> {
    let token = IdentityStandIn::shared().token_for("https://management.azure.com");
    let r = http()
        .post(format!(
            "{}{LA_WS}/purge?api-version=2020-08-01",
            la.arm_url()
        ))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("x-ms-status-location")
        .map(|v| v.to_str().unwrap().to_string());
    let v: Value = r.json().await.unwrap();
    if status != 202 {
        return Err((status, v));
    }
    let location = location.expect("x-ms-status-location");
    assert!(location.ends_with(&format!(
        "/operations/{}?api-version=2020-08-01",
        v["operationId"].as_str().unwrap()
    )));
    loop {
        let s: Value = http()
            .get(&location)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["status"] == "completed" {
            break;
        }
        assert_eq!(s["status"], "pending");
    }
    Ok(run_ids(&la.rows(LA_WS, "AmlRunEvent")))
}

#[tokio::test]
async fn purge_filters_follow_the_documented_operators() {
    let la = seeded_la();
    la.set_pending_polls(1);
    // `between` on a datetime column (inclusive), AND-ed with `=~` (case-insensitive).
    let left = purge_directly(
        &la,
        json!({"table": "AmlRunEvent", "filters": [
            {"column": "TimeGenerated", "operator": "between", "value": ["2026-11-02T00:00:00", "2026-11-03T10:00:00Z"]},
            {"column": "Identity", "key": "oid", "operator": "=~", "value": BOB.to_uppercase()}
        ]}),
    )
    .await
    .unwrap();
    assert_eq!(left, ["r1", "r2", "r4"]);
    // `key` into a dynamic column (custom dimensions), with `in`.
    let left = purge_directly(
        &la,
        json!({"table": "AmlRunEvent", "filters": [
            {"column": "Properties", "key": "team", "operator": "in", "value": ["b", "c"]}
        ]}),
    )
    .await
    .unwrap();
    assert_eq!(left, ["r1", "r4"]);
    // Numeric `>` on a long column.
    let left = purge_directly(
        &la,
        json!({"table": "AmlRunEvent", "filters": [{"column": "Duration", "operator": ">", "value": 35}]}),
    )
    .await
    .unwrap();
    assert_eq!(left, ["r1"]);
    // `==` is case-sensitive: nothing matches "R1".
    let left = purge_directly(
        &la,
        json!({"table": "AmlRunEvent", "filters": [{"column": "RunId", "operator": "==", "value": "R1"}]}),
    )
    .await
    .unwrap();
    assert_eq!(left, ["r1"]);
    // Invalid requests are refused when posted.
    for bad in [
        json!({"table": "AmlRunEvent", "filters": [{"column": "Nope", "operator": "==", "value": "x"}]}),
        json!({"table": "AmlRunEvent", "filters": [{"column": "RunId", "operator": "contains", "value": "x"}]}),
        json!({"table": "AmlRunEvent", "filters": [{"column": "RunId", "key": "k", "operator": "==", "value": "x"}]}),
        json!({"table": "AmlRunEvent", "filters": [{"column": "RunId", "operator": "in", "value": "x"}]}),
        json!({"table": "Missing", "filters": [{"column": "RunId", "operator": "==", "value": "x"}]}),
        json!({"table": "AmlRunEvent", "filters": []}),
    ] {
        let (status, body) = purge_directly(&la, bad.clone()).await.unwrap_err();
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    }
    assert_eq!(run_ids(&la.rows(LA_WS, "AmlRunEvent")), ["r1"]);
}

#[tokio::test]
async fn purge_routes_sit_in_front_of_another_arm_router() {
    let la = seeded_la();
    let inner = axum::Router::new().fallback(|| async { axum::Json(json!({"from": "inner"})) });
    let app = la.arm_router(Some(inner));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tel = LogAnalyticsTelemetry::new(
        rest(ARM_SCOPE),
        rest(LOG_ANALYTICS_SCOPE),
        PurgeConfig {
            arm_endpoint: url(&base),
            query_endpoint: url(la.query_url()),
            tables: vec!["AmlRunEvent".into()],
        },
    );
    let urls = send_all(&tel, ALICE).await;
    assert_eq!(
        tel.poll_purge(&urls[0]).await.unwrap(),
        PurgePoll::Completed
    );
    let other: Value = http()
        .get(format!("{base}{ML_WS}?api-version=2024-04-01"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other, json!({"from": "inner"}));
    task.abort();
}
