//! Recoverable copies on Azurite: the blob and its snapshots are named.

use super::*;

/// `AzureBlobStore::recoverable` against Azurite: the live blob and its snapshots are named
/// (the listing with `include=deleted,snapshots,versions`, asked again without `versions` where
/// the emulator refuses it); after a complete delete nothing is. Azurite stores a soft-delete
/// policy but deletes at once, so soft-deleted entries themselves cannot be shown here.
#[tokio::test]
async fn recoverable_on_azurite_names_the_blob_and_its_snapshots() {
    use azure_core::http::{ClientOptions, Url};
    use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
    use azureml_dsr::adapters::azure::shared_key::{SharedKeyCredential, SharedKeyPolicy};

    let az = support::azurite::Azurite::start(&["wsacct1"]);
    let store = AzureBlobStore::azurite(&az.base_url);
    store.create_container("wsacct1", "data").await.unwrap();
    let b = BlobRef::new("wsacct1", "data", "users/u1/a.csv");
    let other = BlobRef::new("wsacct1", "data", "users/u1/a.csv.bak");
    for x in [&b, &other] {
        store
            .put(
                x,
                bytes::Bytes::from_static(b"v1"),
                "text/csv",
                Condition::None,
                &Default::default(),
            )
            .await
            .unwrap();
    }
    let cred = Arc::new(SharedKeyCredential::new("wsacct1", support::azurite::KEY).unwrap());
    let options = BlobServiceClientOptions {
        client_options: ClientOptions {
            per_try_policies: vec![Arc::new(SharedKeyPolicy::new(cred))],
            ..Default::default()
        },
        ..Default::default()
    };
    let raw = BlobServiceClient::new(
        Url::parse(&format!("{}/wsacct1", az.base_url)).unwrap(),
        None,
        Some(options),
    )
    .unwrap();
    raw.blob_client("data", "users/u1/a.csv")
        .create_snapshot(None)
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let left = store.recoverable(&b, now).await.unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|l| l.contains("present again")), "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("snapshot ")), "{left:?}");
    store.delete(&b).await.unwrap();
    let left = store.recoverable(&b, now).await.unwrap();
    assert!(
        left.is_empty(),
        "the other blob sharing the prefix is not this one: {left:?}"
    );
}
