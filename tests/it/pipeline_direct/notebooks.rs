//! Notebooks on the Azure Files share: the subject's folder and nothing else, a missing share
//! fails, an ambiguous folder or a departed user's UPN goes to review.

use super::*;

/// Every file of the workspace's notebooks share, `path -> sha256`.
async fn share_files(e: &Env) -> BTreeMap<String, String> {
    let info = &e.truth.infos[0];
    let prefix = format!("{}/{}/", info.storage_account, info.file_share);
    snapshot(e)
        .await
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|p| (p.to_string(), v)))
        .collect()
}

#[tokio::test]
async fn notebooks_delete_removes_the_subjects_folder_and_nothing_else() {
    let e = env(HoldSet::default(), 2).await;
    let before = share_files(&e).await;
    let alias = e.truth.user("alice").unwrap().key.clone();
    let mine = format!("Users/{alias}/");
    assert!(before.keys().any(|p| p.starts_with(&mine)), "seeded");
    assert!(
        before.keys().any(|p| !p.starts_with(&mine)),
        "others seeded"
    );
    submit(&e, request(&e, "NB-DEL", "delete", "alice", false), 1).await;
    let r = report(&e, "NB-DEL").await;
    let nb = r
        .results
        .iter()
        .find(|s| s.resource_type == ResourceType::Notebooks)
        .unwrap();
    assert!(!nb.items.is_empty());
    for o in &nb.items {
        assert!(
            matches!(&o.item, Item::File { path, .. } if path.starts_with(&mine)),
            "{:?}",
            o.item
        );
        assert_eq!(o.status, ItemStatus::Deleted { verified: true });
    }
    let after = share_files(&e).await;
    let expected: BTreeMap<String, String> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&mine))
        .collect();
    assert_eq!(after, expected, "only the subject's folder went");
}

/// A share that cannot be listed is a failure with its reason, never "no notebooks" (before
/// the file-share port, a 404 from the share read as an empty folder and the slice completed).
#[tokio::test]
async fn a_missing_notebooks_share_fails_the_slice_instead_of_finding_nothing() {
    let e = env(HoldSet::default(), 50).await;
    let info = e.truth.infos[0].clone();
    for b in e
        .store
        .list_all(&info.storage_account, &info.file_share, "")
        .await
        .unwrap()
    {
        e.store
            .delete(&BlobRef::new(
                info.storage_account.clone(),
                info.file_share.clone(),
                b.name,
            ))
            .await
            .unwrap();
    }
    e.store
        .delete_container(&info.storage_account, &info.file_share)
        .await
        .unwrap();
    submit(&e, request(&e, "NB-GONE", "delete", "alice", false), 1).await;
    let r = report(&e, "NB-GONE").await;
    let nb = r
        .results
        .iter()
        .find(|s| s.resource_type == ResourceType::Notebooks)
        .unwrap();
    assert_eq!(nb.status, azureml_dsr::domain::slice::SliceStatus::Failed);
    let reason = nb.reason.clone().unwrap_or_default();
    assert!(reason.contains("file share not found"), "{reason}");
    assert!(!reason.contains("alice"), "no personal data: {reason}");
    assert_eq!(r.status, FinalStatus::PartiallyFailed);
}

/// Issue 14, item 5: a departed user (no directory entry) is matched by object id only. The
/// request's UPN never names a notebooks folder on its own: `Users/<alias>/` is left untouched
/// and the report needs review; the jobs her object id proves are hers still go.
#[tokio::test]
async fn a_departed_users_upn_never_names_a_folder_to_erase() {
    let e = env(HoldSet::default(), 50).await;
    let carol = e.truth.user("carol").unwrap().clone();
    // The directory no longer knows her.
    let paths = LocalPaths::new(e._dir.path());
    let rest: Vec<_> = e
        .truth
        .directory()
        .into_iter()
        .filter(|d| d.object_id != carol.object_id)
        .collect();
    std::fs::write(paths.directory(), serde_json::to_vec(&rest).unwrap()).unwrap();
    let before = snapshot(&e).await;
    let ws: Vec<String> = e.truth.workspaces.iter().map(|w| w.to_string()).collect();
    submit(
        &e,
        json!({"schemaVersion": "1.0", "requestId": "GONE-1", "type": "delete",
               "subject": {"objectId": carol.object_id.to_string(), "upn": carol.upn},
               "scope": {"workspaces": ws}}),
        1,
    )
    .await;
    let r = report(&e, "GONE-1").await;
    assert_eq!(r.status, FinalStatus::NeedsReview, "{:#?}", r.slices);
    let after = snapshot(&e).await;
    let notebooks: Vec<&String> = before
        .keys()
        .filter(|k| k.contains(&format!("/Users/{}/", carol.key)))
        .collect();
    assert!(!notebooks.is_empty());
    for k in notebooks {
        assert!(after.contains_key(k), "{k} was erased on a UPN alone");
    }
    assert!(r
        .results
        .iter()
        .flat_map(|s| &s.notes)
        .any(|n| n.contains("never names a notebooks folder")));
    // Her jobs, proven by object id in run history, are gone.
    let jobs: Vec<&String> = e
        .truth
        .resources_of("carol")
        .into_iter()
        .filter(|id| id.contains("/jobs/"))
        .collect();
    assert!(!jobs.is_empty());
    for id in jobs {
        assert!(!arm_present(&after, id), "{id} deleted");
    }
}

/// Issue 14, item 5: when the directory maps another person to the subject's notebooks folder
/// name (a guest `ALICE@fabrikam.com` and `alice@contoso.com` both map to `Users/alice/`; Azure
/// Files names are case-insensitive), the folder is nobody's to erase alone: it is left
/// untouched and the report needs review.
#[tokio::test]
async fn a_notebooks_folder_two_people_map_to_is_left_for_review() {
    let e = env(HoldSet::default(), 50).await;
    let paths = LocalPaths::new(e._dir.path());
    let mut dir = e.truth.directory();
    let mut guest = dir[0].clone();
    guest.object_id = uuid::Uuid::from_u128(0x4444);
    guest.upn = Some(azureml_dsr::domain::subject::Upn::parse("ALICE@fabrikam.com").unwrap());
    guest.mail = guest.upn.clone();
    dir.push(guest);
    std::fs::write(paths.directory(), serde_json::to_vec(&dir).unwrap()).unwrap();
    let before = snapshot(&e).await;
    submit(&e, request(&e, "NB-COL", "delete", "alice", false), 1).await;
    let r = report(&e, "NB-COL").await;
    assert_eq!(r.status, FinalStatus::NeedsReview);
    assert!(r
        .results
        .iter()
        .flat_map(|s| &s.notes)
        .any(|n| n.contains("also another user's")));
    let after = snapshot(&e).await;
    let folder: Vec<&String> = before
        .keys()
        .filter(|k| k.contains("/Users/alice/"))
        .collect();
    assert!(!folder.is_empty());
    for k in folder {
        assert!(
            after.contains_key(k),
            "{k} erased though two people map to it"
        );
    }
    // Without the other person, the same request erases it (the check is what keeps it).
    let e2 = env(HoldSet::default(), 50).await;
    submit(&e2, request(&e2, "NB-ONE", "delete", "alice", false), 1).await;
    let after2 = snapshot(&e2).await;
    assert!(!after2.keys().any(|k| k.contains("/Users/alice/")));
}
