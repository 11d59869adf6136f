//! Conditional writes, containers and metadata, paging, streaming reads and copies on Azurite.

use super::*;

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
