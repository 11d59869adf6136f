//! The composition root: builds [`Services`] for each mode from [`AppSettings`], and nothing
//! else does. Local mode wires the embedded adapters (file store or Azurite, SQLite queue, file
//! directory); Azure mode wires only production adapters (Blob and Files with Entra tokens, Service Bus,
//! ARM, Graph, Log Analytics) and touches no local file. Nothing connects here.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::adapters::azure::blob::{AzureBlobConfig, AzureBlobStore, Endpoints};
use crate::adapters::azure::{arm, files, graph, purge, rest::RestClient, run_history, servicebus};
use crate::adapters::local::blob_share::BlobFileShare;
use crate::adapters::local::control_plane::LocalControlPlane;
use crate::adapters::local::directory::FileDirectory;
use crate::adapters::local::fs_blob::FsBlobStore;
use crate::adapters::local::run_history::LocalRunHistory;
use crate::adapters::local::sqlite_queue::{LocalQueue, LocalQueueOptions};
use crate::adapters::local::telemetry::LocalTelemetry;
use crate::functions::{Services, Settings};
use crate::ports::blob::BlobStore;
use crate::ports::bus::MessageBus;
use crate::ports::control_plane::ControlPlane;
use crate::settings::{Adapters, AppSettings, AzureSettings, LocalSettings, StorageChoice};

/// Local data folder layout (`DSR_DATA_DIR`, default `.dsr`).
#[derive(Debug, Clone)]
pub struct LocalPaths {
    pub root: PathBuf,
}

impl LocalPaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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
    pub fn truth(&self) -> PathBuf {
        self.root.join("seed-truth.json")
    }
}

/// What [`build`] wires: the services, and the local queue in local mode (the local
/// Functions-host stand-in delivers from it).
pub struct Wired {
    pub services: Services,
    pub queue: Option<Arc<LocalQueue>>,
}

/// Build every adapter the mode needs from validated settings.
pub fn build(app: &AppSettings) -> anyhow::Result<Wired> {
    let mut wired = build_uncached(app)?;
    // One read of a workspace and its asset listings per process for a short while, not one
    // per slice invocation (issue 19; `adapters::cached_control` says why that is safe).
    wired.services.control = Arc::new(crate::adapters::cached_control::CachedControlPlane::new(
        wired.services.control.clone(),
    ));
    // Likewise each run record (`adapters::cached_run_history`; children are never cached).
    wired.services.run_history =
        Arc::new(crate::adapters::cached_run_history::CachedRunHistory::new(
            wired.services.run_history.clone(),
        ));
    Ok(wired)
}

fn build_uncached(app: &AppSettings) -> anyhow::Result<Wired> {
    match &app.adapters {
        Adapters::Local(local) => {
            let paths = LocalPaths::new(&local.data_dir);
            let store = store(local);
            let queue = open_queue(local)?;
            let mut services = local_services(&paths, store, queue.clone(), app.tunables.clone());
            if let Some(endpoint) = &local.arm_endpoint {
                services.control = local_arm_control(app, local, endpoint.clone());
            }
            Ok(Wired {
                services,
                queue: Some(queue),
            })
        }
        Adapters::Azure(azure) => Ok(Wired {
            services: azure_services(app, azure)?,
            queue: None,
        }),
    }
}

/// The state store alone (CLI commands that read or change state), without opening the local
/// queue: in Azure mode the state account, in local mode the local store.
pub(crate) fn build_state(app: &AppSettings) -> anyhow::Result<crate::state::StateStore> {
    let store: Arc<dyn BlobStore> = match &app.adapters {
        Adapters::Local(local) => store(local),
        Adapters::Azure(az) => azure_store(az)?,
    };
    Ok(crate::state::StateStore::new(
        store,
        app.tunables.state_account.clone(),
    ))
}

/// The blob store of local mode (with the reliability tests' fault layer when configured).
pub fn store(local: &LocalSettings) -> Arc<dyn BlobStore> {
    let base: Arc<dyn BlobStore> = match &local.storage {
        StorageChoice::Local => local_store(&LocalPaths::new(&local.data_dir)),
        StorageChoice::Azurite(url) => Arc::new(AzureBlobStore::azurite(url)),
    };
    match local.chaos {
        Some(chaos) => {
            tracing::warn!(
                rate = chaos.fault_rate,
                "chaos mode: injecting storage faults"
            );
            let faulty: Arc<dyn BlobStore> = Arc::new(crate::adapters::chaos::FaultyStore::new(
                base,
                chaos.fault_rate,
                chaos.seed,
            ));
            Arc::new(crate::adapters::chaos::RetryingStore::new(faulty, 4))
        }
        None => base,
    }
}

/// The local-mode store on `data_dir` with default settings (tests, the seed).
pub fn store_at(data_dir: &std::path::Path, storage: &StorageChoice) -> Arc<dyn BlobStore> {
    store(&LocalSettings::new(data_dir, storage.clone()))
}

/// The local queue on `data_dir` with default settings (tests, `submit`).
pub fn open_local_queue(data_dir: &std::path::Path) -> anyhow::Result<Arc<LocalQueue>> {
    open_queue(&LocalSettings::new(data_dir, StorageChoice::Local))
}

pub fn local_store(paths: &LocalPaths) -> Arc<dyn BlobStore> {
    Arc::new(FsBlobStore::new(paths.store()))
}

/// The durable local queue under the data folder.
pub(crate) fn open_queue(local: &LocalSettings) -> anyhow::Result<Arc<LocalQueue>> {
    let paths = LocalPaths::new(&local.data_dir);
    std::fs::create_dir_all(&paths.root)
        .with_context(|| format!("creating {}", paths.root.display()))?;
    let mut options = LocalQueueOptions::default();
    if let Some(lock) = local.lock_duration {
        options.lock_duration = lock;
    }
    options.shuffle = local.shuffle;
    Ok(Arc::new(
        LocalQueue::open_with(paths.queue(), options)
            .with_context(|| format!("opening {}", paths.queue().display()))?,
    ))
}

/// Services on local adapters, with the given store and bus.
pub fn local_services(
    paths: &LocalPaths,
    store: Arc<dyn BlobStore>,
    bus: Arc<dyn MessageBus>,
    settings: Settings,
) -> Services {
    Services {
        control: Arc::new(LocalControlPlane::new(store.clone())),
        files: Arc::new(BlobFileShare::new(store.clone())),
        telemetry: Arc::new(LocalTelemetry::new(store.clone())),
        run_history: Arc::new(LocalRunHistory::new(store.clone())),
        directory: Arc::new(FileDirectory::new(paths.directory())),
        store,
        bus,
        settings,
        state_containers: Default::default(),
    }
}

/// Local mode with `DSR_ARM_ENDPOINT`: the production ARM adapter (paging, long-running
/// deletes, retries) against a local ARM server, with its fixed token instead of Entra.
fn local_arm_control(
    app: &AppSettings,
    local: &LocalSettings,
    endpoint: url::Url,
) -> Arc<dyn ControlPlane> {
    use crate::adapters::local::arm_server::LocalArmToken;
    let rest = RestClient::new(
        Arc::new(LocalArmToken::new(local.arm_token.clone())),
        arm::ARM_SCOPE,
    );
    let mut cfg = arm::ArmConfig::new(endpoint);
    cfg.poll_interval = app.arm_poll;
    Arc::new(arm::AzureMlControlPlane::new(rest, cfg))
}

/// Production adapters only: Blob through Entra tokens at the state account's endpoint form,
/// Azure Files (REST, Entra tokens) at its file form, Service Bus, ARM, Graph and Log Analytics.
pub(crate) fn azure_services(app: &AppSettings, az: &AzureSettings) -> anyhow::Result<Services> {
    let cred = azure_credential(az.client_id.as_deref())?;
    let store = azure_store_with(az, cred.clone());
    let arm_rest = RestClient::new(cred.clone(), arm::ARM_SCOPE);
    let mut arm_cfg = arm::ArmConfig::new(az.arm_endpoint.clone());
    arm_cfg.poll_interval = app.arm_poll;
    let bus = servicebus::ServiceBusSender::new(
        RestClient::new(cred.clone(), servicebus::SERVICEBUS_SCOPE),
        &az.servicebus_namespace,
    )
    .map_err(|e| anyhow::anyhow!("DSR_SERVICEBUS_NAMESPACE: {e}"))?;
    Ok(Services {
        control: Arc::new(arm::AzureMlControlPlane::new(arm_rest.clone(), arm_cfg)),
        files: Arc::new(files::AzureFileShare::new(
            RestClient::new(cred.clone(), files::FILES_SCOPE),
            az.file_endpoint_template.clone(),
        )),
        // Same credential; the run-history client's audience is ARM's.
        run_history: Arc::new(run_history::AzureRunHistory::new(
            RestClient::new(cred.clone(), run_history::RUN_HISTORY_SCOPE),
            az.run_history_endpoint.clone(),
        )),
        telemetry: Arc::new(purge::LogAnalyticsTelemetry::new(
            arm_rest,
            RestClient::new(cred.clone(), purge::LOG_ANALYTICS_SCOPE),
            purge::PurgeConfig {
                arm_endpoint: az.arm_endpoint.clone(),
                query_endpoint: az.loganalytics_endpoint.clone(),
                tables: app.telemetry_tables.clone(),
            },
        )),
        directory: Arc::new(graph::GraphDirectory::new(
            RestClient::new(cred, graph::GRAPH_SCOPE),
            az.graph_endpoint.clone(),
        )),
        store,
        bus: Arc::new(bus),
        settings: app.tunables.clone(),
        state_containers: Default::default(),
    })
}

fn azure_store(az: &AzureSettings) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(azure_store_with(
        az,
        azure_credential(az.client_id.as_deref())?,
    ))
}

/// Blob Storage with Entra tokens, every account at the state account's endpoint form.
fn azure_store_with(
    az: &AzureSettings,
    cred: Arc<dyn azure_core::credentials::TokenCredential>,
) -> Arc<dyn BlobStore> {
    Arc::new(AzureBlobStore::new(AzureBlobConfig::new(
        Endpoints::Template(az.blob_endpoint_template.clone()),
        crate::adapters::azure::blob::Auth::Token(cred),
    )))
}

/// Managed identity inside Azure (`IDENTITY_ENDPOINT` is set by App Service/Functions; a
/// user-assigned identity is chosen by `AZURE_CLIENT_ID`), developer tools (Azure CLI, azd)
/// elsewhere.
pub fn azure_credential(
    client_id: Option<&str>,
) -> anyhow::Result<Arc<dyn azure_core::credentials::TokenCredential>> {
    use azure_identity::{
        DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
        UserAssignedId,
    };
    // The platform's own variables, read here because azure_identity reads them too.
    if std::env::var_os("IDENTITY_ENDPOINT").is_some() || std::env::var_os("MSI_ENDPOINT").is_some()
    {
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(|c| UserAssignedId::ClientId(c.to_string())),
            ..Default::default()
        };
        return Ok(ManagedIdentityCredential::new(Some(options))?);
    }
    Ok(DeveloperToolsCredential::new(None)?)
}
