//! Lineage: a model derived from another user's job is reported, not deleted.

use super::*;

/// Lineage impact: bob's job trained on alice's data asset, bob's model came from that job and
/// an online deployment serves it. Alice's delete lists the job, the model and the deployment
/// under "derived from the subject's data" with the evidence path, deletes none of them, and
/// the controller's decision goes into the chained audit trail.
#[tokio::test]
async fn lineage_derived_model_of_another_users_job_is_reported_not_deleted() {
    use azureml_dsr::adapters::local::control_plane::{LocalControlPlane, ARM_ACCOUNT};
    use azureml_dsr::domain::report::FinalReport;
    use azureml_dsr::domain::request::RequestId;
    use azureml_dsr::domain::resource::ArmKind;
    use azureml_dsr::functions::lineage::{decide, Decision};

    let e = env_with(Settings::default()).await;
    let alices_data = e
        .truth
        .resources_of("alice")
        .into_iter()
        .find(|id| id.contains("/data/"))
        .expect("alice has a data asset")
        .clone();
    let ws_id = &alices_data[..alices_data.find("/data/").unwrap()];
    let ws = e
        .truth
        .workspaces
        .iter()
        .find(|w| w.to_string().eq_ignore_ascii_case(ws_id))
        .unwrap()
        .clone();
    let in_ws = |id: &&String| {
        id.to_ascii_lowercase()
            .starts_with(&ws_id.to_ascii_lowercase())
    };
    let bobs_job = e
        .truth
        .resources_of("bob")
        .into_iter()
        .filter(in_ws)
        .find(|id| id.contains("/jobs/"))
        .expect("bob has a job")
        .clone();
    let bobs_model = e
        .truth
        .resources_of("bob")
        .into_iter()
        .filter(in_ws)
        .find(|id| id.contains("/models/"))
        .expect("bob has a model")
        .clone();
    let parts: Vec<&str> = alices_data.rsplit('/').collect(); // version, "versions", name
    let (data_name, data_version) = (parts[2], parts[0]);
    let job_name = bobs_job.rsplit('/').next().unwrap();

    // ARM shapes (2024-04-01 spec: JobInput `uri`, ModelVersion `jobName`, OnlineDeployment `model`).
    let lcp = LocalControlPlane::new(e.store.clone());
    let doc = |kind: ArmKind, id: &str| {
        let blob = BlobRef::new(
            ARM_ACCOUNT,
            LocalControlPlane::container(&ws),
            LocalControlPlane::blob_name(&ws, kind, id).unwrap(),
        );
        let store = e.store.clone();
        async move { store.read_json::<serde_json::Value>(&blob).await.unwrap() }
    };
    let mut job = doc(ArmKind::Job, &bobs_job).await.unwrap();
    job["properties"]["inputs"] = json!({"training_data": {"jobInputType": "uri_folder",
        "mode": "ReadOnlyMount", "uri": format!("azureml:{data_name}:{data_version}")}});
    lcp.put_resource(&ws, ArmKind::Job, &job).await.unwrap();
    let mut model = doc(ArmKind::ModelVersion, &bobs_model).await.unwrap();
    model["properties"]["jobName"] = json!(job_name);
    lcp.put_resource(&ws, ArmKind::ModelVersion, &model)
        .await
        .unwrap();
    let deployment_id = format!("{ws}/onlineEndpoints/churn-ep/deployments/blue");
    let deployment = json!({"id": deployment_id, "name": "blue",
        "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
        "properties": {"endpointComputeType": "Managed", "model": bobs_model, "provisioningState": "Succeeded"}});
    let dep_blob = BlobRef::new(
        ARM_ACCOUNT,
        LocalControlPlane::container(&ws),
        "onlineEndpoints/churn-ep/deployments/blue.json",
    );
    e.store.write_json(&dep_blob, &deployment).await.unwrap();

    submit(&e, "DEL-L1", "delete", "alice").await;
    let state = e.svc.state();
    let report: FinalReport = state
        .report(&RequestId::parse("DEL-L1").unwrap())
        .await
        .unwrap()
        .unwrap();
    let lineage = report
        .derived_from_subject_data
        .clone()
        .expect("lineage section");
    assert!(lineage.incomplete.is_empty(), "{:?}", lineage.incomplete);
    let find = |kind: &str| {
        lineage
            .derived
            .iter()
            .find(|d| d.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in {:?}", lineage.derived))
    };
    let j = find("job");
    assert_eq!(j.id, bobs_job);
    let m = find("modelVersion");
    assert_eq!(m.id, bobs_model);
    let d = find("onlineDeployment");
    assert_eq!(d.name, "churn-ep/blue");
    assert_eq!(d.evidence.len(), 4, "{:?}", d.evidence);
    assert!(
        d.evidence[0].contains(data_name)
            && d.evidence[1].contains("properties.inputs.training_data.uri"),
        "{:?}",
        d.evidence
    );
    assert!(
        d.evidence[2].contains("properties.jobName") && d.evidence[3].contains("properties.model"),
        "{:?}",
        d.evidence
    );
    let md = String::from_utf8_lossy(
        &e.store
            .read_small(&state.blob(REPORTS, "DEL-L1/certificate.md"))
            .await
            .unwrap()
            .0,
    )
    .to_string();
    assert!(
        md.contains("Derived from the subject's data") && md.contains("churn-ep/blue"),
        "{md}"
    );

    // Nothing derived was deleted.
    assert!(
        doc(ArmKind::Job, &bobs_job).await.is_some(),
        "bob's job kept"
    );
    assert!(
        doc(ArmKind::ModelVersion, &bobs_model).await.is_some(),
        "bob's model kept"
    );
    assert!(
        e.store
            .read_json::<serde_json::Value>(&dep_blob)
            .await
            .unwrap()
            .is_some(),
        "deployment kept"
    );
    // ... while alice's own data asset was.
    assert!(
        doc(ArmKind::DataVersion, &alices_data).await.is_none(),
        "alice's data asset deleted"
    );

    // The controller's decision, chained; a model not derived is refused.
    decide(
        &state,
        &report,
        &m.name,
        Decision::Retrain,
        "retrain without the subject's rows",
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(decide(
        &state,
        &report,
        "unrelated:1",
        Decision::Keep,
        "x",
        time::OffsetDateTime::now_utc()
    )
    .await
    .is_err());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(e.dir.path())
        .args([
            "lineage",
            "decide",
            "DEL-L1",
            &m.id,
            "retire",
            "--reason",
            "legal advice",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decisions = e
        .store
        .list_all(&state.account, AUDIT, "lineage-decisions/DEL-L1/")
        .await
        .unwrap();
    assert_eq!(decisions.len(), 2);
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
}
