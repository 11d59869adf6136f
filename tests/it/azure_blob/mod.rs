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

mod conformance;
mod deletes;
mod links;
mod retries;
mod store_ops;
