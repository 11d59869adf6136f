//! The `BlobStore` conformance suite (`support::blob_conformance`) on every store, directly and
//! through every decorator: one place per store.

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
