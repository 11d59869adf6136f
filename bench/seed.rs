//! Seeding helpers shared by the scenarios: many blobs at once through the raw client, the
//! subject's blob names, and a workspace's info document for the local control plane.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::raw::Raw;
use crate::{RAW_CONCURRENCY, WS_ACCOUNT};
use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::ports::blob::BlobStore;
use azureml_dsr::ports::control_plane::WorkspaceInfo;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

pub(crate) async fn put_many(
    raw: &Raw,
    account: &str,
    container: &str,
    names: &[String],
    size: usize,
) -> anyhow::Result<()> {
    let body = Bytes::from(vec![b'x'; size]);
    futures::stream::iter(names.iter())
        .map(|n| {
            let body = body.clone();
            async move { raw.put(account, container, n, body).await }
        })
        .buffer_unordered(RAW_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

pub(crate) fn subject_blob(i: usize) -> String {
    format!("ExperimentRun/dcid.alice_job_{i:07}/logs/std_log.txt")
}

pub(crate) async fn seed_workspace_info(
    store: &Arc<dyn BlobStore>,
    ws: &WorkspaceId,
) -> anyhow::Result<()> {
    let info = WorkspaceInfo {
        id: ws.clone(),
        storage_account: WS_ACCOUNT.into(),
        artifact_container: "azureml".into(),
        blobstore_container: "azureml-blobstore-bench".into(),
        file_share: "code-bench".into(),
        app_insights: None,
        log_analytics_workspace: None,
        diagnostic_destinations: vec![],
        diagnostic_settings_error: None,
        key_vault: None,
        tags: BTreeMap::new(),
        location: None,
    };
    LocalControlPlane::new(store.clone())
        .put_workspace(&info)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}
