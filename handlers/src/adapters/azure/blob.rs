//! [`BlobStore`] on Azure Blob Storage with the official `azure_storage_blob` 1.x SDK.
//!
//! One store serves many storage accounts: every Azure ML workspace has its own account and the
//! product's state lives in another, so each call names its account and clients are built (and
//! cached) per account from [`Endpoints`].
//!
//! What the SDK does not cover is added here, small and explicit:
//! - Shared Key auth for Azurite over http ([`super::shared_key`]);
//! - Blob Batch (`delete_many`): multipart/mixed through an `azure_core` pipeline;
//! - completeness of deletes: snapshots, versions and the account's soft-delete policy, so that
//!   [`DeleteOutcome`] tells the truth in erasure reports.
//!
//! Rooms: this file holds configuration, per-account clients and error mapping; `links` (SAS
//! read links), `erase` (complete deletes and the soft-delete policy), `batch` (Blob Batch) and
//! `store` (the [`BlobStore`] impl composing them) sit beside it in `blob/`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{
    policies::{auth::BearerTokenAuthorizationPolicy, Policy},
    ClientOptions, Context, Etag, Method, Pipeline, PipelineSendOptions, Request, Url,
};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientStartCopyFromUrlResultHeaders, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions, BlobDeleteType, BlobServiceClientListContainersOptions,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientCommitBlockListResultHeaders,
    BlockLookupList, CopyStatus, DeleteSnapshotsOptionType, KeyInfo, ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use time::{Duration, OffsetDateTime};

use super::retry::{with_retries, RetryConfig};
use super::sas::{self, DelegationKey, SasResource, SasSigner};
use super::shared_key::{http_date, SharedKeyCredential, SharedKeyPolicy, DEV_KEY};
use crate::ports::blob::{
    BlobItem, BlobProps, BlobReader, BlobRef, BlobStore, Condition, DeleteOutcome, ListPage,
    StoreError, StoreResult,
};

mod batch;
mod erase;
mod links;
mod store;

const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Blob Batch accepts at most 256 sub-requests.
pub(crate) const BATCH_MAX: usize = 256;
/// How long a cached soft-delete policy is trusted.
const RETENTION_TTL: StdDuration = StdDuration::from_secs(300);
/// Lifetime of the SAS put on a copy source (only the service reads it).
const COPY_SOURCE_SAS: Duration = Duration::hours(1);
/// Download partition size: the most one read holds in memory per in-flight range.
const READ_CHUNK: usize = 4 * 1024 * 1024;

/// Where each account's blob endpoint is.
#[derive(Debug, Clone)]
pub enum Endpoints {
    /// `{account}` is replaced by the account name, e.g.
    /// `https://{account}.blob.core.windows.net` or `http://127.0.0.1:10000/{account}` (Azurite).
    Template(String),
    /// Explicit endpoint per account (private endpoints, custom domains).
    Map(BTreeMap<String, Url>),
}

impl Endpoints {
    pub(crate) fn account_url(&self, account: &str) -> StoreResult<Url> {
        if account.is_empty() || !account.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StoreError::InvalidName(format!(
                "storage account {account:?}"
            )));
        }
        match self {
            Endpoints::Template(t) => Url::parse(&t.replace("{account}", account))
                .map_err(|e| StoreError::Other(format!("endpoint for {account}: {e}"))),
            Endpoints::Map(m) => m.get(account).cloned().ok_or_else(|| {
                StoreError::Other(format!("no endpoint configured for account {account}"))
            }),
        }
    }
}

/// Account keys for Shared Key mode.
#[derive(Clone, Default)]
pub struct SharedKeys {
    keys: BTreeMap<String, String>,
    fallback: Option<String>,
}

impl SharedKeys {
    pub fn single(account: impl Into<String>, key: impl Into<String>) -> Self {
        Self::default().with(account, key)
    }
    /// Add an account's key.
    pub fn with(mut self, account: impl Into<String>, key: impl Into<String>) -> Self {
        self.keys.insert(account.into(), key.into());
        self
    }
    /// Key used for accounts not listed (Azurite accounts sharing the dev key).
    pub fn fallback(mut self, key: impl Into<String>) -> Self {
        self.fallback = Some(key.into());
        self
    }
    fn credential(&self, account: &str) -> StoreResult<SharedKeyCredential> {
        let key = self
            .keys
            .get(account)
            .or(self.fallback.as_ref())
            .ok_or_else(|| StoreError::Other(format!("no shared key for account {account}")))?;
        SharedKeyCredential::new(account, key)
    }
}

/// How requests are authorised.
#[derive(Clone)]
pub enum Auth {
    /// Entra ID (managed identity in production). Endpoints must be https.
    Token(Arc<dyn TokenCredential>),
    /// Account keys; meant for Azurite over http.
    SharedKey(SharedKeys),
}

/// An account's blob soft-delete policy (Blob service properties, DeleteRetentionPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub enabled: bool,
    pub days: u32,
    pub allow_permanent_delete: bool,
}

impl RetentionPolicy {
    pub const OFF: RetentionPolicy = RetentionPolicy {
        enabled: false,
        days: 0,
        allow_permanent_delete: false,
    };

    /// What a delete achieved under this policy. `fully_purged` is true when every soft-deleted
    /// piece (snapshots and versions, including the one the base blob became) was then
    /// permanently deleted; a base blob without versioning cannot be, so it stays retained.
    pub fn outcome(&self, now: OffsetDateTime, fully_purged: bool) -> DeleteOutcome {
        if !self.enabled || self.days == 0 || (self.allow_permanent_delete && fully_purged) {
            DeleteOutcome::Deleted
        } else {
            DeleteOutcome::Retained {
                until: now + Duration::days(i64::from(self.days)),
            }
        }
    }
}

/// Whether deletes look for blob versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// List `include=versions` after each delete and remove what is left (correct whatever the
    /// account's setting; one extra listing per blob).
    Detect,
    /// The deployment guarantees versioning is off: skip the listing.
    Off,
}

/// Configuration of [`AzureBlobStore`].
#[derive(Clone)]
pub struct AzureBlobConfig {
    pub endpoints: Endpoints,
    pub auth: Auth,
    pub retry: RetryConfig,
    pub versioning: Versioning,
    /// Use this soft-delete policy instead of reading the service properties (for identities
    /// not allowed to read them; the infrastructure code knows the policy).
    pub retention_override: Option<RetentionPolicy>,
    /// Extra per-try pipeline policies (request logging, tests capturing URLs).
    pub extra_policies: Vec<Arc<dyn Policy>>,
    /// How often a pending server-side copy is polled, and for how long.
    pub copy_poll: StdDuration,
    pub copy_timeout: StdDuration,
}

impl AzureBlobConfig {
    pub fn new(endpoints: Endpoints, auth: Auth) -> Self {
        Self {
            endpoints,
            auth,
            retry: RetryConfig::default(),
            versioning: Versioning::Detect,
            retention_override: None,
            extra_policies: Vec::new(),
            copy_poll: StdDuration::from_millis(500),
            copy_timeout: StdDuration::from_secs(3600),
        }
    }
}

/// Per-account clients.
struct Account {
    url: Url,
    service: BlobServiceClient,
    /// Same policies as the SDK clients, for requests the SDK lacks (Blob Batch).
    pipeline: Pipeline,
    shared_key: Option<Arc<SharedKeyCredential>>,
    version: String,
}

/// [`BlobStore`] on Azure Blob Storage (or Azurite).
pub struct AzureBlobStore {
    cfg: AzureBlobConfig,
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    retention: Mutex<HashMap<String, (Instant, RetentionPolicy)>>,
    delegation_keys: tokio::sync::Mutex<HashMap<String, DelegationKey>>,
}

impl AzureBlobStore {
    pub fn new(cfg: AzureBlobConfig) -> Self {
        Self {
            cfg,
            accounts: Mutex::default(),
            retention: Mutex::default(),
            delegation_keys: tokio::sync::Mutex::default(),
        }
    }

    /// Azurite at `base_url` (e.g. `http://127.0.0.1:10000`), path-style `<base>/<account>`,
    /// every account signed with the well-known dev key (start Azurite with `AZURITE_ACCOUNTS`
    /// giving each account that key).
    pub fn azurite(base_url: &str) -> Self {
        Self::new(Self::azurite_config(base_url))
    }

    /// The configuration [`Self::azurite`] uses, to adjust before building.
    pub fn azurite_config(base_url: &str) -> AzureBlobConfig {
        AzureBlobConfig::new(
            Endpoints::Template(format!("{}/{{account}}", base_url.trim_end_matches('/'))),
            Auth::SharedKey(SharedKeys::default().fallback(DEV_KEY)),
        )
    }

    pub fn config(&self) -> &AzureBlobConfig {
        &self.cfg
    }

    fn account(&self, name: &str) -> StoreResult<Arc<Account>> {
        if let Some(a) = self.accounts.lock().expect("accounts lock").get(name) {
            return Ok(a.clone());
        }
        let url = self.cfg.endpoints.account_url(name)?;
        let mut client_options = ClientOptions {
            retry: self.cfg.retry.to_options(),
            ..Default::default()
        };
        let mut credential = None;
        let mut shared_key = None;
        let mut per_try: Vec<Arc<dyn Policy>> = Vec::new();
        match &self.cfg.auth {
            Auth::Token(c) => {
                credential = Some(c.clone());
                per_try.push(Arc::new(BearerTokenAuthorizationPolicy::new(
                    c.clone(),
                    [STORAGE_SCOPE],
                )));
            }
            Auth::SharedKey(keys) => {
                let cred = Arc::new(keys.credential(name)?);
                // Signing must be the last per-try step before the transport, after any policy
                // that could still add headers, so it goes after the extra policies.
                client_options
                    .per_try_policies
                    .push(Arc::new(SharedKeyPolicy::new(cred.clone())));
                shared_key = Some(cred);
            }
        }
        // Extra policies first: they observe each try's URL (and for Shared Key, run before signing).
        let mut policies = self.cfg.extra_policies.clone();
        policies.append(&mut client_options.per_try_policies);
        client_options.per_try_policies = policies;
        let options = BlobServiceClientOptions {
            client_options: client_options.clone(),
            ..Default::default()
        };
        let version = options.version.clone();
        let service = BlobServiceClient::new(url.clone(), credential, Some(options))
            .map_err(|e| StoreError::Other(format!("blob client for {name}: {e}")))?;
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options,
            Vec::new(),
            per_try,
            None,
        );
        let account = Arc::new(Account {
            url,
            service,
            pipeline,
            shared_key,
            version,
        });
        self.accounts
            .lock()
            .expect("accounts lock")
            .insert(name.to_string(), account.clone());
        Ok(account)
    }
}

/// `account_url` + container + blob name as path segments (names are percent-encoded).
fn blob_url(account_url: &Url, container: &str, name: &str) -> Url {
    let mut url = account_url.clone();
    push_segments(&mut url, &[container, name]);
    url
}

fn push_segments(url: &mut Url, segments: &[&str]) {
    let mut path = url.path_segments_mut().expect("endpoint is a base URL");
    path.pop_if_empty();
    path.extend(segments);
}

fn status_of(e: &azure_core::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

/// Map an SDK error from a request the pipeline sent (and retried, if it was worth it). `what`
/// names the operation and blob (names only, no payload).
fn map_err(e: azure_core::Error, what: &str) -> StoreError {
    match map_err_unretried(&e, what) {
        // The pipeline retried it up to its budget: not again at once, by any layer.
        StoreError::Transient(what) => StoreError::RetriesSpent {
            what,
            source: Box::new(e),
        },
        other => other,
    }
}

/// Map an SDK error no retry layer has seen (a body stream that broke mid-way).
fn map_err_unretried(e: &azure_core::Error, what: &str) -> StoreError {
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => map_status(u16::from(*status), error_code.as_deref(), what),
        ErrorKind::Io | ErrorKind::Connection => StoreError::Transient(crate::logging::redact(
            &format!("{what}: {}", with_causes(e)),
        )),
        _ => StoreError::Other(crate::logging::redact(&format!(
            "{what}: {}",
            with_causes(e)
        ))),
    }
}

/// An error with its causes: the SDK wraps a credential failure ("no token: …") in a generic
/// "non-transport error", and the cause is what an operator needs to read.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

pub(crate) fn map_status(status: u16, code: Option<&str>, what: &str) -> StoreError {
    // Blob names can be personal (`Users/<alias>/…`): errors are logged.
    let what = crate::logging::redact(what);
    let msg = match code {
        Some(c) => format!("{what}: HTTP {status} {c}"),
        None => format!("{what}: HTTP {status}"),
    };
    match (status, code) {
        (404, _) => StoreError::NotFound(msg),
        (409, Some("BlobAlreadyExists" | "ContainerAlreadyExists")) => {
            StoreError::AlreadyExists(msg)
        }
        (412, _) => StoreError::ConditionFailed(msg),
        (400, Some("InvalidResourceName" | "InvalidUri" | "OutOfRangeInput")) => {
            StoreError::InvalidName(msg)
        }
        (408 | 429 | 500..=599, _) => StoreError::Transient(msg),
        _ => StoreError::Other(msg),
    }
}

fn etag_string(e: Option<Etag>) -> String {
    e.map(|e| e.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::batch::parse_batch_response;
    use super::erase::common_prefix;
    use super::*;

    #[test]
    fn policy_to_outcome() {
        let now = time::macros::datetime!(2026-11-28 20:00:00 UTC);
        assert_eq!(
            RetentionPolicy::OFF.outcome(now, false),
            DeleteOutcome::Deleted
        );
        let soft = RetentionPolicy {
            enabled: true,
            days: 7,
            allow_permanent_delete: false,
        };
        let until = time::macros::datetime!(2026-12-05 20:00:00 UTC);
        assert_eq!(soft.outcome(now, true), DeleteOutcome::Retained { until });
        assert_eq!(soft.outcome(now, false), DeleteOutcome::Retained { until });
        let perm = RetentionPolicy {
            allow_permanent_delete: true,
            ..soft
        };
        assert_eq!(perm.outcome(now, true), DeleteOutcome::Deleted);
        assert_eq!(perm.outcome(now, false), DeleteOutcome::Retained { until });
    }

    #[test]
    fn status_mapping() {
        assert!(matches!(
            map_status(404, Some("BlobNotFound"), "x"),
            StoreError::NotFound(_)
        ));
        assert!(matches!(
            map_status(409, Some("BlobAlreadyExists"), "x"),
            StoreError::AlreadyExists(_)
        ));
        assert!(matches!(
            map_status(409, Some("LeaseIdMissing"), "x"),
            StoreError::Other(_)
        ));
        assert!(matches!(
            map_status(412, None, "x"),
            StoreError::ConditionFailed(_)
        ));
        for s in [408, 429, 500, 503] {
            assert!(map_status(s, None, "x").is_transient());
        }
        assert!(matches!(map_status(403, None, "x"), StoreError::Other(_)));
    }

    #[test]
    fn common_prefix_of_names() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(common_prefix(&v(&[])), "");
        assert_eq!(common_prefix(&v(&["a/b/c"])), "a/b/c");
        assert_eq!(
            common_prefix(&v(&["a/job1/x", "a/job2/y", "a/job10"])),
            "a/job"
        );
        assert_eq!(common_prefix(&v(&["x", "y"])), "");
        assert_eq!(common_prefix(&v(&["é1", "é2"])), "é");
        assert_eq!(common_prefix(&v(&["ab", "a"])), "a");
    }

    #[test]
    fn batch_response_parsing() {
        let ct = "multipart/mixed; boundary=batchresponse_66925647-d0cb-4109-b6d3-28efe3e1e5ed";
        let body = "--batchresponse_66925647-d0cb-4109-b6d3-28efe3e1e5ed\r\n\
Content-Type: application/http\r\nContent-ID: 1\r\n\r\nHTTP/1.1 404 The specified blob does not exist.\r\n\
x-ms-error-code: BlobNotFound\r\nContent-Length: 0\r\n\r\n\
--batchresponse_66925647-d0cb-4109-b6d3-28efe3e1e5ed\r\n\
Content-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\nx-ms-delete-type-permanent: true\r\n\r\n\
--batchresponse_66925647-d0cb-4109-b6d3-28efe3e1e5ed--\r\n";
        let r = parse_batch_response(ct, body, 2).unwrap();
        assert_eq!(r, vec![(202, None), (404, Some("BlobNotFound".into()))]);
        assert!(parse_batch_response(ct, body, 3).is_err());
    }

    #[test]
    fn endpoints_and_urls() {
        let e = Endpoints::Template("http://127.0.0.1:10000/{account}".into());
        let u = e.account_url("acct1").unwrap();
        assert_eq!(
            blob_url(&u, "c", "a/b c.txt").as_str(),
            "http://127.0.0.1:10000/acct1/c/a%2Fb%20c.txt"
        );
        let e = Endpoints::Template("https://{account}.blob.core.windows.net".into());
        let u = e.account_url("acct1").unwrap();
        assert_eq!(
            blob_url(&u, "c", "x").as_str(),
            "https://acct1.blob.core.windows.net/c/x"
        );
        assert!(e.account_url("evil.com/x").is_err());
        let svc = BlobServiceClient::new(u.clone(), None, None).unwrap();
        assert_eq!(
            svc.blob_client("c", "a/b c.txt").url(),
            &blob_url(&u, "c", "a/b c.txt")
        );
    }
}
