//! Retries: `Retry-After` honoured, bounded, transient only; batch item statuses mapped.

use super::*;

/// A local server that answers `429 Retry-After: <after>` `fail` times, then 201.
async fn flaky_server(
    fail: u32,
    retry_after: &'static str,
) -> (String, Arc<AtomicU32>, Arc<Mutex<Vec<Instant>>>) {
    let hits = Arc::new(AtomicU32::new(0));
    let times = Arc::new(Mutex::new(Vec::new()));
    let (h, t) = (hits.clone(), times.clone());
    let app = axum::Router::new().fallback(move || {
        let (h, t) = (h.clone(), t.clone());
        async move {
            t.lock().unwrap().push(Instant::now());
            let n = h.fetch_add(1, Ordering::SeqCst);
            if n < fail {
                (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", retry_after)],
                )
                    .into_response()
            } else {
                axum::http::StatusCode::CREATED.into_response()
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits, times)
}

#[tokio::test]
async fn retry_honours_retry_after() {
    let (base, hits, times) = flaky_server(1, "1").await;
    let store = AzureBlobStore::azurite(&base);
    store.create_container("acct", "c").await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let t = times.lock().unwrap().clone();
    let gap = t[1] - t[0];
    assert!(
        gap >= StdDuration::from_millis(950),
        "waited {gap:?}, Retry-After said 1s"
    );

    // HTTP-date form.
    let date = azureml_dsr::adapters::azure::shared_key::http_date(
        OffsetDateTime::now_utc() + Duration::seconds(2),
    );
    let (base, hits, times) = flaky_server(1, Box::leak(date.into_boxed_str())).await;
    let store = AzureBlobStore::azurite(&base);
    store.create_container("acct", "c").await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let t = times.lock().unwrap().clone();
    assert!(
        t[1] - t[0] >= StdDuration::from_millis(900),
        "waited {:?}",
        t[1] - t[0]
    );
}

#[tokio::test]
async fn retries_are_bounded_and_transient() {
    let (base, hits, _) = flaky_server(u32::MAX, "0").await;
    let mut cfg = AzureBlobStore::azurite_config(&base);
    cfg.retry = RetryConfig {
        max_retries: 2,
        initial_delay: StdDuration::from_millis(10),
        max_delay: StdDuration::from_millis(20),
        max_total: StdDuration::from_secs(10),
    };
    cfg.versioning = Versioning::Off;
    let store = AzureBlobStore::new(cfg);
    let r = store.create_container("acct", "c").await;
    assert!(matches!(r, Err(StoreError::RetriesSpent { .. })), "{r:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // A refused connection is transient too.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = AzureBlobStore::azurite_config(&format!("http://127.0.0.1:{port}"));
    cfg.retry = RetryConfig {
        max_retries: 1,
        initial_delay: StdDuration::from_millis(10),
        ..RetryConfig::default()
    };
    let r = AzureBlobStore::new(cfg).create_container("acct", "c").await;
    assert!(matches!(r, Err(StoreError::RetriesSpent { .. })), "{r:?}");
}

/// A local server that always answers 503, counting requests.
async fn always_503() -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

/// Each blob operation against a server that always answers 503 is sent exactly the stated
/// budget of times (`TRANSPORT_ATTEMPTS`, the default `max_retries` + 1), whatever retry
/// layers it passes through — also through the chaos suite's retrying wrapper — and fails
/// transient. (A whole-operation retry around a pipeline that already retried made it 49
/// for a listing and hundreds for a delete.)
#[tokio::test]
async fn retry_budget() {
    use azureml_dsr::adapters::azure::retry::TRANSPORT_ATTEMPTS;
    use azureml_dsr::adapters::chaos::RetryingStore;
    let b = BlobRef::new("acct", "c", "users/a.json");
    let names = vec!["users/a.json".to_string(), "users/b.json".to_string()];
    for wrapped in [false, true] {
        for op in ["list_page", "put", "delete", "delete_many"] {
            let (base, hits) = always_503().await;
            let mut cfg = AzureBlobStore::azurite_config(&base);
            // The default budget, with short waits.
            cfg.retry = RetryConfig {
                initial_delay: StdDuration::from_millis(1),
                max_delay: StdDuration::from_millis(5),
                ..RetryConfig::default()
            };
            let azure: Arc<dyn BlobStore> = Arc::new(AzureBlobStore::new(cfg));
            let store: Arc<dyn BlobStore> = if wrapped {
                Arc::new(RetryingStore::new(azure, 4))
            } else {
                azure
            };
            let err = match op {
                "list_page" => store.list_page("acct", "c", "", None, 10).await.err(),
                "put" => store
                    .put(
                        &b,
                        Bytes::from_static(b"{}"),
                        "application/json",
                        Condition::None,
                        &no_meta(),
                    )
                    .await
                    .err(),
                "delete" => store.delete(&b).await.err(),
                _ => store.delete_many("acct", "c", &names).await.err(),
            };
            let err = err.unwrap_or_else(|| panic!("{op} succeeded against 503"));
            assert!(err.is_transient(), "{op}: {err:?}");
            assert_eq!(
                hits.load(Ordering::SeqCst),
                TRANSPORT_ATTEMPTS,
                "{op} (wrapped: {wrapped}) attempts"
            );
        }
    }
}

#[tokio::test]
async fn batch_item_statuses_are_mapped() {
    // A fake batch endpoint answering items out of order with mixed statuses.
    let seen = Arc::new(Mutex::new(String::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let s2 = s2.clone();
        async move {
            *s2.lock().unwrap() = body;
            let part = |id: u32, status: &str| {
                format!("--resp\r\nContent-Type: application/http\r\nContent-ID: {id}\r\n\r\nHTTP/1.1 {status}\r\nx-ms-error-code: E{id}\r\n\r\n")
            };
            let body = [part(3, "500 Internal Server Error"), part(0, "202 Accepted"), part(2, "403 Forbidden"), part(1, "404 Not Found")].concat() + "--resp--\r\n";
            (axum::http::StatusCode::ACCEPTED, [("content-type", "multipart/mixed; boundary=resp")], body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut cfg = AzureBlobStore::azurite_config(&format!("http://{addr}"));
    cfg.retention_override = Some(RetentionPolicy::OFF);
    cfg.versioning = Versioning::Off;
    cfg.retry = RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    };
    let store = AzureBlobStore::new(cfg);
    let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let r = store.delete_many("acct", "c1", &names).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &DeleteOutcome::Deleted);
    assert_eq!(r[1].as_ref().unwrap(), &DeleteOutcome::NotFound);
    assert!(
        matches!(r[2], Err(StoreError::Other(ref m)) if m.contains("403")),
        "{:?}",
        r[2]
    );
    assert!(matches!(r[3], Err(StoreError::Transient(_))), "{:?}", r[3]);
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.matches("DELETE /acct/c1/").count(), 4);
    assert_eq!(sent.matches("x-ms-delete-snapshots: include").count(), 4);
    assert_eq!(
        sent.matches("Authorization: SharedKey acct:").count(),
        4,
        "each sub-request signed"
    );
}
