//! Set-up shared by the tests of the production Azure adapters (`azure_control_plane`, `twin`):
//! tokens from the process-wide identity stand-in, a short retry budget, REST clients, and the
//! small domain values those tests build again and again.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azureml_dsr::adapters::azure::rest::RestClient;
use azureml_dsr::adapters::azure::retry::RetryConfig;
use azureml_dsr::domain::subject::ResolvedSubject;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::ports::control_plane::WorkspaceInfo;

use crate::stand_ins::identity::IdentityStandIn;

/// `ManagedIdentityCredential` on the process-wide identity stand-in. `IDENTITY_ENDPOINT` is
/// process-global, so every test of this binary gets its tokens from that one endpoint.
pub fn credential() -> Arc<dyn TokenCredential> {
    IdentityStandIn::shared().credential()
}

/// Retries with short waits: the servers are local, their 429s and 503s scripted.
pub fn fast_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 4,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_total: Duration::from_secs(20),
    }
}

/// A REST client for `scope` with [`credential`] and [`fast_retry`].
pub fn rest(scope: &str) -> RestClient {
    RestClient::new(credential(), scope).with_retry(fast_retry())
}

/// A subject known only by object id.
pub fn subject(oid: &str) -> ResolvedSubject {
    ResolvedSubject {
        object_id: oid.parse().unwrap(),
        tenant_id: None,
        upn: None,
        display_name: None,
        notebook_aliases: vec![],
        notebook_alias_conflicts: 0,
    }
}

/// A workspace with its storage account and Log Analytics workspace, nothing else configured.
pub fn workspace_info(id: WorkspaceId, storage_account: &str, la: &str) -> WorkspaceInfo {
    WorkspaceInfo {
        id,
        storage_account: storage_account.into(),
        artifact_container: "azureml".into(),
        blobstore_container: "b".into(),
        file_share: "f".into(),
        app_insights: None,
        log_analytics_workspace: Some(la.into()),
        diagnostic_destinations: vec![],
        diagnostic_settings_error: None,
        key_vault: None,
        tags: Default::default(),
        location: None,
    }
}
