//! Log Analytics stand-in: the query API (`api.loganalytics.io`) and the ARM workspace purge API
//! (`management.azure.com`), over rows the test holds per workspace and table.
//!
//! Query API (`OperationalInsights.json` data-plane v1, example `oms-post-example.json` =
//! `tests/fixtures/azure-rest/loganalytics/query-post.json`):
//! - `POST /v1/workspaces/{workspaceId}/query` and the resource-centric
//!   `POST /v1/{workspaceResourceId}/query` (what `purge.rs` calls), body `{"query": "<KQL>"}`;
//!   answer `{"tables":[{"name":"PrimaryResult","columns":[{"name","type"}],"rows":[[..]]}]}`;
//! - KQL: the subset the product sends — `Table | where Col == "v" [and ...]` with `==`, `=~`,
//!   `!=`, `!~`, `tostring(DynamicCol) has "term"` (`has`: whole term, case-insensitive, as
//!   KQL's string operators describe it), plus `| take N`; anything else is a 400 syntax
//!   error;
//! - errors use the documented `errorResponse` (`{"error":{"code","message","innererror"}}`):
//!   an unknown table is 400 `BadArgumentError` / `SEM0100` "Failed to resolve table or column
//!   expression named 'X'"; an unknown workspace 404 `WorkspaceNotFoundError`; no token 401
//!   `AuthorizationRequiredError`, a token for another audience 403 `InvalidTokenError`;
//!   injected throttling 429 `ThrottledError` with `Retry-After`.
//!
//! Purge API (`WorkspacePurge.json` 2020-08-01, examples `WorkspacesPurge*.json`):
//! - `POST {ws}/purge?api-version=2020-08-01` body `{"table","filters":[{"column","operator",
//!   "value","key"}]}` → 202, header `x-ms-status-location: {arm}{ws}/operations/purge-<guid>?
//!   api-version=2020-08-01`, body `{"operationId": "purge-<guid>"}`;
//! - `GET` of the status location → `{"status": "pending" | "completed"}`.
//! - Filters follow the spec: all filters must hold (AND); operators `==`, `=~`, `in`, `in~`,
//!   `>`, `>=`, `<`, `<=`, `between` "with the same behavior as in a KQL query"; `key` names a
//!   property of a `dynamic` column (custom dimensions). The request is validated when it is
//!   posted (unknown table/column/operator → 400); rows are removed when the purge completes.
//! - Switches: how many status polls stay `pending` ([`LogAnalyticsStandIn::set_pending_polls`]),
//!   purges that fail (status answers 500 from then on), rejected posts (400), 429 +
//!   `Retry-After` on posts.
//!
//! The ARM half is a router layer ([`LogAnalyticsStandIn::arm_router`]) so it can wrap another
//! ARM stand-in (the local ARM server) on the same origin, which is where the production adapter
//! sends purges (`DSR_ARM_ENDPOINT`); [`LogAnalyticsStandIn::arm_url`] is a standalone server
//! with nothing behind the purge routes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::identity::{check_bearer, TokenProblem};
use super::server::{
    json_reply, percent_decode, query_pairs, request_id, BackgroundServer, Faults, Log, Seen,
};

pub const LOG_ANALYTICS_AUDIENCES: &[&str] = &[
    "https://api.loganalytics.io",
    "https://api.loganalytics.azure.com",
];
pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
];
pub const PURGE_API_VERSION: &str = "2020-08-01";

#[derive(Debug, Clone)]
struct Table {
    /// (name, type) in order; types as the query API reports them (`string`, `datetime`,
    /// `long`, `real`, `bool`, `dynamic`, ...).
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    fn col(&self, name: &str) -> Option<(usize, &str)> {
        self.columns
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.columns[i].1.as_str()))
    }
}

#[derive(Debug, Clone)]
struct Workspace {
    /// As given by the test (ARM id).
    resource_id: String,
    /// The workspace (customer) id GUID the `/v1/workspaces/{id}` form uses.
    customer_id: String,
    tables: BTreeMap<String, Table>,
}

/// How a purge ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeState {
    Pending,
    Completed,
    /// The status endpoint answers 500 for it; nothing is removed.
    Failed,
}

/// One purge request, for assertions.
#[derive(Debug, Clone)]
pub struct PurgeRecord {
    pub operation_id: String,
    /// Lower-cased workspace resource id.
    pub workspace: String,
    pub table: String,
    pub filters: Vec<Value>,
    pub state: PurgeState,
    /// Status polls answered so far.
    pub polls: u32,
    /// Rows removed on completion.
    pub removed: usize,
}

struct Purge {
    record: PurgeRecord,
    pending_left: u32,
    filters: Vec<Filter>,
}

struct LaState {
    workspaces: Mutex<BTreeMap<String, Workspace>>,
    purges: Mutex<Vec<Purge>>,
    pending_polls: Mutex<u32>,
    fail_purges: Faults,
    reject_purges: Faults,
    throttle_purges: Faults,
    throttle_queries: Faults,
    retry_after_secs: Mutex<u64>,
    query_log: Log,
    arm_log: Log,
}

/// A running Log Analytics stand-in (query server + standalone ARM purge server).
pub struct LogAnalyticsStandIn {
    query: BackgroundServer,
    arm: BackgroundServer,
    state: Arc<LaState>,
}

/// Lower-cased `/subscriptions/.../workspaces/{name}`: ARM ids compare case-insensitively.
fn ws_key(resource_id: &str) -> String {
    format!("/{}", resource_id.trim_matches('/').to_ascii_lowercase())
}

impl LogAnalyticsStandIn {
    pub fn start() -> LogAnalyticsStandIn {
        let state = Arc::new(LaState {
            workspaces: Mutex::new(BTreeMap::new()),
            purges: Mutex::new(Vec::new()),
            pending_polls: Mutex::new(0),
            fail_purges: Faults::default(),
            reject_purges: Faults::default(),
            throttle_purges: Faults::default(),
            throttle_queries: Faults::default(),
            retry_after_secs: Mutex::new(1),
            query_log: Log::default(),
            arm_log: Log::default(),
        });
        let query_app = axum::Router::new()
            .fallback(query_handler)
            .with_state(state.clone());
        let query = BackgroundServer::start("log analytics query", query_app);
        let arm =
            BackgroundServer::start("log analytics purge (ARM)", arm_router_for(&state, None));
        LogAnalyticsStandIn { query, arm, state }
    }

    /// Query API endpoint (`DSR_LOGANALYTICS_ENDPOINT`), `http://127.0.0.1:<port>`.
    pub fn query_url(&self) -> &str {
        &self.query.base_url
    }

    /// A standalone ARM endpoint serving only the purge routes.
    pub fn arm_url(&self) -> &str {
        &self.arm.base_url
    }

    /// The purge routes in front of `inner` (e.g. `arm_server::router(..)`): purge requests are
    /// answered here, everything else goes to `inner` (404 ARM error when `None`).
    pub fn arm_router(&self, inner: Option<axum::Router>) -> axum::Router {
        arm_router_for(&self.state, inner)
    }

    /// Register a Log Analytics workspace; returns its workspace (customer) id.
    pub fn add_workspace(&self, resource_id: &str) -> String {
        let customer_id =
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, ws_key(resource_id).as_bytes())
                .to_string();
        self.state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ws_key(resource_id))
            .or_insert_with(|| Workspace {
                resource_id: resource_id.to_string(),
                customer_id: customer_id.clone(),
                tables: BTreeMap::new(),
            });
        customer_id
    }

    /// Create (or replace) a table with `(name, type)` columns.
    pub fn add_table(&self, resource_id: &str, table: &str, columns: &[(&str, &str)]) {
        self.add_workspace(resource_id);
        let mut ws = self
            .state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(w) = ws.get_mut(&ws_key(resource_id)) {
            w.tables.insert(
                table.to_string(),
                Table {
                    columns: columns
                        .iter()
                        .map(|(n, t)| (n.to_string(), t.to_string()))
                        .collect(),
                    rows: Vec::new(),
                },
            );
        }
    }

    /// Append rows given as objects keyed by column name (missing columns are null).
    pub fn insert(&self, resource_id: &str, table: &str, rows: &[Value]) {
        let mut ws = self
            .state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let t = ws
            .get_mut(&ws_key(resource_id))
            .and_then(|w| w.tables.get_mut(table))
            .unwrap_or_else(|| panic!("test setup: no table {table} in {resource_id}"));
        for r in rows {
            let row = t
                .columns
                .iter()
                .map(|(n, _)| r.get(n).cloned().unwrap_or(Value::Null))
                .collect();
            t.rows.push(row);
        }
    }

    /// The rows of a table now, as objects.
    pub fn rows(&self, resource_id: &str, table: &str) -> Vec<Value> {
        let ws = self
            .state
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(t) = ws
            .get(&ws_key(resource_id))
            .and_then(|w| w.tables.get(table))
        else {
            return Vec::new();
        };
        t.rows
            .iter()
            .map(|r| {
                Value::Object(
                    t.columns
                        .iter()
                        .zip(r)
                        .map(|((n, _), v)| (n.clone(), v.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    /// Status polls a new purge answers `pending` before `completed`.
    pub fn set_pending_polls(&self, n: u32) {
        *self
            .state
            .pending_polls
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = n;
    }

    /// The next `n` accepted purges fail (their status answers 500; no row is removed).
    pub fn fail_next_purges(&self, n: u32) {
        self.state.fail_purges.set(n);
    }

    /// The next `n` purge requests are refused with 400.
    pub fn reject_next_purges(&self, n: u32) {
        self.state.reject_purges.set(n);
    }

    /// The next `n` purge requests answer 429 with `Retry-After: secs`.
    pub fn throttle_purges(&self, n: u32, secs: u64) {
        *self
            .state
            .retry_after_secs
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = secs;
        self.state.throttle_purges.set(n);
    }

    /// The next `n` queries answer 429 with `Retry-After: secs`.
    pub fn throttle_queries(&self, n: u32, secs: u64) {
        *self
            .state
            .retry_after_secs
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = secs;
        self.state.throttle_queries.set(n);
    }

    pub fn purges(&self) -> Vec<PurgeRecord> {
        self.state
            .purges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.record.clone())
            .collect()
    }

    pub fn query_requests(&self) -> Vec<Seen> {
        self.state.query_log.all()
    }

    pub fn arm_requests(&self) -> Vec<Seen> {
        self.state.arm_log.all()
    }
}

// ------------------------------------------------------------------ values and filters

/// A datetime literal: RFC 3339, or naive / date-only (UTC), as KQL reads them.
fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let with_time = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        format!("{s}Z")
    };
    OffsetDateTime::parse(&with_time, &Rfc3339).ok()
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// How values of a column compare.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Number,
    DateTime,
    Bool,
    Dynamic,
}

fn kind_of(column_type: &str) -> Kind {
    match column_type.to_ascii_lowercase().as_str() {
        "datetime" | "date" => Kind::DateTime,
        "int" | "long" | "real" | "double" | "decimal" | "timespan" => Kind::Number,
        "bool" | "boolean" => Kind::Bool,
        "dynamic" => Kind::Dynamic,
        _ => Kind::Text,
    }
}

/// `a == b` under KQL rules for the column kind (strings: case-sensitive).
fn equal(kind: Kind, a: &Value, b: &Value) -> bool {
    if a.is_null() || b.is_null() {
        return false;
    }
    match kind {
        Kind::Number => matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x == y),
        Kind::DateTime => matches!(
            (as_text(a).and_then(|s| parse_datetime(&s)), as_text(b).and_then(|s| parse_datetime(&s))),
            (Some(x), Some(y)) if x == y
        ),
        Kind::Bool => {
            as_text(a).map(|s| s.to_ascii_lowercase()) == as_text(b).map(|s| s.to_ascii_lowercase())
        }
        // A dynamic value compared with a scalar: compare the scalar forms.
        Kind::Text | Kind::Dynamic => match (a, b) {
            (Value::String(x), Value::String(y)) => x == y,
            (Value::Number(_), _) | (_, Value::Number(_)) => {
                matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x == y)
            }
            _ => as_text(a) == as_text(b),
        },
    }
}

/// `a =~ b`: case-insensitive string equality.
fn equal_ci(a: &Value, b: &Value) -> bool {
    matches!((as_text(a), as_text(b)), (Some(x), Some(y)) if x.to_lowercase() == y.to_lowercase())
}

/// Ordering for `<`, `>`, `between` (numbers and datetimes; strings by ordinal, as KQL does).
fn order(kind: Kind, a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match kind {
        Kind::Number => as_f64(a)?.partial_cmp(&as_f64(b)?),
        Kind::DateTime => Some(parse_datetime(&as_text(a)?)?.cmp(&parse_datetime(&as_text(b)?)?)),
        Kind::Text => Some(as_text(a)?.cmp(&as_text(b)?)),
        Kind::Dynamic => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => Some(as_text(a)?.cmp(&as_text(b)?)),
        },
        Kind::Bool => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    EqCi,
    In,
    InCi,
    Gt,
    Ge,
    Lt,
    Le,
    Between,
}

/// One validated purge filter.
#[derive(Debug, Clone)]
struct Filter {
    column: usize,
    kind: Kind,
    key: Option<String>,
    op: Op,
    value: Value,
}

/// Validate the purge body's filters against the table; `Err` is the 400 message.
fn compile_filters(t: &Table, filters: &[Value]) -> Result<Vec<Filter>, String> {
    if filters.is_empty() {
        return Err("At least one filter is required.".into());
    }
    let mut out = Vec::new();
    for f in filters {
        let column = f
            .get("column")
            .and_then(Value::as_str)
            .ok_or("Each filter needs a 'column'.")?;
        let (idx, ty) = t
            .col(column)
            .ok_or_else(|| format!("Column '{column}' does not exist in the table."))?;
        let mut kind = kind_of(ty);
        let key = f.get("key").and_then(Value::as_str).map(str::to_string);
        if key.is_some() {
            if kind != Kind::Dynamic {
                return Err(format!(
                    "A 'key' can only be given for a dynamic column; '{column}' is {ty}."
                ));
            }
        } else if kind == Kind::Dynamic {
            return Err(format!(
                "Filtering on dynamic column '{column}' needs the 'key' of the custom dimension."
            ));
        }
        if key.is_some() {
            // A custom dimension's value compares as the scalar it holds.
            kind = Kind::Dynamic;
        }
        let op = match f
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "==" => Op::Eq,
            "=~" => Op::EqCi,
            "in" => Op::In,
            "in~" => Op::InCi,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "between" => Op::Between,
            other => return Err(format!("Operator '{other}' is not supported.")),
        };
        let value = f.get("value").cloned().unwrap_or(Value::Null);
        match op {
            Op::In | Op::InCi if value.as_array().is_none_or(|a| a.is_empty()) => {
                return Err(format!(
                    "Operator '{}' needs an array of values.",
                    op_name(op)
                ))
            }
            Op::Between if value.as_array().map(Vec::len) != Some(2) => {
                return Err("Operator 'between' needs an array of two values.".into())
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Between if kind == Kind::Bool => {
                return Err(format!(
                    "Operator '{}' does not apply to bool column '{column}'.",
                    op_name(op)
                ))
            }
            Op::Eq | Op::EqCi | Op::Gt | Op::Ge | Op::Lt | Op::Le
                if value.is_array() || value.is_null() =>
            {
                return Err(format!("Operator '{}' needs a single value.", op_name(op)))
            }
            _ => {}
        }
        if kind == Kind::DateTime {
            let vals: Vec<&Value> = match &value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            if vals
                .iter()
                .any(|v| as_text(v).and_then(|s| parse_datetime(&s)).is_none())
            {
                return Err(format!(
                    "Value for datetime column '{column}' is not a datetime."
                ));
            }
        }
        out.push(Filter {
            column: idx,
            kind,
            key,
            op,
            value,
        });
    }
    Ok(out)
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "==",
        Op::EqCi => "=~",
        Op::In => "in",
        Op::InCi => "in~",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Between => "between",
    }
}

/// The cell a filter looks at: the column, or the `key` property of a dynamic column (stored as
/// an object or as JSON text, as ingestion may keep either).
fn cell(row: &[Value], f: &Filter) -> Value {
    let v = row.get(f.column).cloned().unwrap_or(Value::Null);
    let Some(key) = &f.key else { return v };
    let obj = match v {
        Value::String(s) => serde_json::from_str::<Value>(&s).unwrap_or(Value::Null),
        other => other,
    };
    obj.get(key).cloned().unwrap_or(Value::Null)
}

fn filter_matches(row: &[Value], f: &Filter) -> bool {
    use std::cmp::Ordering::*;
    let c = cell(row, f);
    if c.is_null() {
        return false;
    }
    let v = &f.value;
    match f.op {
        Op::Eq => equal(f.kind, &c, v),
        Op::EqCi => equal_ci(&c, v),
        Op::In => v
            .as_array()
            .is_some_and(|a| a.iter().any(|x| equal(f.kind, &c, x))),
        Op::InCi => v
            .as_array()
            .is_some_and(|a| a.iter().any(|x| equal_ci(&c, x))),
        Op::Gt => order(f.kind, &c, v) == Some(Greater),
        Op::Ge => matches!(order(f.kind, &c, v), Some(Greater | Equal)),
        Op::Lt => order(f.kind, &c, v) == Some(Less),
        Op::Le => matches!(order(f.kind, &c, v), Some(Less | Equal)),
        Op::Between => match v.as_array().map(Vec::as_slice) {
            Some([lo, hi]) => {
                matches!(order(f.kind, &c, lo), Some(Greater | Equal))
                    && matches!(order(f.kind, &c, hi), Some(Less | Equal))
            }
            _ => false,
        },
    }
}

// ------------------------------------------------------------------ KQL subset

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Pipe,
    Op(&'static str),
}

fn lex(q: &str) -> Result<Vec<Tok>, usize> {
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            out.push(Tok::Pipe);
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(i),
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(e @ ('"' | '\'' | '\\')) => s.push(*e),
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            _ => return Err(i),
                        }
                        i += 2;
                    }
                    Some(x) if *x == c => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(Tok::Num(s.parse().map_err(|_| start)?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c == '(' || c == ')' {
            out.push(Tok::Op(if c == '(' { "(" } else { ")" }));
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "==" => "==",
                "=~" => "=~",
                "!=" => "!=",
                "!~" => "!~",
                _ => return Err(i),
            };
            out.push(Tok::Op(op));
            i += 2;
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct Pred {
    column: String,
    /// `tostring(column)`: the cell as text (a dynamic value serialised as JSON).
    as_text: bool,
    op: &'static str,
    value: Value,
}

#[derive(Debug)]
enum Stage {
    Where(Vec<Pred>),
    Take(usize),
}

#[derive(Debug)]
struct Query {
    table: String,
    stages: Vec<Stage>,
}

fn parse_kql(q: &str) -> Result<Query, String> {
    let toks = lex(q).map_err(|at| format!("Query could not be parsed at position {at}"))?;
    let mut it = toks.into_iter().peekable();
    let table = match it.next() {
        Some(Tok::Ident(t)) => t,
        _ => return Err("Query could not be parsed: expected a table name".into()),
    };
    let mut stages = Vec::new();
    while let Some(t) = it.next() {
        if t != Tok::Pipe {
            return Err(format!("Query could not be parsed at '{t:?}'"));
        }
        match it.next() {
            Some(Tok::Ident(w)) if w == "where" => {
                let mut preds = Vec::new();
                loop {
                    // `Col` or `tostring(Col)` (a dynamic column as its JSON text).
                    let (column, as_text) = match it.next() {
                        Some(Tok::Ident(f)) if f == "tostring" => {
                            match (it.next(), it.next(), it.next()) {
                                (Some(Tok::Op("(")), Some(Tok::Ident(c)), Some(Tok::Op(")"))) => {
                                    (c, true)
                                }
                                other => {
                                    return Err(format!("Query could not be parsed at '{other:?}'"))
                                }
                            }
                        }
                        Some(Tok::Ident(c)) => (c, false),
                        other => return Err(format!("Query could not be parsed at '{other:?}'")),
                    };
                    let op = match it.next() {
                        Some(Tok::Op(op)) if op != "(" && op != ")" => op,
                        Some(Tok::Ident(w)) if w == "has" => "has",
                        other => return Err(format!("Query could not be parsed at '{other:?}'")),
                    };
                    let value = match it.next() {
                        Some(Tok::Str(s)) => Value::String(s),
                        Some(Tok::Num(n)) => json!(n),
                        Some(Tok::Ident(b)) if b == "true" || b == "false" => {
                            Value::Bool(b == "true")
                        }
                        other => return Err(format!("Query could not be parsed at '{other:?}'")),
                    };
                    preds.push(Pred {
                        column,
                        as_text,
                        op,
                        value,
                    });
                    match it.peek() {
                        Some(Tok::Ident(a)) if a == "and" => {
                            it.next();
                        }
                        _ => break,
                    }
                }
                stages.push(Stage::Where(preds));
            }
            Some(Tok::Ident(w)) if w == "take" || w == "limit" => match it.next() {
                Some(Tok::Num(n)) if n >= 0.0 => stages.push(Stage::Take(n as usize)),
                other => return Err(format!("Query could not be parsed at '{other:?}'")),
            },
            other => return Err(format!("Query could not be parsed at '{other:?}'")),
        }
    }
    Ok(Query { table, stages })
}

/// KQL `has`: `term` occurs in `text` bounded by non-alphanumeric characters or the ends.
fn has_term(text: &str, term: &str) -> bool {
    if term.is_empty() {
        return false;
    }
    let (text, term) = (text.to_lowercase(), term.to_lowercase());
    let mut from = 0;
    while let Some(at) = text[from..].find(&term) {
        let start = from + at;
        let end = start + term.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            return true;
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

// ------------------------------------------------------------------ query API

fn la_error(
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

fn semantic_error(message: String) -> Response {
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

fn syntax_error(message: String) -> Response {
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

async fn query_handler(
    State(st): State<Arc<LaState>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = query_pairs(uri.query());
    let resp = run_query(&st, &method, uri.path(), &query, &headers, &body);
    st.query_log.push(Seen::of(
        &method,
        &uri,
        &headers,
        &body,
        resp.status().as_u16(),
    ));
    resp
}

fn run_query(
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

// ------------------------------------------------------------------ ARM purge API

fn arm_error(status: u16, code: &str, message: &str, extra: &[(&str, String)]) -> Response {
    json_reply(
        status,
        extra,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn arm_router_for(state: &Arc<LaState>, inner: Option<axum::Router>) -> axum::Router {
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
enum PurgePath {
    /// (workspace key, subscription, resource group, workspace name)
    Purge(String, [String; 3]),
    Status(String, [String; 3], String),
}

fn purge_path(path: &str) -> Option<PurgePath> {
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

async fn intercept(State(st): State<Arc<LaState>>, req: Request, next: Next) -> Response {
    let Some(target) = purge_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let query = query_pairs(uri.query());
    let resp = purge_api(&st, &method, target, &query, &headers, &body);
    st.arm_log.push(Seen::of(
        &method,
        &uri,
        &headers,
        &body,
        resp.status().as_u16(),
    ));
    resp
}

fn purge_api(
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
