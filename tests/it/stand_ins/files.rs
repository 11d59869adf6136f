//! Azure Files stand-in: the File service REST API as Microsoft Learn documents it, for the
//! operations the handler uses, path-style (`/{account}/{share}/{path}`, so the endpoint
//! template is `http://127.0.0.1:<port>/{account}`):
//! - List Directories and Files (`?restype=directory&comp=list`, `maxresults`, `marker`,
//!   `EnumerationResults`/`Entries`/`File`/`Directory`, `NextMarker`), in pages of at most
//!   [`FilesStandIn::set_page_cap`] entries so paging is exercised;
//! - Get File Properties (`HEAD`), Get File with `x-ms-range` (206, `Content-Range`);
//! - Delete File (202), Delete Directory (`?restype=directory`, 202; 409 `DirectoryNotEmpty`);
//! - List Shares (`/{account}?comp=list&prefix=&include=snapshots`);
//! - share snapshots: [`FilesStandIn::add_snapshot`] keeps a copy of the share's files under
//!   the opaque snapshot value, and Get File Properties / Get File with `sharesnapshot=<value>`
//!   answer from that copy — only for the exact value List Shares returned (404
//!   `ShareSnapshotNotFound` otherwise).
//!
//! Errors are the Storage XML `<Error><Code/><Message/></Error>` with `x-ms-error-code`:
//! 404 `ShareNotFound` / `ResourceNotFound` / `ParentNotFound`; 401 `InvalidAuthenticationInfo`
//! for a token of another audience; 403 `AuthorizationPermissionMismatch` without
//! `x-ms-file-request-intent: backup`; 400 `InvalidHeaderValue` for an `x-ms-version` older than
//! 2022-11-02 (OAuth needs it); 503 `ServerBusy` with `Retry-After` while faults are armed.
//! Every reply carries `x-ms-request-id`, `x-ms-version` and `Date`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::identity::{check_bearer, TokenProblem};
use super::server::{percent_decode, query_pairs, request_id, BackgroundServer, Faults, Log, Seen};

pub const STORAGE_AUDIENCE: &str = "https://storage.azure.com";
const MIN_OAUTH_VERSION: &str = "2022-11-02";

#[derive(Default)]
struct Share {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    /// Each snapshot's opaque value and the files it holds.
    snapshots: Vec<(String, BTreeMap<String, Vec<u8>>)>,
}

#[derive(Default)]
struct State {
    shares: Mutex<BTreeMap<(String, String), Share>>,
    page_cap: Mutex<usize>,
    busy: Faults,
    log: Log,
}

pub struct FilesStandIn {
    server: BackgroundServer,
    state: Arc<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

impl FilesStandIn {
    pub fn start() -> FilesStandIn {
        let state = Arc::new(State::default());
        *lock(&state.page_cap) = 5000;
        let st = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move { handle(&st, method, uri, headers, body) }
            },
        );
        let server = BackgroundServer::start("files", app);
        FilesStandIn { server, state }
    }

    /// Endpoint template for the adapter / `DSR_FILE_ENDPOINT`.
    pub fn template(&self) -> String {
        format!("{}/{{account}}", self.server.base_url)
    }

    pub fn create_share(&self, account: &str, share: &str) {
        lock(&self.state.shares)
            .entry((account.into(), share.into()))
            .or_default();
    }

    /// Write a file, creating its directories (as the portal or a compute instance would).
    pub fn put_file(&self, account: &str, share: &str, path: &str, body: &[u8]) {
        let mut shares = lock(&self.state.shares);
        let s = shares.entry((account.into(), share.into())).or_default();
        let mut p = parent(path);
        while !p.is_empty() {
            s.dirs.insert(p.to_string());
            p = parent(p);
        }
        s.files.insert(path.to_string(), body.to_vec());
    }

    /// Take a share snapshot now, named `at` (the service's form is
    /// `2026-11-20T10:00:00.0000000Z`): it keeps the files the share holds at this moment.
    pub fn add_snapshot(&self, account: &str, share: &str, at: &str) {
        if let Some(s) = lock(&self.state.shares).get_mut(&(account.into(), share.into())) {
            let files = s.files.clone();
            s.snapshots.push((at.to_string(), files));
        }
    }

    /// Delete a share snapshot (as an operator or a backup policy would).
    pub fn delete_snapshot(&self, account: &str, share: &str, at: &str) {
        if let Some(s) = lock(&self.state.shares).get_mut(&(account.into(), share.into())) {
            s.snapshots.retain(|(v, _)| v != at);
        }
    }

    pub fn files(&self, account: &str, share: &str) -> Vec<String> {
        lock(&self.state.shares)
            .get(&(account.into(), share.into()))
            .map(|s| s.files.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn dirs(&self, account: &str, share: &str) -> Vec<String> {
        lock(&self.state.shares)
            .get(&(account.into(), share.into()))
            .map(|s| s.dirs.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Largest page the stand-in returns, whatever `maxresults` asks.
    pub fn set_page_cap(&self, n: usize) {
        *lock(&self.state.page_cap) = n.max(1);
    }

    /// The next `n` requests are answered 503 `ServerBusy` with `Retry-After: 1`.
    pub fn set_busy(&self, n: u32) {
        self.state.busy.set(n);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.log.all()
    }
}

fn reply(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let mut all = vec![
        ("x-ms-request-id", request_id()),
        ("x-ms-version", SERVICE_VERSION.to_string()),
        ("date", date),
    ];
    all.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
    for (k, v) in all {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

/// The version the stand-in answers with (what the adapter asks for).
pub const SERVICE_VERSION: &str = "2025-01-05";

fn error(status: u16, code: &str, message: &str, head: bool) -> Response {
    let body = if head {
        Vec::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}\nRequestId:{}\nTime:{}</Message></Error>",
            esc(message),
            request_id(),
            super::server::now_naive()
        )
        .into_bytes()
    };
    let mut headers = vec![
        ("x-ms-error-code", code.to_string()),
        ("content-type", "application/xml".to_string()),
    ];
    if code == "ServerBusy" {
        headers.push(("retry-after", "1".to_string()));
    }
    reply(status, &headers, body)
}

fn handle(st: &State, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let r = answer(st, &method, &uri, &headers);
    st.log.push(Seen::of(
        &method,
        &uri,
        &headers,
        &body,
        r.status().as_u16(),
    ));
    r
}

fn answer(st: &State, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let head = method == Method::HEAD;
    if st.busy.take() {
        return error(
            503,
            "ServerBusy",
            "The server is currently unable to receive requests. Please retry your request.",
            head,
        );
    }
    match check_bearer(headers, &[STORAGE_AUDIENCE]) {
        Ok(_) => {}
        Err(TokenProblem::WrongAudience(_)) | Err(TokenProblem::Invalid(_)) | Err(TokenProblem::Missing) => {
            return error(401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.", head)
        }
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let version = h("x-ms-version");
    if version.is_empty() || version < MIN_OAUTH_VERSION {
        return error(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
            head,
        );
    }
    if h("x-ms-file-request-intent") != "backup" {
        return error(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
            head,
        );
    }
    let q = query_pairs(uri.query());
    let qv = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let mut segs = Vec::new();
    for s in uri.path().split('/').filter(|s| !s.is_empty()) {
        match percent_decode(s) {
            Some(s) => segs.push(s),
            None => {
                return error(
                    400,
                    "InvalidUri",
                    "The requested URI does not represent any resource on the server.",
                    head,
                )
            }
        }
    }
    let Some(account) = segs.first().cloned() else {
        return error(
            400,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
            head,
        );
    };
    let mut shares = lock(&st.shares);
    if segs.len() == 1 {
        if method == Method::GET && qv("comp") == Some("list") {
            return list_shares(
                &shares,
                &account,
                qv("prefix").unwrap_or_default(),
                qv("include").unwrap_or_default(),
            );
        }
        return error(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            head,
        );
    }
    let share_name = segs[1].clone();
    let path = segs[2..].join("/");
    let Some(share) = shares.get_mut(&(account.clone(), share_name.clone())) else {
        return error(
            404,
            "ShareNotFound",
            "The specified share does not exist.",
            head,
        );
    };
    let is_dir = qv("restype") == Some("directory");
    let parent_missing = |s: &Share, p: &str| {
        let par = parent(p);
        !par.is_empty() && !s.dirs.contains(par)
    };
    match (method.clone(), is_dir) {
        (Method::GET, true) if qv("comp") == Some("list") => {
            if !path.is_empty() && !share.dirs.contains(&path) {
                if parent_missing(share, &path) {
                    return error(
                        404,
                        "ParentNotFound",
                        "The specified parent path does not exist.",
                        false,
                    );
                }
                return error(
                    404,
                    "ResourceNotFound",
                    "The specified resource does not exist.",
                    false,
                );
            }
            let max = match qv("maxresults").map(str::parse::<i64>) {
                None => 5000,
                Some(Ok(n)) if n > 0 => n.min(5000) as usize,
                _ => return error(400, "OutOfRangeQueryParameterValue", "One of the query parameters specified in the request URI is outside the permissible range.", false),
            };
            let cap = (*lock(&st.page_cap)).min(max);
            list_dir(share, &account, &share_name, &path, qv("marker"), cap)
        }
        (Method::HEAD, false) | (Method::GET, false) => {
            let snapshot = qv("sharesnapshot");
            let files = match snapshot {
                None => &share.files,
                Some(v) => match share.snapshots.iter().find(|(s, _)| s == v) {
                    Some((_, files)) => files,
                    None => {
                        return error(
                            404,
                            "ShareSnapshotNotFound",
                            "The specified share snapshot does not exist.",
                            head,
                        )
                    }
                },
            };
            let Some(content) = files.get(&path) else {
                if snapshot.is_none() && parent_missing(share, &path) {
                    return error(
                        404,
                        "ParentNotFound",
                        "The specified parent path does not exist.",
                        head,
                    );
                }
                return error(
                    404,
                    "ResourceNotFound",
                    "The specified resource does not exist.",
                    head,
                );
            };
            let len = content.len();
            let base = vec![
                ("content-type", "application/octet-stream".to_string()),
                ("x-ms-type", "File".to_string()),
                ("etag", format!("\"0x{:X}\"", len)),
            ];
            if head {
                let mut r = reply(200, &base, Vec::new());
                if let Ok(v) = axum::http::HeaderValue::from_str(&len.to_string()) {
                    r.headers_mut()
                        .insert(axum::http::header::CONTENT_LENGTH, v);
                }
                return r;
            }
            let range = headers
                .get("x-ms-range")
                .or_else(|| headers.get("range"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            match range {
                None => reply(200, &base, content.clone()),
                Some((a, b)) if a < len && a <= b => {
                    let b = b.min(len - 1);
                    let mut hs = base;
                    hs.push(("content-range", format!("bytes {a}-{b}/{len}")));
                    reply(206, &hs, content[a..=b].to_vec())
                }
                Some(_) => error(
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                    false,
                ),
            }
        }
        (Method::DELETE, false) => {
            if share.files.remove(&path).is_some() {
                reply(202, &[], Vec::new())
            } else if parent_missing(share, &path) {
                error(
                    404,
                    "ParentNotFound",
                    "The specified parent path does not exist.",
                    false,
                )
            } else {
                error(
                    404,
                    "ResourceNotFound",
                    "The specified resource does not exist.",
                    false,
                )
            }
        }
        (Method::DELETE, true) => {
            if path.is_empty() || !share.dirs.contains(&path) {
                return error(
                    404,
                    "ResourceNotFound",
                    "The specified resource does not exist.",
                    false,
                );
            }
            let prefix = format!("{path}/");
            let occupied = share.files.keys().any(|f| f.starts_with(&prefix))
                || share.dirs.iter().any(|d| d.starts_with(&prefix));
            if occupied {
                return error(
                    409,
                    "DirectoryNotEmpty",
                    "The specified directory is not empty.",
                    false,
                );
            }
            share.dirs.remove(&path);
            reply(202, &[], Vec::new())
        }
        _ => error(
            400,
            "UnsupportedHttpVerb",
            "The resource doesn't support the specified HTTP verb.",
            head,
        ),
    }
}

fn list_dir(
    share: &Share,
    account: &str,
    share_name: &str,
    dir: &str,
    marker: Option<&str>,
    cap: usize,
) -> Response {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let direct = |p: &String| {
        p.starts_with(&prefix) && !p[prefix.len()..].contains('/') && p.len() > prefix.len()
    };
    // (name, Some(size) for a file)
    let mut entries: Vec<(String, Option<usize>)> = share
        .files
        .iter()
        .filter(|(p, _)| direct(p))
        .map(|(p, c)| (p[prefix.len()..].to_string(), Some(c.len())))
        .chain(
            share
                .dirs
                .iter()
                .filter(|d| direct(d))
                .map(|d| (d[prefix.len()..].to_string(), None)),
        )
        .collect();
    entries.sort();
    // The marker is opaque to clients; here it is the first name of the next page.
    let start = marker
        .map(|m| {
            entries
                .iter()
                .position(|(n, _)| n.as_str() >= m)
                .unwrap_or(entries.len())
        })
        .unwrap_or(0);
    let page = &entries[start..(start + cap).min(entries.len())];
    let next = entries.get(start + cap).map(|(n, _)| n.clone());
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://127.0.0.1/{}/\" ShareName=\"{}\" DirectoryPath=\"{}\">",
        esc(account), esc(share_name), esc(dir)
    );
    if let Some(m) = marker {
        xml.push_str(&format!("<Marker>{}</Marker>", esc(m)));
    }
    xml.push_str(&format!("<MaxResults>{cap}</MaxResults><Entries>"));
    for (name, size) in page {
        match size {
            Some(n) => xml.push_str(&format!(
                "<File><Name>{}</Name><Properties><Content-Length>{n}</Content-Length></Properties></File>",
                esc(name)
            )),
            None => xml.push_str(&format!("<Directory><Name>{}</Name><Properties /></Directory>", esc(name))),
        }
    }
    xml.push_str("</Entries>");
    match next {
        Some(n) => xml.push_str(&format!("<NextMarker>{}</NextMarker>", esc(&n))),
        None => xml.push_str("<NextMarker />"),
    }
    xml.push_str("</EnumerationResults>");
    reply(
        200,
        &[("content-type", "application/xml".to_string())],
        xml.into_bytes(),
    )
}

fn list_shares(
    shares: &BTreeMap<(String, String), Share>,
    account: &str,
    prefix: &str,
    include: &str,
) -> Response {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://127.0.0.1/{}/\"><Prefix>{}</Prefix><Shares>",
        esc(account),
        esc(prefix)
    );
    let with_snapshots = include.split(',').any(|i| i.trim() == "snapshots");
    for ((a, name), s) in shares {
        if a != account || !name.starts_with(prefix) {
            continue;
        }
        if with_snapshots {
            for (snap, _) in &s.snapshots {
                xml.push_str(&format!("<Share><Name>{}</Name><Snapshot>{}</Snapshot><Properties><Quota>5120</Quota></Properties></Share>", esc(name), esc(snap)));
            }
        }
        xml.push_str(&format!(
            "<Share><Name>{}</Name><Properties><Quota>5120</Quota></Properties></Share>",
            esc(name)
        ));
    }
    xml.push_str("</Shares><NextMarker /></EnumerationResults>");
    reply(
        200,
        &[("content-type", "application/xml".to_string())],
        xml.into_bytes(),
    )
}
