//! One request forwarded to an upstream (Azurite or the local ARM server) by the loopback proxies
//! of the tests (`fault_proxy`) and of the benchmark (its counting proxy, `bench/dsr/count.rs`).
//! Test and benchmark code only: both crates include this file with `#[path]`, so it never ships
//! in the library.
//!
//! The client's `Host` goes upstream unchanged and as `X-Forwarded-Host`: the second makes links
//! the upstream hands out (ARM `nextLink`, operation URLs) lead back through the proxy; the first
//! is what Azurite needs to serve a copy whose source URL names the proxy (it serves a copy only
//! from a source on the host the copy was sent to, and answered every copy through a proxy that
//! replaced `Host` with 404). The answer comes back as a response
//! builder (status and headers) and the whole body, so a proxy can still alter the body (the
//! fault proxy cuts it mid-stream).

use axum::body::{Body, Bytes};
use axum::http::{request, response, HeaderMap, Response, StatusCode};

/// Send `parts` + `body` to `upstream` (scheme, host and port; the request's path and query are
/// kept). `Err` is the response to give when the upstream could not be reached (502).
pub async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    parts: &request::Parts,
    body: Bytes,
) -> Result<(response::Builder, Bytes), Response<Body>> {
    let url = format!(
        "{}{}",
        upstream.trim_end_matches('/'),
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut headers = HeaderMap::new();
    for (k, v) in parts.headers.iter() {
        if k == "host" {
            headers.insert("x-forwarded-host", v.clone());
        }
        if k != "content-length" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let upstream = match client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            let mut bad = Response::new(Body::empty());
            *bad.status_mut() = StatusCode::BAD_GATEWAY;
            return Err(bad);
        }
    };
    let mut builder = Response::builder().status(upstream.status().as_u16());
    for (k, v) in upstream.headers().iter() {
        if k != "transfer-encoding" && k != "connection" {
            builder = builder.header(k, v);
        }
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    Ok((builder, bytes))
}
