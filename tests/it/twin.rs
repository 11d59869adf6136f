//! Proof of the "Azure twin" stand-ins (`tests/it/stand_ins/`) against the project's production
//! adapters: each stand-in is driven by the adapter the handler uses in `DSR_MODE=azure`
//! (`GraphDirectory`, `LogAnalyticsTelemetry`, `ServiceBusSender`, `AzureBlobStore` on Azurite
//! over https with bearer tokens), with tokens from `azure_identity`'s
//! `ManagedIdentityCredential` pointed at the identity stand-in. The error paths (404, 429 +
//! Retry-After, wrong token audience) are exercised too, so a stand-in that answered loosely, or
//! an adapter that ignored what it was told, fails here.

use crate::stand_ins;
use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azureml_dsr::adapters::azure::arm::ARM_SCOPE;
use azureml_dsr::adapters::azure::blob::{Auth, AzureBlobConfig, AzureBlobStore, Endpoints};
use azureml_dsr::adapters::azure::graph::{GraphDirectory, GRAPH_SCOPE};
use azureml_dsr::adapters::azure::purge::{
    LogAnalyticsTelemetry, PurgeBudget, PurgeConfig, LOG_ANALYTICS_SCOPE,
};
use azureml_dsr::adapters::azure::servicebus::{ServiceBusSender, SERVICEBUS_SCOPE};
use azureml_dsr::adapters::local::sqlite_queue::LocalQueue;
use azureml_dsr::domain::request::SubjectRef;
use azureml_dsr::domain::subject::Upn;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::ports::blob::{BlobRef, BlobStore, Condition, DeleteOutcome, StoreError};
use azureml_dsr::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};
use azureml_dsr::ports::control_plane::WorkspaceInfo;
use azureml_dsr::ports::directory::{Directory, DirectoryError};
use azureml_dsr::ports::telemetry::{
    PurgePoll, PurgeSend, PurgeStatus, TelemetryError, TelemetryStore,
};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use stand_ins::graph::{DirectoryUser, GraphStandIn};
use stand_ins::identity::IdentityStandIn;
use stand_ins::log_analytics::{LogAnalyticsStandIn, PurgeState};
use stand_ins::service_bus::ServiceBusStandIn;
use support::azure::{credential, fast_retry, rest, subject, workspace_info};

const ML_WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/mlw-0";
const LA_WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.OperationalInsights/workspaces/law-0";
const ALICE: &str = "11111111-2222-3333-4444-555555555555";
const BOB: &str = "66666666-7777-8888-9999-000000000000";

fn url(s: &str) -> azure_core::http::Url {
    azure_core::http::Url::parse(s).unwrap()
}

/// Plain-http client for poking the stand-ins directly (our reqwest is built without TLS).
fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

// ---------------------------------------------------------------- identity

#[tokio::test]
async fn identity_issues_jwts_for_the_requested_audience() {
    let id = IdentityStandIn::shared();
    let cred = credential();
    let token = cred
        .get_token(&["https://storage.azure.com/.default"], None)
        .await
        .unwrap();
    let c = claims(token.token.secret());
    assert_eq!(c["aud"], "https://storage.azure.com");
    assert!(c["iss"]
        .as_str()
        .unwrap()
        .starts_with("https://sts.windows.net/"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(c["nbf"].as_i64().unwrap() <= now && c["exp"].as_i64().unwrap() > now + 3600);
    assert!(c["iat"].is_i64() && c["oid"].is_string() && c["tid"].is_string());
    // Deterministic per resource, so a server comparing the whole header can be told it.
    assert_eq!(
        token.token.secret(),
        id.token_for("https://storage.azure.com")
    );
    assert!(id
        .requested()
        .contains(&"https://storage.azure.com".to_string()));
    // The protocol's secret header and api-version are required.
    let r = http()
        .get(format!(
            "{}?api-version=2019-08-01&resource=https://storage.azure.com",
            id.endpoint
        ))
        .header("X-IDENTITY-HEADER", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(format!("{}?api-version=2017-09-01&resource=x", id.endpoint))
        .header("X-IDENTITY-HEADER", &id.header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

// ---------------------------------------------------------------- Graph

fn by_upn(upn: &str) -> SubjectRef {
    SubjectRef {
        object_id: None,
        upn: Some(Upn::parse(upn).unwrap()),
        tenant_id: None,
        display_name: None,
    }
}

#[tokio::test]
async fn graph_directory_resolves_users_and_honours_404_429_and_audience() {
    let graph = GraphStandIn::start(vec![
        // Her UPN as the directory spells it: the notebooks folder keeps its case.
        DirectoryUser::new(ALICE, "Alice@contoso.com", "Alice Smith"),
        // Mail differs from the UPN: found through the adapter's `$filter=mail eq` fallback.
        DirectoryUser::new(
            BOB,
            "bob_contoso.com#EXT#@contoso.onmicrosoft.com",
            "Bob Jones",
        )
        .with_mail(Some("bob@contoso.com")),
    ]);
    let dir = GraphDirectory::new(rest(GRAPH_SCOPE), url(graph.base_url()));

    let alice = dir
        .lookup(&by_upn("Alice@Contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.object_id.to_string(), ALICE);
    assert_eq!(alice.display_name.as_deref(), Some("Alice Smith"));
    assert_eq!(
        alice.notebook_aliases,
        ["Alice"],
        "case kept from the directory"
    );
    let by_oid = SubjectRef {
        object_id: Some(alice.object_id),
        upn: None,
        tenant_id: None,
        display_name: None,
    };
    assert_eq!(
        dir.lookup(&by_oid).await.unwrap().unwrap().object_id,
        alice.object_id
    );
    let bob = dir
        .lookup(&by_upn("bob@contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.object_id.to_string(), BOB);
    assert!(dir
        .lookup(&by_upn("nobody@contoso.com"))
        .await
        .unwrap()
        .is_none());

    let seen = graph.requests();
    assert!(seen
        .iter()
        .all(|s| s.query("$select") == Some("id,userPrincipalName,mail,displayName")));
    // Who else a notebooks folder name could belong to (case-insensitive, as Azure Files is).
    assert_eq!(dir.alias_holders("alice").await.unwrap(), [alice.object_id]);
    graph.add_user(DirectoryUser::new(
        "44444444-4444-4444-4444-444444444444",
        "ALICE@fabrikam.com",
        "Alice Other",
    ));
    assert_eq!(dir.alias_holders("Alice").await.unwrap().len(), 2);
    assert!(dir.alias_holders("ali").await.unwrap().is_empty());
    let not_found = seen
        .iter()
        .find(|s| s.path == "/v1.0/users/nobody@contoso.com")
        .unwrap();
    assert_eq!(not_found.status, 404);
    // The documented 404 body.
    let r = http()
        .get(format!(
            "{}/v1.0/users/nobody@contoso.com",
            graph.base_url()
        ))
        .bearer_auth(IdentityStandIn::shared().token_for("https://graph.microsoft.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    // $select projects: only the selected properties (plus @odata.context) come back.
    let r = http()
        .get(format!(
            "{}/v1.0/users/{ALICE}?$select=id,mail",
            graph.base_url()
        ))
        .bearer_auth(IdentityStandIn::shared().token_for("https://graph.microsoft.com"))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{body}");
    assert_eq!(body["mail"], "Alice@contoso.com");

    // 429 + Retry-After: the adapter waits as told and then succeeds.
    graph.throttle_next(1, 1);
    let t = Instant::now();
    assert!(dir
        .lookup(&by_upn("alice@contoso.com"))
        .await
        .unwrap()
        .is_some());
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        graph.requests().iter().filter(|s| s.status == 429).count(),
        1
    );

    // A token for ARM is refused as Graph refuses it, and that is not retried.
    let wrong = GraphDirectory::new(rest(ARM_SCOPE), url(graph.base_url()));
    let err = wrong
        .lookup(&by_upn("alice@contoso.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DirectoryError::Other(m) if m.contains("401") && m.contains("InvalidAuthenticationToken")),
        "{err}"
    );
}

// ---------------------------------------------------------------- Log Analytics

fn info() -> WorkspaceInfo {
    workspace_info(WorkspaceId::parse(ML_WS).unwrap(), "mlwstore0", LA_WS)
}

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

fn run_ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["RunId"].as_str().unwrap().to_string())
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
    assert_eq!(found[0].rows[0]["Properties"]["team"], "a");
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

// ---------------------------------------------------------------- Service Bus

#[tokio::test]
async fn service_bus_sends_land_in_the_local_queue_with_their_properties() {
    let dir = tempfile::tempdir().unwrap();
    let queue = LocalQueue::open(dir.path().join("queue.db")).unwrap();
    let sb = ServiceBusStandIn::start(queue.clone(), &["dsr-slice-jobs", "dsr-results"]);
    let bus = ServiceBusSender::new(rest(SERVICEBUS_SCOPE), sb.base_url()).unwrap();

    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        - time::Duration::seconds(5);
    let mut msg = OutMessage::json("dsr-slice-jobs", "req-7/ws/jobs", &json!({"slice": 1}))
        .correlated("req-7")
        .scheduled_at(at);
    msg.session_id = Some("req-7".into());
    msg.application_properties
        .insert("DsrKind".into(), json!("delete"));
    msg.application_properties
        .insert("Attempt".into(), json!(2));
    msg.application_properties
        .insert("DryRun".into(), json!(false));
    // One throttling fault (503, error 50009): retried.
    sb.throttle_next(1);
    assert_eq!(bus.send(msg.clone()).await.unwrap(), SendOutcome::Enqueued);
    // The same MessageId again: 201 as the service answers, dropped by duplicate detection.
    assert_eq!(bus.send(msg.clone()).await.unwrap(), SendOutcome::Enqueued);
    let statuses: Vec<u16> = sb.requests().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [503, 201, 201]);
    let accepted = sb.accepted();
    assert_eq!(accepted.len(), 2);
    assert!(!accepted[0].duplicate && accepted[1].duplicate);
    let got = &accepted[0].message;
    assert_eq!(got.message_id, "req-7/ws/jobs");
    assert_eq!(got.session_id.as_deref(), Some("req-7"));
    assert_eq!(got.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(got.scheduled_enqueue_time, Some(at));
    assert_eq!(got.body, br#"{"slice":1}"#);
    assert_eq!(got.content_type, "application/json");
    // Header names arrive lower-cased; values keep their JSON types.
    assert_eq!(
        got.application_properties.get("dsrkind"),
        Some(&json!("delete"))
    );
    assert_eq!(got.application_properties.get("attempt"), Some(&json!(2)));
    assert_eq!(
        got.application_properties.get("dryrun"),
        Some(&json!(false))
    );
    assert_eq!(
        got.application_properties.len(),
        3,
        "{:?}",
        got.application_properties
    );

    // What the Functions-host stand-in would deliver: one message, with the same properties.
    let d = queue.receive("dsr-slice-jobs").unwrap().expect("delivered");
    assert_eq!(d.message_id, "req-7/ws/jobs");
    assert_eq!(d.session_id.as_deref(), Some("req-7"));
    assert_eq!(d.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(d.body, br#"{"slice":1}"#);
    assert_eq!(d.application_properties.get("attempt"), Some(&json!(2)));
    assert!(queue.receive("dsr-slice-jobs").unwrap().is_none());

    // Unknown queue: 404 with Service Bus's error body, not retried.
    let err = bus
        .send(OutMessage::json("dsr-nope", "m1", &json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BusError::Other(m) if m.contains("404") && m.contains("could not be found")),
        "{err}"
    );
    // Wrong audience: 401.
    let wrong = ServiceBusSender::new(rest(GRAPH_SCOPE), sb.base_url()).unwrap();
    let err = wrong
        .send(OutMessage::json("dsr-results", "m2", &json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BusError::Other(m) if m.contains("401")),
        "{err}"
    );
    // Malformed BrokerProperties: 400.
    let r = http()
        .post(format!("{}/dsr-results/messages", sb.base_url()))
        .bearer_auth(IdentityStandIn::shared().token_for("https://servicebus.azure.net"))
        .header("BrokerProperties", "{not json")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("<Error><Code>400</Code><Detail>"));
    assert_eq!(queue.peek("dsr-results").unwrap().len(), 0);
}

// ---------------------------------------------------------------- Azurite over https + OAuth

/// Tokens for one fixed resource whatever is asked (a misconfigured scope).
#[derive(Debug)]
struct FixedAudience(String);

#[async_trait::async_trait]
impl TokenCredential for FixedAudience {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            IdentityStandIn::shared().token_for(&self.0),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

async fn read_all(store: &AzureBlobStore, b: &BlobRef) -> Vec<u8> {
    let mut reader = store.open(b).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = reader.body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn azure_blob_store_on_https_azurite_with_managed_identity_tokens() {
    support::azurite::trust_test_ca();
    let az = support::azurite::Azurite::start_https_oauth(&["dsrstate", "mlwstore0"]);
    assert!(az.base_url.starts_with("https://127.0.0.1:"));
    let template = format!("{}/{{account}}", az.base_url);
    let mut cfg = AzureBlobConfig::new(
        Endpoints::Template(template.clone()),
        Auth::Token(credential()),
    );
    cfg.retry = fast_retry();
    let store = AzureBlobStore::new(cfg);

    // The test itself can still seed with Shared Key (every account has the dev key).
    let seeder = AzureBlobStore::azurite(&az.base_url);
    seeder
        .create_container("mlwstore0", "azureml")
        .await
        .unwrap();
    let seeded = BlobRef::new("mlwstore0", "azureml", "ExperimentRun/dcid.job1/log.txt");
    seeder
        .put(
            &seeded,
            Bytes::from_static(b"seeded"),
            "text/plain",
            Condition::None,
            &Default::default(),
        )
        .await
        .unwrap();

    // Every operation of the production store, with bearer tokens.
    store
        .create_container("dsrstate", "dsr-exports")
        .await
        .unwrap();
    let blob = BlobRef::new("dsrstate", "dsr-exports", "T-1/manifest.json");
    store
        .put(
            &blob,
            Bytes::from_static(b"{\"ok\":true}"),
            "application/json",
            Condition::IfNotExists,
            &Default::default(),
        )
        .await
        .unwrap();
    let again = store
        .put(
            &blob,
            Bytes::from_static(b"x"),
            "application/json",
            Condition::IfNotExists,
            &Default::default(),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{again:?}"
    );
    let page = store
        .list_page("dsrstate", "dsr-exports", "T-1/", None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["T-1/manifest.json"]
    );
    assert_eq!(read_all(&store, &blob).await, b"{\"ok\":true}");
    assert_eq!(read_all(&store, &seeded).await, b"seeded");
    let copy = BlobRef::new("dsrstate", "dsr-exports", "T-1/files/log.txt");
    store.copy(&seeded, &copy).await.unwrap();
    assert_eq!(read_all(&store, &copy).await, b"seeded");

    // Export link: a user delegation SAS (the key fetched with the token), readable by a client
    // that has no credential at all.
    let link = store
        .read_link(&copy, Some(time::Duration::hours(1)))
        .await
        .unwrap();
    let q = link.query().unwrap_or_default().to_string();
    assert!(q.contains("skoid=") && q.contains("sig="), "{link}");
    let anon = azure_core::http::new_http_client(None);
    let rsp = anon
        .execute_request(&azure_core::http::Request::new(
            link.clone(),
            azure_core::http::Method::Get,
        ))
        .await
        .unwrap();
    let raw = rsp.try_into_raw_response().await.unwrap();
    let (status, _, body) = raw.deconstruct();
    assert_eq!(u16::from(status), 200);
    assert_eq!(body.as_ref(), b"seeded");
    // The signature really is checked: a tampered link is refused.
    let tampered = url(&link.as_str().replace("sp=r", "sp=rw"));
    let rsp = anon
        .execute_request(&azure_core::http::Request::new(
            tampered,
            azure_core::http::Method::Get,
        ))
        .await
        .unwrap();
    assert_eq!(u16::from(rsp.status()), 403);

    assert_eq!(store.delete(&copy).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(store.delete(&copy).await.unwrap(), DeleteOutcome::NotFound);
    assert!(matches!(
        store.open(&copy).await,
        Err(StoreError::NotFound(_))
    ));

    // Azurite checks the token's audience: a Graph token is refused.
    let mut cfg = AzureBlobConfig::new(
        Endpoints::Template(template),
        Auth::Token(Arc::new(FixedAudience(
            "https://graph.microsoft.com".into(),
        ))),
    );
    cfg.retry = fast_retry();
    let wrong = AzureBlobStore::new(cfg);
    let err = wrong
        .create_container("dsrstate", "other")
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        format!("{err}").contains("403") || format!("{err}").contains("uthentication"),
        "{err}"
    );
}

mod as_deployed {
    //! **The Azure twin, end to end.** The built binary runs exactly as the Functions host starts
    //! it from the deployment package (`host.json` `customHandler`: executable, arguments,
    //! working directory, `FUNCTIONS_CUSTOMHANDLER_PORT`), with exactly the app settings of
    //! `infra/app-settings.json` plus endpoint overrides to loopback stand-ins and the platform's
    //! managed-identity variables: Azurite over https with bearer tokens for every storage
    //! account, the local ARM server (behind the Log Analytics purge routes) for ARM, and the
    //! Graph, Log Analytics, Azure Files (notebooks) and Service Bus stand-ins. The test side plays the Functions host:
    //! the Service Bus stand-in feeds a queue the local dispatcher delivers from, over HTTP, to
    //! the child process. Everything is asserted from Azurite's and the stand-ins' state, never
    //! from the handler's own word — and the app folder must hold nothing new afterwards.
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    use azureml_dsr::adapters::azure::blob::SharedKeys;
    use azureml_dsr::adapters::azure::shared_key::DEV_KEY;
    use azureml_dsr::adapters::local::arm_server::{self, ArmServerOptions};
    use azureml_dsr::adapters::local::control_plane::ARM_ACCOUNT;
    use azureml_dsr::domain::report::{FinalReport, FinalStatus};
    use azureml_dsr::domain::request::RequestId;
    use azureml_dsr::ports::blob::BlobStoreExt;
    use azureml_dsr::ports::bus::queues;
    use azureml_dsr::runtime::dispatcher::{Dispatcher, DispatcherOptions};
    use azureml_dsr::runtime::host_config::HostConfig;
    use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
    use azureml_dsr::state::StateStore;

    use super::*;
    use crate::stand_ins::files::FilesStandIn;
    use crate::stand_ins::server::BackgroundServer;
    use crate::support::azurite::{trust_test_ca, Azurite};

    const STATE: &str = "dsrstate";
    const ACCOUNTS: [&str; 5] = [
        "mlwstore0",
        ARM_ACCOUNT,
        "telemetrylocal",
        STATE,
        "runhistorylocal",
    ];
    const ARM_RESOURCE: &str = "https://management.azure.com";
    const LAW: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.OperationalInsights/workspaces/law-twin";

    /// The test's own view of Azurite: Shared Key over the same https endpoint.
    fn admin_store(az: &Azurite) -> Arc<dyn BlobStore> {
        Arc::new(AzureBlobStore::new(AzureBlobConfig::new(
            Endpoints::Template(format!("{}/{{account}}", az.base_url)),
            Auth::SharedKey(SharedKeys::default().fallback(DEV_KEY)),
        )))
    }

    /// A deployment package's layout: host.json, the function folders beside it, and the binary
    /// where `defaultExecutablePath` says.
    fn app_folder(dir: &Path) -> HostConfig {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::copy(repo.join("host.json"), dir.join("host.json")).unwrap();
        for f in std::fs::read_dir(repo.join("functions")).unwrap() {
            let f = f.unwrap();
            let to = dir.join(f.file_name());
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(f.path().join("function.json"), to.join("function.json")).unwrap();
        }
        let config = HostConfig::load(dir, &BTreeMap::new()).unwrap();
        let exe = &config
            .custom_handler
            .as_ref()
            .unwrap()
            .default_executable_path;
        std::fs::copy(env!("CARGO_BIN_EXE_azureml-dsr"), dir.join(exe)).unwrap();
        config
    }

    fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p.clone());
                }
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
        out
    }

    /// Every seeded blob -> hash of its content (absent: deleted). (Listing an account's
    /// containers is refused by Azurite's OAuth mode with Shared Key, so go by the seed.)
    /// Notebooks live in the Files stand-in (their presence is recorded, as `file`).
    async fn blobs(
        store: &dyn BlobStore,
        files: &FilesStandIn,
        truth: &SeedTruth,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for key in truth.blobs.keys() {
            let mut p = key.splitn(3, '/');
            let b = BlobRef::new(p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
            if is_share(truth, &b) {
                if files.files(&b.account, &b.container).contains(&b.name) {
                    out.insert(key.clone(), "file".into());
                }
                continue;
            }
            match store.read_small(&b).await {
                Ok((bytes, _)) => {
                    out.insert(key.clone(), azureml_dsr::domain::ids::sha256_hex(&bytes));
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => panic!("{key}: {e}"),
            }
        }
        out
    }

    fn is_share(truth: &SeedTruth, b: &BlobRef) -> bool {
        truth
            .infos
            .iter()
            .any(|i| i.storage_account == b.account && i.file_share == b.container)
    }

    struct Handler(Child);
    impl Drop for Handler {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_and_delete_through_the_production_adapters_as_deployed() {
        let ca = trust_test_ca();
        let identity = IdentityStandIn::shared();
        let az = Azurite::start_https_oauth(&ACCOUNTS);
        let admin = admin_store(&az);
        let now = time::OffsetDateTime::now_utc();
        let truth = seed(
            &admin,
            &SeedOptions {
                users: 4,
                runs_per_user: 3,
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
        // Notebooks live in an Azure Files share: move the seeded ones into the Files stand-in.
        let files = FilesStandIn::start();
        for info in &truth.infos {
            files.create_share(&info.storage_account, &info.file_share);
            for item in admin
                .list_all(&info.storage_account, &info.file_share, "")
                .await
                .unwrap()
            {
                let b = BlobRef::new(&info.storage_account, &info.file_share, &item.name);
                let (bytes, _) = admin.read_small(&b).await.unwrap();
                files.put_file(&info.storage_account, &info.file_share, &item.name, &bytes);
            }
            admin
                .delete_container(&info.storage_account, &info.file_share)
                .await
                .unwrap();
        }
        // The state account holds the scope (as `azureml-dsr workspace add` writes it).
        StateStore::new(admin.clone(), STATE)
            .put_scope(&truth.workspaces)
            .await
            .unwrap();

        // Stand-ins.
        let graph = GraphStandIn::start(
            truth
                .directory()
                .iter()
                .map(|e| {
                    DirectoryUser::new(
                        &e.object_id.to_string(),
                        e.upn.as_ref().unwrap().as_str(),
                        e.display_name.as_deref().unwrap_or_default(),
                    )
                })
                .collect(),
        );
        let la = LogAnalyticsStandIn::start();
        // Telemetry: the workspace's diagnostic settings send to a Log Analytics workspace (the
        // stand-in), which holds the seed's AmlRunEvent rows; a purge stays pending for a poll.
        let lcp =
            azureml_dsr::adapters::local::control_plane::LocalControlPlane::new(admin.clone());
        let mut info0 =
            azureml_dsr::ports::control_plane::ControlPlane::workspace(&lcp, &truth.workspaces[0])
                .await
                .unwrap();
        info0.diagnostic_destinations = vec![LAW.to_string()];
        lcp.put_workspace(&info0).await.unwrap();
        la.add_workspace(LAW);
        la.add_table(
            LAW,
            "AmlRunEvent",
            &[
                ("TimeGenerated", "datetime"),
                ("Identity", "dynamic"),
                ("RunId", "string"),
                ("EventType", "string"),
            ],
        );
        let mut rows = Vec::new();
        let tel_container =
            azureml_dsr::adapters::local::telemetry::LocalTelemetry::container(&info0);
        let (bytes, _) = admin
            .read_small(&BlobRef::new(
                "telemetrylocal",
                tel_container,
                "AmlRunEvent.jsonl",
            ))
            .await
            .unwrap();
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            rows.push(serde_json::from_str::<Value>(line).unwrap());
        }
        la.insert(LAW, "AmlRunEvent", &rows);
        la.set_pending_polls(1);
        // Run history answers with the seed's run records (who created each job, its children).
        let mut run_docs = Vec::new();
        for ws in &truth.workspaces {
            let c = azureml_dsr::adapters::local::run_history::LocalRunHistory::container(ws);
            for b in admin
                .list_all("runhistorylocal", &c, "runs/")
                .await
                .unwrap()
            {
                let doc: Value = admin
                    .read_json(&BlobRef::new("runhistorylocal", c.clone(), b.name))
                    .await
                    .unwrap()
                    .unwrap();
                run_docs.push(doc);
            }
        }
        assert!(!run_docs.is_empty());
        let run_history = stand_ins::run_history::RunHistoryStandIn::start(run_docs, 2);
        let arm = BackgroundServer::start(
            "arm",
            la.arm_router(Some(arm_server::router(
                admin.clone(),
                ArmServerOptions {
                    page_size: 2,
                    bearer: Some(identity.bearer(ARM_RESOURCE)),
                    lro_polls: 1,
                    retry_after: None,
                    throttle: None,
                },
            ))),
        );
        let host_dir = tempfile::tempdir().unwrap();
        let bus_queue = LocalQueue::open(host_dir.path().join("servicebus.sqlite")).unwrap();
        let all_queues: Vec<String> = [queues::INTAKE, queues::COMPLETIONS, queues::RESULTS]
            .into_iter()
            .map(str::to_string)
            .chain(
                azureml_dsr::domain::plan::ResourceType::ALL
                    .iter()
                    .map(|t| t.queue()),
            )
            .collect();
        let names: Vec<&str> = all_queues.iter().map(String::as_str).collect();
        let sb = ServiceBusStandIn::start(bus_queue.clone(), &names);

        // The app folder and the process, as the host starts it.
        let app = tempfile::tempdir().unwrap();
        let config = app_folder(app.path());
        let files_before = files_under(app.path());
        let spec = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/app-settings.json"),
        )
        .unwrap();
        let state_url = format!("{}/{STATE}", az.base_url);
        let settings = azureml_dsr::settings::render_app_settings(&spec, &|p| {
            Some(match p {
                "stateBlobEndpoint" => state_url.clone(),
                "serviceBusFqdn" => sb.base_url().to_string(),
                "logSalt" => "twin-salt-0123456789abcdef".into(),
                "retentionSweepSchedule" => "0 30 2 * * *".into(),
                "jobRetentionEnabled" => "False".into(),
                "jobRetentionDays" => "365".into(),
                "stateRetentionDays" => "90".into(),
                "telemetryPurgeEnabled" => "True".into(),
                "exportLinkDays" => "7".into(),
                "maxDeliveryCount" => "10".into(),
                "identityClientId" => "00000000-0000-0000-0000-0000000000c1".into(),
                _ => "placeholder".into(),
            })
        })
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ch = config.custom_handler.clone().unwrap();
        // The environment of the deployed app: its settings, endpoint overrides to the stand-ins
        // (production defaults otherwise), the platform's managed-identity variables, and the
        // test CA (Azurite's certificate) trusted as a machine trusts Azure's.
        let files_template = files.template();
        let mut deployed_env: Vec<(String, String)> = settings.clone();
        deployed_env.extend(
            [
                ("DSR_ARM_ENDPOINT", arm.base_url.as_str()),
                ("DSR_GRAPH_ENDPOINT", graph.base_url()),
                ("DSR_LOGANALYTICS_ENDPOINT", la.query_url()),
                ("DSR_FILE_ENDPOINT", files_template.as_str()),
                ("DSR_RUN_HISTORY_ENDPOINT", run_history.base_url()),
                ("DSR_ARM_POLL_MS", "20"),
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("DSR_LOG", "warn"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        deployed_env.extend(identity.env());
        let handler = Handler(
            Command::new(app.path().join(&ch.default_executable_path))
                .args(&ch.arguments)
                .current_dir(app.path().join(&ch.working_directory))
                .env_clear()
                .envs(deployed_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // An operator's CLI in Azure mode, same settings, another empty folder: the legal holds
        // and the scope it manages are the ones the handler reads (the state account).
        let operator = tempfile::tempdir().unwrap();
        let cli = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
                .args(args)
                .arg("--json")
                .current_dir(operator.path())
                .env_clear()
                .envs(deployed_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        };
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(&base).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "handler not ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        let dispatcher = Dispatcher::with_config(
            config,
            bus_queue.clone(),
            &base,
            DispatcherOptions {
                poll_interval: Duration::from_millis(20),
                settings: settings.iter().cloned().collect(),
                ..Default::default()
            },
        )
        .unwrap();

        let alice = truth.user("alice").unwrap().clone();
        let before_blobs = blobs(admin.as_ref(), &files, &truth).await;
        let before_resources =
            crate::support::pipeline::seeded_resources(admin.as_ref(), &truth).await;
        let ws: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
        let scope = cli(&["workspace", "list"]);
        assert_eq!(
            scope,
            json!(ws),
            "the CLI reads the scope from the state account"
        );
        let alice_oid = alice.object_id.to_string();
        let holds = cli(&[
            "hold",
            "add",
            "--id",
            "TWIN-HOLD",
            "--reason",
            "litigation",
            "--subject",
            &alice_oid,
            "--type",
            "compute",
        ]);
        assert_eq!(holds["holds"][0]["id"], "TWIN-HOLD");
        assert!(std::fs::read_dir(operator.path()).unwrap().next().is_none());
        for (id, kind) in [("TWIN-EXPORT", "export"), ("TWIN-DELETE", "delete")] {
            // The ticketing system's message, as Service Bus delivers it.
            let body = json!({"schemaVersion": "1.0", "requestId": id, "type": kind,
                "subject": {"upn": alice.upn}, "scope": {"workspaces": ws}});
            let mut msg = OutMessage::json(queues::INTAKE, id, &Value::Null);
            msg.body = body.to_string().into_bytes();
            bus_queue.send(msg).await.unwrap();
            dispatcher
                .drain_until_idle(Duration::from_secs(240))
                .await
                .unwrap();
        }
        // Control messages through the deployed handler: an extension beyond GDPR's two further
        // months and an unknown envelope version are refused, a cancel of a request never
        // received is remembered; each answered on dsr-results through the production sender.
        // (Both requests wait in needs review, where a valid cancel or extension would apply.)
        for (n, body) in [
            json!({"type": "extend", "version": 1, "requestId": "TWIN-EXPORT", "days": 120, "reason": "complex"}),
            json!({"type": "cancel", "version": 1, "requestId": "TWIN-NOBODY"}),
            json!({"type": "cancel", "version": 2, "requestId": "TWIN-DELETE"}),
        ]
        .into_iter()
        .enumerate()
        {
            let mut msg = OutMessage::json(queues::INTAKE, format!("control-{n}"), &Value::Null);
            msg.body = body.to_string().into_bytes();
            bus_queue.send(msg).await.unwrap();
        }
        dispatcher
            .drain_until_idle(Duration::from_secs(120))
            .await
            .unwrap();
        // Delivered concurrently: compared in order of request and code.
        let mut refusals: Vec<(String, String)> = sb
            .accepted()
            .into_iter()
            .filter(|a| a.message.queue == queues::RESULTS && !a.duplicate)
            .map(|a| serde_json::from_slice::<Value>(&a.message.body).unwrap())
            .filter(|v| v["event"] == "control_rejected")
            .map(|v| {
                assert!(v["reason"].as_str().is_some_and(|r| r.len() > 10), "{v}");
                (
                    v["requestId"].as_str().unwrap().to_string(),
                    v["code"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        refusals.sort();
        assert_eq!(
            refusals,
            [
                ("TWIN-DELETE".to_string(), "unsupported_version".to_string()),
                (
                    "TWIN-EXPORT".to_string(),
                    "extension_beyond_legal_limit".to_string()
                ),
            ]
        );
        // A cancel for a request never received is remembered, not refused: on a queue without
        // sessions it may have overtaken its request (`cancel_pending`).
        assert!(sb
            .accepted()
            .into_iter()
            .filter(|a| a.message.queue == queues::RESULTS && !a.duplicate)
            .map(|a| serde_json::from_slice::<Value>(&a.message.body).unwrap())
            .any(|v| v["event"] == "cancel_pending" && v["requestId"] == "TWIN-NOBODY"));
        // Telemetry: the purge was requested once and is pending; her rows are still there.
        let rows_of = |oid: &str| {
            la.rows(LAW, "AmlRunEvent")
                .iter()
                .filter(|r| r["Identity"]["oid"] == oid)
                .count()
        };
        let alice_oid_s = alice.object_id.to_string();
        let rows_before = rows_of(&alice_oid_s);
        assert!(rows_before > 0, "the seed gave her telemetry");
        assert_eq!(la.purges().len(), 1, "{:?}", la.purges());
        let others_rows = la.rows(LAW, "AmlRunEvent").len() - rows_before;
        // The timer (as the host fires it) polls the purge until it completes.
        let v2 = BlobRef::new(STATE, "dsr-reports", "TWIN-DELETE/certificate.v2.json");
        let mut polls = 0;
        while admin.read_small(&v2).await.is_err() {
            polls += 1;
            assert!(polls <= 4, "the purge never completed: {:?}", la.purges());
            assert_eq!(
                dispatcher
                    .invoke_timer_now("retention-sweep")
                    .await
                    .unwrap(),
                Some(200)
            );
        }
        assert!(polls >= 2, "pending for one poll, then completed");
        assert_eq!(rows_of(&alice_oid_s), 0, "her rows are purged");
        assert_eq!(
            la.rows(LAW, "AmlRunEvent").len(),
            others_rows,
            "others' rows stay"
        );
        assert_eq!(la.purges().len(), 1, "the purge was never sent twice");

        // Review (issue 14, item 3): the assets only a display name ties to her — hers and
        // those of Ali, who shares it — were listed and left alone. The CLI lists them (Azure
        // mode), an approval of hers arrives as a control message on the intake queue (the
        // deployed handler applies it through the production adapters), and a rejection of
        // Ali's is recorded with the CLI.
        let candidates_of = |who: &str| -> Vec<String> {
            truth
                .resources
                .iter()
                .filter(|(_, o)| **o == azureml_dsr::seed::review_owner(who))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let (hers, alis) = (candidates_of("alice"), candidates_of("ali"));
        assert!(!hers.is_empty() && !alis.is_empty());
        let listed = tokio::task::block_in_place(|| cli(&["review", "TWIN-DELETE"]));
        let listed_ids: BTreeSet<String> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["resourceId"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            listed_ids,
            hers.iter().chain(&alis).cloned().collect::<BTreeSet<_>>(),
            "{listed:#}"
        );
        let pending_resources =
            crate::support::pipeline::seeded_resources(admin.as_ref(), &truth).await;
        for id in hers.iter().chain(&alis) {
            assert!(
                pending_resources.contains_key(id),
                "{id} untouched before approval"
            );
        }
        let approve = json!({"type": "approve", "version": 1, "requestId": "TWIN-DELETE",
            "items": hers, "approver": "dpo@contoso.com", "reason": "confirmed with the subject"});
        let mut msg = OutMessage::json(queues::INTAKE, "TWIN-APPROVE", &Value::Null);
        msg.body = approve.to_string().into_bytes();
        bus_queue.send(msg).await.unwrap();
        dispatcher
            .drain_until_idle(Duration::from_secs(240))
            .await
            .unwrap();
        let mut reject = vec!["review", "reject", "TWIN-DELETE"];
        reject.extend(alis.iter().map(String::as_str));
        reject.extend(["--reason", "her namesake's", "--by", "dpo@contoso.com"]);
        let rejected = tokio::task::block_in_place(|| cli(&reject));
        let last = rejected["reportVersion"].as_u64().unwrap();
        assert_eq!(rejected["status"], "completed", "{rejected}");
        let newest: FinalReport = admin
            .read_json(&BlobRef::new(
                STATE,
                "dsr-reports",
                format!("TWIN-DELETE/certificate.v{last}.json"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(newest.status, FinalStatus::Completed, "{newest:#?}");
        let decided: Vec<_> = newest.results.iter().flat_map(|r| &r.review).collect();
        assert!(decided.iter().all(|i| i
            .decision
            .as_ref()
            .is_some_and(|d| d.approved == hers.contains(&i.resource_id))));
        drop(handler);

        // The reports, audit records and results, read from the state account on Azurite.
        let state = StateStore::new(admin.clone(), STATE);
        let v2_report: FinalReport = admin.read_json(&v2).await.unwrap().unwrap();
        // Purges done; her display-name-only assets still awaited review at that point.
        assert_eq!(v2_report.status, FinalStatus::NeedsReview, "{v2_report:#?}");
        let report = |id: &'static str| {
            let state = state.clone();
            async move {
                state
                    .report(&RequestId::parse(id).unwrap())
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("no report for {id} in the state account"))
            }
        };
        // The operator's view in Azure mode agrees with the state account: the lifecycle waited
        // in needs review (display-name-only assets; the purge's end left it there) until the
        // last review decision above completed the request.
        let status = cli(&["status", "TWIN-DELETE"]);
        assert_eq!(
            status["status"], "completed",
            "needs review until the decisions, then completed"
        );
        let states: Vec<&str> = status["lifecycle"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["state"].as_str().unwrap())
            .collect();
        assert_eq!(
            states,
            [
                "received",
                "planned",
                "in_progress",
                "needs_review",
                "completed"
            ]
        );
        assert_eq!(cli(&["report", "TWIN-EXPORT"])["requestId"], "TWIN-EXPORT");
        let export: FinalReport = report("TWIN-EXPORT").await;
        let delete: FinalReport = report("TWIN-DELETE").await;
        assert_eq!(export.status, FinalStatus::NeedsReview, "{export:#?}");
        assert_eq!(delete.status, FinalStatus::NeedsReview, "{delete:#?}");
        for r in [&export, &delete] {
            let audit = state.audit_ref(&r.request_id);
            assert!(
                admin.read_small(&audit).await.is_ok(),
                "no audit record {audit}"
            );
        }
        let results: Vec<_> = sb
            .accepted()
            .into_iter()
            .filter(|a| a.message.queue == queues::RESULTS)
            .map(|a| serde_json::from_slice::<Value>(&a.message.body).unwrap())
            .collect();
        for id in ["TWIN-EXPORT", "TWIN-DELETE"] {
            assert!(
                results.iter().any(|r| r["requestId"] == id),
                "no result message for {id}: {results:?}"
            );
        }
        // One request, one trace, through the production Service Bus sender: every message the
        // handler sent carries a W3C traceparent as the Diagnostic-Id application property (a
        // custom header; names arrive lower-cased), one trace per request.
        let mut traces: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for a in sb.accepted().into_iter().filter(|a| !a.duplicate) {
            let tp = a
                .message
                .application_properties
                .get("diagnostic-id")
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("no Diagnostic-Id on {}", a.message.message_id));
            let ctx = azureml_dsr::trace::TraceContext::parse(tp)
                .unwrap_or_else(|| panic!("not a traceparent: {tp}"));
            let request = a.message.correlation_id.clone().unwrap_or_default();
            traces.entry(request).or_default().insert(ctx.trace_id);
        }
        for id in ["TWIN-EXPORT", "TWIN-DELETE"] {
            assert_eq!(traces.get(id).map(|t| t.len()), Some(1), "{id}: {traces:?}");
        }
        assert!(
            results
                .iter()
                .filter(|r| r["requestId"] == "TWIN-DELETE" && r["event"] == "state_changed")
                .count()
                >= 5,
            "{results:?}"
        );

        // Export: every one of the subject's blobs was copied into the export area.
        let exported = admin
            .list_all(STATE, "dsr-exports", "TWIN-EXPORT/")
            .await
            .unwrap();
        assert!(
            exported.len() >= truth.blobs_of(&alice.key).len(),
            "{} exported blobs for {} of the subject's",
            exported.len(),
            truth.blobs_of(&alice.key).len()
        );
        // Each exported item is in the export area with the checksum the manifest states.
        let mut checked = 0;
        for item in export.results.iter().flat_map(|r| &r.items) {
            if let azureml_dsr::domain::slice::ItemStatus::Exported { path, sha256, .. } =
                &item.status
            {
                let (bytes, _) = admin
                    .read_small(&BlobRef::new(STATE, "dsr-exports", path.clone()))
                    .await
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_eq!(
                    &azureml_dsr::domain::ids::sha256_hex(&bytes),
                    sha256,
                    "{path}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked as u64, export.counts.exported);
        let exported_keys: BTreeSet<String> = export
            .results
            .iter()
            .flat_map(|r| &r.items)
            .filter(|o| {
                matches!(
                    o.status,
                    azureml_dsr::domain::slice::ItemStatus::Exported { .. }
                )
            })
            .filter_map(|o| o.item.blob_key())
            .collect();
        for key in truth.blobs_of(&alice.key) {
            assert!(exported_keys.contains(key), "{key} was not exported");
        }
        // The archive, downloaded as the person would: through the result message's link
        // (a user delegation SAS: read-only, https-only, no credential), unzipped by Python's
        // zipfile and checked against the seeded data; `export verify` catches a flipped byte.
        let exp_msg = results
            .iter()
            .find(|r| r["requestId"] == "TWIN-EXPORT" && r["exportLink"].is_string())
            .expect("an export result message with its link");
        let link = exp_msg["exportLink"].as_str().expect("an export link");
        assert!(link.starts_with("https://"), "{link}");
        for part in ["sp=r&", "spr=https&", "skoid=", "sig="] {
            assert!(link.contains(part), "{part} missing from {link}");
        }
        // Valid for the configured 7 days (the user-delegation-key maximum), no longer.
        let se = url::Url::parse(link)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "se")
            .map(|(_, v)| v.to_string())
            .unwrap();
        let se = time::OffsetDateTime::parse(&se, &time::format_description::well_known::Rfc3339)
            .unwrap();
        let left = se - time::OffsetDateTime::now_utc();
        assert!(
            left > time::Duration::days(6) && left <= time::Duration::days(7),
            "link expires in {left}"
        );
        let zip_dir = tempfile::tempdir().unwrap();
        let zip = zip_dir.path().join("export.zip");
        // Python downloads it (urllib over https, trusting the test CA via SSL_CERT_FILE): a
        // standard client, no credential but the link.
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())")
            .arg(link)
            .arg(&zip)
            .env("SSL_CERT_FILE", ca)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "download through the link: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let matched = crate::support::archive_check::check_archive(&zip, &export, &before_blobs);
        let seeded_blobs = truth
            .blobs_of(&alice.key)
            .into_iter()
            .filter(|k| before_blobs.get(*k).is_some_and(|h| h.len() == 64))
            .count();
        assert!(seeded_blobs > 0);
        assert_eq!(matched, seeded_blobs, "each of her blobs, byte for byte");
        crate::support::archive_check::flipped_byte_is_detected(&zip);

        // Delete: the subject's blobs and resources are gone, everyone else's unchanged.
        let after_blobs = blobs(admin.as_ref(), &files, &truth).await;
        let after_resources =
            crate::support::pipeline::seeded_resources(admin.as_ref(), &truth).await;
        // Hers: by evidence, and the display-name-only items approved above.
        let approved_owner = azureml_dsr::seed::review_owner(&alice.key);
        let theirs: BTreeSet<String> = truth
            .blobs
            .iter()
            .filter(|(_, o)| **o == alice.key || **o == approved_owner)
            .map(|(k, _)| k.clone())
            .collect();
        assert!(!theirs.is_empty());
        for key in &theirs {
            assert!(!after_blobs.contains_key(key), "{key} survived the delete");
        }
        for (key, hash) in &before_blobs {
            if !theirs.contains(key) {
                assert_eq!(after_blobs.get(key), Some(hash), "{key} changed");
            }
        }
        // Her compute is under the legal hold the CLI placed: kept, and the report says so.
        let (held, their_resources): (BTreeSet<&String>, BTreeSet<&String>) = truth
            .resources
            .iter()
            .filter(|(_, o)| **o == alice.key || **o == approved_owner)
            .map(|(id, _)| id)
            .partition(|id| id.contains("/computes/"));
        assert!(!their_resources.is_empty() && !held.is_empty());
        assert!(
            delete.counts.held >= held.len() as u64,
            "{:?}",
            delete.counts
        );
        for (id, hash) in &before_resources {
            if their_resources.contains(id) {
                assert!(
                    !after_resources.contains_key(id),
                    "{id} survived the delete"
                );
            } else {
                assert_eq!(after_resources.get(id), Some(hash), "{id} changed");
            }
        }
        // The handler wrote nothing to the local disk.
        assert_eq!(files_under(app.path()), files_before);
        // Every token the handler asked for came from the platform identity endpoint.
        assert!(identity
            .requested()
            .iter()
            .any(|r| r.contains("storage.azure.com")));
    }
}

// ---------------------------------------------------------------- Azure Files

/// The Azure Files stand-in against the production adapter (`AzureFileShare`), and a notebooks
/// delete through the pipeline with that adapter wired.
mod files {
    use super::*;
    use azureml_dsr::adapters::azure::files::{
        parse, AzureFileShare, FILES_SCOPE, FILE_API_VERSION, READ_CHUNK,
    };
    use azureml_dsr::ports::file_share::{FileShare, FileShareExt, ShareError};
    use stand_ins::files::FilesStandIn;

    const ACCT: &str = "mlwstore0";
    const SHARE: &str = "code-391ff5ac-6576-460f-ba4d-7e03433c68b6";

    fn adapter(f: &FilesStandIn) -> AzureFileShare {
        AzureFileShare::new(rest(FILES_SCOPE), f.template())
    }

    fn seeded() -> FilesStandIn {
        let f = FilesStandIn::start();
        f.create_share(ACCT, SHARE);
        for p in [
            "Users/alice/a.ipynb",
            "Users/alice/b.ipynb",
            "Users/alice/c.py",
            "Users/alice/nb/d.ipynb",
            "Users/alice/nb/deep/e.txt",
            "Users/alice/nb/deep/f.txt",
            "Users/alice2/x.ipynb",
            "Users/bob/y.ipynb",
        ] {
            f.put_file(ACCT, SHARE, p, format!("{{\"path\": \"{p}\"}}").as_bytes());
        }
        f
    }

    #[tokio::test]
    async fn lists_recursively_across_pages_with_the_oauth_headers() {
        let f = seeded();
        f.set_page_cap(2);
        let tree = adapter(&f)
            .list_tree(ACCT, SHARE, "Users/alice/")
            .await
            .unwrap();
        let paths: Vec<&str> = tree.files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "Users/alice/a.ipynb",
                "Users/alice/b.ipynb",
                "Users/alice/c.py",
                "Users/alice/nb/d.ipynb",
                "Users/alice/nb/deep/e.txt",
                "Users/alice/nb/deep/f.txt",
            ]
        );
        assert_eq!(
            tree.directories,
            ["Users/alice/nb/deep", "Users/alice/nb", "Users/alice"],
            "deepest first"
        );
        let lists: Vec<_> = f
            .seen()
            .into_iter()
            .filter(|s| s.query("comp") == Some("list"))
            .collect();
        // Users/alice has 4 entries: two pages of 2, the second asked for with the marker.
        assert!(
            lists.iter().any(|s| s.query("marker").is_some()),
            "{lists:?}"
        );
        assert!(lists.len() >= 4, "{}", lists.len());
        for s in f.seen() {
            assert_eq!(s.header("x-ms-file-request-intent"), Some("backup"));
            assert_eq!(s.header("x-ms-version"), Some(FILE_API_VERSION));
            assert!(s.header("x-ms-version").unwrap() >= "2022-11-02");
            assert_eq!(s.query("restype"), Some("directory"));
            let token = s
                .header("authorization")
                .unwrap()
                .strip_prefix("Bearer ")
                .unwrap();
            assert_eq!(claims(token)["aud"], "https://storage.azure.com");
        }
    }

    #[tokio::test]
    async fn reads_in_ranges_then_deletes_files_and_the_emptied_directories() {
        let f = seeded();
        // Larger than one ranged read, so the stream is stitched from two 206 replies.
        let big: Vec<u8> = (0..READ_CHUNK + 10).map(|i| (i % 251) as u8).collect();
        f.put_file(ACCT, SHARE, "Users/alice/nb/big.bin", &big);
        let a = adapter(&f);
        let mut r = a.open(ACCT, SHARE, "Users/alice/nb/big.bin").await.unwrap();
        assert_eq!(r.size, big.len() as u64);
        let mut got = Vec::new();
        while let Some(c) = r.body.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, big);
        let ranges: Vec<String> = f
            .seen()
            .iter()
            .filter_map(|s| s.header("x-ms-range").map(str::to_string))
            .collect();
        assert_eq!(
            ranges,
            [
                format!("bytes=0-{}", READ_CHUNK - 1),
                format!("bytes={READ_CHUNK}-{}", READ_CHUNK + 9)
            ]
        );

        let tree = a.list_tree(ACCT, SHARE, "Users/alice").await.unwrap();
        // A directory with files in it is refused.
        assert!(matches!(
            a.delete_directory(ACCT, SHARE, "Users/alice/nb").await,
            Err(ShareError::DirectoryNotEmpty(_))
        ));
        for file in &tree.files {
            assert_eq!(
                a.delete_file(ACCT, SHARE, &file.path).await.unwrap(),
                DeleteOutcome::Deleted
            );
        }
        for d in &tree.directories {
            assert_eq!(
                a.delete_directory(ACCT, SHARE, d).await.unwrap(),
                DeleteOutcome::Deleted
            );
        }
        assert_eq!(
            f.files(ACCT, SHARE),
            ["Users/alice2/x.ipynb", "Users/bob/y.ipynb"]
        );
        assert_eq!(f.dirs(ACCT, SHARE), ["Users", "Users/alice2", "Users/bob"]);
        // Again (a redelivery): already gone, not an error.
        assert_eq!(
            a.delete_file(ACCT, SHARE, "Users/alice/a.ipynb")
                .await
                .unwrap(),
            DeleteOutcome::NotFound
        );
        assert!(matches!(
            a.open(ACCT, SHARE, "Users/alice/a.ipynb").await,
            Err(ShareError::FileNotFound(_))
        ));
    }

    /// The safety property: a share the API says is missing is an error, never "no files";
    /// a missing folder of an existing share is the one "nothing there".
    #[tokio::test]
    async fn a_missing_share_is_an_error_and_a_missing_folder_is_empty() {
        let f = seeded();
        let a = adapter(&f);
        match a.list_tree(ACCT, "code-missing", "Users/alice").await {
            Err(ShareError::ShareNotFound(m)) => {
                assert!(m.contains("ShareNotFound"), "{m}");
                assert!(!m.contains("alice"), "path redacted: {m}");
            }
            other => panic!("expected ShareNotFound, got {:?}", other.map(|t| t.files)),
        }
        assert!(matches!(
            a.delete_file(ACCT, "code-missing", "Users/alice/a.ipynb")
                .await,
            Err(ShareError::ShareNotFound(_))
        ));
        assert!(matches!(
            a.list_tree(ACCT, SHARE, "Users/carol").await,
            Err(ShareError::DirectoryNotFound(_))
        ));
        let seen = f.seen();
        let miss = seen
            .iter()
            .find(|s| s.path.contains("code-missing"))
            .unwrap();
        assert_eq!(miss.status, 404);
    }

    #[tokio::test]
    async fn refusals_are_errors_with_their_reason() {
        let f = seeded();
        // A token for another audience.
        let wrong = AzureFileShare::new(rest(GRAPH_SCOPE), f.template());
        match wrong.list_tree(ACCT, SHARE, "Users/alice").await {
            Err(ShareError::Forbidden(m)) => {
                assert!(m.contains("InvalidAuthenticationInfo"), "{m}")
            }
            other => panic!("expected Forbidden, got {:?}", other.map(|t| t.files)),
        }
        // Without the intent header the service refuses, as the docs say.
        let token = IdentityStandIn::shared().token_for("https://storage.azure.com");
        let r = http()
            .get(format!(
                "{}/{SHARE}/Users?restype=directory&comp=list",
                f.template().replace("{account}", ACCT)
            ))
            .header("authorization", format!("Bearer {token}"))
            .header("x-ms-version", FILE_API_VERSION)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.headers()["x-ms-error-code"],
            "AuthorizationPermissionMismatch"
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(
            parse(&body).unwrap().text_at(&["Code"]).as_deref(),
            Some("AuthorizationPermissionMismatch")
        );
    }

    #[tokio::test]
    async fn throttling_is_waited_out_as_retry_after_says() {
        let f = seeded();
        f.set_busy(2);
        let started = Instant::now();
        let tree = adapter(&f)
            .list_tree(ACCT, SHARE, "Users/bob")
            .await
            .unwrap();
        assert_eq!(tree.files.len(), 1);
        let statuses: Vec<u16> = f.seen().iter().map(|s| s.status).collect();
        assert_eq!(statuses, [503, 503, 200]);
        // Retry-After: 1 twice, not the 20 ms backoff of the test's retry settings.
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn share_snapshots_are_reported_and_the_fixtures_parse() {
        let f = seeded();
        let a = adapter(&f);
        assert!(a.retention(ACCT, SHARE).await.unwrap().snapshots.is_empty());
        f.add_snapshot(ACCT, SHARE, "2026-11-28T20:00:00.0000000Z");
        let r = a.retention(ACCT, SHARE).await.unwrap();
        assert_eq!(r.snapshots.len(), 1);
        assert!(r.note(SHARE).unwrap().contains("2026-11-28T20:00:00Z"));

        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/azure-rest/files/"
        );
        let list =
            parse(&std::fs::read(format!("{dir}list-directories-and-files.xml")).unwrap()).unwrap();
        let entries = &list.child("Entries").unwrap().children;
        assert_eq!(entries[0].name, "File");
        assert_eq!(
            entries[0]
                .text_at(&["Properties", "Content-Length"])
                .as_deref(),
            Some("1024")
        );
        assert_eq!(entries[1].name, "Directory");
        assert_eq!(
            list.text_at(&["NextMarker"]).as_deref(),
            Some("2!44!Users/alice/zz")
        );
        let shares =
            parse(&std::fs::read(format!("{dir}list-shares-snapshots.xml")).unwrap()).unwrap();
        assert_eq!(shares.child("Shares").unwrap().children.len(), 3);
        let err =
            parse(&std::fs::read(format!("{dir}error-share-not-found.xml")).unwrap()).unwrap();
        assert_eq!(err.text_at(&["Code"]).as_deref(), Some("ShareNotFound"));
    }

    /// A notebooks delete through the pipeline with the Azure Files adapter wired: the
    /// subject's folder goes, `Users/<other>/` (including a longer name starting with the
    /// subject's) stays.
    #[tokio::test]
    async fn a_notebooks_delete_through_the_pipeline_leaves_other_users_untouched() {
        use azureml_dsr::adapters::local::memory_bus::MemoryBus;
        use azureml_dsr::domain::plan::ResourceType;
        use azureml_dsr::domain::slice::{Item, ItemStatus};
        use azureml_dsr::functions::{intake, Delivery, Settings};
        use azureml_dsr::seed::{seed, SeedOptions};
        use azureml_dsr::wiring::{local_services, local_store, LocalPaths};

        let dir = tempfile::tempdir().unwrap();
        let paths = LocalPaths::new(dir.path());
        let store = local_store(&paths);
        let truth = seed(
            &store,
            &SeedOptions {
                users: 2,
                runs_per_user: 1,
                ..Default::default()
            },
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        std::fs::write(
            paths.directory(),
            serde_json::to_vec(&truth.directory()).unwrap(),
        )
        .unwrap();
        let info = truth.infos[0].clone();
        let alice = truth.users[0].clone();
        let other = truth.users[1].clone();
        let f = FilesStandIn::start();
        let (acct, share) = (info.storage_account.as_str(), info.file_share.as_str());
        f.create_share(acct, share);
        for p in ["a.ipynb", "sub/b.ipynb", "sub/deeper/c.txt"] {
            f.put_file(acct, share, &format!("Users/{}/{p}", alice.key), b"{}");
        }
        f.put_file(
            acct,
            share,
            &format!("Users/{}/keep.ipynb", other.key),
            b"{}",
        );
        f.put_file(
            acct,
            share,
            &format!("Users/{}x/keep.ipynb", alice.key),
            b"{}",
        );
        f.set_page_cap(2);
        let bus = Arc::new(MemoryBus::new());
        let mut svc = local_services(&paths, store, bus.clone(), Settings::default());
        svc.files = Arc::new(AzureFileShare::new(rest(FILES_SCOPE), f.template()));
        svc.state().put_scope(&truth.workspaces).await.unwrap();
        let ws: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
        let req = json!({"schemaVersion": "1.0", "requestId": "NB-TWIN", "type": "delete",
            "dryRun": false, "subject": {"upn": alice.upn}, "scope": {"workspaces": ws}});
        intake::run(&svc, req.to_string().as_bytes(), &Delivery::default())
            .await
            .unwrap();
        support::pipeline::drive(&svc, &bus, 1).await;

        let report = svc
            .state()
            .report(&azureml_dsr::domain::request::RequestId::parse("NB-TWIN").unwrap())
            .await
            .unwrap()
            .unwrap();
        let nb = report
            .results
            .iter()
            .find(|s| {
                s.resource_type == ResourceType::Notebooks && s.workspace == truth.workspaces[0]
            })
            .unwrap();
        assert_eq!(nb.items.len(), 3, "{:?}", nb.items);
        for o in &nb.items {
            assert!(matches!(o.item, Item::File { .. }));
            assert_eq!(o.status, ItemStatus::Deleted { verified: true });
        }
        let mut left = f.files(acct, share);
        left.sort();
        let mut want = vec![
            format!("Users/{}/keep.ipynb", other.key),
            format!("Users/{}x/keep.ipynb", alice.key),
        ];
        want.sort();
        assert_eq!(left, want);
        assert!(
            !f.dirs(acct, share)
                .iter()
                .any(|d| d == &format!("Users/{}", alice.key)
                    || d.starts_with(&format!("Users/{}/", alice.key))),
            "the subject's folders are removed once emptied: {:?}",
            f.dirs(acct, share)
        );
    }
}

/// The run-history adapter against the run-history stand-in: who created a run (object id,
/// tenant, display name, a null UPN), its data container, its children over several pages (by
/// `continuationToken` and by `nextLink`), grandchildren, 404 as "unknown", 429 honoured, and
/// only ARM-audience tokens, sent to the configured host only.
mod run_history {
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
        let adapter =
            AzureRunHistory::new(rest(RUN_HISTORY_SCOPE), "https://{region}.api.azureml.ms");
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
}
