//! Job hierarchies for the seed: pipeline jobs with child steps and sweep jobs with trials,
//! whose children exist only in run history (the traps of attributing child runs).

use super::*;

/// A pipeline job with three child steps and a sweep job with five trials for `u`: the parents
/// are ARM jobs, the children exist only in run history, each with its own `dcid.<run>` folder
/// (trials 0 and 3 and the first step also with `dcid.<run>_setup`) and outputs.
pub(super) async fn seed_hierarchies(
    s: &mut Seeder<'_>,
    ws: &WorkspaceId,
    info: &WorkspaceInfo,
    u: &SeedUser,
    ui: usize,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let acct = info.storage_account.clone();
    let created = now - time::Duration::days(5);
    let upn = if ui % 3 == 2 {
        Value::Null
    } else {
        json!(u.upn)
    };
    for (kind, job_type, run_type, n, setup) in [
        (
            "pipeline",
            "Pipeline",
            "azureml.PipelineRun",
            3usize,
            &[0usize][..],
        ),
        ("sweep", "Sweep", "hyperdrive", 5, &[0, 3][..]),
    ] {
        let job = format!("{}_{kind}_{:x}", u.key, s.rng.gen::<u32>());
        let doc = json!({
            "id": format!("{ws}/jobs/{job}"), "name": job,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {"jobType": job_type, "displayName": format!("{kind}-run"),
                "experimentName": format!("exp-{kind}"), "status": "Completed"},
            "systemData": job_system_data(u, created)
        });
        s.truth
            .job_created
            .insert(format!("{ws}/jobs/{job}"), rfc3339(created));
        s.resource(ws, ArmKind::Job, doc, &u.key).await?;
        let puid = s.rng.gen::<u64>();
        s.runs
            .put_run(
                ws,
                &run_record(u, &upn, puid, (&job, None, &job), run_type, created),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        s.blob(
            &acct,
            &info.artifact_container,
            &format!("ExperimentRun/dcid.{job}/logs/azureml/executionlogs.txt"),
            format!("{kind} {job}\n").into_bytes(),
            &u.key,
        )
        .await?;
        for i in 0..n {
            let child = format!("{job}_{i}");
            s.runs
                .put_run(
                    ws,
                    &run_record(
                        u,
                        &upn,
                        puid,
                        (&child, Some(&job), &job),
                        "azureml.StepRun",
                        created,
                    ),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            s.blob(
                &acct,
                &info.artifact_container,
                &format!("ExperimentRun/dcid.{child}/user_logs/std_log.txt"),
                format!("step {i} by {}\n", u.display_name).into_bytes(),
                &u.key,
            )
            .await?;
            if setup.contains(&i) {
                s.blob(
                    &acct,
                    &info.artifact_container,
                    &format!("ExperimentRun/dcid.{child}_setup/azureml-setup/setup.txt"),
                    b"setup".to_vec(),
                    &u.key,
                )
                .await?;
            }
            let body = s.bytes(256);
            s.blob(
                &acct,
                &info.blobstore_container,
                &format!("azureml/{child}/outputs/result.bin"),
                body,
                &u.key,
            )
            .await?;
        }
    }
    Ok(())
}
