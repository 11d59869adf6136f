//! Throttled Log Analytics purge as a shared budget: a loopback stand-in of the workspace purge
//! API (`POST {workspace}/purge?api-version=2020-08-01` → 202 + `x-ms-status-location` +
//! `{"operationId"}`, or 429 + `Retry-After` with ARM's error body when its bucket is empty) and
//! the production adapter (`LogAnalyticsTelemetry::send_purge`, its process budget
//! [`PurgeBudget`] and its no-retry POST client) driven by concurrent callers.
//!
//! The service allows 50 purge requests per hour ("In order to manage system resources, purge
//! requests are throttled at 50 requests per hour", Workspace Purge - Purge, REST API 2020-08-01,
//! learn.microsoft.com/rest/api/loganalytics/workspace-purge/purge); the stand-in's bucket and
//! the adapter's budget are that limit with the hour scaled down. The callers run on two
//! "instances" (two adapters, two budgets: a Functions app scaled out, whose instances cannot
//! see each other's budget), so the service's own 429s are exercised too. A `Deferred` purge is
//! kept and sent again by its caller (the telemetry-purges timer does this on its next run);
//! what it shows: every purge accepted, the rate near the bucket's, and the 429s it took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use azureml_dsr::adapters::azure::purge::{
    LogAnalyticsTelemetry, PurgeBudget, PurgeConfig, LOG_ANALYTICS_SCOPE,
};
use azureml_dsr::adapters::azure::rest::RestClient;
use azureml_dsr::adapters::local::arm_server::{LocalArmToken, LOCAL_ARM_TOKEN};
use azureml_dsr::adapters::local::arm_throttle::{
    Admission, ArmThrottle, Bucket, OpClass, ThrottleOptions,
};
use azureml_dsr::ports::telemetry::{PurgeSend, TelemetryStore};
use futures::StreamExt;
use serde_json::json;

use crate::throttle::ThrottleResult;

const LA: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-bench/providers/Microsoft.OperationalInsights/workspaces/la-bench";

struct PurgeApi {
    bucket: ArmThrottle,
    accepted: AtomicU64,
    base: String,
}

/// `POST …/purge` (admitted: 202 with the status location) and `GET …/operations/purge-<n>`
/// (`{"status": "completed"}`).
async fn purge_api(
    State(p): State<Arc<PurgeApi>>,
    uri: axum::http::Uri,
    method: axum::http::Method,
) -> Response {
    let path = uri.path().to_string();
    if method == axum::http::Method::GET && path.contains("/operations/purge-") {
        return Json(json!({"status": "completed"})).into_response();
    }
    if method != axum::http::Method::POST || !path.ends_with("/purge") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match p.bucket.admit(OpClass::Write) {
        Admission::Refused { retry_after_secs } => {
            let body = json!({"error": {"code": "TooManyRequests", "message": format!(
                "Purge requests are throttled at 50 requests per hour. Please try again after '{retry_after_secs}' seconds."
            )}});
            let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            r
        }
        Admission::Admitted { .. } => {
            let n = p.accepted.fetch_add(1, Ordering::Relaxed);
            let op = format!("purge-{n:08x}-0000-0000-0000-000000000000");
            let loc = format!(
                "{}{path_ws}/operations/{op}?api-version=2020-08-01",
                p.base,
                path_ws = path.trim_end_matches("/purge")
            );
            let mut r = (StatusCode::ACCEPTED, Json(json!({"operationId": op}))).into_response();
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert("x-ms-status-location", v);
            }
            r
        }
    }
}

/// `purges` purge requests (distinct subjects' bodies) sent by `callers` concurrent callers
/// spread over two adapter instances, each with a [`PurgeBudget`] of the bucket's capacity per
/// `capacity / per_sec` seconds, against a stand-in with `bucket`.
pub async fn run(
    purges: usize,
    callers: usize,
    concurrency: usize,
    bucket: Bucket,
) -> anyhow::Result<ThrottleResult> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let api = Arc::new(PurgeApi {
        bucket: ArmThrottle::new(ThrottleOptions {
            reads: bucket,
            writes: bucket,
            deletes: bucket,
        }),
        accepted: AtomicU64::new(0),
        base: base.clone(),
    });
    let app = axum::Router::new()
        .fallback(purge_api)
        .with_state(api.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let window = Duration::from_secs_f64(bucket.capacity / bucket.per_sec);
    let instance = || -> anyhow::Result<Arc<LogAnalyticsTelemetry>> {
        let token = Arc::new(LocalArmToken::new(LOCAL_ARM_TOKEN));
        let arm = RestClient::new(token.clone(), "https://management.azure.com/.default");
        let query = RestClient::new(token, LOG_ANALYTICS_SCOPE);
        Ok(Arc::new(LogAnalyticsTelemetry::with_budget(
            arm,
            query,
            PurgeConfig {
                arm_endpoint: url::Url::parse(&base)?,
                query_endpoint: url::Url::parse(&base)?,
                tables: vec!["AmlComputeJobEvent".into()],
            },
            PurgeBudget::new(bucket.capacity as usize, window),
        )))
    };
    let instances = [instance()?, instance()?];
    let per = purges.div_ceil(callers.max(1)).max(1);
    let deferred = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let handles: Vec<_> = (0..purges)
        .collect::<Vec<_>>()
        .chunks(per)
        .enumerate()
        .map(|(c, chunk)| {
            let chunk = chunk.to_vec();
            let la = instances[c % instances.len()].clone();
            let deferred = deferred.clone();
            tokio::spawn(async move {
                futures::stream::iter(chunk)
                    .map(|i| {
                        let la = la.clone();
                        let deferred = deferred.clone();
                        async move {
                            let body = json!({"table": "AmlComputeJobEvent", "filters": [{
                                "column": "UserObjectId", "operator": "==",
                                "value": format!("{i:08x}-0000-4000-8000-000000000000")}]});
                            let mut was_deferred = false;
                            loop {
                                match la.send_purge(LA, &body).await {
                                    Ok(PurgeSend::Accepted { .. }) => return false,
                                    // Kept and sent again: the timer's next run, compressed.
                                    Ok(PurgeSend::Deferred { .. }) => {
                                        if !was_deferred {
                                            was_deferred = true;
                                            deferred.fetch_add(1, Ordering::Relaxed);
                                        }
                                        tokio::time::sleep(Duration::from_millis(50)).await;
                                    }
                                    Err(_) => return true,
                                }
                            }
                        }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .filter(|failed| futures::future::ready(*failed))
                    .count()
                    .await
            })
        })
        .collect();
    let mut failed = 0;
    for h in handles {
        failed += h.await?;
    }
    let secs = t.elapsed().as_secs_f64();
    server.abort();
    let accepted = api.accepted.load(Ordering::Relaxed) as usize;
    ensure!(
        failed > 0 || accepted == purges,
        "{accepted} purges accepted for {purges} sent with none failed"
    );
    Ok(ThrottleResult {
        jobs: purges,
        invocations: callers,
        concurrency,
        bucket,
        secs,
        failed,
        server_429: api.bucket.refused(),
        // Purges deferred at least once (the process budget was spent, or the service's 429
        // outlasted the client's wait), each kept and sent again.
        client_429: deferred.load(Ordering::Relaxed),
    })
}
