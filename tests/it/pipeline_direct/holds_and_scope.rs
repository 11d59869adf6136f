//! Legal holds survive, and a delete reaches only the workspace's own datastores.

use super::*;

#[tokio::test]
async fn legal_holds_survive() {
    let e0 = env(HoldSet::default(), 50).await;
    let alice = e0.truth.user("alice").unwrap().object_id;
    let holds = HoldSet {
        holds: vec![LegalHold {
            id: "LH-7".into(),
            reason: "litigation".into(),
            subject_object_id: Some(alice),
            workspace: None,
            resource_types: vec![ResourceType::Models],
        }],
    };
    let e = env(holds, 50).await;
    let before = snapshot(&e).await;
    submit(&e, request(&e, "DEL-H", "delete", "alice", false), 1).await;
    let r = report(&e, "DEL-H").await;
    let after = snapshot(&e).await;
    let models: Vec<_> = r
        .results
        .iter()
        .filter(|s| s.resource_type == ResourceType::Models)
        .flat_map(|s| s.items.iter())
        .collect();
    assert!(!models.is_empty());
    for o in models {
        assert!(matches!(o.status, ItemStatus::Held { .. }));
        if let Some(k) = o.item.blob_key() {
            assert_eq!(after.get(&k), before.get(&k));
        }
    }
    assert!(r.counts.held > 0 && r.counts.deleted > 0);
}

/// Data assets of alice's that point beyond her workspace's own datastores, at the service's
/// state account, at another workspace, or over other users' job folders: a delete follows none
/// of them (the report says why), while a file in a datastore the workspace registered beyond
/// the two defaults is found and deleted.
#[tokio::test]
async fn asset_uris_reach_only_the_workspaces_own_datastores() {
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    use azureml_dsr::ports::control_plane::{ArmKind, ControlPlane};
    let e = env(HoldSet::default(), 100).await;
    let ws = e.truth.workspaces[0].clone();
    let info = e.truth.infos[0].clone();
    let cp = LocalControlPlane::new(e.store.clone());
    let put = |account: &str, container: &str, name: &str| {
        let b = BlobRef::new(account, container, name);
        let store = e.store.clone();
        async move {
            store
                .create_container(&b.account, &b.container)
                .await
                .unwrap();
            store
                .write_json(&b, &json!({"not": "alice's"}))
                .await
                .unwrap();
            b
        }
    };
    // Unowned files the crafted URIs aim at.
    let team = put(
        &info.storage_account,
        &info.blobstore_container,
        "team/reference/lookup.csv",
    )
    .await;
    let exported = put(
        "dsrstate",
        "dsr-exports",
        "requests/OTHER-1/mlw-0/files/x.csv",
    )
    .await;
    let elsewhere = put("otheracct", "data", "x.csv").await;
    let bob_job = e
        .truth
        .blobs_of("bob")
        .into_iter()
        .find(|k| k.contains("/azureml/") && k.contains("/outputs/"))
        .expect("bob has job outputs")
        .clone();
    // A datastore registered beyond the defaults, with a file of alice's in it.
    cp.put_datastore(
        &ws,
        &json!({"name": "projectdata", "properties": {"datastoreType": "AzureBlob",
                "accountName": info.storage_account, "containerName": "projectdata"}}),
    )
    .await
    .unwrap();
    let project = put(&info.storage_account, "projectdata", "alice/run.csv").await;

    let template = cp
        .list_all(&ws, ArmKind::DataVersion)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d["id"].as_str().unwrap().contains("/data/alice-data-0/"))
        .unwrap();
    let other_ws = format!(
        "azureml://subscriptions/{}/resourcegroups/{}/workspaces/other-ws/datastores/workspaceblobstore/paths/team/reference/lookup.csv",
        ws.subscription(),
        ws.resource_group()
    );
    let uris = [
        other_ws,
        format!(
            "https://dsrstate.blob.core.windows.net/dsr-exports/{}",
            exported.name
        ),
        "https://otheracct.blob.core.windows.net/data/x.csv".to_string(),
        "azureml://datastores/workspaceblobstore/paths/azureml/".to_string(),
        "azureml://datastores/projectdata/paths/alice/run.csv".to_string(),
    ];
    for (i, uri) in uris.iter().enumerate() {
        let mut doc = template.clone();
        doc["id"] = json!(format!("{ws}/data/alice-crafted-{i}/versions/1"));
        doc["properties"]["dataUri"] = json!(uri);
        cp.put_resource(&ws, ArmKind::DataVersion, &doc)
            .await
            .unwrap();
    }

    submit(&e, request(&e, "URI-1", "delete", "alice", false), 1).await;
    // The crafted assets name no run: review candidates. Approving them acts with the same
    // collateral checks as discovery applied (their files were found by the same rules).
    let crafted: Vec<String> = (0..uris.len())
        .map(|i| format!("{ws}/data/alice-crafted-{i}/versions/1"))
        .collect();
    let out = azureml_dsr::functions::review::decide(
        &e.svc,
        &azureml_dsr::domain::review::ReviewDecision {
            request_id: RequestId::parse("URI-1").unwrap(),
            approve: true,
            items: crafted,
            approver: "privacy-officer".into(),
            reason: "crafted test assets are alice's".into(),
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            out,
            azureml_dsr::functions::review::ReviewOutcome::Decided { .. }
        ),
        "{out:?}"
    );
    for b in [&team, &exported, &elsewhere] {
        assert!(e.store.read_small(b).await.is_ok(), "{b} was left alone");
    }
    let (a, rest) = bob_job.split_once('/').unwrap();
    let (c, n) = rest.split_once('/').unwrap();
    assert!(
        e.store.read_small(&BlobRef::new(a, c, n)).await.is_ok(),
        "bob's job outputs were left alone"
    );
    assert!(
        e.store.read_small(&project).await.is_err(),
        "the file in the registered datastore was deleted"
    );
    let r = report(&e, "URI-1").await;
    let notes: Vec<&String> = r.results.iter().flat_map(|s| &s.notes).collect();
    for why in [
        "another workspace",
        "state account",
        "not in one of this workspace's datastores",
        "another user's assets or jobs",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(why)),
            "a note says {why:?}: {notes:?}"
        );
    }
}

/// A hold placed after the request was planned, before its slices ran, still stops the
/// deletion; and a hold list that cannot be read is never taken as "no holds".
#[tokio::test]
async fn a_hold_placed_after_planning_or_an_unreadable_hold_list_deletes_nothing() {
    for corrupt in [false, true] {
        let e = env(HoldSet::default(), 50).await;
        let alice = e.truth.user("alice").unwrap().object_id;
        let before = snapshot(&e).await;
        let body = request(&e, "LATE-HOLD", "delete", "alice", false).to_string();
        let out = intake::run(
            &e.svc,
            body.as_bytes(),
            &Delivery {
                delivery_count: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(out, intake::IntakeOutcome::Planned { .. }),
            "{out:?}"
        );
        let state = e.svc.state();
        if corrupt {
            state
                .store
                .put(
                    &state.blob("dsr-state", azureml_dsr::state::HOLDS_DOC),
                    bytes::Bytes::from_static(b"{not json"),
                    "application/json",
                    azureml_dsr::ports::blob::Condition::None,
                    &Default::default(),
                )
                .await
                .unwrap();
        } else {
            state
                .put_holds(&HoldSet {
                    holds: vec![LegalHold {
                        id: "LATE".into(),
                        reason: "litigation filed after the request".into(),
                        subject_object_id: Some(alice),
                        workspace: None,
                        resource_types: vec![],
                    }],
                })
                .await
                .unwrap();
        }
        drive(&e, 1).await;
        let r = report(&e, "LATE-HOLD").await;
        assert_eq!(r.counts.deleted, 0, "corrupt={corrupt}: {:?}", r.counts);
        assert!(r.counts.held > 0, "corrupt={corrupt}: {:?}", r.counts);
        let after = snapshot(&e).await;
        assert_eq!(after, before, "corrupt={corrupt}: something was deleted");
    }
}
