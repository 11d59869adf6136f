//! Lineage impact: erasing a person's data does not erase what was learned from it. From the
//! subject's data assets and jobs (the report's items), trace forward through the workspace's
//! ARM documents:
//!
//! - jobs consuming those assets: `properties.inputs.<name>.uri` of a job (ARM `JobInput`:
//!   `uri_file`, `uri_folder`, `mltable` and model inputs carry `uri`, e.g. `azureml:<name>:<version>`
//!   or an asset id `…/data/<name>/versions/<version>`), and the inputs run history recorded
//!   for the job's run and its child runs (pipeline steps, which ARM lists no inputs for):
//!   `inputs.<name>.assetId` (run-history `Run.inputs`, `{TypedAssetReference}` with
//!   `assetId` and `type`; azure-sdk-for-python `_restclient/runhistory/models/_models_py3.py`);
//! - model versions produced by those jobs or by the subject's own: `properties.jobName`
//!   (ARM `ModelVersionProperties.jobName`);
//! - online and batch deployments serving those models: `properties.model` (ARM
//!   `OnlineDeploymentProperties.model`, a string; `BatchDeploymentProperties.model`, an
//!   `IdAssetReference` `{referenceType: "Id", assetId}`).
//!
//! Nothing is deleted here: the controller decides (`azureml-dsr lineage decide`). Pure.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

/// One thing derived from the subject's data, with how we know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Derived {
    /// `job`, `modelVersion`, `onlineDeployment` or `batchDeployment`.
    pub kind: String,
    /// ARM id.
    pub id: String,
    /// Short name for people (`name:version` for a model, `endpoint/deployment`).
    pub name: String,
    /// The evidence path, from the subject's item to this one, one step per entry.
    pub evidence: Vec<String>,
}

/// The "derived from the subject's data" section of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub derived: Vec<Derived>,
    /// Workspaces whose lineage could not be traced completely, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

/// The subject's starting points in one workspace (ARM ids from the report).
#[derive(Debug, Clone, Default)]
pub struct Start {
    pub data_versions: Vec<String>,
    pub jobs: Vec<String>,
    pub models: Vec<String>,
}

/// The workspace's documents to trace through.
#[derive(Debug, Clone, Default)]
pub struct Documents<'a> {
    pub jobs: &'a [Value],
    /// Run-history records (`Run`, by `runId`) of those jobs and of their child runs.
    pub runs: &'a [Value],
    pub models: &'a [Value],
    pub deployments: &'a [Value],
}

/// `(name lower-cased, version)` of an asset reference in any documented form:
/// `azureml:<name>:<version>`, `azureml:<name>@latest` (version `latest`), an ARM id or an
/// `azureml://…` URI with `/<collection>/<name>/versions/<version>`.
pub fn asset_ref(s: &str, collection: &str) -> Option<(String, String)> {
    let s = s.trim();
    let marker = format!("/{collection}/");
    if let Some(i) = s.to_ascii_lowercase().rfind(&marker) {
        let rest: Vec<&str> = s[i + marker.len()..].split('/').collect();
        if let [name, versions, version, ..] = rest.as_slice() {
            if versions.eq_ignore_ascii_case("versions") && !name.is_empty() && !version.is_empty()
            {
                return Some((name.to_ascii_lowercase(), version.to_string()));
            }
        }
        return None;
    }
    let short = s.strip_prefix("azureml:")?;
    if short.starts_with('/') {
        return None;
    }
    if let Some((name, label)) = short.split_once('@') {
        return Some((name.to_ascii_lowercase(), label.to_string()));
    }
    let (name, version) = short.split_once(':')?;
    (!name.is_empty() && !version.is_empty())
        .then(|| (name.to_ascii_lowercase(), version.to_string()))
}

fn last(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Trace one workspace. Items already in the report (the subject's own) are starting points,
/// not findings.
pub fn trace(start: &Start, docs: &Documents<'_>) -> Vec<Derived> {
    let mut out: Vec<Derived> = Vec::new();
    let subject_assets: Vec<((String, String), &String)> = start
        .data_versions
        .iter()
        .filter_map(|id| asset_ref(id, "data").map(|r| (r, id)))
        .collect();
    let own_jobs: BTreeSet<String> = start.jobs.iter().map(|j| last(j).to_string()).collect();
    let own_models: BTreeSet<String> = start
        .models
        .iter()
        .map(|m| m.to_ascii_lowercase())
        .collect();

    // Producing jobs (name -> evidence leading to it).
    let mut producers: Vec<(String, Vec<String>)> = own_jobs
        .iter()
        .map(|j| {
            (
                j.clone(),
                vec![format!("job {j} (the subject's, in the report)")],
            )
        })
        .collect();
    for job in docs.jobs {
        let (Some(id), Some(name)) = (s(job, "/id"), s(job, "/name")) else {
            continue;
        };
        if own_jobs.contains(name) {
            continue;
        }
        let inputs = job
            .pointer("/properties/inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut found = false;
        for (input, spec) in &inputs {
            let Some(uri) = s(spec, "/uri") else { continue };
            let Some((an, av)) = asset_ref(uri, "data") else {
                continue;
            };
            let hit = subject_assets
                .iter()
                .find(|((n, v), _)| n == &an && (v == &av || av == "latest"));
            if let Some(((n, v), _)) = hit {
                let evidence = vec![
                    format!("data asset {n}:{v} (the subject's, in the report)"),
                    format!("job {name}: properties.inputs.{input}.uri = {uri}"),
                ];
                out.push(Derived {
                    kind: "job".into(),
                    id: id.to_string(),
                    name: name.to_string(),
                    evidence: evidence.clone(),
                });
                producers.push((name.to_string(), evidence));
                found = true;
                break;
            }
        }
        if !found {
            if let Some(d) = consumed_per_run_history(name, id, docs.runs, &subject_assets) {
                producers.push((name.to_string(), d.evidence.clone()));
                out.push(d);
            }
        }
    }
    // Runs only run history knows (child runs: pipeline steps, sweep trials), addressed as jobs
    // of the same workspace.
    let arm_names: BTreeSet<&str> = docs.jobs.iter().filter_map(|j| s(j, "/name")).collect();
    let jobs_prefix = docs
        .jobs
        .iter()
        .filter_map(|j| s(j, "/id"))
        .find_map(|id| id.rsplit_once('/').map(|(p, _)| p.to_string()));
    for run in docs.runs {
        let Some(run_id) = s(run, "/runId") else {
            continue;
        };
        if arm_names.contains(run_id) || own_jobs.contains(run_id) {
            continue;
        }
        let id = match &jobs_prefix {
            Some(p) => format!("{p}/{run_id}"),
            None => run_id.to_string(),
        };
        if let Some(d) = consumed_per_run_history(run_id, &id, docs.runs, &subject_assets) {
            producers.push((run_id.to_string(), d.evidence.clone()));
            out.push(d);
        }
    }

    // Models produced by those jobs.
    let mut served: Vec<((String, String), Vec<String>)> = Vec::new();
    for model in docs.models {
        let (Some(id), Some(job)) = (s(model, "/id"), s(model, "/properties/jobName")) else {
            continue;
        };
        if own_models.contains(&id.to_ascii_lowercase()) {
            continue;
        }
        let Some((_, path)) = producers.iter().find(|(p, _)| p == job) else {
            continue;
        };
        let Some((mn, mv)) = asset_ref(id, "models") else {
            continue;
        };
        let mut evidence = path.clone();
        evidence.push(format!("model {mn}:{mv}: properties.jobName = {job}"));
        out.push(Derived {
            kind: "modelVersion".into(),
            id: id.to_string(),
            name: format!("{mn}:{mv}"),
            evidence: evidence.clone(),
        });
        served.push(((mn, mv), evidence));
    }

    // Deployments serving those models.
    for dep in docs.deployments {
        let Some(id) = s(dep, "/id") else { continue };
        let (reference, field, kind) = match dep.pointer("/properties/model") {
            Some(Value::String(m)) => (m.as_str(), "properties.model", "onlineDeployment"),
            Some(o @ Value::Object(_)) => match s(o, "/assetId") {
                Some(a) => (a, "properties.model.assetId", "batchDeployment"),
                None => continue,
            },
            _ => continue,
        };
        let Some((mn, mv)) = asset_ref(reference, "models") else {
            continue;
        };
        let Some((_, path)) = served
            .iter()
            .find(|((n, v), _)| n == &mn && (v == &mv || mv == "latest"))
        else {
            continue;
        };
        let name = deployment_name(id);
        let mut evidence = path.clone();
        evidence.push(format!("deployment {name}: {field} = {reference}"));
        out.push(Derived {
            kind: kind.into(),
            id: id.to_string(),
            name,
            evidence,
        });
    }
    out
}

/// A job whose run-history record lists one of the subject's data assets among its inputs.
fn consumed_per_run_history(
    name: &str,
    id: &str,
    runs: &[Value],
    subject_assets: &[((String, String), &String)],
) -> Option<Derived> {
    let run = runs.iter().find(|r| s(r, "/runId") == Some(name))?;
    let inputs = run.get("inputs").and_then(Value::as_object)?;
    for (input, reference) in inputs {
        let Some(asset) = s(reference, "/assetId") else {
            continue;
        };
        let Some((an, av)) = asset_ref(asset, "data") else {
            continue;
        };
        if let Some(((n, v), _)) = subject_assets
            .iter()
            .find(|((n, v), _)| n == &an && (v == &av || av == "latest"))
        {
            let via = match s(run, "/parentRunId") {
                Some(p) => format!(" (a child run of {p})"),
                None => String::new(),
            };
            return Some(Derived {
                kind: "job".into(),
                id: id.to_string(),
                name: name.to_string(),
                evidence: vec![
                    format!("data asset {n}:{v} (the subject's, in the report)"),
                    format!("job {name}{via}: run history inputs.{input}.assetId = {asset}"),
                ],
            });
        }
    }
    None
}

/// `endpoint/deployment` from `…/onlineEndpoints/<e>/deployments/<d>`.
fn deployment_name(id: &str) -> String {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        [.., e, deployments, d] if deployments.eq_ignore_ascii_case("deployments") => {
            format!("{e}/{d}")
        }
        _ => last(id).to_string(),
    }
}

/// The report's Markdown section.
pub fn render(l: &Lineage) -> String {
    let mut out = String::from("\n## Derived from the subject's data\n\n");
    if l.derived.is_empty() {
        out.push_str("No job, model or deployment in scope was found to use the subject's data assets or jobs.\n");
    } else {
        out.push_str("Not deleted: the controller decides for each model (keep, retrain or retire) with `azureml-dsr lineage decide`.\n\n");
        for d in &l.derived {
            let _ = writeln!(
                out,
                "- {} `{}` — evidence: {}",
                d.kind,
                d.name,
                d.evidence.join(" → ")
            );
        }
    }
    for i in &l.incomplete {
        let _ = writeln!(out, "- INCOMPLETE: {i}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WS: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";

    #[test]
    fn asset_references_in_every_documented_form() {
        assert_eq!(
            asset_ref("azureml:Train:3", "data"),
            Some(("train".into(), "3".into()))
        );
        assert_eq!(
            asset_ref("azureml:train@latest", "data"),
            Some(("train".into(), "latest".into()))
        );
        assert_eq!(
            asset_ref(&format!("{WS}/data/train/versions/3"), "data"),
            Some(("train".into(), "3".into()))
        );
        assert_eq!(
            asset_ref(&format!("azureml:{WS}/models/m/versions/2"), "models"),
            Some(("m".into(), "2".into()))
        );
        assert_eq!(
            asset_ref(
                "azureml://locations/x/workspaces/w/data/train/versions/3",
                "data"
            ),
            Some(("train".into(), "3".into()))
        );
        assert_eq!(
            asset_ref("azureml://datastores/ds/paths/x.csv", "data"),
            None
        );
        assert_eq!(
            asset_ref("https://acct.blob.core.windows.net/c/x", "data"),
            None
        );
    }

    #[test]
    fn another_users_job_on_the_subjects_asset_leads_to_model_and_deployments() {
        let start = Start {
            data_versions: vec![format!("{WS}/data/train/versions/1")],
            ..Default::default()
        };
        let jobs = vec![
            json!({"id": format!("{WS}/jobs/bobs_job"), "name": "bobs_job",
                   "properties": {"jobType": "Command", "inputs": {"training_data": {"jobInputType": "uri_folder", "uri": "azureml:train:1"}}}}),
            json!({"id": format!("{WS}/jobs/other"), "name": "other",
                   "properties": {"jobType": "Command", "inputs": {"d": {"jobInputType": "uri_folder", "uri": "azureml:train:2"}}}}),
        ];
        let models = vec![
            json!({"id": format!("{WS}/models/churn/versions/4"), "name": "4", "properties": {"jobName": "bobs_job"}}),
            json!({"id": format!("{WS}/models/unrelated/versions/1"), "name": "1", "properties": {"jobName": "other"}}),
        ];
        let deployments = vec![
            json!({"id": format!("{WS}/onlineEndpoints/ep/deployments/blue"), "name": "blue",
                   "properties": {"model": format!("{WS}/models/churn/versions/4")}}),
            json!({"id": format!("{WS}/batchEndpoints/be/deployments/nightly"), "name": "nightly",
                   "properties": {"model": {"referenceType": "Id", "assetId": format!("{WS}/models/churn/versions/4")}}}),
            json!({"id": format!("{WS}/onlineEndpoints/ep/deployments/green"), "name": "green",
                   "properties": {"model": "azureml:unrelated:1"}}),
        ];
        let d = trace(
            &start,
            &Documents {
                jobs: &jobs,
                runs: &[],
                models: &models,
                deployments: &deployments,
            },
        );
        let names: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.kind.as_str(), d.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("job", "bobs_job"),
                ("modelVersion", "churn:4"),
                ("onlineDeployment", "ep/blue"),
                ("batchDeployment", "be/nightly")
            ]
        );
        assert_eq!(d[2].evidence.len(), 4, "{:?}", d[2].evidence);
        assert!(d[2].evidence[1].contains("properties.inputs.training_data.uri"));
    }

    #[test]
    fn run_history_inputs_and_child_runs_are_followed() {
        const WS: &str = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w";
        let start = Start {
            data_versions: vec![format!("{WS}/data/rows/versions/2")],
            ..Default::default()
        };
        // ARM lists the pipeline job with no inputs naming the asset; run history recorded the
        // step's inputs (`TypedAssetReference`).
        let jobs = vec![
            json!({"id": format!("{WS}/jobs/pipe"), "name": "pipe", "properties": {"jobType": "Pipeline"}}),
            json!({"id": format!("{WS}/jobs/plain"), "name": "plain", "properties": {"jobType": "Command"}}),
        ];
        let runs = vec![
            json!({"runId": "pipe", "inputs": {}}),
            json!({"runId": "pipe_step_train", "parentRunId": "pipe", "rootRunId": "pipe",
                   "inputs": {"train": {"assetId": format!("azureml://locations/westeurope/workspaces/x/data/rows/versions/2"), "type": "UriFolder"}}}),
            json!({"runId": "plain", "inputs": {"d": {"assetId": "azureml:rows:2", "type": "UriFile"}}}),
            json!({"runId": "unrelated_step", "parentRunId": "pipe",
                   "inputs": {"d": {"assetId": "azureml:rows:3", "type": "UriFile"}}}),
        ];
        let models = vec![
            json!({"id": format!("{WS}/models/m/versions/1"), "name": "1",
                                 "properties": {"jobName": "pipe_step_train"}}),
        ];
        let d = trace(
            &start,
            &Documents {
                jobs: &jobs,
                runs: &runs,
                models: &models,
                deployments: &[],
            },
        );
        let names: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.kind.as_str(), d.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("job", "plain"),
                ("job", "pipe_step_train"),
                ("modelVersion", "m:1")
            ]
        );
        assert_eq!(d[1].id, format!("{WS}/jobs/pipe_step_train"));
        assert!(
            d[1].evidence[1].contains("child run of pipe"),
            "{:?}",
            d[1].evidence
        );
        assert!(d[2].evidence[1].contains("run history inputs.train.assetId"));
    }
}
