//! Configuration from the environment (Functions app settings, or the local runtime), and the
//! wiring of ports to adapters. Nothing connects eagerly: adapters are built on first use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::adapters::local::control_plane::LocalControlPlane;
use crate::adapters::local::directory::FileDirectory;
use crate::adapters::local::fs_blob::FsBlobStore;
use crate::adapters::local::telemetry::LocalTelemetry;
use crate::domain::holds::HoldSet;
use crate::functions::{Services, Settings};
use crate::ports::blob::BlobStore;
use crate::ports::bus::MessageBus;

/// Local data folder layout (`DSR_DATA_DIR`, default `.dsr`).
#[derive(Debug, Clone)]
pub struct LocalPaths {
    pub root: PathBuf,
}

impl LocalPaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn from_env() -> Self {
        Self::new(std::env::var("DSR_DATA_DIR").unwrap_or_else(|_| ".dsr".into()))
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn queue(&self) -> PathBuf {
        self.root.join("queue.sqlite")
    }
    pub fn directory(&self) -> PathBuf {
        self.root.join("directory.json")
    }
    pub fn holds(&self) -> PathBuf {
        self.root.join("holds.json")
    }
    pub fn workspaces(&self) -> PathBuf {
        self.root.join("workspaces.json")
    }
    pub fn truth(&self) -> PathBuf {
        self.root.join("seed-truth.json")
    }
}

pub fn settings_from_env() -> Settings {
    let mut s = Settings::default();
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Ok(a) = std::env::var("DSR_STATE_ACCOUNT") {
        s.state_account = a;
    } else if let Some(a) = std::env::var("DSR_STATE_ACCOUNT_URL")
        .ok()
        .as_deref()
        .and_then(account_from_url)
    {
        // The infrastructure sets the state account's blob endpoint.
        s.state_account = a;
    }
    if let Some(n) = num("DSR_MAX_DELIVERY_COUNT") {
        s.max_delivery_count = n.max(1) as u32;
    }
    if let Some(n) = num("DSR_CHUNK_SIZE") {
        s.chunk_size = n.max(1);
    }
    if let Some(n) = num("DSR_EXPORT_LINK_DAYS") {
        s.export_link_days = n.clamp(1, 7) as i64;
    }
    if let Some(n) = num("DSR_RETENTION_DAYS") {
        s.retention_days = n.max(1) as u32;
    }
    if let Some(n) = num("DSR_WORKSPACE_SOFT_DELETE_DAYS") {
        s.workspace_soft_delete_days = n.clamp(0, 14) as u32;
    }
    s.retention_dry_run = std::env::var("DSR_RETENTION_DRY_RUN")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    if let Some(n) = num("DSR_CONCURRENCY") {
        s.concurrency = n.clamp(1, 256);
    }
    s
}

pub fn load_holds(path: &Path) -> anyhow::Result<HoldSet> {
    match std::fs::read(path) {
        Ok(b) => {
            Ok(serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HoldSet::default()),
        Err(e) => Err(e.into()),
    }
}

/// Services on local adapters, with the given store and bus.
pub fn local_services(
    paths: &LocalPaths,
    store: Arc<dyn BlobStore>,
    bus: Arc<dyn MessageBus>,
    settings: Settings,
) -> anyhow::Result<Services> {
    Ok(Services {
        control: Arc::new(LocalControlPlane::new(store.clone())),
        telemetry: Arc::new(LocalTelemetry::new(store.clone())),
        directory: Arc::new(FileDirectory::new(paths.directory())),
        holds: load_holds(&paths.holds())?,
        scope: load_scope(&paths.workspaces())?,
        store,
        bus,
        settings,
        state_containers: Default::default(),
    })
}

pub fn local_store(paths: &LocalPaths) -> Arc<dyn BlobStore> {
    Arc::new(FsBlobStore::new(paths.store()))
}

/// Workspaces in scope of retention sweeps: `DSR_WORKSPACES` (a JSON array of ARM ids, as set by
/// the infrastructure), else `workspaces.json` in the data folder.
pub fn load_scope(path: &Path) -> anyhow::Result<Vec<crate::domain::workspace::WorkspaceId>> {
    let text = match std::env::var("DSR_WORKSPACES") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        },
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("workspaces in scope must be a JSON array of workspace ARM ids: {e}")
    })
}

/// `https://<account>.blob.core.windows.net/` -> `<account>`.
pub fn account_from_url(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    let account = host.split('.').next()?;
    (!account.is_empty()).then(|| account.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn state_account_from_the_blob_endpoint() {
        assert_eq!(
            super::account_from_url("https://dsrstate123.blob.core.windows.net/").as_deref(),
            Some("dsrstate123")
        );
        assert_eq!(super::account_from_url("not a url"), None);
    }
}
