//! Synthetic Azure ML workspaces for the demo, tests and benchmarks: several users with jobs
//! (ARM documents as ARM returns them: the creator's display name in `systemData.createdBy`, and
//! the creator's object id only in the run-history record, kept by the local run-history
//! service), pipeline jobs with child steps and sweep jobs with trials (child runs ARM does not
//! list, each with its own `dcid.<run>` folder, some with `dcid.<run>_setup`), run logs and
//! outputs, models, data assets and their files, personal compute, notebooks and telemetry —
//! plus the traps a careless eraser falls into: a data folder shared between two users, a user
//! whose notebooks alias is a prefix of another's, two users with the same display name, a
//! shared cluster created by a user, run records without a UPN.
//! Every item is recorded in a [`SeedTruth`] (who owns what), which tests compare against.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::adapters::local::control_plane::LocalControlPlane;
use crate::adapters::local::run_history::LocalRunHistory;
use crate::adapters::local::telemetry::{LocalTelemetry, TELEMETRY_ACCOUNT};
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobRef, BlobStore, Condition, StoreResult};
use crate::ports::control_plane::{ArmKind, WorkspaceInfo};
use crate::ports::directory::DirectoryEntry;

mod hierarchies;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub(crate) const SUBSCRIPTION: &str = "00000000-1111-2222-3333-444444444444";
/// Owner recorded for items no single user owns (shared folders, shared clusters' data).
pub const SHARED: &str = "(shared)";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeedOptions {
    pub workspaces: usize,
    pub users: usize,
    pub runs_per_user: usize,
    pub files_per_run: usize,
    /// Bytes of each run output file.
    pub output_bytes: usize,
    pub seed: u64,
    /// Days back the oldest job was created (jobs are spread evenly over this period).
    pub history_days: i64,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            workspaces: 1,
            users: 5,
            runs_per_user: 8,
            files_per_run: 3,
            output_bytes: 2048,
            seed: 7,
            history_days: 400,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedUser {
    pub key: String,
    pub object_id: Uuid,
    pub upn: String,
    pub display_name: String,
}

/// Who owns what: item identity -> user key (or [`SHARED`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedTruth {
    pub users: Vec<SeedUser>,
    pub workspaces: Vec<WorkspaceId>,
    pub infos: Vec<WorkspaceInfo>,
    /// `account/container/name` of every blob -> owner.
    pub blobs: BTreeMap<String, String>,
    /// ARM id of every resource -> owner.
    pub resources: BTreeMap<String, String>,
    /// Job ARM id -> createdAt.
    pub job_created: BTreeMap<String, String>,
    /// Telemetry rows per owner.
    pub telemetry_rows: BTreeMap<String, u64>,
}

impl SeedTruth {
    pub fn user(&self, key: &str) -> Option<&SeedUser> {
        self.users.iter().find(|u| u.key == key)
    }
    pub fn blobs_of(&self, owner: &str) -> Vec<&String> {
        self.blobs
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .map(|(k, _)| k)
            .collect()
    }
    pub fn resources_of(&self, owner: &str) -> Vec<&String> {
        self.resources
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .map(|(k, _)| k)
            .collect()
    }
    pub fn directory(&self) -> Vec<DirectoryEntry> {
        self.users
            .iter()
            .map(|u| DirectoryEntry {
                object_id: u.object_id,
                tenant_id: Uuid::parse_str(TENANT).ok(),
                upn: crate::domain::subject::Upn::parse(&u.upn).ok(),
                mail: crate::domain::subject::Upn::parse(&u.upn).ok(),
                display_name: Some(u.display_name.clone()),
                notebook_aliases: vec![],
            })
            .collect()
    }
}

/// Owner recorded for an item only a display name ties to `key` (a model or data asset with no
/// run behind it): a review candidate, never acted on without approval, so never in
/// `blobs_of(key)`/`resources_of(key)`.
pub fn review_owner(key: &str) -> String {
    format!("{REVIEW_PREFIX}{key}")
}
pub const REVIEW_PREFIX: &str = "review:";

/// `ali` shares Alice's display name: a display name never identifies anyone.
pub(crate) const NAMESAKE_DISPLAY_NAME: &str = "Alice Example";

const NAMES: [(&str, &str); 10] = [
    ("alice", NAMESAKE_DISPLAY_NAME),
    ("ali", NAMESAKE_DISPLAY_NAME),
    ("bob", "Bob Builder"),
    ("carol", "Carol Data"),
    ("dave", "Dave Ops"),
    ("erin", "Erin Research"),
    ("frank", "Frank Tuner"),
    ("grace", "Grace Hopper"),
    ("heidi", "Heidi Klum"),
    ("ivan", "Ivan Model"),
];

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

struct Seeder<'a> {
    store: &'a Arc<dyn BlobStore>,
    control: LocalControlPlane,
    runs: LocalRunHistory,
    truth: SeedTruth,
    rng: rand::rngs::StdRng,
}

impl Seeder<'_> {
    async fn blob(
        &mut self,
        account: &str,
        container: &str,
        name: &str,
        body: Vec<u8>,
        owner: &str,
    ) -> StoreResult<()> {
        self.store
            .put(
                &BlobRef::new(account, container, name),
                Bytes::from(body),
                "application/octet-stream",
                Condition::None,
                &BTreeMap::new(),
            )
            .await?;
        self.truth
            .blobs
            .insert(format!("{account}/{container}/{name}"), owner.to_string());
        Ok(())
    }

    async fn resource(
        &mut self,
        ws: &WorkspaceId,
        kind: ArmKind,
        doc: Value,
        owner: &str,
    ) -> anyhow::Result<()> {
        self.control.put_resource(ws, kind, &doc).await?;
        self.truth.resources.insert(
            doc["id"].as_str().unwrap_or_default().to_string(),
            owner.to_string(),
        );
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.gen()).collect()
    }
}

/// ARM `systemData` as Azure ML returns it (jobs, assets, computes): `createdBy` is the
/// creator's display name.
fn job_system_data(u: &SeedUser, at: OffsetDateTime) -> Value {
    json!({"createdAt": rfc3339(at), "createdBy": u.display_name, "createdByType": "User",
           "lastModifiedAt": rfc3339(at), "lastModifiedBy": u.display_name, "lastModifiedByType": "User"})
}

/// A run-history `Run` record (azure-ai-ml `_restclient/runhistory/models`, `Run` and `User`).
fn run_record(
    u: &SeedUser,
    upn: &Value,
    puid: u64,
    (run, parent, root): (&str, Option<&str>, &str),
    run_type: &str,
    at: OffsetDateTime,
) -> Value {
    json!({
        "runId": run, "runUuid": Uuid::from_u128(puid as u128 | (1u128 << 100)).to_string(),
        "parentRunId": parent, "rootRunId": root, "experimentId": "00000000-0000-0000-0000-00000000e0e0",
        "status": "Completed", "runType": run_type, "dataContainerId": format!("dcid.{run}"),
        "createdUtc": rfc3339(at), "startTimeUtc": rfc3339(at),
        "createdBy": {
            "userObjectId": u.object_id.to_string(), "userPuId": format!("{puid:016X}"),
            "userIdp": null, "userAltSecId": null, "userIss": format!("https://sts.windows.net/{TENANT}/"),
            "userTenantId": TENANT, "userName": u.display_name, "upn": upn
        }
    })
}

/// Build workspaces in `store`. Returns the truth; `now` anchors job ages.
pub async fn seed(
    store: &Arc<dyn BlobStore>,
    opts: &SeedOptions,
    now: OffsetDateTime,
) -> anyhow::Result<SeedTruth> {
    let mut s = Seeder {
        store,
        control: LocalControlPlane::new(store.clone()),
        runs: LocalRunHistory::new(store.clone()),
        truth: SeedTruth::default(),
        rng: rand::rngs::StdRng::seed_from_u64(opts.seed),
    };
    let users: Vec<SeedUser> = (0..opts.users.max(1))
        .map(|i| {
            let (key, display) = NAMES[i % NAMES.len()];
            let key = if i < NAMES.len() {
                key.to_string()
            } else {
                format!("{key}{i}")
            };
            SeedUser {
                object_id: Uuid::from_u128(s.rng.gen::<u128>() | 1),
                upn: format!("{key}@contoso.com"),
                display_name: display.to_string(),
                key,
            }
        })
        .collect();
    s.truth.users = users.clone();
    let tenant = TENANT;

    for w in 0..opts.workspaces.max(1) {
        let ws = WorkspaceId::parse(&format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/mlw-{w}"
        ))
        .map_err(anyhow::Error::msg)?;
        let guid = Uuid::from_u128(s.rng.gen());
        let info = WorkspaceInfo {
            id: ws.clone(),
            storage_account: format!("mlwstore{w}"),
            artifact_container: "azureml".into(),
            blobstore_container: format!("azureml-blobstore-{guid}"),
            file_share: format!("code-{guid}"),
            app_insights: Some(format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.Insights/components/mlw-{w}-ai")),
            log_analytics_workspace: None,
            diagnostic_destinations: vec![],
            diagnostic_settings_error: None,
            key_vault: Some(format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/mlw-{w}-kv")),
            tags: BTreeMap::new(),
            location: Some("westeurope".into()),
        };
        s.control.put_workspace(&info).await?;
        for c in [
            &info.artifact_container,
            &info.blobstore_container,
            &info.file_share,
        ] {
            store.create_container(&info.storage_account, c).await?;
        }
        store
            .create_container(TELEMETRY_ACCOUNT, &LocalTelemetry::container(&info))
            .await?;
        let acct = info.storage_account.clone();
        let mut telemetry = String::new();
        let total_runs = (opts.runs_per_user * users.len()).max(1) as i64;
        let mut run_no = 0i64;

        for (ui, u) in users.iter().enumerate() {
            // The user's jobs, for the models and data assets they produced.
            let mut jobs: Vec<String> = Vec::new();
            for r in 0..opts.runs_per_user {
                let job = format!("{}_job_{:x}", u.key, s.rng.gen::<u32>());
                jobs.push(job.clone());
                let created = now - time::Duration::days(opts.history_days)
                    + time::Duration::seconds(opts.history_days * 86_400 * run_no / total_runs);
                run_no += 1;
                // Every third user's run documents lack a UPN, as Azure ML's often do.
                let upn = if ui % 3 == 2 {
                    Value::Null
                } else {
                    json!(u.upn)
                };
                let doc = json!({
                    "id": format!("{ws}/jobs/{job}"),
                    "name": job,
                    "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                    "properties": {
                        "jobType": "Command",
                        "displayName": format!("train-{r}"),
                        "experimentName": format!("exp-{}", r % 3),
                        "status": "Completed",
                        "computeId": format!("{ws}/computes/cpu-cluster"),
                    },
                    "systemData": job_system_data(u, created)
                });
                let puid = s.rng.gen::<u64>();
                s.runs
                    .put_run(
                        &ws,
                        &run_record(
                            u,
                            &upn,
                            puid,
                            (&job, None, &job),
                            "azureml.scriptrun",
                            created,
                        ),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                s.truth
                    .job_created
                    .insert(format!("{ws}/jobs/{job}"), rfc3339(created));
                s.resource(&ws, ArmKind::Job, doc, &u.key).await?;
                s.blob(
                    &acct,
                    "azureml",
                    &format!("ExperimentRun/dcid.{job}/logs/std_log.txt"),
                    format!("run {job} by {}\n", u.display_name).into_bytes(),
                    &u.key,
                )
                .await?;
                s.blob(
                    &acct,
                    "azureml",
                    &format!("ExperimentRun/dcid.{job}/outputs/metrics.json"),
                    json!({"accuracy": 0.9, "user": u.upn})
                        .to_string()
                        .into_bytes(),
                    &u.key,
                )
                .await?;
                for f in 0..opts.files_per_run {
                    let body = s.bytes(opts.output_bytes);
                    s.blob(
                        &acct,
                        &info.blobstore_container,
                        &format!("azureml/{job}/outputs/part-{f:04}.bin"),
                        body,
                        &u.key,
                    )
                    .await?;
                }
                // `AmlRunEvent.Identity` is `dynamic` (table reference); its property names are
                // not documented, so the seed uses the token claim name `oid` (illustrative).
                telemetry.push_str(&json!({"TimeGenerated": rfc3339(created), "Identity": {"oid": u.object_id.to_string()}, "RunId": job, "EventType": "RunCompleted"}).to_string());
                telemetry.push('\n');
                *s.truth.telemetry_rows.entry(u.key.clone()).or_default() += 1;
            }
            if opts.runs_per_user > 0 {
                hierarchies::seed_hierarchies(&mut s, &ws, &info, u, ui, now).await?;
            }
            // Two models and two data assets per user. Azure ML's `systemData.createdBy` of an
            // asset is a display name; what ties an asset to its creator is the run that
            // produced it: a model version's `jobName`, or a data asset's files in the run's
            // output folder. The first two users (who share one display name) have one of each
            // with no run behind it: a review candidate for either of them.
            let display_only = ui < 2;
            for m in 0..2 {
                let folder = format!("LocalUpload/{:x}/model-{m}", s.rng.gen::<u64>());
                let name = format!("{}-model-{m}", u.key);
                let job = jobs.get(m).filter(|_| !(display_only && m == 1));
                let owner = match job {
                    Some(_) => u.key.clone(),
                    None => review_owner(&u.key),
                };
                let mut props = json!({"modelType": "custom_model", "description": "synthetic",
                    "modelUri": format!("azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/rg-ml/workspaces/{}/datastores/workspaceblobstore/paths/{folder}/", ws.name())});
                if let Some(job) = job {
                    props["jobName"] = json!(job);
                }
                let doc = json!({
                    "id": format!("{ws}/models/{name}/versions/1"), "name": "1",
                    "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
                    "properties": props,
                    "systemData": job_system_data(u, now - time::Duration::days(30))
                });
                s.resource(&ws, ArmKind::ModelVersion, doc, &owner).await?;
                for f in ["model.pkl", "conda.yaml"] {
                    let body = s.bytes(512);
                    s.blob(
                        &acct,
                        &info.blobstore_container,
                        &format!("{folder}/{f}"),
                        body,
                        &owner,
                    )
                    .await?;
                }
            }
            for d in 0..2 {
                let name = format!("{}-data-{d}", u.key);
                // A job's output registered as data: its file is already the job's (and the
                // jobs slice takes it with the job); the asset is the user's by that run.
                let output = jobs
                    .get(d)
                    .filter(|_| opts.files_per_run > 0 && !(display_only && d == 1))
                    .map(|job| format!("azureml/{job}/outputs/part-0000.bin"));
                let (path, owner) = match output {
                    Some(p) => (p, u.key.clone()),
                    None => (
                        format!(
                            "UI/2026-10-0{}_{:x}/data-{d}.csv",
                            d + 1,
                            s.rng.gen::<u32>()
                        ),
                        review_owner(&u.key),
                    ),
                };
                let doc = json!({
                    "id": format!("{ws}/data/{name}/versions/1"), "name": "1",
                    "type": "Microsoft.MachineLearningServices/workspaces/data/versions",
                    "properties": {"dataType": "uri_file", "dataUri": format!("azureml://datastores/workspaceblobstore/paths/{path}")},
                    "systemData": job_system_data(u, now - time::Duration::days(20))
                });
                s.resource(&ws, ArmKind::DataVersion, doc, &owner).await?;
                if owner != u.key {
                    s.blob(
                        &acct,
                        &info.blobstore_container,
                        &path,
                        format!("id,name\n1,{}\n", u.display_name).into_bytes(),
                        &owner,
                    )
                    .await?;
                }
            }
            if display_only {
                // A schedule (ARM `workspaces/schedules`, `ScheduleProperties`: `action`
                // {actionType CreateJob, jobDefinition}, `trigger` {triggerType Cron,
                // expression, timeZone}, as azure-ai-ml's Schedule REST conversion writes them):
                // only its display name says whose.
                let name = format!("{}-nightly", u.key);
                let schedule = json!({
                    "id": format!("{ws}/schedules/{name}"), "name": name,
                    "type": "Microsoft.MachineLearningServices/workspaces/schedules",
                    "properties": {"displayName": format!("{} nightly", u.key), "isEnabled": true,
                        "provisioningState": "Succeeded",
                        "action": {"actionType": "CreateJob", "jobDefinition": {"jobType": "Command",
                            "command": "python train.py", "environmentId": "azureml:AzureML-sklearn-1.0:1",
                            "computeId": format!("{ws}/computes/cpu-cluster")}},
                        "trigger": {"triggerType": "Cron", "expression": "0 2 * * *", "timeZone": "UTC"}},
                    "systemData": job_system_data(u, now - time::Duration::days(45))
                });
                s.resource(&ws, ArmKind::Schedule, schedule, &review_owner(&u.key))
                    .await?;
            }
            let ci = json!({
                "id": format!("{ws}/computes/ci-{}", u.key), "name": format!("ci-{}", u.key),
                "type": "Microsoft.MachineLearningServices/workspaces/computes",
                "properties": {"computeType": "ComputeInstance", "properties": {
                    "vmSize": "STANDARD_DS3_V2", "computeInstanceAuthorizationType": "personal",
                    "personalComputeInstanceSettings": {"assignedUser": {"objectId": u.object_id.to_string(), "tenantId": tenant}},
                    "createdBy": {"userName": u.display_name, "userOrgId": tenant, "userId": u.object_id.to_string()}}},
                "systemData": job_system_data(u, now - time::Duration::days(60))
            });
            s.resource(&ws, ArmKind::Compute, ci, &u.key).await?;
            for nb in ["train.ipynb", "explore.ipynb", "notes/readme.md"] {
                s.blob(
                    &acct,
                    &info.file_share,
                    &format!("Users/{}/{nb}", u.key),
                    format!("{{\"owner\": \"{}\"}}", u.upn).into_bytes(),
                    &u.key,
                )
                .await?;
            }
        }

        // Traps. A folder registered as a data asset by two users: nobody's to erase alone.
        let shared = "shared/datasets/census/";
        for u in users.iter().take(2) {
            let name = format!("{}-census", u.key);
            let doc = json!({
                "id": format!("{ws}/data/{name}/versions/1"), "name": "1",
                "type": "Microsoft.MachineLearningServices/workspaces/data/versions",
                "properties": {"dataType": "uri_folder", "dataUri": format!("azureml://datastores/workspaceblobstore/paths/{shared}")},
                "systemData": job_system_data(u, now - time::Duration::days(10))
            });
            // Registered from a local folder: no run, only a display name (a review candidate).
            s.resource(&ws, ArmKind::DataVersion, doc, &review_owner(&u.key))
                .await?;
        }
        for f in ["part-0.csv", "part-1.csv"] {
            s.blob(
                &acct,
                &info.blobstore_container,
                &format!("{shared}{f}"),
                b"region,count\n".to_vec(),
                SHARED,
            )
            .await?;
        }
        // A shared cluster a user created: not personal compute, never deleted by a DSR.
        let cluster = json!({
            "id": format!("{ws}/computes/cpu-cluster"), "name": "cpu-cluster",
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "properties": {"computeType": "AmlCompute", "properties": {"vmSize": "STANDARD_D2_V2"}},
            "systemData": job_system_data(&users[0], now - time::Duration::days(90))
        });
        s.resource(&ws, ArmKind::Compute, cluster, SHARED).await?;
        s.blob(
            &acct,
            &info.file_share,
            "Users/shared-team/README.md",
            b"team notes".to_vec(),
            SHARED,
        )
        .await?;

        store
            .put(
                &BlobRef::new(
                    TELEMETRY_ACCOUNT,
                    LocalTelemetry::container(&info),
                    "AmlRunEvent.jsonl",
                ),
                Bytes::from(telemetry),
                "application/x-ndjson",
                Condition::None,
                &BTreeMap::new(),
            )
            .await?;
        s.truth.workspaces.push(ws);
        s.truth.infos.push(info);
    }
    Ok(s.truth)
}
