//! Plumbing shared by the stand-ins: an axum router served on 127.0.0.1 from its own thread and
//! tokio runtime (so it outlives any one test's runtime and can serve a child process), a log of
//! the requests it saw, and small reply helpers.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// A server on `127.0.0.1:<port>` running on a dedicated thread; stopped when dropped.
pub struct BackgroundServer {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Serve `app` on a free loopback port. Panics only when no socket can be bound (test setup).
    pub fn start(name: &str, app: axum::Router) -> BackgroundServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = std_listener.local_addr().expect("local addr").port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("stand-in {name}"))
            .spawn(move || {
                // Two workers: a slow request (a held purge, a test's Retry-After) must not stall
                // the others, and the child handler may call several services at once.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("stand-in runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                    tokio::select! {
                        r = axum::serve(listener, app) => {
                            if let Err(e) = r { eprintln!("stand-in server stopped: {e}"); }
                        }
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime cancels open connections.
                rt.shutdown_background();
            })
            .expect("spawn stand-in thread");
        BackgroundServer {
            base_url: format!("http://127.0.0.1:{port}"),
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request as a stand-in saw it (for assertions on what the production adapter sent).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path as sent (percent-encoded).
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names lower-cased (hyper normalises them).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the stand-in answered.
    pub status: u16,
}

impl Seen {
    /// The log entry of a request a stand-in answered with `status`: the one way every stand-in
    /// records what it saw.
    pub fn of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], status: u16) -> Seen {
        Seen {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: query_pairs(uri.query()),
            headers: header_pairs(headers),
            body: body.to_vec(),
            status,
        }
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A shared request log.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn push(&self, s: Seen) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }
    /// Answer a request with `answer` (given its query pairs) and record it with the status
    /// answered: the one shape of the stand-ins' handlers (Graph, run history, Log Analytics).
    pub fn answered(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        answer: impl FnOnce(&[(String, String)]) -> Response,
    ) -> Response {
        let resp = answer(&query_pairs(uri.query()));
        self.push(Seen::of(method, uri, headers, body, resp.status().as_u16()));
        resp
    }

    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// `%XX` decoding of one path segment; `None` for invalid UTF-8 (answered with 400).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A JSON reply with extra headers.
pub fn json_reply(status: u16, headers: &[(&str, String)], body: &serde_json::Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body.clone()),
    )
        .into_response();
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

/// A reply with a body of a given content type.
pub fn text_reply(status: u16, content_type: &str, body: String) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, v);
    }
    r
}

/// A request id in the services' GUID form.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Current UTC time as the services print it in error bodies (`2026-01-01T00:00:00`).
pub fn now_naive() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// A countdown of injected faults: `take()` is true while faults remain.
#[derive(Default)]
pub struct Faults(Mutex<u32>);

impl Faults {
    pub fn set(&self, n: u32) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }
    pub fn take(&self) -> bool {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *g > 0 {
            *g -= 1;
            true
        } else {
            false
        }
    }
}
