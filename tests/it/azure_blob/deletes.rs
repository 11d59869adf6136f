//! Deletes: complete and idempotent, batch deletes with a collateral check, soft-delete policy.

use super::*;

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
