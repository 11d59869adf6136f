//! Wrappers that count calls at the other ports' boundaries — run history, the message bus,
//! the directory (Graph in Azure) and telemetry (Log Analytics in Azure) — as
//! [`super::counting::CountingStore`] does for blobs. A run-history or directory call is one
//! request of the Azure adapter (a run record, a page of children, one Graph lookup); a
//! telemetry call is one query or purge step, which the Log Analytics adapter may spread over a
//! few requests. The benchmark compares the counts with the minimum the work needs
//! (BENCHMARKS.md, "Calls per request").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::request::SubjectRef;
use crate::domain::subject::ResolvedSubject;
use crate::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::directory::{Directory, DirectoryEntry, DirectoryError};
use crate::ports::run_history::{RunHistory, RunHistoryError, RunPage, RunRecord};
use crate::ports::telemetry::{
    PlannedPurge, PurgePoll, PurgeSend, PurgeStatus, TelemetryError, TelemetryRows, TelemetryStore,
};

/// Calls by name (`"run"`, `"children"`, `"send:dsr-intake"`, …), shared by every wrapper that
/// is handed the same tally.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    pub fn add(&self, what: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(what.to_string()).or_default() += n;
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
    pub fn reset(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

pub struct CountingRunHistory {
    pub inner: Arc<dyn RunHistory>,
    pub tally: Tally,
}

#[async_trait]
impl RunHistory for CountingRunHistory {
    async fn run(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
    ) -> Result<Option<RunRecord>, RunHistoryError> {
        self.tally.add("run_history.run", 1);
        self.inner.run(ws, run_id).await
    }
    async fn children(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
        next: Option<String>,
    ) -> Result<RunPage, RunHistoryError> {
        self.tally.add("run_history.children_page", 1);
        self.inner.children(ws, run_id, next).await
    }
}

pub struct CountingBus {
    pub inner: Arc<dyn MessageBus>,
    pub tally: Tally,
}

#[async_trait]
impl MessageBus for CountingBus {
    async fn send(&self, message: OutMessage) -> Result<SendOutcome, BusError> {
        self.tally.add(&format!("bus.send:{}", message.queue), 1);
        self.inner.send(message).await
    }
}

pub struct CountingDirectory {
    pub inner: Arc<dyn Directory>,
    pub tally: Tally,
}

#[async_trait]
impl Directory for CountingDirectory {
    async fn lookup(&self, subject: &SubjectRef) -> Result<Option<DirectoryEntry>, DirectoryError> {
        self.tally.add("directory.lookup", 1);
        self.inner.lookup(subject).await
    }
    async fn alias_holders(&self, alias: &str) -> Result<Vec<uuid::Uuid>, DirectoryError> {
        self.tally.add("directory.alias_holders", 1);
        self.inner.alias_holders(alias).await
    }
}

pub struct CountingTelemetry {
    pub inner: Arc<dyn TelemetryStore>,
    pub tally: Tally,
}

#[async_trait]
impl TelemetryStore for CountingTelemetry {
    async fn query(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<TelemetryRows>, TelemetryError> {
        self.tally.add("telemetry.query", 1);
        self.inner.query(ws, subject).await
    }
    async fn purge_workspace(&self, ws: &WorkspaceInfo) -> Result<PurgeStatus, TelemetryError> {
        self.tally.add("telemetry.purge_workspace", 1);
        self.inner.purge_workspace(ws).await
    }
    async fn purge_plan(
        &self,
        ws: &WorkspaceInfo,
        subject: &ResolvedSubject,
    ) -> Result<Vec<PlannedPurge>, TelemetryError> {
        self.tally.add("telemetry.purge_plan", 1);
        self.inner.purge_plan(ws, subject).await
    }
    async fn send_purge(
        &self,
        destination: &str,
        body: &Value,
    ) -> Result<PurgeSend, TelemetryError> {
        self.tally.add("telemetry.send_purge", 1);
        self.inner.send_purge(destination, body).await
    }
    async fn poll_purge(&self, status_url: &str) -> Result<PurgePoll, TelemetryError> {
        self.tally.add("telemetry.poll_purge", 1);
        self.inner.poll_purge(status_url).await
    }
}
