//! Proof of the "Azure twin" stand-ins (`tests/it/stand_ins/`) against the project's production
//! adapters: each stand-in is driven by the adapter the handler uses in `DSR_MODE=azure`
//! (`GraphDirectory`, `LogAnalyticsTelemetry`, `ServiceBusSender`, `AzureBlobStore` on Azurite
//! over https with bearer tokens), with tokens from `azure_identity`'s
//! `ManagedIdentityCredential` pointed at the identity stand-in. The error paths (404, 429 +
//! Retry-After, wrong token audience) are exercised too, so a stand-in that answered loosely, or
//! an adapter that ignored what it was told, fails here.

use crate::stand_ins;
use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azureml_dsr::adapters::azure::arm::ARM_SCOPE;
use azureml_dsr::adapters::azure::blob::{Auth, AzureBlobConfig, AzureBlobStore, Endpoints};
use azureml_dsr::adapters::azure::graph::{GraphDirectory, GRAPH_SCOPE};
use azureml_dsr::adapters::azure::purge::{
    LogAnalyticsTelemetry, PurgeBudget, PurgeConfig, LOG_ANALYTICS_SCOPE,
};
use azureml_dsr::adapters::azure::servicebus::{ServiceBusSender, SERVICEBUS_SCOPE};
use azureml_dsr::adapters::local::sqlite_queue::LocalQueue;
use azureml_dsr::domain::request::SubjectRef;
use azureml_dsr::domain::subject::Upn;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::ports::blob::{BlobRef, BlobStore, Condition, DeleteOutcome, StoreError};
use azureml_dsr::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};
use azureml_dsr::ports::control_plane::WorkspaceInfo;
use azureml_dsr::ports::directory::{Directory, DirectoryError};
use azureml_dsr::ports::telemetry::{
    PurgePoll, PurgeSend, PurgeStatus, TelemetryError, TelemetryStore,
};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use stand_ins::graph::{DirectoryUser, GraphStandIn};
use stand_ins::identity::IdentityStandIn;
use stand_ins::log_analytics::{LogAnalyticsStandIn, PurgeState};
use stand_ins::service_bus::ServiceBusStandIn;
use support::azure::{credential, fast_retry, rest, subject, workspace_info};

const ML_WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/mlw-0";
const LA_WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.OperationalInsights/workspaces/law-0";
const ALICE: &str = "11111111-2222-3333-4444-555555555555";
const BOB: &str = "66666666-7777-8888-9999-000000000000";

fn url(s: &str) -> azure_core::http::Url {
    azure_core::http::Url::parse(s).unwrap()
}

/// Plain-http client for poking the stand-ins directly (our reqwest is built without TLS).
fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn info() -> WorkspaceInfo {
    workspace_info(WorkspaceId::parse(ML_WS).unwrap(), "mlwstore0", LA_WS)
}

mod as_deployed;
mod azurite_https;
mod counts;
mod files;
mod graph;
mod identity;
mod log_analytics;
mod run_history;
mod service_bus;
