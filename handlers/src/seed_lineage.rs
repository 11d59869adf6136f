//! A lineage example for the demo seed, kept apart from `seed.rs`: another user's training job
//! read one of the subject's data assets, a model version records that job as the one that
//! produced it (`jobName`), and an online deployment serves the model. The demo's report then
//! shows a "Derived from the subject's data" section with the evidence path; nothing in it is
//! deleted. Shapes as in the 2024-04-01 spec: a `uri_folder` job input with
//! `uri: azureml:<name>:<version>`, `ModelVersionProperties.jobName`,
//! `OnlineDeploymentProperties.model` (see tests/fixtures/azure-rest/README.md).

use std::sync::Arc;

use serde_json::json;

use crate::adapters::local::control_plane::{LocalControlPlane, ARM_ACCOUNT};
use crate::domain::resource::ArmKind;
use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt};
use crate::seed::SeedTruth;

/// What was added, for the demo's opening lines; `None` when the seed has no pair of users
/// with the needed resources in one workspace (nothing is added then).
#[derive(Debug, Clone)]
pub struct LineageExample {
    pub data_asset: String,
    pub job: String,
    pub model: String,
    pub deployment: String,
}

fn in_workspace(id: &str, ws: &str) -> bool {
    id.to_ascii_lowercase()
        .starts_with(&format!("{}/", ws.to_ascii_lowercase()))
}

/// Add the example for `subject` (a seeded user's key).
pub async fn add(
    store: &Arc<dyn BlobStore>,
    truth: &SeedTruth,
    subject: &str,
) -> anyhow::Result<Option<LineageExample>> {
    for ws in &truth.workspaces {
        let w = ws.to_string();
        let Some(data) = truth
            .resources_of(subject)
            .into_iter()
            .find(|id| in_workspace(id, &w) && id.contains("/data/"))
        else {
            continue;
        };
        // Another user with a job and a model in the same workspace.
        let other = truth
            .users
            .iter()
            .filter(|u| u.key != subject)
            .find_map(|u| {
                let mine = truth.resources_of(&u.key);
                let job = mine
                    .iter()
                    .find(|id| in_workspace(id, &w) && id.contains("/jobs/"))?;
                let model = mine
                    .iter()
                    .find(|id| in_workspace(id, &w) && id.contains("/models/"))?;
                Some(((*job).clone(), (*model).clone()))
            });
        let Some((job_id, model_id)) = other else {
            continue;
        };
        let parts: Vec<&str> = data.rsplit('/').collect(); // version, "versions", name
        let (Some(version), Some(name)) = (parts.first(), parts.get(2)) else {
            continue;
        };
        let job_name = job_id.rsplit('/').next().unwrap_or(&job_id).to_string();
        let lcp = LocalControlPlane::new(store.clone());
        let read = |kind: ArmKind, id: &str| {
            let blob = LocalControlPlane::blob_name(ws, kind, id)
                .map(|n| BlobRef::new(ARM_ACCOUNT, LocalControlPlane::container(ws), n));
            let store = store.clone();
            async move {
                match blob {
                    Some(b) => store
                        .read_json::<serde_json::Value>(&b)
                        .await
                        .ok()
                        .flatten(),
                    None => None,
                }
            }
        };
        let (Some(mut job), Some(mut model)) = (
            read(ArmKind::Job, &job_id).await,
            read(ArmKind::ModelVersion, &model_id).await,
        ) else {
            continue;
        };
        job["properties"]["inputs"] = json!({"training_data": {"jobInputType": "uri_folder",
            "mode": "ReadOnlyMount", "uri": format!("azureml:{name}:{version}")}});
        lcp.put_resource(ws, ArmKind::Job, &job).await?;
        model["properties"]["jobName"] = json!(job_name);
        lcp.put_resource(ws, ArmKind::ModelVersion, &model).await?;
        let deployment = json!({
            "id": format!("{w}/onlineEndpoints/demo-ep/deployments/blue"), "name": "blue",
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
            "properties": {"endpointComputeType": "Managed", "model": model_id, "provisioningState": "Succeeded"}});
        store
            .write_json(
                &BlobRef::new(
                    ARM_ACCOUNT,
                    LocalControlPlane::container(ws),
                    "onlineEndpoints/demo-ep/deployments/blue.json",
                ),
                &deployment,
            )
            .await?;
        return Ok(Some(LineageExample {
            data_asset: format!("{name}:{version}"),
            job: job_name,
            model: model_id.clone(),
            deployment: "demo-ep/blue".into(),
        }));
    }
    Ok(None)
}
