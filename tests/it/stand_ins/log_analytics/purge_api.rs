//! The ARM workspace purge API: the post (validated when posted), the status location that stays
//! `pending` then `completed`, and the router layer in front of another ARM stand-in.

use super::*;

pub(super) fn arm_router_for(state: &Arc<LaState>, inner: Option<axum::Router>) -> axum::Router {
    let inner = inner.unwrap_or_else(|| {
        axum::Router::new().fallback(|| async {
            arm_error(404, "ResourceNotFound", "The resource was not found.", &[])
        })
    });
    inner.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        intercept,
    ))
}

/// What a path names under `.../providers/Microsoft.OperationalInsights/workspaces/{ws}/`.
pub(super) enum PurgePath {
    /// (workspace key, subscription, resource group, workspace name)
    Purge(String, [String; 3]),
    Status(String, [String; 3], String),
}

pub(super) fn purge_path(path: &str) -> Option<PurgePath> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect::<Option<_>>()?;
    let l = |i: usize| segs.get(i).map(|s| s.to_ascii_lowercase());
    if l(0)? != "subscriptions"
        || l(2)? != "resourcegroups"
        || l(4)? != "providers"
        || l(5)? != "microsoft.operationalinsights"
        || l(6)? != "workspaces"
    {
        return None;
    }
    let parts = [segs[1].clone(), segs[3].clone(), segs[7].clone()];
    let key = ws_key(&segs[..8].join("/"));
    match (segs.len(), l(8)?.as_str()) {
        (9, "purge") => Some(PurgePath::Purge(key, parts)),
        (10, "operations") => Some(PurgePath::Status(key, parts, segs[9].clone())),
        _ => None,
    }
}

pub(super) async fn intercept(
    State(st): State<Arc<LaState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(target) = purge_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    st.arm_log
        .answered(&method, &uri, &headers, &body, |query| {
            purge_api(&st, &method, target, query, &headers, &body)
        })
}

pub(super) fn purge_api(
    st: &LaState,
    method: &Method,
    target: PurgePath,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    match check_bearer(headers, ARM_AUDIENCES) {
        Ok(_) => {}
        Err(TokenProblem::Missing) => {
            return arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.", &[])
        }
        Err(TokenProblem::Invalid(why)) => {
            return arm_error(401, "InvalidAuthenticationToken", &format!("The access token is invalid: {why}."), &[])
        }
        Err(TokenProblem::WrongAudience(aud)) => {
            return arm_error(
                401,
                "InvalidAuthenticationTokenAudience",
                &format!("The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."),
                &[],
            )
        }
    }
    match query.iter().find(|(k, _)| k == "api-version") {
        None => {
            return arm_error(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.", &[])
        }
        Some((_, v)) if v != PURGE_API_VERSION => {
            return arm_error(400, "InvalidApiVersionParameter", &format!("The api-version '{v}' is invalid. The supported versions are '{PURGE_API_VERSION}'."), &[])
        }
        _ => {}
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get("host"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    match (method.clone(), target) {
        (Method::POST, PurgePath::Purge(key, [sub, rg, name])) => {
            if st.throttle_purges.take() {
                let secs = *st
                    .retry_after_secs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                return arm_error(
                    429,
                    "TooManyRequests",
                    "Purge requests are throttled at 50 requests per hour.",
                    &[("Retry-After", secs.to_string())],
                );
            }
            let Ok(body) = serde_json::from_slice::<Value>(body) else {
                return arm_error(
                    400,
                    "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized.",
                    &[],
                );
            };
            let Some(table_name) = body.get("table").and_then(Value::as_str) else {
                return arm_error(
                    400,
                    "InvalidRequestContent",
                    "The purge body needs 'table'.",
                    &[],
                );
            };
            let Some(filters) = body.get("filters").and_then(Value::as_array) else {
                return arm_error(
                    400,
                    "InvalidRequestContent",
                    "The purge body needs 'filters'.",
                    &[],
                );
            };
            let ws = st.workspaces.lock().unwrap_or_else(|p| p.into_inner());
            let Some(w) = ws.get(&key) else {
                return arm_error(404, "ResourceNotFound", &format!("The Resource 'Microsoft.OperationalInsights/workspaces/{name}' under resource group '{rg}' was not found."), &[]);
            };
            let Some(table) = w.tables.get(table_name) else {
                return arm_error(
                    400,
                    "BadRequest",
                    &format!("Table '{table_name}' does not exist in the workspace."),
                    &[],
                );
            };
            let compiled = match compile_filters(table, filters) {
                Ok(f) => f,
                Err(m) => return arm_error(400, "BadRequest", &m, &[]),
            };
            drop(ws);
            if st.reject_purges.take() {
                return arm_error(400, "BadRequest", "The purge request was rejected.", &[]);
            }
            let id = format!("purge-{}", uuid::Uuid::new_v4());
            let failed = st.fail_purges.take();
            let pending = *st.pending_polls.lock().unwrap_or_else(|p| p.into_inner());
            st.purges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Purge {
                    record: PurgeRecord {
                        operation_id: id.clone(),
                        workspace: key,
                        table: table_name.to_string(),
                        filters: filters.clone(),
                        state: if failed {
                            PurgeState::Failed
                        } else {
                            PurgeState::Pending
                        },
                        polls: 0,
                        removed: 0,
                    },
                    pending_left: pending,
                    filters: compiled,
                });
            // As in the spec example: lower-case provider namespace in the status location.
            let location = format!(
                "http://{host}/subscriptions/{sub}/resourceGroups/{rg}/providers/microsoft.operationalinsights/workspaces/{name}/operations/{id}?api-version={PURGE_API_VERSION}"
            );
            json_reply(
                202,
                &[("x-ms-status-location", location)],
                &json!({"operationId": id}),
            )
        }
        (Method::GET, PurgePath::Status(key, _, id)) => {
            let mut purges = st.purges.lock().unwrap_or_else(|p| p.into_inner());
            let Some(p) = purges
                .iter_mut()
                .find(|p| p.record.operation_id == id && p.record.workspace == key)
            else {
                return arm_error(
                    404,
                    "ResourceNotFound",
                    &format!("Purge operation '{id}' was not found."),
                    &[],
                );
            };
            p.record.polls += 1;
            match p.record.state {
                PurgeState::Failed => arm_error(
                    500,
                    "InternalServerError",
                    "The purge operation failed.",
                    &[],
                ),
                PurgeState::Completed => json_reply(200, &[], &json!({"status": "completed"})),
                PurgeState::Pending if p.pending_left > 0 => {
                    p.pending_left -= 1;
                    json_reply(200, &[], &json!({"status": "pending"}))
                }
                PurgeState::Pending => {
                    let mut ws = st.workspaces.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(t) = ws
                        .get_mut(&key)
                        .and_then(|w| w.tables.get_mut(&p.record.table))
                    {
                        let before = t.rows.len();
                        let filters = &p.filters;
                        t.rows
                            .retain(|r| !filters.iter().all(|f| filter_matches(r, f)));
                        p.record.removed = before - t.rows.len();
                    }
                    p.record.state = PurgeState::Completed;
                    json_reply(200, &[], &json!({"status": "completed"}))
                }
            }
        }
        _ => arm_error(
            405,
            "MethodNotAllowed",
            "The requested method is not allowed for this resource.",
            &[],
        ),
    }
}
