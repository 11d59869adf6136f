//! A control-plane decorator that reads a workspace's description and its asset listings once
//! per process for a short while instead of once per slice invocation (issue 19, calls per
//! request). Without it every slice invocation of a request re-read the workspace (the
//! workspace, its datastores, Application Insights and diagnostic settings: ~5 ARM GETs), and
//! the models and the data slices each listed both asset kinds and the datastores, so a
//! request paid for every listing twice.
//!
//! What is cached, and why that is safe:
//! - `workspace` (the [`WorkspaceInfo`]) for [`WORKSPACE_TTL`]: it names containers, the file
//!   share and telemetry destinations, which change on a time scale of days. Whether the
//!   workspace still exists is asked by `workspace_state`, which is never cached.
//! - `datastores` and `list_all` of model and data versions for [`LISTING_TTL`]: the asset
//!   slices of one request start together, and each needs both kinds (an asset's files are
//!   taken only when no other asset is in or over them). A listing this young is what the
//!   second slice would have read had it been scheduled at the same moment; a `delete` of a
//!   model or data version through this decorator drops that kind's listing at once, so
//!   nothing this process verifies or discovers after a delete reads a listing from before it.
//! - Concurrent callers of one key share one request (single flight); errors are not cached.
//!
//! Everything else (`list` pages, `exists`, `delete`, `deployments`, `workspace_state`) goes
//! straight to the inner adapter: every method of the port is forwarded explicitly, so the
//! decorator cannot fall back to a default and drop the adapter's own behaviour.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::ttl_cache::Slots;
use crate::domain::workspace::WorkspaceId;
use crate::ports::control_plane::{
    ArmKind, ControlPlane, ControlPlaneError, Datastore, ResourceDelete, ResourcePage,
    WorkspaceInfo, WorkspaceState,
};

/// How long a workspace's description is reused.
pub const WORKSPACE_TTL: Duration = Duration::from_secs(120);
/// How long a workspace's datastores and asset listings are reused (unless a delete in the
/// workspace drops them sooner).
pub const LISTING_TTL: Duration = Duration::from_secs(30);

pub struct CachedControlPlane {
    inner: Arc<dyn ControlPlane>,
    workspaces: Slots<WorkspaceInfo>,
    datastores: Slots<Vec<Datastore>>,
    listings: Slots<Vec<Value>>,
}

impl CachedControlPlane {
    pub fn new(inner: Arc<dyn ControlPlane>) -> Self {
        Self::with_ttls(inner, WORKSPACE_TTL, LISTING_TTL)
    }

    pub fn with_ttls(inner: Arc<dyn ControlPlane>, workspace: Duration, listing: Duration) -> Self {
        CachedControlPlane {
            inner,
            workspaces: Slots::new(workspace),
            datastores: Slots::new(listing),
            listings: Slots::new(listing),
        }
    }

    fn key(ws: &WorkspaceId) -> String {
        // ARM ids are case-insensitive.
        format!("{}|", ws.to_string().to_ascii_lowercase())
    }
}

/// The listings both asset slices need; other kinds are read by one slice only.
fn shared_listing(kind: ArmKind) -> bool {
    matches!(kind, ArmKind::ModelVersion | ArmKind::DataVersion)
}

#[async_trait]
impl ControlPlane for CachedControlPlane {
    async fn workspace(&self, ws: &WorkspaceId) -> Result<WorkspaceInfo, ControlPlaneError> {
        self.workspaces
            .get_or_try(&Self::key(ws), || self.inner.workspace(ws))
            .await
    }

    async fn workspace_state(&self, ws: &WorkspaceId) -> Result<WorkspaceState, ControlPlaneError> {
        self.inner.workspace_state(ws).await
    }

    async fn datastores(&self, ws: &WorkspaceId) -> Result<Vec<Datastore>, ControlPlaneError> {
        self.datastores
            .get_or_try(&Self::key(ws), || self.inner.datastores(ws))
            .await
    }

    async fn list(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        next_link: Option<String>,
    ) -> Result<ResourcePage, ControlPlaneError> {
        self.inner.list(ws, kind, next_link).await
    }

    async fn exists(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<bool, ControlPlaneError> {
        self.inner.exists(ws, kind, id).await
    }

    async fn delete(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<ResourceDelete, ControlPlaneError> {
        // Only a listing of the deleted kind changes (a job's delete leaves the model list as
        // it was). Dropped before and after: no listing read while the delete runs outlives it.
        let key = format!("{}{}", Self::key(ws), kind.as_str());
        self.listings.forget_prefix(&key);
        let r = self.inner.delete(ws, kind, id).await;
        self.listings.forget_prefix(&key);
        r
    }

    async fn deployments(&self, ws: &WorkspaceId) -> Result<Vec<Value>, ControlPlaneError> {
        self.inner.deployments(ws).await
    }

    async fn list_all(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
    ) -> Result<Vec<Value>, ControlPlaneError> {
        if !shared_listing(kind) {
            return self.inner.list_all(ws, kind).await;
        }
        let key = format!("{}{}", Self::key(ws), kind.as_str());
        self.listings
            .get_or_try(&key, || self.inner.list_all(ws, kind))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";

    /// Counts the reads that reach it; lists one model version.
    #[derive(Default)]
    struct Counting {
        workspace: AtomicUsize,
        datastores: AtomicUsize,
        lists: AtomicUsize,
        fail_next: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl ControlPlane for Counting {
        async fn workspace(&self, ws: &WorkspaceId) -> Result<WorkspaceInfo, ControlPlaneError> {
            self.workspace.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return Err(ControlPlaneError::Transient("throttled".into()));
            }
            Ok(WorkspaceInfo {
                id: ws.clone(),
                storage_account: "st".into(),
                artifact_container: "azureml".into(),
                blobstore_container: "blobs".into(),
                file_share: "code".into(),
                app_insights: None,
                log_analytics_workspace: None,
                diagnostic_destinations: vec![],
                diagnostic_settings_error: None,
                key_vault: None,
                tags: Default::default(),
                location: None,
            })
        }
        async fn datastores(&self, _: &WorkspaceId) -> Result<Vec<Datastore>, ControlPlaneError> {
            self.datastores.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        }
        async fn list(
            &self,
            _: &WorkspaceId,
            _: ArmKind,
            _: Option<String>,
        ) -> Result<ResourcePage, ControlPlaneError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            Ok(ResourcePage {
                value: vec![serde_json::json!({"id": "m1"})],
                next_link: None,
            })
        }
        async fn exists(
            &self,
            _: &WorkspaceId,
            _: ArmKind,
            _: &str,
        ) -> Result<bool, ControlPlaneError> {
            Ok(false)
        }
        async fn delete(
            &self,
            _: &WorkspaceId,
            _: ArmKind,
            _: &str,
        ) -> Result<ResourceDelete, ControlPlaneError> {
            Ok(ResourceDelete::Deleted)
        }
    }

    fn ws() -> WorkspaceId {
        WorkspaceId::parse(WS).unwrap()
    }

    #[tokio::test]
    async fn concurrent_slices_share_one_read_and_errors_are_not_kept() {
        let inner = Arc::new(Counting::default());
        let cached = CachedControlPlane::new(inner.clone());
        let w = ws();
        let reads = futures::future::join_all((0..6).map(|_| cached.workspace(&w))).await;
        assert!(reads.iter().all(Result::is_ok));
        assert_eq!(inner.workspace.load(Ordering::SeqCst), 1);
        for _ in 0..3 {
            cached.list_all(&w, ArmKind::ModelVersion).await.unwrap();
            cached.list_all(&w, ArmKind::DataVersion).await.unwrap();
            cached.datastores(&w).await.unwrap();
        }
        assert_eq!(inner.lists.load(Ordering::SeqCst), 2);
        assert_eq!(inner.datastores.load(Ordering::SeqCst), 1);
        // Jobs are listed by one slice only: never cached.
        cached.list_all(&w, ArmKind::Job).await.unwrap();
        cached.list_all(&w, ArmKind::Job).await.unwrap();
        assert_eq!(inner.lists.load(Ordering::SeqCst), 4);

        // A failed read is not remembered.
        let other = WorkspaceId::parse(&format!("{}v", WS.trim_end_matches('w'))).unwrap();
        inner.fail_next.store(true, Ordering::SeqCst);
        assert!(cached.workspace(&other).await.is_err());
        assert!(cached.workspace(&other).await.is_ok());
    }

    #[tokio::test]
    async fn a_delete_drops_the_workspaces_listings_and_entries_expire() {
        let inner = Arc::new(Counting::default());
        let cached = CachedControlPlane::with_ttls(
            inner.clone(),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        let w = ws();
        cached.list_all(&w, ArmKind::ModelVersion).await.unwrap();
        cached.list_all(&w, ArmKind::DataVersion).await.unwrap();
        cached
            .delete(&w, ArmKind::ModelVersion, "m1")
            .await
            .unwrap();
        cached.list_all(&w, ArmKind::ModelVersion).await.unwrap();
        assert_eq!(
            inner.lists.load(Ordering::SeqCst),
            3,
            "listing read again after a delete"
        );
        // Deleting a job or a model changes no data listing.
        cached.delete(&w, ArmKind::Job, "j1").await.unwrap();
        cached.list_all(&w, ArmKind::DataVersion).await.unwrap();
        assert_eq!(inner.lists.load(Ordering::SeqCst), 3);

        cached.workspace(&w).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        cached.workspace(&w).await.unwrap();
        assert_eq!(
            inner.workspace.load(Ordering::SeqCst),
            2,
            "read again after the TTL"
        );
    }
}
