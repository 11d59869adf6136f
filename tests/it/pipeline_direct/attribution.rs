//! Attribution: jobs by run history never by display name; display-name-only assets wait for a
//! person's review, and approved candidates are exported or deleted exactly.

use super::*;

/// Issue 14's done-when: ARM holds only display names (as Azure returns jobs), and two people
/// share one. Deleting Alice removes her jobs, their pipeline steps and sweep trials (child runs
/// ARM does not list) with every folder they own; her namesake's jobs and children are
/// untouched; a job run history cannot attribute is left in place and the report says
/// `needs_review` instead of `completed`.
#[tokio::test]
async fn jobs_are_attributed_by_run_history_never_by_display_name() {
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    use azureml_dsr::ports::control_plane::{ArmKind, ControlPlane};
    let e = env(HoldSet::default(), 50).await;
    let alice = e.truth.user("alice").unwrap().clone();
    let ali = e.truth.user("ali").unwrap().clone();
    assert_eq!(alice.display_name, ali.display_name, "the seed's namesakes");
    let ws = &e.truth.workspaces[0];
    let info = &e.truth.infos[0];
    // ARM job documents carry display names only, and no run history.
    let jobs = LocalControlPlane::new(e.store.clone())
        .list_all(ws, ArmKind::Job)
        .await
        .unwrap();
    assert!(!jobs.is_empty());
    for j in &jobs {
        assert!(j.pointer("/properties/runHistory").is_none(), "{j}");
        let by = j["systemData"]["createdBy"].as_str().unwrap();
        assert!(
            e.truth.users.iter().any(|u| u.display_name == by),
            "not a display name: {by}"
        );
    }
    // Alice's child runs exist only in run history, with their own folders.
    let child_folder = |owner: &str| {
        e.truth
            .blobs_of(owner)
            .into_iter()
            .filter(|k| {
                k.contains("/ExperimentRun/dcid.")
                    && (k.contains("_pipeline_") || k.contains("_sweep_"))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let (alice_children, ali_children) = (child_folder("alice"), child_folder("ali"));
    assert!(alice_children.iter().any(|k| k.contains("_setup/")));
    assert!(alice_children.len() >= 3 + 5 + 2, "{alice_children:?}");
    assert!(!ali_children.is_empty());
    // A job nobody can attribute (no run record), under Alice's display name.
    let orphan = "orphan_job_1";
    LocalControlPlane::new(e.store.clone())
        .put_resource(
            ws,
            ArmKind::Job,
            &json!({"id": format!("{ws}/jobs/{orphan}"), "name": orphan,
                    "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                    "properties": {"jobType": "Command", "status": "Completed"},
                    "systemData": {"createdAt": "2026-11-01T00:00:00Z", "createdBy": alice.display_name, "createdByType": "User"}}),
        )
        .await
        .unwrap();
    let orphan_blob = BlobRef::new(
        info.storage_account.clone(),
        info.artifact_container.clone(),
        format!("ExperimentRun/dcid.{orphan}/logs/std_log.txt"),
    );
    e.store
        .write_json(&orphan_blob, &json!({"by": "unknown"}))
        .await
        .unwrap();

    let before = snapshot(&e).await;
    submit(&e, request(&e, "ATTR-1", "delete", "alice", false), 1).await;
    let r = report(&e, "ATTR-1").await;
    let after = snapshot(&e).await;
    for b in e.truth.blobs_of("alice") {
        assert!(!after.contains_key(b), "alice's blob survived: {b}");
    }
    for (k, v) in &before {
        if e.truth.blobs.get(k).map(String::as_str) == Some("alice")
            || k.starts_with("armlocal/")
            || k.starts_with("telemetrylocal/")
        {
            continue;
        }
        assert_eq!(after.get(k), Some(v), "collateral change to {k}");
    }
    for k in &ali_children {
        assert!(
            after.contains_key(k),
            "the namesake's child run folder went: {k}"
        );
    }
    for (id, owner) in &e.truth.resources {
        assert_eq!(
            arm_present(&after, id),
            owner != "alice",
            "{id} owned by {owner}"
        );
    }
    assert!(
        arm_present(&after, &format!("{ws}/jobs/{orphan}")),
        "the unattributed job stays"
    );
    assert_eq!(r.counts.failed, 0);
    assert_eq!(r.status, FinalStatus::NeedsReview, "{:#?}", r.slices);
    assert!(r
        .results
        .iter()
        .flat_map(|s| s.notes.iter())
        .any(|n| n.starts_with("unattributed:") && n.contains(orphan)));
}

/// Issue 14, item 3: models and data assets by evidence. Alice's assets produced by her runs
/// (a model's `jobName`, a data asset in her run's output folder) are deleted with the request;
/// assets only a display name ties to her — hers and those of Ali, who shares her display name
/// — are listed for review and untouched; the request's submitter cannot approve them when
/// separation is required; an approval deletes exactly the approved items (report version 2),
/// a rejection from the intake queue keeps them (version 3); every decision is in the audit
/// trail; a bad control message is rejected with its reason and archived.
#[tokio::test]
async fn display_name_only_assets_wait_for_review_and_approval_deletes_exactly_those() {
    use azureml_dsr::domain::review::ReviewDecision;
    use azureml_dsr::functions::review::{decide, ReviewOutcome};
    use azureml_dsr::seed::review_owner;
    let mut e = env(HoldSet::default(), 50).await;
    e.svc.settings.review_separate_approver = true;
    let mut req = request(&e, "REV-1", "delete", "alice", false);
    req["submittedBy"] = json!("helpdesk@contoso.com");
    submit(&e, req, 1).await;
    let v1 = report(&e, "REV-1").await;
    assert_eq!(v1.status, FinalStatus::NeedsReview);
    let snap = snapshot(&e).await;
    let of = |who: &str| -> Vec<String> {
        e.truth
            .resources
            .iter()
            .filter(|(_, o)| **o == review_owner(who))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let (alice_candidates, ali_candidates) = (of("alice"), of("ali"));
    assert_eq!(
        alice_candidates.len(),
        4,
        "model-1, data-1, census, her schedule"
    );
    assert_eq!(ali_candidates.len(), 4);
    let listed: Vec<_> = v1.results.iter().flat_map(|s| &s.review).collect();
    for id in alice_candidates.iter().chain(&ali_candidates) {
        let item = listed
            .iter()
            .find(|i| &i.resource_id == id)
            .unwrap_or_else(|| panic!("{id} listed"));
        assert!(item.evidence.contains("display name"), "{}", item.evidence);
        assert!(arm_present(&snap, id), "{id} untouched before approval");
    }
    assert_eq!(listed.len(), 8, "only display-name matches are listed");
    for (k, owner) in &e.truth.blobs {
        if owner.starts_with(azureml_dsr::seed::REVIEW_PREFIX) {
            assert!(snap.contains_key(k), "{k} untouched before approval");
        }
    }
    // Produced by her runs: gone with the request. Ali's run-produced model: untouched.
    for id in e.truth.resources_of("alice") {
        assert!(!arm_present(&snap, id), "{id} deleted");
    }
    for id in e.truth.resources_of("ali") {
        assert!(arm_present(&snap, id), "{id} (Ali's) untouched");
    }
    let md = azureml_dsr::domain::report::render_markdown(&v1);
    assert!(
        md.contains("## Needs review") && md.contains("pending"),
        "{md}"
    );

    let decision = |approve: bool, items: &[String], by: &str| ReviewDecision {
        request_id: RequestId::parse("REV-1").unwrap(),
        approve,
        items: items.to_vec(),
        approver: by.into(),
        reason: "checked with the subject".into(),
    };
    // The submitter may not approve (DSR_REVIEW_SEPARATE_APPROVER): refused, nothing changes.
    let out = decide(
        &e.svc,
        &decision(true, &alice_candidates, "HelpDesk@contoso.com"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(&out, ReviewOutcome::Refused(why) if why.contains("submitted")),
        "{out:?}"
    );
    assert_eq!(snapshot(&e).await, snap);
    // An item that is not a review item of this request: refused, nothing decided.
    let out = decide(
        &e.svc,
        &decision(true, &[e.truth.resources_of("bob")[0].clone()], "dpo"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(matches!(out, ReviewOutcome::Refused(_)), "{out:?}");
    assert_eq!(snapshot(&e).await, snap);

    // Approval by someone else deletes exactly Alice's three.
    let out = decide(
        &e.svc,
        &decision(true, &alice_candidates, "dpo@contoso.com"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(out, ReviewOutcome::Decided { version: 2, .. }),
        "{out:?}"
    );
    let after = snapshot(&e).await;
    for id in &alice_candidates {
        assert!(!arm_present(&after, id), "{id} deleted once approved");
    }
    for id in &ali_candidates {
        assert!(arm_present(&after, id), "{id} (Ali's) still untouched");
    }
    for (k, owner) in &e.truth.blobs {
        let alices = *owner == review_owner("alice");
        assert_eq!(
            after.contains_key(k),
            !alices && snap.contains_key(k),
            "{k} ({owner})"
        );
    }
    let v2 = certificate(&e, "REV-1", "certificate.v2.json")
        .await
        .expect("certificate version 2");
    assert_eq!(
        v2.status,
        FinalStatus::NeedsReview,
        "Ali's items are pending"
    );
    let approved: Vec<_> = v2
        .results
        .iter()
        .flat_map(|s| &s.review)
        .filter(|i| i.decision.as_ref().is_some_and(|d| d.approved))
        .collect();
    assert_eq!(approved.len(), 4);
    assert!(approved
        .iter()
        .all(|i| i.decision.as_ref().unwrap().by == "dpo@contoso.com"));
    for id in &alice_candidates {
        let outcome = v2
            .results
            .iter()
            .flat_map(|s| &s.items)
            .find(|o| matches!(&o.item, Item::Resource { id: x, .. } if x == id))
            .unwrap_or_else(|| panic!("{id} in version 2"));
        assert_eq!(outcome.status, ItemStatus::Deleted { verified: true });
    }
    assert!(v2.counts.deleted > v1.counts.deleted);
    // The decision is in the audit trail: who, when, why.
    let item = &approved[0].id;
    let (audit, _) = e
        .store
        .read_small(&BlobRef::new(
            "dsrstate",
            "dsr-audit",
            format!("reviews/REV-1/{item}.json"),
        ))
        .await
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&audit).unwrap();
    assert_eq!(audit["by"], "dpo@contoso.com");
    assert_eq!(audit["decision"], "approve");
    assert!(audit["at"].is_string() && audit["reason"].is_string());

    // A rejection through the intake queue (control message) keeps Ali's items.
    let msg = json!({"type": "reject", "version": 1, "requestId": "REV-1", "items": ali_candidates,
                     "approver": "dpo@contoso.com", "reason": "namesake's assets"});
    let out = intake::run(
        &e.svc,
        msg.to_string().as_bytes(),
        &Delivery {
            delivery_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        intake::IntakeOutcome::Reviewed {
            request_id: "REV-1".into(),
            version: 3
        }
    );
    assert_eq!(snapshot(&e).await, after, "a rejection changes nothing");
    let v3 = certificate(&e, "REV-1", "certificate.v3.json")
        .await
        .expect("certificate version 3");
    assert!(v3
        .results
        .iter()
        .flat_map(|s| &s.review)
        .all(|i| i.decision.is_some()));
    assert_ne!(v3.status, FinalStatus::NeedsReview, "{:?}", v3.status);
    // A decision is final; a bad control message is rejected with its reason.
    let out = decide(
        &e.svc,
        &decision(true, &ali_candidates, "dpo@contoso.com"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(&out, ReviewOutcome::Refused(why) if why.contains("final")),
        "{out:?}"
    );
    let bad = json!({"type": "approve", "version": 1, "requestId": "REV-1", "items": ["x"], "approver": "dpo"});
    intake_rejects(&e, bad.to_string().as_bytes(), "invalid_control_message").await;
    assert_eq!(snapshot(&e).await, after);
}

/// An approved candidate of an export is exported by the slice engine: the manifest's next
/// version lists the asset and its files, with the checksums of what was written; nothing in
/// the workspace changes.
#[tokio::test]
async fn an_approved_candidate_of_an_export_is_exported_in_the_next_manifest() {
    use azureml_dsr::domain::review::ReviewDecision;
    use azureml_dsr::functions::review::{decide, ReviewOutcome};
    let e = env(HoldSet::default(), 50).await;
    submit(&e, request(&e, "EXP-R", "export", "alice", false), 1).await;
    let before = snapshot(&e).await;
    let model = e
        .truth
        .resources
        .iter()
        .find(|(id, o)| {
            id.contains("/models/alice-model-1/") && **o == azureml_dsr::seed::review_owner("alice")
        })
        .map(|(id, _)| id.clone())
        .expect("alice's display-name-only model");
    let out = decide(
        &e.svc,
        &ReviewDecision {
            request_id: RequestId::parse("EXP-R").unwrap(),
            approve: true,
            items: vec![model.clone()],
            approver: "dpo".into(),
            reason: "hers".into(),
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        matches!(out, ReviewOutcome::Decided { version: 2, .. }),
        "{out:?}"
    );
    assert_eq!(snapshot(&e).await, before, "an export changes nothing");
    let v2: FinalReport = e
        .store
        .read_json(&BlobRef::new(
            "dsrstate",
            "dsr-exports",
            "EXP-R/manifest.v2.json",
        ))
        .await
        .unwrap()
        .expect("manifest version 2");
    let files: Vec<&String> = e
        .truth
        .blobs
        .iter()
        .filter(|(k, o)| {
            **o == azureml_dsr::seed::review_owner("alice") && k.contains("LocalUpload/")
        })
        .map(|(k, _)| k)
        .collect();
    assert_eq!(files.len(), 2, "model.pkl and conda.yaml");
    let keys = v2.blob_keys();
    for f in &files {
        assert_eq!(
            keys.iter().filter(|k| k == f).count(),
            1,
            "{f} exported once"
        );
    }
    let mut exported = 0;
    for o in v2.results.iter().flat_map(|s| &s.items) {
        let ItemStatus::Exported { path, sha256, .. } = &o.status else {
            panic!("not exported: {o:?}")
        };
        let (bytes, _) = e
            .store
            .read_small(&BlobRef::new("dsrstate", "dsr-exports", path.clone()))
            .await
            .unwrap();
        assert_eq!(&azureml_dsr::domain::ids::sha256_hex(&bytes), sha256);
        exported += 1;
    }
    assert!(v2
        .results
        .iter()
        .flat_map(|s| &s.items)
        .any(|o| matches!(&o.item, Item::Resource { id, .. } if *id == model)));
    assert_eq!(exported as u64, v2.counts.exported);
    assert_eq!(
        v2.counts.exported,
        report(&e, "EXP-R").await.counts.exported + 3
    );
}
