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

const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Blob Batch accepts at most 256 sub-requests.
pub const BATCH_MAX: usize = 256;
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
    pub fn account_url(&self, account: &str) -> StoreResult<Url> {
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

    /// Production: `https://{account}.blob.core.windows.net` with an Entra ID credential.
    pub fn public_cloud(credential: Arc<dyn TokenCredential>) -> Self {
        Self::new(
            Endpoints::Template("https://{account}.blob.core.windows.net".into()),
            Auth::Token(credential),
        )
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

    /// The account's soft-delete policy (cached for a few minutes).
    pub async fn retention_policy(&self, account: &str) -> StoreResult<RetentionPolicy> {
        if let Some(p) = self.cfg.retention_override {
            return Ok(p);
        }
        if let Some((at, p)) = self.retention.lock().expect("retention lock").get(account) {
            if at.elapsed() < RETENTION_TTL {
                return Ok(*p);
            }
        }
        let acct = self.account(account)?;
        // One request, retried by the pipeline alone (see `super::retry`).
        let props = acct
            .service
            .get_properties(None)
            .await
            .map_err(|e| map_err(e, &format!("service properties of {account}")))?
            .into_model()
            .map_err(|e| StoreError::Other(format!("service properties of {account}: {e}")))?;
        let policy = match props.delete_retention_policy {
            Some(r) if r.enabled == Some(true) => RetentionPolicy {
                enabled: true,
                days: r.days.unwrap_or(0).max(0) as u32,
                allow_permanent_delete: r.allow_permanent_delete.unwrap_or(false),
            },
            _ => RetentionPolicy::OFF,
        };
        self.retention
            .lock()
            .expect("retention lock")
            .insert(account.to_string(), (Instant::now(), policy));
        Ok(policy)
    }

    /// Forget cached soft-delete policies (after changing them).
    pub fn clear_policy_cache(&self) {
        self.retention.lock().expect("retention lock").clear();
    }

    /// A time-limited read-only link to one blob. `expiry` defaults to and is capped at 7 days.
    pub async fn read_link(&self, blob: &BlobRef, expiry: Option<Duration>) -> StoreResult<Url> {
        let acct = self.account(&blob.account)?;
        let res = SasResource::Blob {
            container: &blob.container,
            name: &blob.name,
        };
        let query = self
            .sas_for(&blob.account, &acct, &res, sas::clamp_expiry(expiry))
            .await?;
        Ok(sas::with_sas(
            blob_url(&acct.url, &blob.container, &blob.name),
            &query,
        ))
    }

    /// A read+list link to a whole container (only for containers holding nothing but an export:
    /// a flat-namespace SAS cannot be limited to a prefix).
    pub async fn container_read_link(
        &self,
        account: &str,
        container: &str,
        expiry: Option<Duration>,
    ) -> StoreResult<Url> {
        let acct = self.account(account)?;
        let res = SasResource::Container { container };
        let query = self
            .sas_for(account, &acct, &res, sas::clamp_expiry(expiry))
            .await?;
        let mut url = acct.url.clone();
        push_segments(&mut url, &[container]);
        url.query_pairs_mut().append_pair("restype", "container");
        let q = format!("{}&{}", url.query().unwrap_or_default(), query);
        url.set_query(Some(&q));
        Ok(url)
    }

    /// One read link per blob under `prefix` (name, link), for sharing a prefix without
    /// exposing the rest of the container.
    pub async fn prefix_read_links(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        expiry: Option<Duration>,
    ) -> StoreResult<Vec<(String, Url)>> {
        use crate::ports::blob::BlobStoreExt;
        let items = self.list_all(account, container, prefix).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let link = self
                .read_link(&BlobRef::new(account, container, item.name.clone()), expiry)
                .await?;
            out.push((item.name, link));
        }
        Ok(out)
    }

    async fn sas_for(
        &self,
        name: &str,
        acct: &Account,
        res: &SasResource<'_>,
        lifetime: Duration,
    ) -> StoreResult<String> {
        let now = OffsetDateTime::now_utc();
        let https_only = acct.url.scheme() == "https";
        match &acct.shared_key {
            Some(cred) => sas::sas_query(
                &SasSigner::SharedKey(cred),
                res,
                now,
                now + lifetime,
                https_only,
            ),
            None => {
                let key = self.delegation_key(name, acct, now + lifetime).await?;
                let expiry = (now + lifetime).min(key.signed_expiry);
                sas::sas_query(
                    &SasSigner::UserDelegation {
                        account: name,
                        key: &key,
                    },
                    res,
                    now,
                    expiry,
                    https_only,
                )
            }
        }
    }

    /// A user delegation key valid at least until `until` (cached; keys last up to 7 days).
    async fn delegation_key(
        &self,
        name: &str,
        acct: &Account,
        until: OffsetDateTime,
    ) -> StoreResult<DelegationKey> {
        let mut cache = self.delegation_keys.lock().await;
        if let Some(k) = cache.get(name) {
            if k.signed_expiry >= until {
                return Ok(k.clone());
            }
        }
        let now = OffsetDateTime::now_utc();
        let info = KeyInfo {
            start: Some(now - Duration::minutes(5)),
            expiry: Some(now + sas::MAX_EXPIRY),
            ..Default::default()
        };
        let content = info
            .try_into()
            .map_err(|e| StoreError::Other(format!("key info: {e}")))?;
        let k = acct
            .service
            .get_user_delegation_key(content, None)
            .await
            .map_err(|e| map_err(e, &format!("user delegation key of {name}")))?
            .into_model()
            .map_err(|e| StoreError::Other(format!("user delegation key of {name}: {e}")))?;
        let missing = || StoreError::Other("incomplete user delegation key".into());
        let key = DelegationKey {
            signed_oid: k.signed_oid.ok_or_else(missing)?,
            signed_tid: k.signed_tid.ok_or_else(missing)?,
            signed_start: k.signed_start.ok_or_else(missing)?,
            signed_expiry: k.signed_expiry.ok_or_else(missing)?,
            signed_service: k.signed_service.ok_or_else(missing)?,
            signed_version: k.signed_version.ok_or_else(missing)?,
            value: k.value.ok_or_else(missing)?,
        };
        cache.insert(name.to_string(), key.clone());
        Ok(key)
    }

    /// [`Self::purge_leftovers`] for many blobs of one container, with one listing of their
    /// longest common prefix instead of one per blob. Listings come in name order, so if the
    /// prefix holds much more than these blobs (the listing passes a budget), the names not yet
    /// reached fall back to one listing each. Same result per name as `purge_leftovers`.
    async fn purge_leftovers_many(
        &self,
        acct: &Arc<Account>,
        account: &str,
        container: &str,
        names: &[String],
        policy: &RetentionPolicy,
    ) -> StoreResult<Vec<(bool, bool)>> {
        let permanent = policy.enabled && policy.allow_permanent_delete;
        if names.is_empty() || (self.cfg.versioning == Versioning::Off && !permanent) {
            return Ok(vec![(false, false); names.len()]);
        }
        let per_name = |names: Vec<(usize, String)>| async move {
            futures::stream::iter(names)
                .map(|(i, name)| async move {
                    let blob = BlobRef::new(account, container, name);
                    Ok::<_, StoreError>((i, self.purge_leftovers(acct, &blob, policy).await?))
                })
                .buffer_unordered(8)
                .try_collect::<Vec<_>>()
                .await
        };
        if names.len() == 1 {
            return Ok(per_name(vec![(0, names[0].clone())])
                .await?
                .into_iter()
                .map(|(_, r)| r)
                .collect());
        }
        let prefix = common_prefix(names);
        let mut include = vec![ListBlobsIncludeItem::Versions];
        if permanent {
            include.extend([
                ListBlobsIncludeItem::Snapshots,
                ListBlobsIncludeItem::Deleted,
            ]);
        }
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let budget = (names.len() * 8).max(5000);
        let client = acct.service.blob_container_client(container);
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            include: Some(include),
            maxresults: Some(5000),
            ..Default::default()
        };
        let what = format!("list versions {account}/{container}/{prefix}*");
        let mut pages = client
            .list_blobs(Some(options))
            .map_err(|e| map_err(e, &what))?
            .into_pages();
        let mut leftovers: Vec<Vec<Piece>> = vec![Vec::new(); names.len()];
        let mut scanned = 0usize;
        // Every name up to and including this one has been seen by the listing.
        let mut covered_up_to: Option<String> = None;
        let mut complete = false;
        loop {
            let page = match pages.try_next().await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    complete = true;
                    break;
                }
                // An emulator or account without versioning may reject include=versions.
                Err(e) if matches!(status_of(&e), Some(400 | 501)) => {
                    return Ok(vec![(false, false); names.len()])
                }
                Err(e) => return Err(map_err(e, &what)),
            };
            let page = page
                .into_model()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
            let more = page.next_marker.as_deref().is_some_and(|m| !m.is_empty());
            for item in page.blob_items {
                scanned += 1;
                let Some(name) = item.name else { continue };
                if let Some(&i) = index.get(name.as_str()) {
                    if item.version_id.is_some() || item.snapshot.is_some() {
                        leftovers[i].push((item.version_id, item.snapshot));
                    }
                }
                covered_up_to = Some(name);
            }
            if !more {
                complete = true;
                break;
            }
            if scanned > budget {
                break;
            }
        }
        // Names the listing did not reach: one listing each. A name equal to the last one seen
        // may have more versions on the next page, so it is not covered either.
        let uncovered: Vec<(usize, String)> = if complete {
            Vec::new()
        } else {
            names
                .iter()
                .enumerate()
                .filter(|(_, n)| covered_up_to.as_deref().is_none_or(|c| n.as_str() >= c))
                .map(|(i, n)| (i, n.clone()))
                .collect()
        };
        let mut result = vec![(false, false); names.len()];
        for &(i, _) in &uncovered {
            leftovers[i].clear();
        }
        for (i, r) in per_name(uncovered).await? {
            result[i] = r;
        }
        let deletes: Vec<(usize, Vec<Piece>)> = leftovers
            .into_iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .collect();
        let done: Vec<(usize, (bool, bool))> = futures::stream::iter(deletes)
            .map(|(i, pieces)| async move {
                let blob = BlobRef::new(account, container, names[i].clone());
                self.delete_pieces(acct, &blob, pieces, permanent).await?;
                Ok::<_, StoreError>((i, (true, permanent)))
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        for (i, r) in done {
            result[i] = r;
        }
        Ok(result)
    }

    /// After the base blob is gone: remove what versioning and soft delete keep. Returns
    /// (found any version or snapshot, all of them permanently removed).
    async fn purge_leftovers(
        &self,
        acct: &Account,
        blob: &BlobRef,
        policy: &RetentionPolicy,
    ) -> StoreResult<(bool, bool)> {
        let permanent = policy.enabled && policy.allow_permanent_delete;
        if self.cfg.versioning == Versioning::Off && !permanent {
            return Ok((false, false));
        }
        let mut include = vec![ListBlobsIncludeItem::Versions];
        if permanent {
            include.extend([
                ListBlobsIncludeItem::Snapshots,
                ListBlobsIncludeItem::Deleted,
            ]);
        }
        let container = acct.service.blob_container_client(&blob.container);
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(blob.name.clone()),
            include: Some(include),
            ..Default::default()
        };
        let pager = container
            .list_blobs(Some(options))
            .map_err(|e| map_err(e, &format!("list versions {blob}")))?;
        let mut pages = pager.into_pages();
        let mut leftovers = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // An emulator or account without versioning may reject include=versions.
                Err(e) if matches!(status_of(&e), Some(400 | 501)) => return Ok((false, false)),
                Err(e) => return Err(map_err(e, &format!("list versions {blob}"))),
            };
            let page = page
                .into_model()
                .map_err(|e| StoreError::Other(format!("list versions {blob}: {e}")))?;
            for item in page.blob_items {
                if item.name.as_deref() != Some(blob.name.as_str()) {
                    continue;
                }
                if item.version_id.is_some() || item.snapshot.is_some() {
                    leftovers.push((item.version_id, item.snapshot));
                }
            }
        }
        let found = !leftovers.is_empty();
        self.delete_pieces(acct, blob, leftovers, permanent).await?;
        Ok((found, found && permanent))
    }

    /// Delete the given versions/snapshots of `blob` (soft, then permanently if `permanent`).
    async fn delete_pieces(
        &self,
        acct: &Account,
        blob: &BlobRef,
        leftovers: Vec<Piece>,
        permanent: bool,
    ) -> StoreResult<()> {
        let client = acct.service.blob_client(&blob.container, &blob.name);
        for (version_id, snapshot) in leftovers {
            let target = |delete_type: Option<BlobDeleteType>| BlobClientDeleteOptions {
                version_id: version_id.clone(),
                snapshot: snapshot.clone(),
                blob_delete_type: delete_type,
                ..Default::default()
            };
            // Soft delete first (a no-op error if already soft-deleted), then permanently.
            match client.delete(Some(target(None))).await {
                Ok(_) => {}
                Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
                Err(e) => return Err(map_err(e, &format!("delete version of {blob}"))),
            }
            if permanent {
                match client
                    .delete(Some(target(Some(BlobDeleteType::Permanent))))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if status_of(&e) == Some(404) => {}
                    Err(e) => {
                        return Err(map_err(e, &format!("permanently delete version of {blob}")))
                    }
                }
            }
        }
        Ok(())
    }

    /// `deleted_earlier` survives retries: if an earlier attempt removed the base blob and then
    /// failed, the retry's 404 must not turn into `NotFound`.
    async fn delete_once(
        &self,
        blob: &BlobRef,
        deleted_earlier: &AtomicBool,
    ) -> StoreResult<DeleteOutcome> {
        // Read the policy before deleting: if it cannot be known, do not delete and then lie.
        let policy = self.retention_policy(&blob.account).await?;
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_client(&blob.container, &blob.name);
        let options = BlobClientDeleteOptions {
            delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
            ..Default::default()
        };
        let base_found = match client.delete(Some(options)).await {
            Ok(_) => {
                deleted_earlier.store(true, Ordering::SeqCst);
                true
            }
            Err(e) if status_of(&e) == Some(404) => deleted_earlier.load(Ordering::SeqCst),
            Err(e) => return Err(map_err(e, &format!("delete {blob}"))),
        };
        let (leftovers, purged) = self.purge_leftovers(&acct, blob, &policy).await?;
        if !base_found && !leftovers {
            return Ok(DeleteOutcome::NotFound);
        }
        Ok(policy.outcome(OffsetDateTime::now_utc(), purged))
    }

    /// One Blob Batch request: up to [`BATCH_MAX`] deletes. Per-item statuses in input order.
    async fn batch_delete(
        &self,
        acct: &Account,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<(u16, Option<String>)>> {
        let boundary = format!("batch_{}", uuid::Uuid::new_v4());
        let bearer = match &self.cfg.auth {
            Auth::Token(c) => Some(
                c.get_token(&[STORAGE_SCOPE], None)
                    .await
                    .map_err(|e| StoreError::Transient(format!("token: {e}")))?
                    .token
                    .secret()
                    .to_string(),
            ),
            Auth::SharedKey(_) => None,
        };
        let date = http_date(OffsetDateTime::now_utc());
        let mut body = String::with_capacity(names.len() * 400);
        for (i, name) in names.iter().enumerate() {
            let url = blob_url(&acct.url, container, name);
            let headers = vec![
                ("x-ms-date".to_string(), date.clone()),
                ("x-ms-delete-snapshots".to_string(), "include".to_string()),
                ("x-ms-version".to_string(), acct.version.clone()),
            ];
            let auth = match (&acct.shared_key, &bearer) {
                (Some(cred), _) => cred.authorization("DELETE", &url, &headers, 0),
                (None, Some(token)) => format!("Bearer {token}"),
                (None, None) => String::new(),
            };
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            body.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {i}\r\n\r\n\
                 DELETE {path} HTTP/1.1\r\n"
            ));
            for (k, v) in &headers {
                body.push_str(&format!("{k}: {v}\r\n"));
            }
            if !auth.is_empty() {
                body.push_str(&format!("Authorization: {auth}\r\n"));
            }
            body.push_str("Content-Length: 0\r\n\r\n\r\n");
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let body = Bytes::from(body);

        let mut url = acct.url.clone();
        url.query_pairs_mut().append_pair("comp", "batch");
        let mut request = Request::new(url, Method::Post);
        request.insert_header(
            "content-type",
            format!("multipart/mixed; boundary={boundary}"),
        );
        request.insert_header("x-ms-version", acct.version.clone());
        request.insert_header("content-length", body.len().to_string());
        request.set_body(body);
        let response = acct
            .pipeline
            .send(
                &Context::new(),
                &mut request,
                Some(PipelineSendOptions::default()),
            )
            .await
            .map_err(|e| map_err(e, &format!("blob batch on {container}")))?;
        let content_type = response
            .headers()
            .get_optional_str(&azure_core::http::headers::CONTENT_TYPE)
            .unwrap_or_default()
            .to_string();
        let text = String::from_utf8_lossy(response.body().as_ref()).into_owned();
        parse_batch_response(&content_type, &text, names.len())
    }
}

/// A version or snapshot of a blob: (version id, snapshot).
type Piece = (Option<String>, Option<String>);

/// Longest common prefix of `names` (on char boundaries).
fn common_prefix(names: &[String]) -> &str {
    let Some(first) = names.first() else {
        return "";
    };
    let mut end = first.len();
    for n in &names[1..] {
        end = first
            .char_indices()
            .zip(n.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(end);
    }
    &first[..end]
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

/// Parse a multipart/mixed batch response into (status, error code) per Content-ID.
pub(crate) fn parse_batch_response(
    content_type: &str,
    body: &str,
    count: usize,
) -> StoreResult<Vec<(u16, Option<String>)>> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| {
            StoreError::Other(format!("batch response without boundary: {content_type:?}"))
        })?;
    let mut out: Vec<Option<(u16, Option<String>)>> = vec![None; count];
    let mut next_index = 0usize;
    for part in body.split(&format!("--{boundary}")) {
        let mut id = None;
        let mut status = None;
        let mut code = None;
        for line in part.lines() {
            let line = line.trim();
            if let Some(v) = strip_header(line, "content-id") {
                id = v.parse::<usize>().ok();
            } else if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u16>().ok());
            } else if let Some(v) = strip_header(line, "x-ms-error-code") {
                code = Some(v.to_string());
            }
        }
        let Some(status) = status else { continue };
        let index = id.unwrap_or(next_index);
        next_index = index + 1;
        if index < count {
            out[index] = Some((status, code));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.ok_or_else(|| StoreError::Transient(format!("batch response lacks item {i}")))
        })
        .collect()
}

fn strip_header<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
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

#[async_trait]
impl BlobStore for AzureBlobStore {
    async fn read_link(
        &self,
        blob: &BlobRef,
        expiry: time::Duration,
    ) -> StoreResult<Option<String>> {
        Ok(Some(
            AzureBlobStore::read_link(self, blob, Some(expiry))
                .await?
                .to_string(),
        ))
    }

    fn kind(&self) -> &'static str {
        "azure-blob"
    }

    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()> {
        let acct = self.account(account)?;
        match acct
            .service
            .blob_container_client(container)
            .create(None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(map_err(
                e,
                &format!("create container {account}/{container}"),
            )),
        }
    }

    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>> {
        let acct = self.account(account)?;
        let options = BlobServiceClientListContainersOptions {
            // An empty `prefix=` is signed differently by Shared Key and the service: leave it out.
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            ..Default::default()
        };
        let what = format!("list containers of {account}");
        let mut pages = acct
            .service
            .list_containers(Some(options))
            .map_err(|e| map_err(e, &what))?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| map_err(e, &what))? {
            let page = page
                .into_model()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
            out.extend(page.container_items.into_iter().filter_map(|c| c.name));
        }
        Ok(out)
    }

    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome> {
        let policy = self.retention_policy(account).await?;
        let acct = self.account(account)?;
        match acct
            .service
            .blob_container_client(container)
            .delete(None)
            .await
        {
            // Blobs of a deleted container follow the blob soft-delete policy; container soft
            // delete is a management-plane setting, covered by `retention_override` if used.
            Ok(_) => Ok(policy.outcome(OffsetDateTime::now_utc(), false)),
            Err(e) if status_of(&e) == Some(404) => Ok(DeleteOutcome::NotFound),
            Err(e) => Err(map_err(
                e,
                &format!("delete container {account}/{container}"),
            )),
        }
    }

    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        let acct = self.account(account)?;
        let what = format!("list {account}/{container}");
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            marker,
            maxresults: Some(max_results.clamp(1, 5000) as i32),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        let container_client = acct.service.blob_container_client(container);
        // One request, retried by the pipeline alone (see `super::retry`).
        let mut pages = container_client
            .list_blobs(Some(options))
            .map_err(|e| map_err(e, &what))?
            .into_pages();
        let page = match pages.try_next().await.map_err(|e| map_err(e, &what))? {
            Some(p) => p
                .into_model()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?,
            None => Default::default(),
        };
        let items = page
            .blob_items
            .into_iter()
            .filter_map(|b| {
                let name = b.name?;
                let props = b.properties.unwrap_or_default();
                Some(BlobItem {
                    name,
                    size: props.content_length.unwrap_or(0),
                    etag: etag_string(props.etag),
                    content_type: props.content_type,
                    last_modified: props.last_modified,
                    metadata: b
                        .metadata
                        .and_then(|m| m.values)
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                })
            })
            .collect();
        Ok(ListPage {
            items,
            next: page.next_marker.filter(|m| !m.is_empty()),
        })
    }

    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader> {
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_client(&blob.container, &blob.name);
        let options = BlobClientDownloadOptions {
            // Ranged GETs of READ_CHUNK, two in flight: memory stays bounded whatever the size.
            parallel: std::num::NonZero::new(2),
            partition_size: std::num::NonZero::new(READ_CHUNK),
            ..Default::default()
        };
        let what = format!("read {blob}");
        let result = client
            .download(Some(options))
            .await
            .map_err(|e| map_err(e, &what))?;
        let content_range = result
            .headers
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                "content-range",
            ))
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.parse::<u64>().ok());
        let props = BlobProps {
            size: content_range
                .or(result.properties.content_length)
                .unwrap_or(0),
            etag: etag_string(result.properties.etag.clone()),
            content_type: result.properties.content_type.clone(),
        };
        let body = result.body.map_err(move |e| map_err_unretried(&e, &what));
        Ok(BlobReader {
            props,
            body: Box::pin(body),
        })
    }

    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        content_type: &str,
        condition: Condition,
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_client(&blob.container, &blob.name);
        let mut options = BlobClientUploadOptions {
            blob_content_type: Some(content_type.to_string()),
            metadata: (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect()),
            ..Default::default()
        };
        match &condition {
            Condition::None => {}
            Condition::IfNotExists => options.if_none_match = Some(Etag::from("*")),
            Condition::IfMatch(etag) => options.if_match = Some(Etag::from(etag.clone())),
        }
        let what = format!("put {blob}");
        match client.upload(body.into(), Some(options)).await {
            Ok(r) => Ok(etag_string(r.etag)),
            Err(e) => Err(match (map_err(e, &what), &condition) {
                // Azure answers 409 to If-None-Match `*`, some emulators 412: same meaning.
                (StoreError::ConditionFailed(m), Condition::IfNotExists) => {
                    StoreError::AlreadyExists(m)
                }
                (other, _) => other,
            }),
        }
    }

    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()> {
        let src_acct = self.account(&src.account)?;
        let dst_acct = self.account(&dst.account)?;
        // The service, not us, reads the source: give it a short read-only SAS.
        let res = SasResource::Blob {
            container: &src.container,
            name: &src.name,
        };
        let sas = self
            .sas_for(&src.account, &src_acct, &res, COPY_SOURCE_SAS)
            .await?;
        let source = sas::with_sas(blob_url(&src_acct.url, &src.container, &src.name), &sas);
        let client = dst_acct.service.blob_client(&dst.container, &dst.name);
        let what = format!("copy {src} -> {dst}");
        let started = client
            .start_copy_from_url(source.to_string(), None)
            .await
            .map_err(|e| map_err(e, &what))?;
        let mut status = started
            .copy_status()
            .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
        let deadline = Instant::now() + self.cfg.copy_timeout;
        loop {
            match status {
                Some(CopyStatus::Success) | None => return Ok(()),
                Some(CopyStatus::Failed) | Some(CopyStatus::Aborted) => {
                    let props = client.get_properties(None).await.ok();
                    let desc = props
                        .and_then(|p| p.copy_status_description().ok().flatten())
                        .unwrap_or_default();
                    return Err(StoreError::Transient(format!(
                        "{what}: copy did not complete: {desc}"
                    )));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(StoreError::Transient(format!(
                    "{what}: copy still pending after timeout"
                )));
            }
            tokio::time::sleep(self.cfg.copy_poll).await;
            let props = client
                .get_properties(None)
                .await
                .map_err(|e| map_err(e, &what))?;
            status = props
                .copy_status()
                .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
        }
    }

    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome> {
        // Each request of the delete is retried by the pipeline; a failure that spent those
        // retries is not worth repeating the whole delete for at once (see `super::retry`).
        self.delete_once(blob, &AtomicBool::new(false)).await
    }

    /// One listing of the blob's name with `include=deleted,snapshots,versions` (List Blobs,
    /// REST API 2019-12-12+: soft-deleted entries carry `Deleted`, `DeletedTime` and
    /// `RemainingRetentionDays`; versions `VersionId`/`IsCurrentVersion`; snapshots `Snapshot`).
    /// An account or emulator refusing `versions` (400/501) is asked again without it.
    async fn recoverable(&self, blob: &BlobRef, _now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let acct = self.account(&blob.account)?;
        let client = acct.service.blob_container_client(&blob.container);
        let what = format!("list recoverable {blob}");
        let mut with_versions = true;
        'attempt: loop {
            let mut include = vec![
                ListBlobsIncludeItem::Deleted,
                ListBlobsIncludeItem::Snapshots,
            ];
            if with_versions {
                include.push(ListBlobsIncludeItem::Versions);
            }
            let options = BlobContainerClientListBlobsOptions {
                prefix: Some(blob.name.clone()),
                include: Some(include),
                maxresults: Some(5000),
                ..Default::default()
            };
            let mut pages = client
                .list_blobs(Some(options))
                .map_err(|e| map_err(e, &what))?
                .into_pages();
            let mut out = Vec::new();
            loop {
                let page = match pages.try_next().await {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(out),
                    Err(e) if with_versions && matches!(status_of(&e), Some(400 | 501)) => {
                        with_versions = false;
                        continue 'attempt;
                    }
                    Err(e) => return Err(map_err(e, &what)),
                };
                let page = page
                    .into_model()
                    .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
                for item in page.blob_items {
                    if item.name.as_deref() != Some(blob.name.as_str()) {
                        continue;
                    }
                    let props = item.properties.unwrap_or_default();
                    out.push(if item.deleted == Some(true) {
                        match (props.deleted_time, props.remaining_retention_days) {
                            (Some(t), Some(d)) => format!(
                                "soft-deleted copy (deleted {t}, {d} day(s) of retention left)"
                            ),
                            (Some(t), None) => format!("soft-deleted copy (deleted {t})"),
                            _ => "soft-deleted copy".to_string(),
                        }
                    } else if let Some(s) = item.snapshot {
                        format!("snapshot {s}")
                    } else if let (Some(v), false) =
                        (item.version_id, item.is_current_version == Some(true))
                    {
                        format!("previous version {v}")
                    } else {
                        "the blob itself (present again: restored or re-created)".to_string()
                    });
                }
            }
        }
    }

    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        let policy = self.retention_policy(account).await?;
        let acct = self.account(account)?;
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(BATCH_MAX) {
            // Retries a response missing items; the request itself is the pipeline's to retry.
            let statuses = with_retries(&self.cfg.retry, "blob batch", || {
                self.batch_delete(&acct, container, chunk)
            })
            .await?;
            for (name, (status, code)) in chunk.iter().zip(statuses) {
                let blob = BlobRef::new(account, container, name.clone());
                out.push(match status {
                    202 => Ok(DeleteOutcome::Deleted),
                    404 => Ok(DeleteOutcome::NotFound),
                    s => Err(map_status(s, code.as_deref(), &format!("delete {blob}"))),
                });
            }
        }
        // Versions and soft-deleted pieces are not reachable by the batched deletes. One listing
        // of the names' common prefix finds them for the whole batch (not one listing per blob).
        let found: Vec<usize> = out
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.is_ok().then_some(i))
            .collect();
        let found_names: Vec<String> = found.iter().map(|&i| names[i].clone()).collect();
        let leftovers = self
            .purge_leftovers_many(&acct, account, container, &found_names, &policy)
            .await?;
        let mut updates = Vec::with_capacity(found.len());
        for (i, (leftovers, purged)) in found.into_iter().zip(leftovers) {
            let was_found = !matches!(out[i], Ok(DeleteOutcome::NotFound));
            let outcome = if !was_found && !leftovers {
                DeleteOutcome::NotFound
            } else {
                policy.outcome(OffsetDateTime::now_utc(), purged)
            };
            updates.push((i, outcome));
        }
        for (i, outcome) in updates {
            out[i] = Ok(outcome);
        }
        Ok(out)
    }

    async fn stage_block(&self, blob: &BlobRef, block_id: &str, body: Bytes) -> StoreResult<()> {
        crate::ports::blob::check_block_id(block_id)?;
        let acct = self.account(&blob.account)?;
        let client = acct
            .service
            .blob_client(&blob.container, &blob.name)
            .block_blob_client();
        let len = body.len() as u64;
        client
            .stage_block(block_id.as_bytes(), len, body.into(), None)
            .await
            .map(|_| ())
            .map_err(|e| map_err(e, &format!("stage block {block_id} of {blob}")))
    }

    async fn commit_blocks(
        &self,
        blob: &BlobRef,
        block_ids: &[String],
        content_type: &str,
    ) -> StoreResult<String> {
        let acct = self.account(&blob.account)?;
        let client = acct
            .service
            .blob_client(&blob.container, &blob.name)
            .block_blob_client();
        let what = format!("commit {} blocks of {blob}", block_ids.len());
        let list = BlockLookupList {
            latest: Some(block_ids.iter().map(|id| id.as_bytes().to_vec()).collect()),
            ..Default::default()
        };
        let content = list
            .try_into()
            .map_err(|e: azure_core::Error| StoreError::Other(format!("{what}: {e}")))?;
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(content_type.to_string()),
            ..Default::default()
        };
        match client.commit_block_list(content, Some(options)).await {
            Ok(r) => Ok(etag_string(r.etag().ok().flatten())),
            Err(e) => Err(map_err(e, &what)),
        }
    }
}

#[cfg(test)]
mod tests {
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
