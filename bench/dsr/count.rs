//! The counters of a whole-request run: a counting proxy in front of Azurite (by account and
//! billing class, batch sub-requests and every deleted path too), the local ARM server with a
//! request count, and an invoker that counts function invocations and how many ran at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Response};
use azureml_dsr::adapters::counting_ports::Tally;
use azureml_dsr::startup::Invoker;

// ---------------------------------------------------------------------------------------------
// counting proxy in front of Azurite

#[derive(Default)]
pub struct StorageCounts(
    Mutex<BTreeMap<(String, String), u64>>,
    /// `account/container/blob` of every delete sent (single or in a batch) -> times sent.
    Mutex<BTreeMap<String, u64>>,
);

impl StorageCounts {
    fn add(&self, account: &str, kind: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((account.to_string(), kind.to_string()))
                .or_default() += n;
        }
    }
    fn deleted(&self, account: &str, path: &str) {
        // `/account/container/blob` (path style) or `/container/blob`, without the query.
        let path = path.split('?').next().unwrap_or_default();
        let path = azureml_dsr::adapters::percent_decode(path);
        let rest = path.trim_start_matches('/');
        let rest = rest.strip_prefix(&format!("{account}/")).unwrap_or(rest);
        if let Ok(mut m) = self.1.lock() {
            *m.entry(format!("{account}/{rest}")).or_default() += 1;
        }
    }
    pub fn take_deleted(&self) -> BTreeMap<String, u64> {
        self.1
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
    pub fn take(&self) -> BTreeMap<(String, String), u64> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

pub struct CountProxy {
    pub base_url: String,
    pub counts: Arc<StorageCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    counts: Arc<StorageCounts>,
}

pub async fn start_proxy(upstream: &str) -> anyhow::Result<CountProxy> {
    let counts = Arc::new(StorageCounts::default());
    let st = Arc::new(ProxyState {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        counts: counts.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(proxy).with_state(st);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(CountProxy {
        base_url,
        counts,
        task,
    })
}

/// The billing class of one Blob request (Azure bills a batch's sub-requests one by one).
fn classify(method: &str, query: &str, headers: &HeaderMap) -> &'static str {
    let q = |k: &str| query.split('&').any(|p| p.eq_ignore_ascii_case(k));
    match method {
        "GET" | "HEAD" if q("comp=list") => "list",
        "GET" | "HEAD" => "read",
        "PUT" if headers.contains_key("x-ms-copy-source") => "copy",
        "PUT" => "write",
        "DELETE" => "delete",
        "POST" if q("comp=batch") => "batch",
        _ => "other",
    }
}

async fn proxy(State(s): State<Arc<ProxyState>>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path();
    let account = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let kind = classify(
        parts.method.as_str(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
    );
    // Azurite checks a copy's source with its own HEAD (axios) through the proxy: Azure reads
    // the source inside the one Copy Blob transaction, so that HEAD is not counted.
    let azurite_own = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("axios"));
    if !azurite_own {
        s.counts.add(&account, kind, 1);
    }
    if kind == "batch" {
        // Each sub-request is a line `DELETE /<container>/<blob> HTTP/1.1` after its part headers.
        let text = String::from_utf8_lossy(&body);
        let mut subs = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("DELETE ") {
                subs += 1;
                s.counts
                    .deleted(&account, rest.split(' ').next().unwrap_or_default());
            }
        }
        s.counts.add(&account, "batch_subrequest", subs);
    }
    if kind == "delete" {
        s.counts.deleted(&account, parts.uri.path());
    }
    match crate::forward::forward(&s.client, &s.upstream, &parts, body).await {
        Ok((builder, bytes)) => builder.body(Body::from(bytes)).unwrap_or_default(),
        Err(bad_gateway) => bad_gateway,
    }
}

// ---------------------------------------------------------------------------------------------
// ARM server with a request count

pub struct ArmCounts(pub Mutex<BTreeMap<String, u64>>);

pub async fn start_arm(
    store: Arc<dyn azureml_dsr::ports::blob::BlobStore>,
) -> anyhow::Result<(String, Arc<ArmCounts>, tokio::task::JoinHandle<()>)> {
    use azureml_dsr::adapters::local::arm_server::{router, ArmServerOptions};
    let counts = Arc::new(ArmCounts(Mutex::new(BTreeMap::new())));
    let c = counts.clone();
    let app = router(
        store,
        ArmServerOptions {
            // One status poll per delete (the operation is done when first polled).
            lro_polls: 0,
            ..Default::default()
        },
    )
    .layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let c = c.clone();
            async move {
                let what = if req.uri().path().contains("/mfeOperation") {
                    "GET operation poll".to_string()
                } else if req.method() == axum::http::Method::GET && is_collection(req.uri().path())
                {
                    "GET list page".to_string()
                } else {
                    format!("{} other", req.method())
                };
                if let Ok(mut m) = c.0.lock() {
                    *m.entry(what).or_default() += 1;
                }
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, counts, task))
}

/// A collection path (`…/workspaces/<ws>/jobs`, `…/models`, `…/models/<m>/versions`, …): an
/// even number of segments after the workspace's eight.
fn is_collection(path: &str) -> bool {
    let n = path.trim_matches('/').split('/').count();
    n > 8 && (n - 8) % 2 == 1
}

// ---------------------------------------------------------------------------------------------
// the child: the local runtime with counting ports, one request, then peak RSS

pub(super) struct CountingInvoker {
    pub(super) inner: Arc<dyn Invoker>,
    pub(super) tally: Tally,
    pub(super) running: AtomicUsize,
    pub(super) peak: AtomicUsize,
    /// Per slice invocation: (function, ms).
    pub(super) slices: Mutex<Vec<(String, f64)>>,
}

#[async_trait::async_trait]
impl Invoker for CountingInvoker {
    fn functions(&self) -> Vec<String> {
        self.inner.functions()
    }
    async fn invoke(
        &self,
        function: &str,
        ctx: azureml_dsr::startup::InvocationContext,
        req: azureml_dsr::protocol::envelope::InvocationRequest,
    ) -> Result<
        azureml_dsr::protocol::envelope::InvocationResponse,
        azureml_dsr::startup::InvokeError,
    > {
        self.tally.add(&format!("invocation:{function}"), 1);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let t = Instant::now();
        let r = self.inner.invoke(function, ctx, req).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.tally
            .add("invocation_us", t.elapsed().as_micros() as u64);
        if function.starts_with("slice") {
            if let Ok(mut s) = self.slices.lock() {
                s.push((function.to_string(), t.elapsed().as_secs_f64() * 1e3));
            }
        }
        r
    }
}
