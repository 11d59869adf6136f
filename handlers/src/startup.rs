//! Builds the HTTP app the Functions host talks to, so `main` and tests spawn the same thing.
//! `GET /` answers at once (the host polls it every 25 ms for readiness; nothing connects
//! eagerly). `POST /{function}` takes the host's envelope. Every answer is a JSON object.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::{error, info, warn};

use crate::protocol::envelope::{InvocationRequest, InvocationResponse};

/// Largest invocation body accepted (Service Bus Premium messages go up to 100 MB, but DSRs
/// and our own messages are small; the host never sends more than the trigger's payload).
pub(crate) const BODY_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct InvocationContext {
    pub invocation_id: Option<String>,
    pub host_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The payload is invalid for this function's trigger: 400.
    BadRequest(String),
    /// The invocation failed and should be retried by the host: 500.
    Failed(String),
}

#[async_trait]
pub trait Invoker: Send + Sync + 'static {
    /// Function names served (folder names under `functions/`).
    fn functions(&self) -> Vec<String>;
    async fn invoke(
        &self,
        function: &str,
        ctx: InvocationContext,
        req: InvocationRequest,
    ) -> Result<InvocationResponse, InvokeError>;
}

pub fn router(invoker: Arc<dyn Invoker>) -> Router {
    Router::new()
        .route("/", get(|| async { Json(json!({"status": "ready"})) }))
        .route("/{function}", post(invoke))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "detail": "POST /{function} or GET /"})),
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(invoker)
}

fn error_body(status: StatusCode, error: &str, detail: String) -> Response {
    (status, Json(json!({"error": error, "detail": detail, "Outputs": {}, "Logs": [], "ReturnValue": null}))).into_response()
}

async fn invoke(
    State(invoker): State<Arc<dyn Invoker>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ctx = InvocationContext {
        invocation_id: header("x-azure-functions-invocationid"),
        host_version: header("x-azure-functions-hostversion"),
    };
    let id = ctx.invocation_id.clone().unwrap_or_default();
    let known = invoker.functions();
    if !known.iter().any(|f| f == &function) {
        let name: String = function.chars().take(64).collect();
        warn!(function = %name, invocation = %id, "unknown function");
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown_function", "function": name, "known": known})),
        )
            .into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            warn!(function = %function, invocation = %id, status = status.as_u16(), "unreadable body");
            return error_body(status, "bad_request", e.body_text());
        }
    };
    let req = match InvocationRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            warn!(function = %function, invocation = %id, error = %e, "not a host envelope");
            return error_body(StatusCode::BAD_REQUEST, "bad_request", e.0);
        }
    };
    match invoker.invoke(&function, ctx, req).await {
        Ok(resp) => {
            info!(function = %function, invocation = %id, "invocation succeeded");
            (StatusCode::OK, Json(resp)).into_response()
        }
        Err(InvokeError::BadRequest(detail)) => {
            warn!(function = %function, invocation = %id, error = %detail, "invalid payload for trigger");
            error_body(StatusCode::BAD_REQUEST, "bad_request", detail)
        }
        Err(InvokeError::Failed(detail)) => {
            // The host drops Logs on failure: stderr is where this must be visible.
            error!(function = %function, invocation = %id, error = %detail, "invocation failed");
            error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invocation_failed",
                detail,
            )
        }
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    invoker: Arc<dyn Invoker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(invoker))
        .with_graceful_shutdown(shutdown)
        .await
}
