//! The typed configuration, read from the environment (Function App settings, or the shell) in
//! one place and validated once, at start-up. A malformed or out-of-range value is an error that
//! names the setting, never a silent default; Azure mode requires every setting its adapters
//! need and never falls back to a local part.
//!
//! [`SPECS`] lists every variable the program reads, with its default: tests check that the
//! Function App settings in `infra/app-settings.json` set every one Azure mode requires.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::functions::Settings as Tunables;

/// Where a setting applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Both,
    Local,
    Azure,
}

/// One environment variable the program reads.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub applies: Applies,
    /// Azure mode refuses to start without it.
    pub required_in_azure: bool,
    /// The documented default ("" where there is none).
    pub default: &'static str,
    pub about: &'static str,
}

const fn spec(
    name: &'static str,
    applies: Applies,
    required_in_azure: bool,
    default: &'static str,
    about: &'static str,
) -> Spec {
    Spec {
        name,
        applies,
        required_in_azure,
        default,
        about,
    }
}

use Applies::{Azure as A, Both as B, Local as L};

/// Every variable read, in one table (README's configuration section mirrors it).
pub(crate) const SPECS: &[Spec] = &[
    spec("DSR_MODE", B, true, "local", "`local` (embedded adapters) or `azure` (production adapters only)"),
    spec("DSR_LOG", B, false, "info", "log filter (tracing EnvFilter syntax)"),
    spec("DSR_LOG_FORMAT", B, false, "text", "`text` or `json`"),
    spec("DSR_LOG_SALT", B, true, "azureml-dsr (local mode only)", "secret salt of the subject hashes in logs; Azure mode requires one of at least 16 characters"),
    spec("DSR_MAX_DELIVERY_COUNT", B, false, "10", "must equal the queues' maxDeliveryCount (1-100)"),
    spec("DSR_CHUNK_SIZE", B, false, "2000", "items per slice invocation (1-100000)"),
    spec("DSR_CONCURRENCY", B, false, "16", "concurrent storage operations per invocation (1-256)"),
    spec("DSR_EXPORT_LINK_DAYS", B, false, "7", "lifetime of export links, days (1-7)"),
    spec("DSR_JOB_RETENTION_ENABLED", B, false, "false", "the nightly sweep deletes every user's job history older than DSR_JOB_RETENTION_DAYS (its first run after enabling is a dry run)"),
    spec("DSR_JOB_RETENTION_DAYS", B, false, "365", "job-history retention, days (at least 30; a workspace tag may lengthen it)"),
    spec("DSR_JOB_RETENTION_MAX_SHARE", B, false, "20", "blast-radius guard: percent of a workspace's jobs one sweep may delete (1-100)"),
    spec("DSR_RETENTION_DAYS", B, false, "(removed)", "removed (it meant two things): DSR_JOB_RETENTION_DAYS; refused when set"),
    spec("DSR_RETENTION_DRY_RUN", B, false, "false", "retention sweeps only report"),
    spec("DSR_STATE_RETENTION_DAYS", B, false, "90", "days after which a finished request's working state and the intake archive are removed (reports, certificates and audit records stay) (1-3650)"),
    spec("DSR_DEADLINE_WARNING_DAYS", B, false, "7", "the timer warns the ticketing system this many days before an open request's deadline, and once when it is missed (1-60)"),
    spec("DSR_WORKSPACE_SOFT_DELETE_DAYS", B, false, "14", "Azure ML workspace soft-delete window, days (0-14)"),
    spec("DSR_SHARE_SNAPSHOT_RECHECK_DAYS", B, false, "30", "a notebook file deleted while its Azure Files share has snapshots is re-checked this many days later (snapshots have no expiry of their own) (1-3650)"),
    spec("DSR_TELEMETRY_PURGE_ENABLED", B, false, "true", "request Log Analytics purges on delete (false: telemetry is reported as not purged)"),
    spec("DSR_REVIEW_SEPARATE_APPROVER", B, false, "false", "review approvals must come from someone other than the request's submitter (`submittedBy`); an approval by the submitter, or of a request naming no submitter, is refused with a reason"),
    spec("DSR_TELEMETRY_TABLES", B, false, "AmlRunEvent,AmlRunStatusChangedEvent,AmlDataStoreEvent,AmlModelsEvent,AmlPipelineEvent,AmlOnlineEndpointTrafficLog", "Log Analytics tables searched and purged, comma-separated; each must be in the identity map (domain/telemetry.rs)"),
    spec("DSR_STATE_ACCOUNT", L, false, "dsrstate", "state account name (local mode; Azure mode derives it from DSR_STATE_ACCOUNT_URL)"),
    spec("DSR_DATA_DIR", L, false, ".dsr", "local data folder (store, queue, directory)"),
    spec("DSR_STORAGE", L, false, "local", "`local` or `azurite=<http://127.0.0.1:port>`"),
    spec("DSR_ARM_TOKEN", L, false, "local-arm-token", "bearer token for a local ARM server"),
    spec("DSR_LOCK_SECONDS", L, false, "60", "local queue lock duration, seconds"),
    spec("DSR_POLL_MS", L, false, "250", "local dispatcher poll interval, ms"),
    spec("DSR_CHAOS_FAULT_RATE", L, false, "0", "reliability tests: storage fault rate (0-1)"),
    spec("DSR_CHAOS_SEED", L, false, "1", "reliability tests: fault seed"),
    spec("DSR_CHAOS_SHUFFLE", L, false, "0", "reliability tests: out-of-order delivery"),
    spec("DSR_CHAOS_REDELIVER", L, false, "0", "reliability tests: every message delivered twice"),
    spec("DSR_STATE_ACCOUNT_URL", A, true, "", "blob endpoint of the state account (https); workspace accounts use the same endpoint form"),
    spec("DSR_FILE_ENDPOINT", A, false, "https://{account}.file.<suffix of DSR_STATE_ACCOUNT_URL>", "Azure Files endpoint of the workspaces' notebook shares, `{account}` in place of the account name (https; http only on a loopback host, for tests)"),
    spec("DSR_SERVICEBUS_NAMESPACE", A, true, "", "Service Bus namespace (FQDN or https URL)"),
    spec("DSR_ARM_ENDPOINT", B, false, "https://management.azure.com", "Azure Resource Manager (local mode: only a loopback ARM server)"),
    spec("DSR_ARM_POLL_MS", B, false, "5000", "poll interval of long-running ARM deletes when ARM does not say"),
    spec("DSR_GRAPH_ENDPOINT", A, false, "https://graph.microsoft.com", "Microsoft Graph"),
    spec("DSR_LOGANALYTICS_ENDPOINT", A, false, "https://api.loganalytics.io", "Log Analytics query API"),
    spec("DSR_RUN_HISTORY_ENDPOINT", A, false, "https://{region}.api.azureml.ms", "Azure ML run-history data plane; `{region}` is replaced by the workspace's ARM location (tests: one fixed URL)"),
    spec("AZURE_CLIENT_ID", A, false, "", "client id of the user-assigned managed identity"),
    spec("FUNCTIONS_CUSTOMHANDLER_PORT", B, false, "7071", "port the Functions host assigns (legacy FUNCTIONS_HTTPWORKER_PORT too)"),
    spec("FUNCTIONS_HTTPWORKER_PORT", B, false, "", "legacy name of FUNCTIONS_CUSTOMHANDLER_PORT"),
];

pub use crate::domain::subject::LOCAL_LOG_SALT;

/// Job history younger than this is never swept: a shorter setting is refused at start-up.
pub(crate) const MIN_JOB_RETENTION_DAYS: u32 = 30;
/// Every table of the telemetry identity map (`domain/telemetry.rs`).
pub(crate) const DEFAULT_TELEMETRY_TABLES: &str = "AmlRunEvent,AmlRunStatusChangedEvent,AmlDataStoreEvent,AmlModelsEvent,AmlPipelineEvent,AmlOnlineEndpointTrafficLog";

/// A configuration error: names the setting and says what is wrong (never echoes a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {name}: {reason}")]
pub struct SettingError {
    pub name: &'static str,
    pub reason: String,
}

fn err(name: &'static str, reason: impl Into<String>) -> SettingError {
    SettingError {
        name,
        reason: reason.into(),
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Azure,
}

/// Blob storage in local mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChoice {
    /// Files under the data folder.
    Local,
    /// Azurite at this base URL (http, Shared Key with the dev key).
    Azurite(String),
}

impl StorageChoice {
    pub fn parse(s: &str) -> Result<Self, SettingError> {
        if s == "local" {
            return Ok(StorageChoice::Local);
        }
        if let Some(url) = s.strip_prefix("azurite=") {
            Url::parse(url).map_err(|e| err("DSR_STORAGE", format!("{url:?}: {e}")))?;
            return Ok(StorageChoice::Azurite(
                url.trim_end_matches('/').to_string(),
            ));
        }
        Err(err(
            "DSR_STORAGE",
            format!("must be 'local' or 'azurite=<http://127.0.0.1:port>', got {s:?} (Azure storage: DSR_MODE=azure and DSR_STATE_ACCOUNT_URL)"),
        ))
    }
}

/// Storage faults injected by the reliability tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chaos {
    pub fault_rate: f64,
    pub seed: u64,
}

/// Local mode: the embedded adapters and the local Functions-host stand-in.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub data_dir: PathBuf,
    pub storage: StorageChoice,
    /// A loopback ARM server to drive with the production ARM adapter.
    pub arm_endpoint: Option<Url>,
    pub arm_token: String,
    pub lock_duration: Option<Duration>,
    pub poll_interval: Duration,
    pub chaos: Option<Chaos>,
    pub shuffle: bool,
    pub redeliver_once: bool,
}

impl LocalSettings {
    /// Defaults, as an empty environment gives them.
    pub fn new(data_dir: impl Into<PathBuf>, storage: StorageChoice) -> Self {
        Self {
            data_dir: data_dir.into(),
            storage,
            arm_endpoint: None,
            arm_token: crate::adapters::local::arm_server::LOCAL_ARM_TOKEN.to_string(),
            lock_duration: None,
            poll_interval: Duration::from_millis(250),
            chaos: None,
            shuffle: false,
            redeliver_once: false,
        }
    }
}

/// Azure mode: production adapters only.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub state_account_url: Url,
    /// `{account}` in place of the account name, same form as the state account's URL.
    pub blob_endpoint_template: String,
    /// Azure Files endpoint, `{account}` in place of the account name (`DSR_FILE_ENDPOINT`, else
    /// derived from the blob form: `https://{account}.file.<suffix>`).
    pub file_endpoint_template: String,
    pub servicebus_namespace: String,
    pub arm_endpoint: Url,
    pub graph_endpoint: Url,
    pub loganalytics_endpoint: Url,
    /// Run-history endpoint template: `{region}` becomes the workspace's ARM location.
    pub run_history_endpoint: String,
    pub client_id: Option<String>,
}

#[derive(Debug, Clone)]
// Built once at start-up: the variants' size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Adapters {
    Local(LocalSettings),
    Azure(AzureSettings),
}

/// Everything the program is configured with.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub mode: Mode,
    pub tunables: Tunables,
    pub log_salt: String,
    pub log_filter: Option<String>,
    pub log_json: bool,
    pub port: u16,
    pub arm_poll: Duration,
    pub telemetry_tables: Vec<String>,
    pub adapters: Adapters,
}

/// Command-line values that take precedence over the environment (clap flags).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub storage: Option<String>,
}

impl AppSettings {
    /// Read and validate everything; the first problem found is returned.
    pub fn load(env: &Env, over: &Overrides) -> Result<Self, SettingError> {
        let mode = match env.get("DSR_MODE").map(str::to_ascii_lowercase).as_deref() {
            None | Some("local") => Mode::Local,
            Some("azure") => Mode::Azure,
            Some(v) => return Err(err("DSR_MODE", format!("{v:?} is not 'local' or 'azure'"))),
        };
        if env.get("DSR_RETENTION_DAYS").is_some() {
            // It read as "request state retention" in infra but deleted every user's jobs.
            return Err(err(
                "DSR_RETENTION_DAYS",
                "is no longer read: job-history retention is DSR_JOB_RETENTION_DAYS (with DSR_JOB_RETENTION_ENABLED=true)",
            ));
        }
        let defaults = Tunables::default();
        let mut tunables = Tunables {
            max_delivery_count: env.parse("DSR_MAX_DELIVERY_COUNT", 10u32, 1..=100)?,
            chunk_size: env.parse("DSR_CHUNK_SIZE", defaults.chunk_size, 1..=100_000)?,
            concurrency: env.parse("DSR_CONCURRENCY", defaults.concurrency, 1..=256)?,
            export_link_days: env.parse("DSR_EXPORT_LINK_DAYS", 7i64, 1..=7)?,
            job_retention_enabled: env.flag("DSR_JOB_RETENTION_ENABLED", false)?,
            retention_days: env.parse(
                "DSR_JOB_RETENTION_DAYS",
                defaults.retention_days,
                MIN_JOB_RETENTION_DAYS..=36_500,
            )?,
            job_retention_max_share_pct: env.parse(
                "DSR_JOB_RETENTION_MAX_SHARE",
                defaults.job_retention_max_share_pct,
                1..=100,
            )?,
            retention_dry_run: env.flag("DSR_RETENTION_DRY_RUN", false)?,
            state_retention_days: env.parse(
                "DSR_STATE_RETENTION_DAYS",
                defaults.state_retention_days,
                1..=3650,
            )?,
            workspace_soft_delete_days: env.parse(
                "DSR_WORKSPACE_SOFT_DELETE_DAYS",
                defaults.workspace_soft_delete_days,
                0..=14,
            )?,
            share_snapshot_recheck_days: env.parse(
                "DSR_SHARE_SNAPSHOT_RECHECK_DAYS",
                defaults.share_snapshot_recheck_days,
                1..=3650,
            )?,
            telemetry_purge_enabled: env.flag("DSR_TELEMETRY_PURGE_ENABLED", true)?,
            deadline_warning_days: env.parse(
                "DSR_DEADLINE_WARNING_DAYS",
                defaults.deadline_warning_days,
                1..=60,
            )?,
            review_separate_approver: env.flag("DSR_REVIEW_SEPARATE_APPROVER", false)?,
            ..defaults
        };
        let telemetry_tables: Vec<String> = env
            .get("DSR_TELEMETRY_TABLES")
            .unwrap_or(DEFAULT_TELEMETRY_TABLES)
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if let Some(bad) = telemetry_tables
            .iter()
            .find(|t| !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            // Table names end up in KQL: only plain identifiers.
            return Err(err(
                "DSR_TELEMETRY_TABLES",
                format!("{bad:?} is not a table name"),
            ));
        }
        if let Some(bad) = telemetry_tables
            .iter()
            .find(|t| crate::domain::telemetry::identity_column(t).is_none())
        {
            // Without a known identity column the table can be neither searched nor purged.
            return Err(err(
                "DSR_TELEMETRY_TABLES",
                format!("{bad:?} is not a covered table (no identity column in the map)"),
            ));
        }
        let port = match env
            .get("FUNCTIONS_CUSTOMHANDLER_PORT")
            .map(|v| ("FUNCTIONS_CUSTOMHANDLER_PORT", v))
            .or_else(|| {
                env.get("FUNCTIONS_HTTPWORKER_PORT")
                    .map(|v| ("FUNCTIONS_HTTPWORKER_PORT", v))
            }) {
            None => 7071,
            Some((name, v)) => v
                .parse()
                .map_err(|_| err(name, format!("{v:?} is not a port")))?,
        };
        let log_json = match env.get("DSR_LOG_FORMAT") {
            None | Some("text") => false,
            Some("json") => true,
            Some(v) => return Err(err("DSR_LOG_FORMAT", format!("{v:?} is not text or json"))),
        };
        let arm_poll = Duration::from_millis(env.parse("DSR_ARM_POLL_MS", 5000u64, 1..=600_000)?);
        let salt = env.get("DSR_LOG_SALT").map(str::to_string);
        let (adapters, log_salt) = match mode {
            Mode::Local => {
                let data_dir = over
                    .data_dir
                    .clone()
                    .or_else(|| env.get("DSR_DATA_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from(".dsr"));
                let storage = StorageChoice::parse(
                    over.storage
                        .as_deref()
                        .or(env.get("DSR_STORAGE"))
                        .unwrap_or("local"),
                )?;
                let arm_endpoint = match env.get("DSR_ARM_ENDPOINT") {
                    None => None,
                    Some(v) => Some(loopback_url("DSR_ARM_ENDPOINT", v)?),
                };
                let fault_rate = env.parse("DSR_CHAOS_FAULT_RATE", 0.0f64, 0.0..=1.0)?;
                if let Some(a) = env.get("DSR_STATE_ACCOUNT") {
                    if a.is_empty() || !a.chars().all(|c| c.is_ascii_alphanumeric()) {
                        return Err(err("DSR_STATE_ACCOUNT", "not a storage account name"));
                    }
                    tunables.state_account = a.to_string();
                }
                let local = LocalSettings {
                    data_dir,
                    storage,
                    arm_endpoint,
                    arm_token: env
                        .get("DSR_ARM_TOKEN")
                        .unwrap_or(crate::adapters::local::arm_server::LOCAL_ARM_TOKEN)
                        .to_string(),
                    lock_duration: match env.get("DSR_LOCK_SECONDS") {
                        None => None,
                        Some(_) => Some(Duration::from_secs_f64(env.parse(
                            "DSR_LOCK_SECONDS",
                            60.0f64,
                            0.1..=3600.0,
                        )?)),
                    },
                    poll_interval: Duration::from_millis(env.parse(
                        "DSR_POLL_MS",
                        250u64,
                        1..=60_000,
                    )?),
                    chaos: (fault_rate > 0.0).then_some(Chaos {
                        fault_rate,
                        seed: env.parse("DSR_CHAOS_SEED", 1u64, 0..=u64::MAX)?,
                    }),
                    shuffle: env.flag("DSR_CHAOS_SHUFFLE", false)?,
                    redeliver_once: env.flag("DSR_CHAOS_REDELIVER", false)?,
                };
                (
                    Adapters::Local(local),
                    salt.unwrap_or_else(|| LOCAL_LOG_SALT.to_string()),
                )
            }
            Mode::Azure => {
                // Local-only settings in Azure mode mean someone expects a local part to be used.
                for name in [
                    "DSR_STORAGE",
                    "DSR_DATA_DIR",
                    "DSR_STATE_ACCOUNT",
                    "DSR_CHAOS_FAULT_RATE",
                ] {
                    if env.get(name).is_some() {
                        return Err(err(name, "is a local-mode setting; Azure mode uses only Azure services (remove it)"));
                    }
                }
                if over.storage.is_some() || over.data_dir.is_some() {
                    return Err(err(
                        "DSR_MODE",
                        "--storage and --data-dir are local-mode options; Azure mode uses only Azure services",
                    ));
                }
                let salt = salt.ok_or_else(|| {
                    err(
                        "DSR_LOG_SALT",
                        "required in Azure mode (a secret; see infra)",
                    )
                })?;
                if salt.starts_with("@Microsoft.KeyVault(") {
                    return Err(err(
                        "DSR_LOG_SALT",
                        "is an unresolved Key Vault reference (check the app's identity and keyVaultReferenceIdentity)",
                    ));
                }
                if salt == LOCAL_LOG_SALT || salt.chars().count() < 16 {
                    return Err(err(
                        "DSR_LOG_SALT",
                        "must be a secret of at least 16 characters, not the public default",
                    ));
                }
                let state_raw = env.get("DSR_STATE_ACCOUNT_URL").ok_or_else(|| {
                    err(
                        "DSR_STATE_ACCOUNT_URL",
                        "required in Azure mode (the state account's blob endpoint)",
                    )
                })?;
                let state_url = Url::parse(state_raw)
                    .map_err(|e| err("DSR_STATE_ACCOUNT_URL", format!("not a URL: {e}")))?;
                let (account, template) = account_and_template(&state_url)
                    .map_err(|r| err("DSR_STATE_ACCOUNT_URL", r))?;
                tunables.state_account = account;
                let ns = env.get("DSR_SERVICEBUS_NAMESPACE").ok_or_else(|| {
                    err(
                        "DSR_SERVICEBUS_NAMESPACE",
                        "required in Azure mode (the Service Bus namespace FQDN)",
                    )
                })?;
                let file_template = match env.get("DSR_FILE_ENDPOINT") {
                    Some(v) => {
                        file_endpoint_template(v).map_err(|r| err("DSR_FILE_ENDPOINT", r))?
                    }
                    None => derived_file_template(&template),
                };
                let azure = AzureSettings {
                    state_account_url: state_url,
                    blob_endpoint_template: template,
                    file_endpoint_template: file_template,
                    servicebus_namespace: ns.to_string(),
                    arm_endpoint: env.url("DSR_ARM_ENDPOINT", "https://management.azure.com")?,
                    graph_endpoint: env.url("DSR_GRAPH_ENDPOINT", "https://graph.microsoft.com")?,
                    loganalytics_endpoint: env
                        .url("DSR_LOGANALYTICS_ENDPOINT", "https://api.loganalytics.io")?,
                    run_history_endpoint: run_history_template(
                        env.get("DSR_RUN_HISTORY_ENDPOINT")
                            .unwrap_or("https://{region}.api.azureml.ms"),
                    )?,
                    client_id: env.get("AZURE_CLIENT_ID").map(str::to_string),
                };
                (Adapters::Azure(azure), salt)
            }
        };
        Ok(Self {
            mode,
            tunables,
            log_salt,
            log_filter: env.get("DSR_LOG").map(str::to_string),
            log_json,
            port,
            arm_poll,
            telemetry_tables,
            adapters,
        })
    }

    /// Local mode on `data_dir` with every other setting at its default (tests, the demo).
    pub fn local(data_dir: impl Into<PathBuf>, storage: StorageChoice) -> Self {
        Self {
            mode: Mode::Local,
            tunables: Tunables::default(),
            log_salt: LOCAL_LOG_SALT.to_string(),
            log_filter: None,
            log_json: false,
            port: 7071,
            arm_poll: Duration::from_millis(5000),
            telemetry_tables: DEFAULT_TELEMETRY_TABLES
                .split(',')
                .map(str::to_string)
                .collect(),
            adapters: Adapters::Local(LocalSettings::new(data_dir, storage)),
        }
    }

    /// The local settings, or an error naming why this command needs local mode.
    pub(crate) fn local_only(&self, command: &str) -> anyhow::Result<&LocalSettings> {
        match &self.adapters {
            Adapters::Local(l) => Ok(l),
            Adapters::Azure(_) => {
                anyhow::bail!(
                    "`{command}` works on the embedded default only (unset DSR_MODE=azure)"
                )
            }
        }
    }
}

/// The Function App's settings as `infra/app-settings.json` declares them, with each `param`
/// entry filled from `params` (as Bicep fills it from its parameters): what the deployed app's
/// environment holds besides the platform's own variables. Used by tests and the Azure twin.
pub fn render_app_settings(
    spec_json: &str,
    params: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let spec: serde_json::Value =
        serde_json::from_str(spec_json).map_err(|e| format!("app-settings.json: {e}"))?;
    let entries = spec["settings"]
        .as_array()
        .ok_or("app-settings.json: no settings array")?;
    entries
        .iter()
        .map(|e| {
            let name = e["name"].as_str().ok_or("a setting without a name")?;
            let value = match (e.get("value"), e.get("param").and_then(|p| p.as_str())) {
                (Some(v), None) => v
                    .as_str()
                    .ok_or(format!("{name}: value is not a string"))?
                    .to_string(),
                (None, Some(p)) => {
                    params(p).ok_or(format!("{name}: no value for parameter {p}"))?
                }
                _ => return Err(format!("{name}: needs exactly one of value and param")),
            };
            Ok((name.to_string(), value))
        })
        .collect()
}

mod endpoints;
pub use endpoints::{account_and_template, derived_file_template, file_endpoint_template};
use endpoints::{loopback_url, run_history_template};

mod env;
pub use env::Env;

#[cfg(test)]
mod infra_tests;
#[cfg(test)]
mod tests;
