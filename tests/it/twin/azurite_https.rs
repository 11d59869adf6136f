//! `AzureBlobStore` on Azurite over https with managed-identity bearer tokens.

use super::*;

/// Tokens for one fixed resource whatever is asked (a misconfigured scope).
#[derive(Debug)]
struct FixedAudience(String);

#[async_trait::async_trait]
impl TokenCredential for FixedAudience {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            IdentityStandIn::shared().token_for(&self.0),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

async fn read_all(store: &AzureBlobStore, b: &BlobRef) -> Vec<u8> {
    let mut reader = store.open(b).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = reader.body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn azure_blob_store_on_https_azurite_with_managed_identity_tokens() {
    support::azurite::trust_test_ca();
    let az = support::azurite::Azurite::start_https_oauth(&["dsrstate", "mlwstore0"]);
    assert!(az.base_url.starts_with("https://127.0.0.1:"));
    let template = format!("{}/{{account}}", az.base_url);
    let mut cfg = AzureBlobConfig::new(
        Endpoints::Template(template.clone()),
        Auth::Token(credential()),
    );
    cfg.retry = fast_retry();
    let store = AzureBlobStore::new(cfg);

    // The test itself can still seed with Shared Key (every account has the dev key).
    let seeder = AzureBlobStore::azurite(&az.base_url);
    seeder
        .create_container("mlwstore0", "azureml")
        .await
        .unwrap();
    let seeded = BlobRef::new("mlwstore0", "azureml", "ExperimentRun/dcid.job1/log.txt");
    seeder
        .put(
            &seeded,
            Bytes::from_static(b"seeded"),
            "text/plain",
            Condition::None,
            &Default::default(),
        )
        .await
        .unwrap();

    // Every operation of the production store, with bearer tokens.
    store
        .create_container("dsrstate", "dsr-exports")
        .await
        .unwrap();
    let blob = BlobRef::new("dsrstate", "dsr-exports", "T-1/manifest.json");
    store
        .put(
            &blob,
            Bytes::from_static(b"{\"ok\":true}"),
            "application/json",
            Condition::IfNotExists,
            &Default::default(),
        )
        .await
        .unwrap();
    let again = store
        .put(
            &blob,
            Bytes::from_static(b"x"),
            "application/json",
            Condition::IfNotExists,
            &Default::default(),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{again:?}"
    );
    let page = store
        .list_page("dsrstate", "dsr-exports", "T-1/", None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["T-1/manifest.json"]
    );
    assert_eq!(read_all(&store, &blob).await, b"{\"ok\":true}");
    assert_eq!(read_all(&store, &seeded).await, b"seeded");
    let copy = BlobRef::new("dsrstate", "dsr-exports", "T-1/files/log.txt");
    store.copy(&seeded, &copy).await.unwrap();
    assert_eq!(read_all(&store, &copy).await, b"seeded");

    // Export link: a user delegation SAS (the key fetched with the token), readable by a client
    // that has no credential at all.
    let link = store
        .read_link(&copy, Some(time::Duration::hours(1)))
        .await
        .unwrap();
    let q = link.query().unwrap_or_default().to_string();
    assert!(q.contains("skoid=") && q.contains("sig="), "{link}");
    let anon = azure_core::http::new_http_client(None);
    let rsp = anon
        .execute_request(&azure_core::http::Request::new(
            link.clone(),
            azure_core::http::Method::Get,
        ))
        .await
        .unwrap();
    let raw = rsp.try_into_raw_response().await.unwrap();
    let (status, _, body) = raw.deconstruct();
    assert_eq!(u16::from(status), 200);
    assert_eq!(body.as_ref(), b"seeded");
    // The signature really is checked: a tampered link is refused.
    let tampered = url(&link.as_str().replace("sp=r", "sp=rw"));
    let rsp = anon
        .execute_request(&azure_core::http::Request::new(
            tampered,
            azure_core::http::Method::Get,
        ))
        .await
        .unwrap();
    assert_eq!(u16::from(rsp.status()), 403);

    assert_eq!(store.delete(&copy).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(store.delete(&copy).await.unwrap(), DeleteOutcome::NotFound);
    assert!(matches!(
        store.open(&copy).await,
        Err(StoreError::NotFound(_))
    ));

    // Azurite checks the token's audience: a Graph token is refused.
    let mut cfg = AzureBlobConfig::new(
        Endpoints::Template(template),
        Auth::Token(Arc::new(FixedAudience(
            "https://graph.microsoft.com".into(),
        ))),
    );
    cfg.retry = fast_retry();
    let wrong = AzureBlobStore::new(cfg);
    let err = wrong
        .create_container("dsrstate", "other")
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        format!("{err}").contains("403") || format!("{err}").contains("uthentication"),
        "{err}"
    );
}
