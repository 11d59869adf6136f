//! Wiring for running on this machine: the storage choice (local files or Azurite), the
//! handler's services on the embedded queue, and `run`: the handler plus the local
//! Functions-host stand-in in one process, talking over real HTTP on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::adapters::azure::blob::AzureBlobStore;
use crate::adapters::local::sqlite_queue::LocalQueue;
use crate::app::{App, ServicesFactory};
use crate::config::{local_services, settings_from_env, LocalPaths};
use crate::ports::blob::{
    BlobReader, BlobRef, BlobStore, Condition, DeleteOutcome, ListPage, StoreError, StoreResult,
};
use crate::runtime::dispatcher::{Dispatcher, DispatcherOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChoice {
    Local,
    Azurite(String),
    /// Real accounts (`https://{account}.blob.core.windows.net`) with an Entra credential:
    /// the Functions app's managed identity, or a developer's Azure CLI / azd login.
    Azure,
}

impl StorageChoice {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        if s == "local" {
            return Ok(StorageChoice::Local);
        }
        if let Some(url) = s.strip_prefix("azurite=") {
            return Ok(StorageChoice::Azurite(
                url.trim_end_matches('/').to_string(),
            ));
        }
        if s == "azure" {
            return Ok(StorageChoice::Azure);
        }
        anyhow::bail!(
            "--storage must be 'local', 'azurite=<http://127.0.0.1:port>' or 'azure', got {s:?}"
        )
    }

    pub fn store(&self, paths: &LocalPaths) -> Arc<dyn BlobStore> {
        let store = self.base_store(paths);
        // Reliability test mode: seeded faults under a retry layer (see adapters::chaos).
        match std::env::var("DSR_CHAOS_FAULT_RATE")
            .ok()
            .and_then(|r| r.parse::<f64>().ok())
        {
            Some(rate) if rate > 0.0 => {
                tracing::warn!(rate, "chaos mode: injecting storage faults");
                let seed = std::env::var("DSR_CHAOS_SEED")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1);
                let faulty: Arc<dyn BlobStore> =
                    Arc::new(crate::adapters::chaos::FaultyStore::new(store, rate, seed));
                Arc::new(crate::adapters::chaos::RetryingStore::new(faulty, 4))
            }
            _ => store,
        }
    }

    fn base_store(&self, paths: &LocalPaths) -> Arc<dyn BlobStore> {
        match self {
            StorageChoice::Local => crate::config::local_store(paths),
            StorageChoice::Azurite(url) => Arc::new(AzureBlobStore::azurite(url)),
            StorageChoice::Azure => match azure_credential() {
                Ok(cred) => Arc::new(AzureBlobStore::new(
                    crate::adapters::azure::blob::AzureBlobConfig::public_cloud(cred),
                )),
                Err(e) => Arc::new(Unavailable(format!("no Azure credential: {e}"))),
            },
        }
    }
}

pub fn open_queue(paths: &LocalPaths) -> anyhow::Result<Arc<LocalQueue>> {
    std::fs::create_dir_all(&paths.root)
        .with_context(|| format!("creating {}", paths.root.display()))?;
    let mut options = crate::adapters::local::sqlite_queue::LocalQueueOptions::default();
    if let Some(secs) = std::env::var("DSR_LOCK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        options.lock_duration = Duration::from_secs_f64(secs.max(0.1));
    }
    // Reliability test mode: out-of-order delivery.
    options.shuffle = std::env::var("DSR_CHAOS_SHUFFLE").is_ok_and(|v| v == "1");
    Ok(Arc::new(
        LocalQueue::open_with(paths.queue(), options)
            .with_context(|| format!("opening {}", paths.queue().display()))?,
    ))
}

/// Services for the handler: built on first invocation.
pub fn services_factory(data_dir: PathBuf, storage: StorageChoice) -> ServicesFactory {
    Box::new(move || {
        let paths = LocalPaths::new(&data_dir);
        let store = storage.store(&paths);
        let queue = open_queue(&paths)?;
        if std::env::var("DSR_MODE").is_ok_and(|m| m == "azure") {
            return azure_services(&paths, store, queue, settings_from_env());
        }
        let mut services = local_services(&paths, store, queue, settings_from_env())?;
        if let Some(control) = local_arm_control()? {
            services.control = control;
        }
        Ok(services)
    })
}

/// Local mode with `DSR_ARM_ENDPOINT` set: the control plane is the production ARM adapter
/// (paging, long-running deletes, retries) talking to a local ARM server
/// ([`crate::adapters::local::arm_server`]) at that URL, with the fixed token `DSR_ARM_TOKEN`
/// (default [`LOCAL_ARM_TOKEN`](crate::adapters::local::arm_server::LOCAL_ARM_TOKEN)) instead
/// of an Entra credential. Only loopback endpoints: a real ARM endpoint needs `DSR_MODE=azure`.
/// Everything else stays local. `None` when the variable is unset.
pub fn local_arm_control(
) -> anyhow::Result<Option<Arc<dyn crate::ports::control_plane::ControlPlane>>> {
    use crate::adapters::azure::{arm, rest::RestClient};
    use crate::adapters::local::arm_server::{LocalArmToken, LOCAL_ARM_TOKEN};
    let Ok(v) = std::env::var("DSR_ARM_ENDPOINT") else {
        return Ok(None);
    };
    let token = std::env::var("DSR_ARM_TOKEN").unwrap_or_else(|_| LOCAL_ARM_TOKEN.into());
    let rest = RestClient::new(Arc::new(LocalArmToken::new(token)), arm::ARM_SCOPE);
    Ok(Some(Arc::new(arm::AzureMlControlPlane::new(
        rest,
        arm_config(local_arm_endpoint(&v)?),
    ))))
}

/// The endpoint `v` if it is a URL on a loopback host.
fn local_arm_endpoint(v: &str) -> anyhow::Result<url::Url> {
    let endpoint =
        url::Url::parse(v).with_context(|| format!("DSR_ARM_ENDPOINT={v:?} is not a URL"))?;
    let loopback = match endpoint.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    anyhow::ensure!(
        loopback,
        "DSR_ARM_ENDPOINT={v:?}: in local mode only a local ARM server (127.0.0.1) is allowed; set DSR_MODE=azure for Azure"
    );
    Ok(endpoint)
}

/// ARM settings from the environment: `DSR_ARM_POLL_MS`, how long to wait between polls of a
/// long-running delete when the service does not say (default 5 s).
fn arm_config(endpoint: url::Url) -> crate::adapters::azure::arm::ArmConfig {
    let mut cfg = crate::adapters::azure::arm::ArmConfig::new(endpoint);
    if let Some(ms) = std::env::var("DSR_ARM_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        cfg.poll_interval = Duration::from_millis(ms);
    }
    cfg
}

/// Production adapters (`DSR_MODE=azure`): Azure ML through ARM, Microsoft Graph, Log Analytics
/// query/purge, and Service Bus when `DSR_SERVICEBUS_NAMESPACE` is set (otherwise `bus`, the
/// local queue: an operator on a laptop runs the pipeline locally against real workspaces).
/// Tokens come from [`azure_credential`]. Endpoints: `DSR_ARM_ENDPOINT`
/// (`https://management.azure.com`), `DSR_GRAPH_ENDPOINT` (`https://graph.microsoft.com`),
/// `DSR_LOGANALYTICS_ENDPOINT` (`https://api.loganalytics.io`); telemetry tables
/// `DSR_TELEMETRY_TABLES` (comma-separated, default `AmlRunEvent`). Nothing connects here.
pub fn azure_services(
    paths: &LocalPaths,
    store: Arc<dyn BlobStore>,
    bus: Arc<dyn crate::ports::bus::MessageBus>,
    settings: crate::functions::Settings,
) -> anyhow::Result<crate::functions::Services> {
    use crate::adapters::azure::{arm, graph, purge, rest::RestClient, servicebus};
    let env_url = |key: &str, default: &str| -> anyhow::Result<url::Url> {
        let v = std::env::var(key).unwrap_or_else(|_| default.to_string());
        url::Url::parse(&v).with_context(|| format!("{key}={v:?} is not a URL"))
    };
    let cred = azure_credential()?;
    let arm_endpoint = env_url("DSR_ARM_ENDPOINT", "https://management.azure.com")?;
    let graph_endpoint = env_url("DSR_GRAPH_ENDPOINT", "https://graph.microsoft.com")?;
    let query_endpoint = env_url("DSR_LOGANALYTICS_ENDPOINT", "https://api.loganalytics.io")?;
    let tables = std::env::var("DSR_TELEMETRY_TABLES")
        .unwrap_or_else(|_| "AmlRunEvent".into())
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let arm_rest = RestClient::new(cred.clone(), arm::ARM_SCOPE);
    let bus: Arc<dyn crate::ports::bus::MessageBus> =
        match std::env::var("DSR_SERVICEBUS_NAMESPACE") {
            Ok(ns) if !ns.trim().is_empty() => Arc::new(
                servicebus::ServiceBusSender::new(
                    RestClient::new(cred.clone(), servicebus::SERVICEBUS_SCOPE),
                    ns.trim(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            ),
            _ => bus,
        };
    Ok(crate::functions::Services {
        control: Arc::new(arm::AzureMlControlPlane::new(
            arm_rest.clone(),
            arm_config(arm_endpoint.clone()),
        )),
        telemetry: Arc::new(purge::LogAnalyticsTelemetry::new(
            arm_rest,
            RestClient::new(cred.clone(), purge::LOG_ANALYTICS_SCOPE),
            purge::PurgeConfig {
                arm_endpoint,
                query_endpoint,
                tables,
            },
        )),
        directory: Arc::new(graph::GraphDirectory::new(
            RestClient::new(cred, graph::GRAPH_SCOPE),
            graph_endpoint,
        )),
        holds: crate::config::load_holds(&paths.holds())?,
        scope: crate::config::load_scope(&paths.workspaces())?,
        store,
        bus,
        settings,
        state_containers: Default::default(),
    })
}

/// The handler and the dispatcher, running in this process.
pub struct LocalRuntime {
    pub queue: Arc<LocalQueue>,
    pub base_url: String,
    pub dispatcher: Arc<Dispatcher>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl LocalRuntime {
    pub async fn start(
        data_dir: &Path,
        storage: &StorageChoice,
        app_root: &Path,
    ) -> anyhow::Result<Self> {
        let paths = LocalPaths::new(data_dir);
        let queue = open_queue(&paths)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let app = App::new(services_factory(data_dir.to_path_buf(), storage.clone()));
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = crate::startup::serve(listener, crate::app::invoker(app), stop).await {
                tracing::error!(error = %e, "handler server stopped");
            }
        });
        let options = DispatcherOptions {
            max_delivery_count: settings_from_env().max_delivery_count,
            lock_duration: queue.options().lock_duration,
            // Reliability test mode: every message delivered twice.
            redeliver_once: std::env::var("DSR_CHAOS_REDELIVER").is_ok_and(|v| v == "1"),
            poll_interval: std::env::var("DSR_POLL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_millis(250)),
            ..Default::default()
        };
        let dispatcher = Arc::new(
            Dispatcher::new(app_root, (*queue).clone(), &base_url, options)
                .context("reading host.json and functions/")?,
        );
        Ok(Self {
            queue,
            base_url,
            dispatcher,
            shutdown: tx,
            server,
        })
    }

    /// Deliver until every queue is idle (or the timeout passes).
    pub async fn drain(&self, timeout: Duration) -> anyhow::Result<()> {
        self.dispatcher
            .drain_until_idle(timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Stop the handler. The dispatcher (and its HTTP connection pool) goes first, and the
    /// graceful shutdown is bounded: an idle keep-alive connection must not hold the exit.
    pub async fn stop(self) {
        drop(self.dispatcher);
        let _ = self.shutdown.send(true);
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}

pub async fn run(
    data_dir: &Path,
    storage: &StorageChoice,
    app_root: &Path,
    until_idle: bool,
) -> anyhow::Result<()> {
    let rt = LocalRuntime::start(data_dir, storage, app_root).await?;
    tracing::info!(handler = %rt.base_url, data_dir = %data_dir.display(), "local runtime started");
    if until_idle {
        rt.drain(Duration::from_secs(3600)).await?;
    } else {
        let d = rt.dispatcher.clone();
        d.run(super::handler::shutdown_signal())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    rt.stop().await;
    Ok(())
}

/// Managed identity inside Azure (IDENTITY_ENDPOINT is set by App Service/Functions; a
/// user-assigned identity is chosen by AZURE_CLIENT_ID), developer tools (Azure CLI, azd) elsewhere.
pub fn azure_credential() -> anyhow::Result<Arc<dyn azure_core::credentials::TokenCredential>> {
    use azure_identity::{
        DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
        UserAssignedId,
    };
    if std::env::var_os("IDENTITY_ENDPOINT").is_some() || std::env::var_os("MSI_ENDPOINT").is_some()
    {
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: std::env::var("AZURE_CLIENT_ID")
                .ok()
                .map(UserAssignedId::ClientId),
            ..Default::default()
        };
        return Ok(ManagedIdentityCredential::new(Some(options))?);
    }
    Ok(DeveloperToolsCredential::new(None)?)
}

/// A store that reports why it cannot be used, on first use (start-up never fails on it).
struct Unavailable(String);

#[async_trait::async_trait]
impl BlobStore for Unavailable {
    fn kind(&self) -> &'static str {
        "unavailable"
    }
    async fn create_container(&self, _: &str, _: &str) -> StoreResult<()> {
        Err(StoreError::Other(self.0.clone()))
    }
    async fn list_containers(&self, _: &str, _: &str) -> StoreResult<Vec<String>> {
        Err(StoreError::Other(self.0.clone()))
    }
    async fn delete_container(&self, _: &str, _: &str) -> StoreResult<DeleteOutcome> {
        Err(StoreError::Other(self.0.clone()))
    }
    async fn list_page(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<String>,
        _: u32,
    ) -> StoreResult<ListPage> {
        Err(StoreError::Other(self.0.clone()))
    }
    async fn open(&self, _: &BlobRef) -> StoreResult<BlobReader> {
        Err(StoreError::Other(self.0.clone()))
    }
    async fn put(
        &self,
        _: &BlobRef,
        _: bytes::Bytes,
        _: &str,
        _: Condition,
        _: &std::collections::BTreeMap<String, String>,
    ) -> StoreResult<String> {
        Err(StoreError::Other(self.0.clone()))
    }
    async fn copy(&self, _: &BlobRef, _: &BlobRef) -> StoreResult<()> {
        Err(StoreError::Other(self.0.clone()))
    }
    async fn delete(&self, _: &BlobRef) -> StoreResult<DeleteOutcome> {
        Err(StoreError::Other(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_arm_endpoint_is_loopback_only() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1/",
            "http://[::1]:9",
        ] {
            assert!(local_arm_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://management.azure.com",
            "http://10.0.0.1:80",
            "http://127.0.0.1.evil.example",
            "not a url",
        ] {
            assert!(local_arm_endpoint(bad).is_err(), "{bad}");
        }
    }
}
