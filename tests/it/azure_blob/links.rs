//! SAS links and what request URLs carry (no personal data).

use super::*;

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
