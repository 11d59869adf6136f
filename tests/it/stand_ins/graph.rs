//! Microsoft Graph stand-in: the `users` endpoints `GraphDirectory` calls, over a directory the
//! test provides.
//!
//! - `GET /v1.0/users/{id | userPrincipalName}` with optional `$select`: the user object
//!   (property names and default property set as in the Graph docs, `user-get.md` Example 1 =
//!   `tests/fixtures/azure-rest/graph/user-get.json`), with `@odata.context`;
//! - `GET /v1.0/users?$filter=mail eq '<addr>'` (what the adapter sends for an address that is
//!   not a UPN): a collection `{"@odata.context", "value": [...]}`;
//! - unknown user: 404 `Request_ResourceNotFound` with Graph's error body
//!   (`{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`);
//! - an unknown `$select` property or an unsupported `$filter`: 400 with the same body shape;
//! - injected throttling: 429 `TooManyRequests` with `Retry-After` (Graph throttling guidance);
//! - a token for another audience than `https://graph.microsoft.com`: 401
//!   `InvalidAuthenticationToken`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::identity::{check_bearer, TokenProblem};
use super::server::{
    json_reply, now_naive, percent_decode, request_id, BackgroundServer, Faults, Log, Seen,
};

pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";

/// One user of the directory.
#[derive(Debug, Clone)]
pub struct DirectoryUser {
    pub id: String,
    pub user_principal_name: String,
    pub mail: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
}

impl DirectoryUser {
    pub fn new(id: &str, upn: &str, display_name: &str) -> Self {
        let mut parts = display_name.splitn(2, ' ');
        let given = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        let surname = parts.next().map(str::to_string);
        Self {
            id: id.to_string(),
            user_principal_name: upn.to_string(),
            mail: Some(upn.to_string()),
            display_name: Some(display_name.to_string()),
            given_name: given,
            surname,
            job_title: None,
        }
    }

    pub fn with_mail(mut self, mail: Option<&str>) -> Self {
        self.mail = mail.map(str::to_string);
        self
    }

    /// Every property the stand-in knows, as Graph names them.
    fn properties(&self) -> Map<String, Value> {
        let opt = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
        let mut m = Map::new();
        m.insert("businessPhones".into(), json!([]));
        m.insert("displayName".into(), opt(&self.display_name));
        m.insert("givenName".into(), opt(&self.given_name));
        m.insert("jobTitle".into(), opt(&self.job_title));
        m.insert("mail".into(), opt(&self.mail));
        m.insert("mobilePhone".into(), Value::Null);
        m.insert("officeLocation".into(), Value::Null);
        m.insert("preferredLanguage".into(), Value::Null);
        m.insert("surname".into(), opt(&self.surname));
        m.insert(
            "userPrincipalName".into(),
            Value::String(self.user_principal_name.clone()),
        );
        m.insert("id".into(), Value::String(self.id.clone()));
        m
    }
}

/// Graph v1.0's default property set of a user (the `user-get.md` Example 1 response).
const DEFAULT_SELECT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

struct GraphState {
    users: Mutex<Vec<DirectoryUser>>,
    throttle: Faults,
    retry_after_secs: Mutex<u64>,
    log: Log,
}

/// A running Graph stand-in.
pub struct GraphStandIn {
    server: BackgroundServer,
    state: Arc<GraphState>,
}

impl GraphStandIn {
    pub fn start(users: Vec<DirectoryUser>) -> GraphStandIn {
        let state = Arc::new(GraphState {
            users: Mutex::new(users),
            throttle: Faults::default(),
            retry_after_secs: Mutex::new(1),
            log: Log::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        GraphStandIn {
            server: BackgroundServer::start("graph", app),
            state,
        }
    }

    /// The endpoint to configure (`DSR_GRAPH_ENDPOINT`), `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Answer the next `n` requests with 429 and `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u64) {
        *self
            .state
            .retry_after_secs
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = retry_after_secs;
        self.state.throttle.set(n);
    }

    pub fn add_user(&self, user: DirectoryUser) {
        self.state
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(user);
    }

    /// Every request seen, with the status answered.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.log.all()
    }
}

fn graph_error(status: u16, code: &str, message: &str, extra: &[(&str, String)]) -> Response {
    let id = request_id();
    json_reply(
        status,
        extra,
        &json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": now_naive(),
                    "request-id": id,
                    "client-request-id": id,
                }
            }
        }),
    )
}

/// `$select` as a list of known properties; `Err(name)` for one Graph would not know.
fn selection(select: Option<&str>) -> Result<Vec<String>, String> {
    let Some(s) = select else {
        return Ok(DEFAULT_SELECT.iter().map(|s| s.to_string()).collect());
    };
    let mut out = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // Graph property names are case-insensitive in $select.
        match DEFAULT_SELECT.iter().find(|k| k.eq_ignore_ascii_case(p)) {
            Some(k) => out.push(k.to_string()),
            None => return Err(p.to_string()),
        }
    }
    Ok(out)
}

fn project(u: &DirectoryUser, select: &[String]) -> Map<String, Value> {
    let all = u.properties();
    select
        .iter()
        .map(|k| (k.clone(), all.get(k).cloned().unwrap_or(Value::Null)))
        .collect()
}

fn context(base: &str, select: Option<&str>, entity: bool) -> String {
    let sel = select.map(|s| format!("({s})")).unwrap_or_default();
    let tail = if entity { "/$entity" } else { "" };
    format!("{base}/v1.0/$metadata#users{sel}{tail}")
}

/// `mail eq '<value>'` (OData string literal, `''` escapes a quote); `None` otherwise.
fn mail_filter(f: &str) -> Option<String> {
    let rest = f.trim().strip_prefix("mail eq '")?;
    let inner = rest.strip_suffix('\'')?;
    // A lone quote inside the literal would end it: not the one expression we support.
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

/// `startswith(userPrincipalName,'<prefix>')`; `None` otherwise.
fn upn_prefix_filter(f: &str) -> Option<String> {
    let rest = f.trim().strip_prefix("startswith(userPrincipalName,'")?;
    let inner = rest.strip_suffix("')")?;
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

async fn handle(
    State(st): State<Arc<GraphState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    st.log.answered(&method, &uri, &headers, &[], |query| {
        answer(&st, &method, &uri, &headers, query)
    })
}

fn answer(
    st: &GraphState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Response {
    match check_bearer(headers, &[GRAPH_AUDIENCE]) {
        Ok(_) => {}
        Err(TokenProblem::Missing) => {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
                &[],
            )
        }
        Err(TokenProblem::Invalid(why)) => {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                &format!("Access token validation failure: {why}."),
                &[],
            )
        }
        Err(TokenProblem::WrongAudience(_)) => {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
                &[],
            )
        }
    }
    if st.throttle.take() {
        let secs = *st
            .retry_after_secs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        return graph_error(
            429,
            "TooManyRequests",
            "Too many requests. Please retry after the time in the Retry-After header.",
            &[("Retry-After", secs.to_string())],
        );
    }
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let base = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    if method != Method::GET {
        return graph_error(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
            &[],
        );
    }
    let select = match selection(q("$select")) {
        Ok(s) => s,
        Err(p) => {
            return graph_error(
                400,
                "Request_BadRequest",
                &format!("Could not find a property named '{p}' on type 'microsoft.graph.user'."),
                &[],
            )
        }
    };
    let users = st.users.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match segments.as_slice() {
        ["v1.0", "users"] => {
            let Some(filter) = q("$filter") else {
                let value: Vec<Value> = users
                    .iter()
                    .map(|u| Value::Object(project(u, &select)))
                    .collect();
                return json_reply(
                    200,
                    &[],
                    &json!({"@odata.context": context(&base, q("$select"), false), "value": value}),
                );
            };
            if let Some(prefix) = upn_prefix_filter(filter) {
                // `startswith` on strings in the directory is case-insensitive.
                let value: Vec<Value> = users
                    .iter()
                    .filter(|u| {
                        u.user_principal_name
                            .to_lowercase()
                            .starts_with(&prefix.to_lowercase())
                    })
                    .map(|u| Value::Object(project(u, &select)))
                    .collect();
                return json_reply(
                    200,
                    &[],
                    &json!({"@odata.context": context(&base, q("$select"), false), "value": value}),
                );
            }
            let Some(mail) = mail_filter(filter) else {
                return graph_error(400, "Request_UnsupportedQuery", "Unsupported Query.", &[]);
            };
            // OData `eq` on strings in the directory is case-insensitive.
            let value: Vec<Value> = users
                .iter()
                .filter(|u| {
                    u.mail
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case(&mail))
                })
                .map(|u| Value::Object(project(u, &select)))
                .collect();
            json_reply(
                200,
                &[],
                &json!({"@odata.context": context(&base, q("$select"), false), "value": value}),
            )
        }
        ["v1.0", "users", key] => {
            let Some(key) = percent_decode(key) else {
                return graph_error(400, "Request_BadRequest", "Invalid object identifier.", &[]);
            };
            let found = users.iter().find(|u| {
                u.id.eq_ignore_ascii_case(&key) || u.user_principal_name.eq_ignore_ascii_case(&key)
            });
            match found {
                Some(u) => {
                    let mut body = Map::new();
                    body.insert(
                        "@odata.context".into(),
                        Value::String(context(&base, q("$select"), true)),
                    );
                    body.extend(project(u, &select));
                    json_reply(200, &[], &Value::Object(body))
                }
                None => graph_error(
                    404,
                    "Request_ResourceNotFound",
                    &format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."),
                    &[],
                ),
            }
        }
        _ => graph_error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                segments.last().unwrap_or(&"")
            ),
            &[],
        ),
    }
}
