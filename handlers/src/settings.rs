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
pub const SPECS: &[Spec] = &[
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
    spec("DSR_WORKSPACE_SOFT_DELETE_DAYS", B, false, "14", "Azure ML workspace soft-delete window, days (0-14)"),
    spec("DSR_TELEMETRY_PURGE_ENABLED", B, false, "true", "request Log Analytics purges on delete (false: telemetry is reported as not purged)"),
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
    spec("AZURE_CLIENT_ID", A, false, "", "client id of the user-assigned managed identity"),
    spec("FUNCTIONS_CUSTOMHANDLER_PORT", B, false, "7071", "port the Functions host assigns (legacy FUNCTIONS_HTTPWORKER_PORT too)"),
    spec("FUNCTIONS_HTTPWORKER_PORT", B, false, "", "legacy name of FUNCTIONS_CUSTOMHANDLER_PORT"),
];

pub use crate::domain::subject::LOCAL_LOG_SALT;

/// Job history younger than this is never swept: a shorter setting is refused at start-up.
pub const MIN_JOB_RETENTION_DAYS: u32 = 30;
/// Every table of the telemetry identity map (`domain/telemetry.rs`).
pub const DEFAULT_TELEMETRY_TABLES: &str = "AmlRunEvent,AmlRunStatusChangedEvent,AmlDataStoreEvent,AmlModelsEvent,AmlPipelineEvent,AmlOnlineEndpointTrafficLog";

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

/// The environment as read at start-up (a snapshot, so tests build it from pairs).
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
    pub fn set(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.insert(k.into(), v.into());
    }
    /// A listed setting's value; empty or blank counts as unset (App Service keeps empty values).
    fn get(&self, name: &'static str) -> Option<&str> {
        debug_assert!(
            SPECS.iter().any(|s| s.name == name),
            "{name} is read but not listed in settings::SPECS"
        );
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
    fn parse<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, SettingError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let n: T = v
            .parse()
            .map_err(|_| err(name, format!("{v:?} is not a number")))?;
        if !range.contains(&n) {
            return Err(err(
                name,
                format!("{n} is outside {}..={}", range.start(), range.end()),
            ));
        }
        Ok(n)
    }
    fn flag(&self, name: &'static str, default: bool) -> Result<bool, SettingError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(err(name, format!("{v:?} is not true or false"))),
        }
    }
    fn url(&self, name: &'static str, default: &str) -> Result<Url, SettingError> {
        let v = self.get(name).unwrap_or(default);
        Url::parse(v).map_err(|e| err(name, format!("{v:?} is not a URL: {e}")))
    }
    /// Variables named like ours that nothing reads: most likely a typo, worth a warning.
    pub fn unknown_dsr_names(&self) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| k.starts_with("DSR_") && !SPECS.iter().any(|s| s.name == k.as_str()))
            .cloned()
            .collect()
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
    pub client_id: Option<String>,
}

// One value per process, built once at start-up: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
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
            telemetry_purge_enabled: env.flag("DSR_TELEMETRY_PURGE_ENABLED", true)?,
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
    pub fn local_only(&self, command: &str) -> anyhow::Result<&LocalSettings> {
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

/// `v` as a URL on a loopback host: local mode never talks to a real Azure endpoint.
fn loopback_url(name: &'static str, v: &str) -> Result<Url, SettingError> {
    let url = Url::parse(v).map_err(|e| err(name, format!("{v:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        return Err(err(
            name,
            format!("{v:?}: in local mode only a local server (127.0.0.1) is allowed; set DSR_MODE=azure for Azure"),
        ));
    }
    Ok(url)
}

/// The state account's name and the endpoint form of every account, from the state account's
/// blob endpoint: `https://<account>.blob.<suffix>/` (any cloud) or path-style
/// `https://<host>:<port>/<account>` (Azurite, private test endpoints).
pub fn account_and_template(url: &Url) -> Result<(String, String), String> {
    if url.scheme() != "https" {
        return Err("must be https (tokens are never sent in clear text)".into());
    }
    let host = url.host_str().ok_or("has no host")?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let valid = |a: &str| {
        (3..=24).contains(&a.len())
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let is_ip = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
        || host.eq_ignore_ascii_case("localhost");
    if is_ip {
        let account = url
            .path_segments()
            .and_then(|mut s| s.next())
            .filter(|a| valid(a))
            .ok_or(
                "a path-style endpoint must name the account: https://<host>:<port>/<account>",
            )?;
        return Ok((
            account.to_string(),
            format!("https://{host}{port}/{{account}}"),
        ));
    }
    let (account, rest) = host
        .split_once('.')
        .ok_or("is not <account>.blob.<suffix>")?;
    if !valid(account) || !rest.starts_with("blob.") {
        return Err("is not https://<account>.blob.<suffix>/".into());
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err("must be the account endpoint, without a container or path".into());
    }
    Ok((
        account.to_string(),
        format!("https://{{account}}.{rest}{port}"),
    ))
}

/// The Files endpoint form from the blob one: `https://{account}.blob.<suffix>` becomes
/// `https://{account}.file.<suffix>`. A path-style (emulator) endpoint has no Files service at
/// the same address; it is kept as it is, so a request fails with the emulator's reason unless
/// `DSR_FILE_ENDPOINT` names one.
pub fn derived_file_template(blob_template: &str) -> String {
    blob_template.replacen("{account}.blob.", "{account}.file.", 1)
}

/// Validate a `DSR_FILE_ENDPOINT` value: a URL with `{account}` in its host or first path
/// segment, https (http only on a loopback host: tokens never cross a network in clear text),
/// no query.
pub fn file_endpoint_template(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    if raw.matches("{account}").count() != 1 {
        return Err("must contain {account} exactly once".into());
    }
    let probe =
        Url::parse(&raw.replace("{account}", "account0")).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match probe.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match probe.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be https (http only on a loopback host)".into()),
    }
    if probe.query().is_some() || probe.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    let host = probe.host_str().unwrap_or_default();
    let in_path = probe.path().trim_start_matches('/') == "account0";
    if !(host.contains("account0") || in_path) {
        return Err("{account} must be in the host name or be the whole path".into());
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod infra_tests {
    //! The shipped deployment against the code: the settings infra sets, the containers,
    //! queues and roles the adapters use.
    use super::*;

    fn repo_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Plausible values for functionapp.bicep's parameters, as main.bicep passes them.
    fn param(name: &str) -> Option<String> {
        Some(
            match name {
                "hostStorageName" => "stdsrhost123",
                "identityClientId" => "00000000-0000-0000-0000-0000000000c1",
                "serviceBusFqdn" => "sb-dsr-abc.servicebus.windows.net",
                "appInsightsConnectionString" => {
                    "InstrumentationKey=00000000-0000-0000-0000-000000000000"
                }
                "appInsightsAuthenticationString" => "ClientId=x;Authorization=AAD",
                "logSalt" => "6f1c2a1e-58c4-4be0-9d2a-4d1b3c9f0a77",
                "stateBlobEndpoint" => "https://stdsrstate123.blob.core.windows.net/",
                "retentionSweepSchedule" => "0 30 2 * * *",
                "jobRetentionEnabled" => "False",
                "jobRetentionDays" => "365",
                "stateRetentionDays" => "90",
                "telemetryPurgeEnabled" => "False",
                "exportLinkDays" => "7",
                "maxDeliveryCount" => "10",
                _ => return None,
            }
            .to_string(),
        )
    }

    fn shipped() -> Vec<(String, String)> {
        render_app_settings(&repo_file("infra/app-settings.json"), &param).unwrap()
    }

    #[test]
    fn the_shipped_settings_start_azure_mode_with_azure_adapters_only() {
        let app = AppSettings::load(&Env::from_pairs(shipped()), &Overrides::default()).unwrap();
        assert_eq!(app.mode, Mode::Azure);
        assert!(matches!(app.adapters, Adapters::Azure(_)));
        assert_eq!(app.tunables.state_account, "stdsrstate123");
        // Bicep's string(false) is "False": it must parse, not fall back to a default.
        assert!(!app.tunables.telemetry_purge_enabled);
        assert_eq!(app.tunables.retention_days, 365);
        // Job-history retention deletes every user's jobs: off unless enabled explicitly.
        assert!(!app.tunables.job_retention_enabled);
    }

    #[test]
    fn every_setting_azure_mode_requires_is_set_by_infra() {
        let names: Vec<String> = shipped().into_iter().map(|(n, _)| n).collect();
        for s in SPECS.iter().filter(|s| s.applies != Applies::Local) {
            let set = names.iter().any(|n| n == s.name);
            assert!(
                set || (!s.required_in_azure && !s.default.is_empty())
                    || s.name.starts_with("FUNCTIONS_")
                    || s.name == "DSR_LOG",
                "{} is read in Azure mode but neither set by infra/app-settings.json nor documented with a default",
                s.name
            );
            assert!(
                !s.required_in_azure || set || s.name == "DSR_MODE",
                "{} is required in Azure mode but infra does not set it",
                s.name
            );
        }
        // Nothing infra sets for the handler is unknown to it (a renamed setting would be).
        for n in names.iter().filter(|n| n.starts_with("DSR_")) {
            assert!(
                SPECS.iter().any(|s| s.name == n),
                "infra sets {n}, which the code never reads"
            );
        }
        for s in SPECS.iter().filter(|s| s.applies == Applies::Local) {
            assert!(
                !names.contains(&s.name.to_string()),
                "infra sets the local-mode setting {}",
                s.name
            );
        }
    }

    /// `var <name> = [ 'a' 'b' ]` in a Bicep file.
    fn bicep_list(text: &str, var: &str) -> Vec<String> {
        let start = text
            .find(&format!("var {var} = ["))
            .unwrap_or_else(|| panic!("var {var}"));
        let rest = &text[start..];
        let body = &rest[..rest.find(']').unwrap()];
        body.split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_state_container_is_declared_in_infra() {
        let declared = bicep_list(
            &repo_file("infra/modules/storage-state.bicep"),
            "containers",
        );
        for c in crate::state::CONTAINERS {
            assert!(
                declared.iter().any(|d| d == c),
                "state container {c} is not declared in storage-state.bicep ({declared:?})"
            );
        }
    }

    #[test]
    fn every_queue_is_declared_with_the_roles_the_handler_needs() {
        use crate::ports::bus::queues;
        let sb = repo_file("infra/modules/servicebus.bicep");
        let slice_types = bicep_list(&sb, "sliceTypes");
        for t in crate::domain::plan::ResourceType::ALL {
            assert!(
                slice_types.iter().any(|s| s == t.as_str()),
                "no dsr-slice-{} queue in servicebus.bicep",
                t.as_str()
            );
        }
        for q in [queues::INTAKE, queues::COMPLETIONS, queues::RESULTS] {
            assert!(
                sb.contains(&format!("name: '{q}'")),
                "queue {q} not declared in servicebus.bicep"
            );
        }
        // The handler sends (completions, results, slice tasks) and the host receives for it.
        for role in ["sbDataSender", "sbDataReceiver"] {
            assert!(
                sb.contains(&format!("roleDefinitions', {role})")),
                "servicebus.bicep assigns no {role}"
            );
        }
    }

    #[test]
    fn every_adapter_has_its_role_assignment() {
        // (module, role variable): blob state + SAS links, workspace blobs and Files, purge.
        for (file, role) in [
            (
                "infra/modules/storage-state.bicep",
                "storageBlobDataContributor",
            ),
            ("infra/modules/storage-state.bicep", "storageBlobDelegator"),
            (
                "infra/modules/workspace-storage-access.bicep",
                "storageBlobDataContributor",
            ),
            (
                "infra/modules/workspace-storage-access.bicep",
                "storageFileDataPrivilegedContributor",
            ),
            ("infra/modules/telemetry-access.bicep", "dataPurger"),
        ] {
            let text = repo_file(file);
            assert!(
                text.contains(&format!("roleDefinitions', {role})")),
                "{file} does not assign {role}"
            );
        }
        let ws = repo_file("infra/modules/workspace-access.bicep");
        assert!(
            ws.contains("roleAssignments@"),
            "workspace-access.bicep assigns no role on the ML workspace"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure_env() -> Env {
        Env::from_pairs([
            ("DSR_MODE", "azure"),
            (
                "DSR_STATE_ACCOUNT_URL",
                "https://dsrstate123.blob.core.windows.net/",
            ),
            ("DSR_SERVICEBUS_NAMESPACE", "dsr-sb.servicebus.windows.net"),
            ("DSR_LOG_SALT", "0123456789abcdef-secret"),
        ])
    }

    #[test]
    fn azure_mode_with_the_required_settings() {
        let s = AppSettings::load(&azure_env(), &Overrides::default()).unwrap();
        assert_eq!(s.mode, Mode::Azure);
        assert_eq!(s.tunables.state_account, "dsrstate123");
        let Adapters::Azure(a) = &s.adapters else {
            panic!("azure adapters")
        };
        assert_eq!(
            a.blob_endpoint_template,
            "https://{account}.blob.core.windows.net"
        );
        assert_eq!(a.arm_endpoint.as_str(), "https://management.azure.com/");
    }

    #[test]
    fn azure_mode_names_each_missing_or_local_setting() {
        for missing in [
            "DSR_STATE_ACCOUNT_URL",
            "DSR_SERVICEBUS_NAMESPACE",
            "DSR_LOG_SALT",
        ] {
            let mut env = azure_env();
            env.0.remove(missing);
            let e = AppSettings::load(&env, &Overrides::default()).unwrap_err();
            assert_eq!(e.name, missing, "{e}");
        }
        for (local, v) in [
            ("DSR_STORAGE", "local"),
            ("DSR_DATA_DIR", "/tmp/x"),
            ("DSR_STATE_ACCOUNT", "dsrstate"),
        ] {
            let mut env = azure_env();
            env.set(local, v);
            assert_eq!(
                AppSettings::load(&env, &Overrides::default())
                    .unwrap_err()
                    .name,
                local
            );
        }
        let over = Overrides {
            storage: Some("local".into()),
            ..Default::default()
        };
        assert!(AppSettings::load(&azure_env(), &over).is_err());
    }

    #[test]
    fn azure_mode_refuses_a_public_or_unresolved_salt() {
        for salt in [
            LOCAL_LOG_SALT,
            "short",
            "@Microsoft.KeyVault(SecretUri=https://v/s)",
        ] {
            let mut env = azure_env();
            env.set("DSR_LOG_SALT", salt);
            assert_eq!(
                AppSettings::load(&env, &Overrides::default())
                    .unwrap_err()
                    .name,
                "DSR_LOG_SALT"
            );
        }
    }

    #[test]
    fn malformed_or_out_of_range_values_are_errors_not_defaults() {
        for (name, v) in [
            ("DSR_CHUNK_SIZE", "lots"),
            ("DSR_CHUNK_SIZE", "0"),
            ("DSR_EXPORT_LINK_DAYS", "30"),
            ("DSR_MAX_DELIVERY_COUNT", "-1"),
            ("DSR_RETENTION_DRY_RUN", "perhaps"),
            ("DSR_MODE", "cloud"),
            ("DSR_STORAGE", "s3"),
            ("DSR_ARM_ENDPOINT", "https://management.azure.com"),
            ("DSR_TELEMETRY_TABLES", "AmlRunEvent | union *"),
            ("DSR_TELEMETRY_TABLES", "AmlComputeClusterEvent"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "99999"),
            ("DSR_LOG_FORMAT", "xml"),
            ("DSR_JOB_RETENTION_DAYS", "1"),
            ("DSR_JOB_RETENTION_DAYS", "29"),
            ("DSR_JOB_RETENTION_MAX_SHARE", "0"),
            ("DSR_RETENTION_DAYS", "30"),
        ] {
            let env = Env::from_pairs([(name, v)]);
            let e = AppSettings::load(&env, &Overrides::default()).unwrap_err();
            assert_eq!(e.name, name, "{name}={v}: {e}");
        }
        let ok = AppSettings::load(
            &Env::from_pairs([
                ("DSR_CHUNK_SIZE", "7"),
                ("DSR_ARM_ENDPOINT", "http://127.0.0.1:9"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(ok.tunables.chunk_size, 7);
    }

    #[test]
    fn file_endpoint_forms() {
        assert_eq!(
            derived_file_template("https://{account}.blob.core.chinacloudapi.cn"),
            "https://{account}.file.core.chinacloudapi.cn"
        );
        assert_eq!(
            file_endpoint_template("http://127.0.0.1:8080/{account}/").unwrap(),
            "http://127.0.0.1:8080/{account}"
        );
        assert!(file_endpoint_template("https://{account}.file.core.windows.net").is_ok());
        for bad in [
            "http://{account}.file.core.windows.net",
            "https://acct.file.core.windows.net",
            "https://{account}.file.core.windows.net?x=1",
            "https://h/{account}/{account}",
            "https://h/x/{account}",
        ] {
            assert!(file_endpoint_template(bad).is_err(), "{bad}");
        }
        let mut env = Env::from_pairs([
            ("DSR_MODE", "azure"),
            ("DSR_LOG_SALT", "0123456789abcdef-salt"),
            ("DSR_STATE_ACCOUNT_URL", "https://st1.blob.core.windows.net"),
            ("DSR_SERVICEBUS_NAMESPACE", "sb.servicebus.windows.net"),
        ]);
        let a = |env: &Env| match AppSettings::load(env, &Overrides::default()) {
            Ok(AppSettings {
                adapters: Adapters::Azure(a),
                ..
            }) => Ok(a.file_endpoint_template),
            Ok(_) => Err("not azure".to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(a(&env).unwrap(), "https://{account}.file.core.windows.net");
        env.set("DSR_FILE_ENDPOINT", "http://127.0.0.1:9/{account}");
        assert_eq!(a(&env).unwrap(), "http://127.0.0.1:9/{account}");
        env.set("DSR_FILE_ENDPOINT", "http://files.example/{account}");
        assert!(a(&env).unwrap_err().contains("DSR_FILE_ENDPOINT"));
    }

    #[test]
    fn endpoint_forms() {
        let t = |u: &str| account_and_template(&Url::parse(u).unwrap());
        assert_eq!(
            t("https://acct1.blob.core.chinacloudapi.cn").unwrap(),
            (
                "acct1".into(),
                "https://{account}.blob.core.chinacloudapi.cn".into()
            )
        );
        assert_eq!(
            t("https://127.0.0.1:10000/dsrstate").unwrap(),
            (
                "dsrstate".into(),
                "https://127.0.0.1:10000/{account}".into()
            )
        );
        for bad in [
            "http://acct.blob.core.windows.net",
            "https://127.0.0.1:10000/",
            "https://acct.file.core.windows.net",
            "https://acct.blob.core.windows.net/container",
            "https://AB.blob.core.windows.net",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_local_constructor_equals_an_empty_environment() {
        let parsed = AppSettings::load(
            &Env::from_pairs([("DSR_DATA_DIR", "d")]),
            &Overrides::default(),
        )
        .unwrap();
        let built = AppSettings::local("d", StorageChoice::Local);
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn unknown_dsr_names_are_found() {
        let env = Env::from_pairs([
            ("DSR_CHUNKSIZE", "1"),
            ("DSR_CHUNK_SIZE", "1"),
            ("PATH", "/"),
        ]);
        assert_eq!(env.unknown_dsr_names(), vec!["DSR_CHUNKSIZE".to_string()]);
    }
}
