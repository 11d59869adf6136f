//! Azure ML run-history stand-in: the two calls the run-history adapter makes, as azure-ai-ml's
//! generated client (`_restclient/runhistory/operations/_runs_operations.py`) documents them,
//! over run documents the test provides (model `Run`, `createdBy` as model `User`; see
//! `tests/fixtures/azure-rest/runhistory/`).
//!
//! - `GET /history/v1.0/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{w}/runs/{runId}`:
//!   the run; unknown: 404 with an `ErrorResponse` body (`{"error":{"code","message"}}`);
//! - `GET .../runs/{runId}/children[?$continuationtoken=...]`: `PaginatedRunList`
//!   (`value`, `continuationToken`, `nextLink`), `page_size` runs a page; with
//!   [`RunHistoryStandIn::use_next_link`] the next page is given as `nextLink` instead (what the
//!   SDK's pager follows);
//! - injected throttling: 429 with `Retry-After`;
//! - a token for another audience than Azure Resource Manager's (the client's default
//!   `credential_scopes`, `https://management.azure.com/.default`): 401.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::identity::check_bearer;
use super::server::{json_reply, percent_decode, BackgroundServer, Faults, Log, Seen};

pub const RUN_HISTORY_AUDIENCE: &str = "https://management.azure.com";

struct RhState {
    runs: Mutex<Vec<Value>>,
    page_size: usize,
    next_link: Mutex<bool>,
    throttle: Faults,
    base_url: Mutex<String>,
    log: Log,
}

pub struct RunHistoryStandIn {
    server: BackgroundServer,
    state: Arc<RhState>,
}

impl RunHistoryStandIn {
    pub fn start(runs: Vec<Value>, page_size: usize) -> RunHistoryStandIn {
        let state = Arc::new(RhState {
            runs: Mutex::new(runs),
            page_size: page_size.max(1),
            next_link: Mutex::new(false),
            throttle: Faults::default(),
            base_url: Mutex::new(String::new()),
            log: Log::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let server = BackgroundServer::start("run-history", app);
        *state.base_url.lock().unwrap_or_else(|p| p.into_inner()) = server.base_url.clone();
        RunHistoryStandIn { server, state }
    }

    /// The endpoint to configure (`DSR_RUN_HISTORY_ENDPOINT`), `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Give the next page as `nextLink` (and no `continuationToken`).
    pub fn use_next_link(&self, on: bool) {
        *self
            .state
            .next_link
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = on;
    }

    /// Answer the next `n` requests with 429 and `Retry-After: 1`.
    pub fn throttle_next(&self, n: u32) {
        self.state.throttle.set(n);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.log.all()
    }
}

fn error(status: u16, code: &str, message: &str, extra: &[(&str, String)]) -> Response {
    json_reply(
        status,
        extra,
        &json!({"error": {"code": code, "message": message}}),
    )
}

async fn handle(
    State(st): State<Arc<RhState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    st.log.answered(&method, &uri, &headers, &[], |query| {
        answer(&st, &method, &uri, &headers, query)
    })
}

fn answer(
    st: &RhState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Response {
    if check_bearer(headers, &[RUN_HISTORY_AUDIENCE]).is_err() {
        return error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid or is for another audience.",
            &[],
        );
    }
    if st.throttle.take() {
        return error(
            429,
            "TooManyRequests",
            "Too many requests.",
            &[("Retry-After", "1".into())],
        );
    }
    if method != Method::GET {
        return error(405, "MethodNotAllowed", "Only GET is served.", &[]);
    }
    // /history/v1.0/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{w}/runs/{id}[/children]
    let segs: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let ok_prefix = segs.len() >= 12
        && segs[0] == "history"
        && segs[1] == "v1.0"
        && segs[2].eq_ignore_ascii_case("subscriptions")
        && segs[4].eq_ignore_ascii_case("resourceGroups")
        && segs[6].eq_ignore_ascii_case("providers")
        && segs[7].eq_ignore_ascii_case("Microsoft.MachineLearningServices")
        && segs[8].eq_ignore_ascii_case("workspaces")
        && segs[10] == "runs";
    if !ok_prefix || segs.len() > 13 || (segs.len() == 13 && segs[12] != "children") {
        return error(404, "NotFound", "No such route.", &[]);
    }
    let run_id = percent_decode(segs[11]).unwrap_or_default();
    let runs = st.runs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(run) = runs.iter().find(|r| r["runId"] == run_id.as_str()) else {
        return error(
            404,
            "UserError",
            &format!("Run {run_id} was not found"),
            &[],
        );
    };
    if segs.len() == 12 {
        return json_reply(200, &[], run);
    }
    let children: Vec<&Value> = runs
        .iter()
        .filter(|r| r["parentRunId"] == run_id.as_str())
        .collect();
    let start: usize = query
        .iter()
        .find(|(k, _)| k == "$continuationtoken")
        .and_then(|(_, v)| v.strip_prefix("offset-"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let end = (start + st.page_size).min(children.len());
    let page: Vec<&Value> = children.get(start..end).unwrap_or_default().to_vec();
    let more = end < children.len();
    let token = more.then(|| format!("offset-{end}"));
    let body = if *st.next_link.lock().unwrap_or_else(|p| p.into_inner()) {
        let base = st
            .base_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({"value": page, "continuationToken": null,
               "nextLink": token.map(|t| format!("{base}{}?$continuationtoken={t}", uri.path()))})
    } else {
        json!({"value": page, "continuationToken": token, "nextLink": null})
    };
    json_reply(200, &[], &body)
}
