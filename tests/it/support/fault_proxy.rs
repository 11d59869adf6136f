//! A fault-injecting HTTP proxy on 127.0.0.1 in front of Azurite or the local ARM server: a
//! seeded fraction of requests is answered 429 (with `Retry-After`), 500 or 503 without reaching
//! the upstream, or forwarded and then cut off mid-body (the effect happened, the response is
//! lost), plus an optional burst of throttling at the start. The client's `Host` goes upstream
//! unchanged and as `X-Forwarded-Host`, so links the upstream hands out (ARM `nextLink`, operation URLs) lead back
//! through the proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Response, StatusCode};
use rand::{Rng, SeedableRng};

pub struct FaultProxy {
    pub base_url: String,
    pub faults: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: String,
    rate: f64,
    burst: u64,
    rng: Mutex<rand::rngs::StdRng>,
    client: reqwest::Client,
    faults: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

pub async fn start(upstream: &str, rate: f64, burst: u64, seed: u64) -> FaultProxy {
    let faults = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        upstream: upstream.trim_end_matches('/').to_string(),
        rate,
        burst,
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
        client: reqwest::Client::new(),
        faults: faults.clone(),
        requests: requests.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(proxy).with_state(shared);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FaultProxy {
        base_url,
        faults,
        requests,
        task,
    }
}

enum Fault {
    None,
    Status(u16),
    CutBody,
}

async fn proxy(State(s): State<Arc<Shared>>, req: Request) -> Response<Body> {
    let n = s.requests.fetch_add(1, Ordering::Relaxed);
    let fault = if n < s.burst {
        Fault::Status(429)
    } else {
        let mut rng = s.rng.lock().unwrap();
        if rng.gen::<f64>() < s.rate {
            match rng.gen_range(0..4) {
                0 => Fault::Status(429),
                1 => Fault::Status(500),
                2 => Fault::Status(503),
                _ => Fault::CutBody,
            }
        } else {
            Fault::None
        }
    };
    if let Fault::Status(code) = fault {
        s.faults.fetch_add(1, Ordering::Relaxed);
        return Response::builder()
            .status(code)
            .header("retry-after", "1")
            .header(
                "x-ms-error-code",
                if code == 429 {
                    "ServerBusy"
                } else {
                    "InternalError"
                },
            )
            .body(Body::from("injected fault"))
            .unwrap();
    }
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let url = format!(
        "{}{}",
        s.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut headers = HeaderMap::new();
    for (k, v) in parts.headers.iter() {
        if k == "host" {
            // Kept as well: Azurite serves a copy only when its source names the host the copy
            // was sent to (the proxy), and answered every copy through the proxy 404 without it.
            headers.insert("x-forwarded-host", v.clone());
            headers.insert(k.clone(), v.clone());
        } else if k != "content-length" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let upstream = match s
        .client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::empty())
                .unwrap()
        }
    };
    let status = upstream.status();
    let mut builder = Response::builder().status(status.as_u16());
    for (k, v) in upstream.headers().iter() {
        if k != "transfer-encoding" && k != "connection" {
            builder = builder.header(k, v);
        }
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    if let Fault::CutBody = fault {
        s.faults.fetch_add(1, Ordering::Relaxed);
        // Announce the full length, send half, then fail the stream: the client sees the
        // connection drop mid-body after Azurite already applied the request.
        let half = bytes.slice(..bytes.len() / 2);
        let stream = futures::stream::iter(vec![
            Ok::<Bytes, std::io::Error>(half),
            Err(std::io::Error::other("cut")),
        ]);
        return builder
            .header("content-length", bytes.len().max(1))
            .body(Body::from_stream(stream))
            .unwrap();
    }
    builder.body(Body::from(bytes)).unwrap()
}
