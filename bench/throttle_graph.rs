//! Throttled Microsoft Graph as a shared budget: a loopback Graph stand-in with a token bucket
//! (429 `TooManyRequests` + `Retry-After` when it is empty, the body of the Graph throttling
//! guidance), and the production directory adapter (`GraphDirectory` over `RestClient`, default
//! retry configuration) resolving subjects from several concurrent callers that share one
//! client, as intake invocations in one Functions process share `Services`.
//!
//! Graph's identity and access service limits are a token bucket of resource units per app and
//! tenant (8,000 per 10 s for a tenant above 500 users; `GET /users/{id}` costs 2, `$select`
//! takes 1 off, so the adapter's lookup costs 1): here one lookup is one token. What it shows:
//! no lookup fails, the rate stays near the bucket's, and how many 429s it took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use azureml_dsr::adapters::azure::graph::{GraphDirectory, GRAPH_SCOPE};
use azureml_dsr::adapters::azure::rest::RestClient;
use azureml_dsr::adapters::local::arm_server::{LocalArmToken, LOCAL_ARM_TOKEN};
use azureml_dsr::adapters::local::arm_throttle::{
    Admission, ArmThrottle, Bucket, OpClass, ThrottleOptions,
};
use azureml_dsr::domain::request::SubjectRef;
use azureml_dsr::ports::directory::Directory;
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::throttle::ThrottleResult;

struct Graph {
    bucket: ArmThrottle,
    served: AtomicU64,
}

/// `GET /v1.0/users/{id}`: the user (synthetic: every object id exists) with the `$select`ed
/// properties, or 429 when the bucket is empty.
async fn user(State(g): State<Arc<Graph>>, Path(key): Path<String>) -> Response {
    match g.bucket.admit(OpClass::Read) {
        Admission::Refused { retry_after_secs } => {
            // The documented sample: 429, `Retry-After`, `TooManyRequests` with an innerError.
            let body = json!({"error": {
                "code": "TooManyRequests",
                "message": "Please retry again later.",
                "innerError": {"code": "429", "message": "Please retry after", "status": "429",
                               "date": "2026-12-02T02:00:00", "request-id": Uuid::new_v4()}
            }});
            let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            r
        }
        Admission::Admitted { .. } => {
            g.served.fetch_add(1, Ordering::Relaxed);
            let n = key.get(..8).unwrap_or("user");
            Json(json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName,mail,displayName)/$entity",
                "id": key,
                "userPrincipalName": format!("u{n}@contoso.example"),
                "mail": format!("u{n}@contoso.example"),
                "displayName": "Bench User",
            }))
            .into_response()
        }
    }
}

/// `lookups` subjects resolved by `callers` concurrent callers (each `concurrency` in flight)
/// through one production Graph client, against a stand-in with `bucket`.
pub async fn run(
    lookups: usize,
    callers: usize,
    concurrency: usize,
    bucket: Bucket,
) -> anyhow::Result<ThrottleResult> {
    let graph = Arc::new(Graph {
        bucket: ArmThrottle::new(ThrottleOptions {
            reads: bucket,
            writes: bucket,
            deletes: bucket,
        }),
        served: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/v1.0/users/{key}", axum::routing::get(user))
        .with_state(graph.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let rest = RestClient::new(Arc::new(LocalArmToken::new(LOCAL_ARM_TOKEN)), GRAPH_SCOPE);
    let dir = Arc::new(GraphDirectory::new(rest.clone(), url::Url::parse(&base)?));
    let ids: Vec<Uuid> = (0..lookups).map(|_| Uuid::new_v4()).collect();
    let per = lookups.div_ceil(callers.max(1)).max(1);
    let t = Instant::now();
    let handles: Vec<_> = ids
        .chunks(per)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let dir = dir.clone();
            tokio::spawn(async move {
                futures::stream::iter(chunk)
                    .map(|oid| {
                        let dir = dir.clone();
                        async move {
                            let subject = SubjectRef {
                                object_id: Some(oid),
                                upn: None,
                                tenant_id: None,
                                display_name: None,
                            };
                            // Failed: an error, or not the user asked for.
                            !matches!(dir.lookup(&subject).await,
                                      Ok(Some(e)) if e.object_id == oid)
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
    let served = graph.served.load(Ordering::Relaxed) as usize;
    ensure!(
        failed > 0 || served == lookups,
        "{served} lookups served for {lookups} asked with none failed"
    );
    Ok(ThrottleResult {
        jobs: lookups,
        invocations: callers,
        concurrency,
        bucket,
        secs,
        failed,
        server_429: graph.bucket.refused(),
        client_429: rest.throttled(),
    })
}
