//! Lineage impact for a finished request (`domain::lineage`): per workspace of the report, the
//! subject's data assets, jobs and models (the report's items) traced forward through the
//! workspace's jobs, model versions and deployments, read through the control-plane port, and
//! the jobs' inputs as run history recorded them (each job's run and its child runs, read
//! through the run-history port). Read-only. A workspace that cannot be read is named as incomplete, never left out silently.
//! Also records the controller's decision on a derived model in the chained audit trail.

use time::OffsetDateTime;

use super::{FnError, Services};
use crate::domain::lineage::{trace, Documents, Lineage, Start};
use crate::domain::report::FinalReport;
use crate::domain::resource::ArmKind;
use crate::domain::slice::Item;
use crate::domain::workspace::WorkspaceId;
use crate::state::StateStore;

/// The subject's data assets, jobs and models per workspace (the report's resource items),
/// gathered slice by slice and page by page.
#[derive(Debug, Default)]
pub struct Starts(Vec<(WorkspaceId, Start)>);

impl Starts {
    /// Some of the items of a slice in `ws`.
    pub fn add(&mut self, ws: &WorkspaceId, items: &[crate::domain::slice::ItemOutcome]) {
        let i = match self.0.iter().position(|(w, _)| w == ws) {
            Some(i) => i,
            None => {
                self.0.push((ws.clone(), Start::default()));
                self.0.len() - 1
            }
        };
        for o in items {
            if let Item::Resource { resource_type, id } = &o.item {
                let s = &mut self.0[i].1;
                match resource_type {
                    ArmKind::DataVersion => s.data_versions.push(id.clone()),
                    ArmKind::Job => s.jobs.push(id.clone()),
                    ArmKind::ModelVersion => s.models.push(id.clone()),
                    // Neither is an input to a job nor a model: nothing derives from it.
                    ArmKind::Compute | ArmKind::Schedule => {}
                }
            }
        }
    }
}

/// Trace from what [`Starts`] gathered.
pub async fn trace_starts(svc: &Services, starts: Starts) -> Lineage {
    let mut out = Lineage::default();
    for (ws, start) in starts.0 {
        if start.data_versions.is_empty() && start.jobs.is_empty() {
            continue;
        }
        let docs = async {
            let jobs = svc.control.list_all(&ws, ArmKind::Job).await?;
            let models = svc.control.list_all(&ws, ArmKind::ModelVersion).await?;
            let deployments = svc.control.deployments(&ws).await?;
            Ok::<_, crate::ports::control_plane::ControlPlaneError>((jobs, models, deployments))
        }
        .await;
        match docs {
            Ok((jobs, models, deployments)) => {
                let runs = match runs_of(svc, &ws, &jobs).await {
                    Ok(r) => r,
                    Err(e) => {
                        // ARM's inputs are still traced; what run history alone knows is not.
                        out.incomplete
                            .push(format!("workspace {}: run history: {e}", ws.name()));
                        Vec::new()
                    }
                };
                out.derived.extend(trace(
                    &start,
                    &Documents {
                        jobs: &jobs,
                        runs: &runs,
                        models: &models,
                        deployments: &deployments,
                    },
                ))
            }
            Err(e) => out.incomplete.push(format!("workspace {}: {e}", ws.name())),
        }
    }
    out
}

/// The run-history records of the workspace's jobs and, for pipeline jobs, of their child runs
/// (the steps, whose inputs ARM does not list).
async fn runs_of(
    svc: &Services,
    ws: &WorkspaceId,
    jobs: &[serde_json::Value],
) -> Result<Vec<serde_json::Value>, String> {
    let info = svc.control.workspace(ws).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for job in jobs {
        let Some(name) = job.get("name").and_then(serde_json::Value::as_str) else {
            continue;
        };
        if let Some(r) = svc
            .run_history
            .run(&info, name)
            .await
            .map_err(|e| e.to_string())?
        {
            out.push(r.doc);
        }
        let pipeline = job
            .pointer("/properties/jobType")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("Pipeline"));
        if pipeline {
            for child in svc
                .run_history
                .descendants(&info, name)
                .await
                .map_err(|e| e.to_string())?
            {
                out.push(child.doc);
            }
        }
    }
    Ok(out)
}

/// The controller's decision on one derived model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Keep,
    Retrain,
    Retire,
}

/// Record a decision on `model` (its ARM id, or `name:version` as the report shows it), which
/// must be among the request's derived models. Returns the chain position.
pub async fn decide(
    state: &StateStore,
    report: &FinalReport,
    model: &str,
    decision: Decision,
    reason: &str,
    now: OffsetDateTime,
) -> Result<u64, FnError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(FnError::BadRequest("a decision needs a reason".into()));
    }
    let lineage = report.derived_from_subject_data.as_ref().ok_or_else(|| {
        FnError::BadRequest(format!(
            "request {} has no lineage section",
            report.request_id
        ))
    })?;
    let derived = lineage
        .derived
        .iter()
        .find(|d| d.kind == "modelVersion" && (d.id.eq_ignore_ascii_case(model) || d.name == model))
        .ok_or_else(|| {
            FnError::BadRequest(format!(
                "{model} is not a model derived from the subject's data in request {}",
                report.request_id
            ))
        })?;
    let at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let record = serde_json::json!({
        "event": "lineage_decision",
        "requestId": report.request_id,
        "model": derived.id,
        "modelName": derived.name,
        "decision": decision,
        "reason": reason,
        "evidence": derived.evidence,
        "decidedAt": at,
    });
    let name = format!(
        "lineage-decisions/{}/{}-{}.json",
        report.request_id,
        crate::domain::ids::short_hash(&[&derived.id], 16),
        now.unix_timestamp_nanos()
    );
    Ok(super::audit_trail::record(state, &name, &record).await?)
}
