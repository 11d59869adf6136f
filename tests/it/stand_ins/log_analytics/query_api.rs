//! The query API (`POST /v1/workspaces/{id}/query`, resource-centric form): tokens, throttling,
//! errors in the documented `errorResponse` shape, results as `tables`.

use super::*;

pub(super) fn la_error(
    status: u16,
    code: &str,
    message: &str,
    inner: Option<Value>,
    extra: &[(&str, String)],
) -> Response {
    let mut e = json!({"message": message, "code": code, "correlationId": request_id()});
    if let Some(i) = inner {
        e["innererror"] = i;
    }
    json_reply(status, extra, &json!({ "error": e }))
}

pub(super) fn semantic_error(message: String) -> Response {
    la_error(
        400,
        "BadArgumentError",
        "The request had some invalid properties",
        Some(json!({
            "code": "SemanticError",
            "message": "A semantic error occurred.",
            "innererror": {"code": "SEM0100", "message": message}
        })),
        &[],
    )
}

pub(super) fn syntax_error(message: String) -> Response {
    la_error(
        400,
        "BadArgumentError",
        "The request had some invalid properties",
        Some(json!({
            "code": "SyntaxError",
            "message": "A recognition error occurred in the query.",
            "innererror": {"code": "SYN0002", "message": message}
        })),
        &[],
    )
}

pub(super) async fn query_handler(
    State(st): State<Arc<LaState>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    st.query_log
        .answered(&method, &uri, &headers, &body, |query| {
            run_query(&st, &method, uri.path(), query, &headers, &body)
        })
}

pub(super) fn run_query(
    st: &LaState,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    match check_bearer(headers, LOG_ANALYTICS_AUDIENCES) {
        Ok(_) => {}
        Err(TokenProblem::Missing) | Err(TokenProblem::Invalid(_)) => {
            return la_error(
                401,
                "AuthorizationRequiredError",
                "Valid authentication was not provided",
                None,
                &[],
            )
        }
        Err(TokenProblem::WrongAudience(_)) => {
            return la_error(
                403,
                "InvalidTokenError",
                "The provided authentication is not valid for this resource",
                None,
                &[],
            )
        }
    }
    if st.throttle_queries.take() {
        let secs = *st
            .retry_after_secs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        return la_error(
            429,
            "ThrottledError",
            "Too many requests. Please retry later.",
            None,
            &[("Retry-After", secs.to_string())],
        );
    }
    let Some(segs) = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
    else {
        return la_error(
            400,
            "BadArgumentError",
            "The request path is not valid UTF-8",
            None,
            &[],
        );
    };
    if segs.len() < 3 || segs[0] != "v1" || segs.last().map(String::as_str) != Some("query") {
        return la_error(
            404,
            "PathNotFoundError",
            &format!("The requested path does not exist: {path}"),
            None,
            &[],
        );
    }
    let target = &segs[1..segs.len() - 1];
    let ws = st.workspaces.lock().unwrap_or_else(|p| p.into_inner());
    let workspace = if target.len() == 2 && target[0].eq_ignore_ascii_case("workspaces") {
        ws.values()
            .find(|w| w.customer_id.eq_ignore_ascii_case(&target[1]))
    } else {
        ws.get(&ws_key(&target.join("/")))
    };
    let Some(workspace) = workspace else {
        return la_error(
            404,
            "WorkspaceNotFoundError",
            "The workspace could not be found",
            None,
            &[],
        );
    };
    let kql = match *method {
        Method::POST => match serde_json::from_slice::<Value>(body) {
            Ok(v) => match v.get("query").and_then(Value::as_str) {
                Some(q) => q.to_string(),
                None => {
                    return la_error(
                        400,
                        "BadArgumentError",
                        "The request had some invalid properties: 'query' is required",
                        None,
                        &[],
                    )
                }
            },
            Err(_) => {
                return la_error(
                    400,
                    "BadArgumentError",
                    "The request body is not valid JSON",
                    None,
                    &[],
                )
            }
        },
        Method::GET => match query.iter().find(|(k, _)| k == "query") {
            Some((_, q)) => q.clone(),
            None => {
                return la_error(
                    400,
                    "BadArgumentError",
                    "The request had some invalid properties: 'query' is required",
                    None,
                    &[],
                )
            }
        },
        _ => {
            return la_error(
                405,
                "MethodNotAllowedError",
                "The method is not allowed",
                None,
                &[],
            )
        }
    };
    let q = match parse_kql(&kql) {
        Ok(q) => q,
        Err(m) => return syntax_error(m),
    };
    let Some(table) = workspace.tables.get(&q.table) else {
        return semantic_error(format!(
            "'where' operator: Failed to resolve table or column expression named '{}'",
            q.table
        ));
    };
    let mut rows: Vec<&Vec<Value>> = table.rows.iter().collect();
    for stage in &q.stages {
        match stage {
            Stage::Where(preds) => {
                for p in preds {
                    let Some((idx, ty)) = table.col(&p.column) else {
                        return semantic_error(format!(
                            "'where' operator: Failed to resolve column or scalar expression named '{}'",
                            p.column
                        ));
                    };
                    let kind = kind_of(ty);
                    rows.retain(|r| {
                        let mut c = r.get(idx).cloned().unwrap_or(Value::Null);
                        if p.as_text {
                            c = match c {
                                Value::String(s) => Value::String(s),
                                Value::Null => Value::String(String::new()),
                                other => Value::String(other.to_string()),
                            };
                        }
                        match p.op {
                            // KQL `has`: the value as a whole term (bounded by characters
                            // that are not letters or digits), case-insensitive.
                            "has" => has_term(
                                c.as_str().unwrap_or_default(),
                                p.value.as_str().unwrap_or_default(),
                            ),
                            "==" => equal(kind, &c, &p.value),
                            "=~" => equal_ci(&c, &p.value),
                            "!=" => !c.is_null() && !equal(kind, &c, &p.value),
                            _ => !c.is_null() && !equal_ci(&c, &p.value),
                        }
                    });
                }
            }
            Stage::Take(n) => rows.truncate(*n),
        }
    }
    let columns: Vec<Value> = table
        .columns
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t}))
        .collect();
    json_reply(
        200,
        &[],
        &json!({"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}),
    )
}

pub(super) fn arm_error(
    status: u16,
    code: &str,
    message: &str,
    extra: &[(&str, String)],
) -> Response {
    json_reply(
        status,
        extra,
        &json!({"error": {"code": code, "message": message}}),
    )
}
