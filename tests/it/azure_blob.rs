//! `AzureBlobStore` against Azurite (started per test by `support::azurite`), plus a tiny local
//! HTTP server for retry behaviour. Workspace accounts and the state account are distinct
//! Azurite accounts, as in production.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use axum::response::IntoResponse;
use azure_core::http::{
    policies::{Policy, PolicyResult},
    ClientOptions, Context, Request, Url,
};
use azure_storage_blob::models::{
    BlobContainerClientListBlobsOptions, BlobServiceProperties, ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
use azureml_dsr::adapters::azure::blob::{
    Auth, AzureBlobStore, RetentionPolicy, SharedKeys, Versioning,
};
use azureml_dsr::adapters::azure::retry::RetryConfig;
use azureml_dsr::adapters::azure::shared_key::{SharedKeyCredential, SharedKeyPolicy};
use azureml_dsr::ports::blob::{
    BlobRef, BlobStore, BlobStoreExt, Condition, DeleteOutcome, StoreError,
};
use base64::Engine as _;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use support::azurite::{Azurite, KEY};
use time::{Duration, OffsetDateTime};

const WS: &str = "wsacct1";
const WS2: &str = "wsacct2";
const STATE: &str = "stateacct";

fn start() -> (Azurite, AzureBlobStore) {
    let az = Azurite::start(&[WS, WS2, STATE]);
    let store = AzureBlobStore::azurite(&az.base_url);
    (az, store)
}

fn no_meta() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// An unconditional write with no metadata, the set-up most tests need.
async fn put(store: &AzureBlobStore, b: &BlobRef, body: Bytes, content_type: &str) {
    store
        .put(b, body, content_type, Condition::None, &no_meta())
        .await
        .unwrap();
}

/// A raw SDK client for an Azurite account, for what the port does not expose (snapshots,
/// service properties) — it also shows the Shared Key policy works as a plain SDK policy.
fn raw_client(az: &Azurite, account: &str) -> BlobServiceClient {
    let cred = Arc::new(SharedKeyCredential::new(account, KEY).unwrap());
    let options = BlobServiceClientOptions {
        client_options: ClientOptions {
            per_try_policies: vec![Arc::new(SharedKeyPolicy::new(cred))],
            ..Default::default()
        },
        ..Default::default()
    };
    let url = Url::parse(&format!("{}/{account}", az.base_url)).unwrap();
    BlobServiceClient::new(url, None, Some(options)).unwrap()
}

async fn put_many(store: &AzureBlobStore, account: &str, container: &str, names: &[String]) {
    futures::stream::iter(names.iter().cloned())
        .map(|n| async move {
            store
                .put(
                    &BlobRef::new(account, container, n.clone()),
                    Bytes::from(n),
                    "text/plain",
                    Condition::None,
                    &no_meta(),
                )
                .await
                .unwrap()
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test]
async fn conditional_writes() {
    let (_az, store) = start();
    store.create_container(STATE, "state").await.unwrap();
    store.create_container(STATE, "state").await.unwrap(); // idempotent
    let b = BlobRef::new(STATE, "state", "requests/r1.json");
    let e1 = store
        .put(
            &b,
            Bytes::from_static(b"{}"),
            "application/json",
            Condition::IfNotExists,
            &no_meta(),
        )
        .await
        .unwrap();
    let again = store
        .put(
            &b,
            Bytes::from_static(b"{}"),
            "application/json",
            Condition::IfNotExists,
            &no_meta(),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{again:?}"
    );
    assert!(!store
        .create_json(&b, &serde_json::json!({"x": 1}))
        .await
        .unwrap());

    let e2 = store
        .put(
            &b,
            Bytes::from_static(b"{\"v\":2}"),
            "application/json",
            Condition::IfMatch(e1.clone()),
            &no_meta(),
        )
        .await
        .unwrap();
    assert_ne!(e1, e2);
    let stale = store
        .put(
            &b,
            Bytes::from_static(b"{\"v\":3}"),
            "application/json",
            Condition::IfMatch(e1),
            &no_meta(),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::ConditionFailed(_))),
        "{stale:?}"
    );
    let (body, etag) = store.read_small(&b).await.unwrap();
    assert_eq!(&body[..], b"{\"v\":2}");
    assert_eq!(etag, e2);
}

#[tokio::test]
async fn containers_and_metadata() {
    let (_az, store) = start();
    for c in ["azureml-blobstore-1", "azureml-2", "other"] {
        store.create_container(WS, c).await.unwrap();
    }
    let mut list = store.list_containers(WS, "azureml").await.unwrap();
    list.sort();
    assert_eq!(list, vec!["azureml-2", "azureml-blobstore-1"]);
    assert!(
        store
            .list_containers(WS2, "azureml")
            .await
            .unwrap()
            .is_empty(),
        "accounts are distinct"
    );

    let meta = BTreeMap::from([("subject".to_string(), "s-1".to_string())]);
    store
        .put(
            &BlobRef::new(WS, "other", "a.txt"),
            Bytes::from_static(b"x"),
            "text/plain",
            Condition::None,
            &meta,
        )
        .await
        .unwrap();
    let items = store.list_all(WS, "other", "").await.unwrap();
    assert_eq!(items[0].metadata, meta);
    assert_eq!(items[0].content_type.as_deref(), Some("text/plain"));

    assert_eq!(
        store.delete_container(WS, "other").await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        store.delete_container(WS, "other").await.unwrap(),
        DeleteOutcome::NotFound
    );
    let missing = store.open(&BlobRef::new(WS, "nope", "x")).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));

    // Azurite checks the signature: a wrong key is refused, so the tests above really sign.
    let wrong = base64::engine::general_purpose::STANDARD.encode([9u8; 64]);
    let mut cfg = AzureBlobStore::azurite_config(&_az.base_url);
    cfg.auth = Auth::SharedKey(SharedKeys::single(WS, wrong));
    let r = AzureBlobStore::new(cfg)
        .create_container(WS, "wrongkey")
        .await;
    assert!(
        matches!(r, Err(StoreError::Other(ref m)) if m.contains("403")),
        "{r:?}"
    );
}

#[tokio::test]
async fn list_paging_with_small_pages() {
    let (_az, store) = start();
    store.create_container(WS, "data").await.unwrap();
    let names: Vec<String> = (0..230).map(|i| format!("users/u1/{i:04}.json")).collect();
    put_many(&store, WS, "data", &names).await;
    put_many(&store, WS, "data", &["users/u2/x.json".to_string()]).await;

    let mut seen = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_page(WS, "data", "users/u1/", marker, 100)
            .await
            .unwrap();
        assert!(page.items.len() <= 100);
        pages += 1;
        seen.extend(page.items.into_iter().map(|i| i.name));
        match page.next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, names,
        "all blobs of the prefix, in name order, nothing else"
    );
}

#[tokio::test]
async fn streaming_read_of_a_large_blob() {
    let (_az, store) = start();
    store.create_container(WS, "data").await.unwrap();
    let data: Vec<u8> = (0..(9 * 1024 * 1024 + 123))
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let b = BlobRef::new(WS, "data", "big.bin");
    put(
        &store,
        &b,
        Bytes::from(data.clone()),
        "application/octet-stream",
    )
    .await;

    let mut reader = store.open(&b).await.unwrap();
    assert_eq!(reader.props.size, data.len() as u64);
    let mut hasher = Sha256::new();
    let (mut total, mut chunks, mut largest) = (0usize, 0usize, 0usize);
    while let Some(chunk) = reader.body.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        chunks += 1;
        largest = largest.max(chunk.len());
        hasher.update(&chunk);
    }
    assert_eq!(total, data.len());
    assert_eq!(hasher.finalize()[..], Sha256::digest(&data)[..]);
    assert!(chunks > 1, "delivered in chunks");
    assert!(
        largest <= 4 * 1024 * 1024,
        "no chunk larger than a partition ({largest})"
    );
}

#[tokio::test]
async fn copy_within_and_across_accounts() {
    let (_az, store) = start();
    store.create_container(WS, "data").await.unwrap();
    store.create_container(STATE, "exports").await.unwrap();
    let src = BlobRef::new(WS, "data", "users/u1/model weights.bin");
    let body = Bytes::from(vec![7u8; 300_000]);
    put(&store, &src, body.clone(), "application/octet-stream").await;

    let same = BlobRef::new(WS, "data", "copy/one.bin");
    store.copy(&src, &same).await.unwrap();
    assert_eq!(store.read_small(&same).await.unwrap().0, body);

    let other = BlobRef::new(STATE, "exports", "req-1/users/u1/model weights.bin");
    store.copy(&src, &other).await.unwrap();
    assert_eq!(store.read_small(&other).await.unwrap().0, body);

    let missing = store.copy(&BlobRef::new(WS, "data", "absent"), &same).await;
    assert!(missing.is_err());
}

#[tokio::test]
async fn delete_is_complete_and_idempotent() {
    let (az, store) = start();
    store.create_container(WS, "data").await.unwrap();
    let b = BlobRef::new(WS, "data", "users/u1/a.csv");
    put(&store, &b, Bytes::from_static(b"v1"), "text/csv").await;

    // Two snapshots, through the plain SDK.
    let raw = raw_client(&az, WS);
    let bc = raw.blob_client("data", "users/u1/a.csv");
    bc.create_snapshot(None).await.unwrap();
    bc.create_snapshot(None).await.unwrap();
    assert_eq!(snapshots_of(&raw, "data", "users/u1/a.csv").await, 3);

    assert_eq!(store.delete(&b).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(
        snapshots_of(&raw, "data", "users/u1/a.csv").await,
        0,
        "snapshots removed too"
    );
    assert!(matches!(store.open(&b).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.delete(&b).await.unwrap(), DeleteOutcome::NotFound);
}

/// Entries (base + snapshots + versions) named `name`.
async fn snapshots_of(raw: &BlobServiceClient, container: &str, name: &str) -> usize {
    let options = BlobContainerClientListBlobsOptions {
        prefix: Some(name.to_string()),
        include: Some(vec![ListBlobsIncludeItem::Snapshots]),
        ..Default::default()
    };
    let pages = raw
        .blob_container_client(container)
        .list_blobs(Some(options))
        .unwrap()
        .into_pages();
    let pages: Vec<_> = pages.try_collect().await.unwrap();
    pages
        .into_iter()
        .flat_map(|p| p.into_model().unwrap().blob_items)
        .filter(|i| i.name.as_deref() == Some(name))
        .count()
}

#[tokio::test]
async fn delete_many_in_batches_with_collateral_check() {
    let (_az, store) = start();
    store.create_container(WS, "data").await.unwrap();
    let targets: Vec<String> = (0..600).map(|i| format!("users/u1/f{i:04}")).collect();
    let existing: Vec<String> = targets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 150 != 7)
        .map(|(_, n)| n.clone())
        .collect();
    assert_eq!(existing.len(), 596);
    put_many(&store, WS, "data", &existing).await;
    // Bystanders: other prefixes, and a name that extends a target name.
    let bystanders: Vec<String> = (0..20)
        .map(|i| format!("users/u2/f{i:04}"))
        .chain(["users/u1/f0001.bak".to_string()])
        .collect();
    put_many(&store, WS, "data", &bystanders).await;
    let before: BTreeMap<String, String> = store
        .list_all(WS, "data", "users/u2/")
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.etag))
        .collect();

    let outcomes = store.delete_many(WS, "data", &targets).await.unwrap();
    assert_eq!(outcomes.len(), 600);
    for (i, o) in outcomes.iter().enumerate() {
        let want = if i % 150 == 7 {
            DeleteOutcome::NotFound
        } else {
            DeleteOutcome::Deleted
        };
        assert_eq!(o.as_ref().unwrap(), &want, "item {i}");
    }
    assert_eq!(
        store
            .list_all(WS, "data", "users/u1/")
            .await
            .unwrap()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        vec!["users/u1/f0001.bak"]
    );
    let after: BTreeMap<String, String> = store
        .list_all(WS, "data", "users/u2/")
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.etag))
        .collect();
    assert_eq!(before, after, "other blobs untouched");
}

#[tokio::test]
async fn soft_delete_policy_is_reported() {
    let (az, store) = start();
    let raw = raw_client(&az, WS2);
    let props = BlobServiceProperties {
        delete_retention_policy: Some(azure_storage_blob::models::RetentionPolicy {
            enabled: Some(true),
            days: Some(3),
            allow_permanent_delete: None,
        }),
        ..Default::default()
    };
    raw.set_properties(props.try_into().unwrap(), None)
        .await
        .unwrap();
    let read_back = raw
        .get_properties(None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let policy = read_back
        .delete_retention_policy
        .expect("Azurite keeps the DeleteRetentionPolicy");
    assert_eq!((policy.enabled, policy.days), (Some(true), Some(3)));

    store.create_container(WS2, "data").await.unwrap();
    store.create_container(WS, "data").await.unwrap();
    let b = BlobRef::new(WS2, "data", "x");
    put(&store, &b, Bytes::from_static(b"x"), "text/plain").await;
    let t0 = OffsetDateTime::now_utc();
    match store.delete(&b).await.unwrap() {
        DeleteOutcome::Retained { until } => {
            let d = until - t0;
            assert!(
                d >= Duration::days(3) - Duration::seconds(5)
                    && d <= Duration::days(3) + Duration::seconds(60),
                "{d}"
            );
        }
        other => panic!("expected Retained, got {other:?}"),
    }
    // Batch path reports the same; a missing blob is still NotFound.
    put(&store, &b, Bytes::from_static(b"x"), "text/plain").await;
    let r = store
        .delete_many(WS2, "data", &["x".to_string(), "y".to_string()])
        .await
        .unwrap();
    assert!(matches!(r[0], Ok(DeleteOutcome::Retained { .. })), "{r:?}");
    assert!(matches!(r[1], Ok(DeleteOutcome::NotFound)), "{r:?}");
    // The policy is per account: the other workspace account has none.
    let c = BlobRef::new(WS, "data", "x");
    put(&store, &c, Bytes::from_static(b"x"), "text/plain").await;
    assert_eq!(store.delete(&c).await.unwrap(), DeleteOutcome::Deleted);
}

#[tokio::test]
async fn sas_link_reads_without_credential_and_expires() {
    let (_az, store) = start();
    store.create_container(STATE, "exports").await.unwrap();
    let b = BlobRef::new(STATE, "exports", "req-1/users/u1/data file.json");
    put(
        &store,
        &b,
        Bytes::from_static(b"{\"a\":1}"),
        "application/json",
    )
    .await;
    let http = reqwest::Client::new();

    let link = store.read_link(&b, None).await.unwrap();
    let se = link
        .query_pairs()
        .find(|(k, _)| k == "se")
        .unwrap()
        .1
        .to_string();
    let se = OffsetDateTime::parse(&se, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(
        se - OffsetDateTime::now_utc() <= Duration::days(7),
        "capped at 7 days"
    );
    let r = http.get(link.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"{\"a\":1}");
    let w = http
        .put(link)
        .header("x-ms-blob-type", "BlockBlob")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(w.status(), 403, "read-only");

    let links = store
        .prefix_read_links(STATE, "exports", "req-1/", Some(Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        http.get(links[0].1.clone()).send().await.unwrap().status(),
        200
    );

    let short = store
        .read_link(&b, Some(Duration::seconds(2)))
        .await
        .unwrap();
    assert_eq!(http.get(short.clone()).send().await.unwrap().status(), 200);
    tokio::time::sleep(StdDuration::from_secs(4)).await;
    assert_eq!(
        http.get(short).send().await.unwrap().status(),
        403,
        "expired link rejected"
    );
}

/// Records every request URL (each try).
#[derive(Debug, Default)]
struct UrlLog(Mutex<Vec<String>>);

#[async_trait]
impl Policy for UrlLog {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        self.0.lock().unwrap().push(request.url().to_string());
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[tokio::test]
async fn request_urls_carry_no_personal_data() {
    let az = Azurite::start(&[WS, STATE]);
    let log = Arc::new(UrlLog::default());
    let mut cfg = AzureBlobStore::azurite_config(&az.base_url);
    cfg.extra_policies.push(log.clone());
    let store = AzureBlobStore::new(cfg);
    // Personal data lives in bodies and metadata; names are opaque ids.
    let pii = "alice.smith@example.com";
    let meta = BTreeMap::from([("subject".to_string(), pii.to_string())]);
    store.create_container(WS, "data").await.unwrap();
    store.create_container(STATE, "exports").await.unwrap();
    let b = BlobRef::new(WS, "data", "users/5f1c/a.json");
    store
        .put(
            &b,
            Bytes::from(format!("{{\"email\":\"{pii}\"}}")),
            "application/json",
            Condition::None,
            &meta,
        )
        .await
        .unwrap();
    store.list_all(WS, "data", "users/5f1c/").await.unwrap();
    store.read_small(&b).await.unwrap();
    store
        .copy(&b, &BlobRef::new(STATE, "exports", "r1/a.json"))
        .await
        .unwrap();
    store
        .delete_many(WS, "data", &["users/5f1c/a.json".to_string()])
        .await
        .unwrap();
    store
        .delete(&BlobRef::new(STATE, "exports", "r1/a.json"))
        .await
        .unwrap();

    let urls = log.0.lock().unwrap().clone();
    assert!(urls.len() >= 7, "{urls:?}");
    for u in &urls {
        let lower = u.to_lowercase();
        for bad in ["alice", "example.com", "%40", "@", "email"] {
            assert!(!lower.contains(bad), "{u} contains {bad}");
        }
        assert!(
            !lower.contains("sig="),
            "no SAS signature in a logged URL: {u}"
        );
    }
}

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

/// The `BlobStore` conformance suite (`support::blob_conformance`) on every store, directly and
/// through every decorator: one place per store.
mod conformance {
    use std::sync::Arc;

    use azureml_dsr::adapters::azure::blob::AzureBlobStore;
    use azureml_dsr::adapters::chaos::{FaultyStore, RetryingStore};
    use azureml_dsr::adapters::counting::CountingStore;
    use azureml_dsr::adapters::local::fs_blob::FsBlobStore;
    use azureml_dsr::adapters::local::memory_blob::MemoryBlobStore;
    use azureml_dsr::ports::blob::BlobStore;

    use crate::support::azurite::Azurite;
    use crate::support::blob_conformance::{forwarding, run_all, Target};

    /// Each decorator of the product around `inner` (the chaos pair with no faults injected).
    fn decorated(inner: Arc<dyn BlobStore>) -> Vec<(&'static str, Arc<dyn BlobStore>)> {
        vec![
            ("counting", Arc::new(CountingStore::new(inner.clone()))),
            (
                "chaos",
                Arc::new(RetryingStore::new(
                    Arc::new(FaultyStore::new(inner, 0.0, 1)),
                    4,
                )),
            ),
        ]
    }

    async fn direct_and_decorated(inner: Arc<dyn BlobStore>, account: &str, links: bool) {
        run_all(&Target {
            store: inner.as_ref(),
            account,
            container: "conf-direct",
            links,
        })
        .await;
        for (name, store) in decorated(inner) {
            let container = format!("conf-{name}");
            run_all(&Target {
                store: store.as_ref(),
                account,
                container: &container,
                links,
            })
            .await;
        }
    }

    #[tokio::test]
    async fn file_store() {
        let dir = tempfile::tempdir().unwrap();
        direct_and_decorated(Arc::new(FsBlobStore::new(dir.path())), "confacct", false).await;
    }

    #[tokio::test]
    async fn memory_store() {
        direct_and_decorated(Arc::new(MemoryBlobStore::new()), "confacct", false).await;
    }

    #[tokio::test]
    async fn azure_store_on_azurite() {
        let az = Azurite::start(&["confacct"]);
        direct_and_decorated(
            Arc::new(AzureBlobStore::azurite(&az.base_url)),
            "confacct",
            true,
        )
        .await;
    }

    #[tokio::test]
    async fn decorators_forward_every_method() {
        forwarding("counting", |s| Arc::new(CountingStore::new(s))).await;
        forwarding("faulty", |s| Arc::new(FaultyStore::new(s, 0.0, 1))).await;
        forwarding("retrying", |s| Arc::new(RetryingStore::new(s, 4))).await;
    }
}
