//! Unit tests of `adapters::local::fs_blob`.

use super::*;

#[test]
fn hostile_names_are_rejected() {
    for n in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../b",
        "a//b",
        "a/./b",
        "a\\b",
        "a/",
        "x\0y",
        ".dsr-meta/x",
        &"a".repeat(2000),
    ] {
        assert!(validate_name(n).is_err(), "{n:?}");
    }
    for n in [
        "ExperimentRun/dcid.run_1/logs/std_log.txt",
        "Users/álice/nb.ipynb",
        "a b/c",
    ] {
        assert!(validate_name(n).is_ok(), "{n:?}");
    }
}

proptest::proptest! {
    #[test]
    fn no_name_escapes_the_container(name in "\\PC{0,40}") {
        let store = FsBlobStore::new("/nonexistent-root");
        if let Ok(p) = store.blob_path(&BlobRef::new("acct", "cont", name.clone())) {
            proptest::prop_assert!(p.starts_with("/nonexistent-root/acct/cont/"));
            proptest::prop_assert!(!p.components().any(|c| matches!(c, std::path::Component::ParentDir)));
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Paging through any folder tree with any prefix and page size yields exactly the
    /// sorted names under the prefix, each once, as Azure's flat listing does.
    #[test]
    fn paging_lists_every_name_once_in_order(
        names in proptest::collection::btree_set("[ab-]{1,2}(/[ab-]{1,2}){0,2}", 0..40),
        prefix in "([ab-]{1,2}/?){0,2}",
        page in 1u32..7,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobStore::new(dir.path());
        let mut stored = Vec::new();
        rt.block_on(async {
            for n in &names {
                // A name that is also a folder of another ("a" and "a/b") cannot be held
                // by a file system; skip those.
                if s.put(&BlobRef::new("acct", "cont", n.clone()), Bytes::new(), "x",
                    Condition::None, &BTreeMap::new()).await.is_ok() {
                    stored.push(n.clone());
                }
            }
        });
        let mut want: Vec<String> =
            stored.into_iter().filter(|n| n.starts_with(&prefix)).collect();
        want.sort();
        let mut got = Vec::new();
        let mut marker = None;
        for _ in 0..100 {
            let p = rt.block_on(s.list_page("acct", "cont", &prefix, marker, page)).unwrap();
            proptest::prop_assert!(p.items.len() <= page as usize);
            got.extend(p.items.into_iter().map(|i| i.name));
            marker = p.next;
            if marker.is_none() {
                break;
            }
        }
        proptest::prop_assert_eq!(got, want);
    }
}

/// A folder inside the store that is a link to somewhere else: nothing reaches through it.
#[tokio::test]
async fn symbolic_links_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"not the store's").unwrap();
    let s = FsBlobStore::new(dir.path());
    s.create_container("acct", "cont").await.unwrap();
    let cont = dir.path().join("acct").join("cont");
    std::fs::create_dir_all(cont.join("Users")).unwrap();
    std::os::unix::fs::symlink(outside.path(), cont.join("Users").join("alice")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), cont.join("file.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("acct").join("linked")).unwrap();

    // Listing: the linked folder is not listed into, nor is the linked file a blob.
    assert!(s
        .list_all("acct", "cont", "Users/alice/")
        .await
        .map_or(true, |l| l.is_empty()));
    assert!(s.list_all("acct", "cont", "").await.unwrap().is_empty());
    assert!(s
        .list_all("acct", "linked", "")
        .await
        .map_or(true, |l| l.is_empty()));
    // Reading, through a linked folder or of a linked file.
    let inside = BlobRef::new("acct", "cont", "Users/alice/secret.txt");
    assert!(s.read_small(&inside).await.is_err());
    assert!(s
        .read_small(&BlobRef::new("acct", "cont", "file.txt"))
        .await
        .is_err());
    // Writing and copying into the linked folder.
    assert!(s
        .put(
            &BlobRef::new("acct", "cont", "Users/alice/new.txt"),
            Bytes::from_static(b"x"),
            "text/plain",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .is_err());
    s.put(
        &BlobRef::new("acct", "cont", "real.txt"),
        Bytes::from_static(b"x"),
        "text/plain",
        Condition::None,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    assert!(s
        .copy(
            &BlobRef::new("acct", "cont", "real.txt"),
            &BlobRef::new("acct", "cont", "Users/alice/copied.txt"),
        )
        .await
        .is_err());
    assert!(!outside.path().join("new.txt").exists());
    assert!(!outside.path().join("copied.txt").exists());
    // Deleting through the linked folder, one by one or in a batch, or the linked container.
    assert!(s.delete(&inside).await.is_err());
    let many = s
        .delete_many("acct", "cont", &["Users/alice/secret.txt".to_string()])
        .await;
    assert!(many.map_or(true, |r| r.iter().all(|o| o.is_err())));
    let _ = s.delete_container("acct", "linked").await;
    assert!(
        outside.path().join("secret.txt").exists(),
        "the file outside the store is untouched"
    );
    // Errors name no blob (names can be personal data).
    let e = s.read_small(&inside).await.unwrap_err().to_string();
    assert!(!e.contains("alice"), "{e}");
}

#[tokio::test]
async fn conditional_writes_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsBlobStore::new(dir.path());
    let b = BlobRef::new("acct", "cont", "a/b.json");
    let e1 = s
        .put(
            &b,
            Bytes::from_static(b"1"),
            "application/json",
            Condition::IfNotExists,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.put(
            &b,
            Bytes::from_static(b"2"),
            "application/json",
            Condition::IfNotExists,
            &BTreeMap::new()
        )
        .await,
        Err(StoreError::AlreadyExists(_))
    ));
    let e2 = s
        .put(
            &b,
            Bytes::from_static(b"22"),
            "application/json",
            Condition::IfMatch(e1.clone()),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.put(
            &b,
            Bytes::from_static(b"3"),
            "application/json",
            Condition::IfMatch(e1),
            &BTreeMap::new()
        )
        .await,
        Err(StoreError::ConditionFailed(_))
    ));
    assert_ne!(e2, "");
    for i in 0..25 {
        s.put(
            &BlobRef::new("acct", "cont", format!("p/{i:03}")),
            Bytes::new(),
            "x",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    }
    let all = s.list_all("acct", "cont", "p/").await.unwrap();
    assert_eq!(all.len(), 25);
    let p1 = s.list_page("acct", "cont", "p/", None, 10).await.unwrap();
    assert_eq!(p1.items.len(), 10);
    assert_eq!(p1.next.as_deref(), Some("p/009"));
    assert_eq!(s.delete(&b).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(s.delete(&b).await.unwrap(), DeleteOutcome::NotFound);
    s.set_account_settings(
        "acct",
        &AccountSettings {
            delete_retention_days: 7,
        },
    )
    .unwrap();
    assert!(matches!(
        s.delete(&BlobRef::new("acct", "cont", "p/000"))
            .await
            .unwrap(),
        DeleteOutcome::Retained { .. }
    ));
    assert_eq!(s.list_all("acct", "cont", "p/").await.unwrap().len(), 24);
}

/// Blocks staged by a build that never committed (a crash) are discarded once stale; a
/// build's fresh blocks, and committed blobs, are left alone.
#[tokio::test]
async fn stale_uncommitted_blocks_are_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::new(dir.path());
    store.create_container("acct", "exports").await.unwrap();
    let crashed = BlobRef::new("acct", "exports", "req-1/dsr-export-req-1.zip");
    let fresh = BlobRef::new("acct", "exports", "req-2/dsr-export-req-2.zip");
    let done = BlobRef::new("acct", "exports", "req-3/a.zip");
    for b in [&crashed, &fresh, &done] {
        for id in ["blk-00000000", "blk-00000001"] {
            store
                .stage_block(b, id, Bytes::from_static(b"data"))
                .await
                .unwrap();
        }
    }
    store
        .commit_blocks(&done, &["blk-00000000".into()], "application/zip")
        .await
        .unwrap();
    let blocks = dir.path().join("acct").join(BLOCKS_DIR).join("exports");
    // The crashed build's blocks were staged two days ago.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    for e in std::fs::read_dir(blocks.join("req-1/dsr-export-req-1.zip")).unwrap() {
        std::fs::File::options()
            .write(true)
            .open(e.unwrap().path())
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let n = store
        .discard_stale_blocks("acct", time::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        !blocks.join("req-1").exists(),
        "stale blocks and their folder stay"
    );
    assert!(blocks
        .join("req-2/dsr-export-req-2.zip/blk-00000001")
        .exists());
    // The fresh build still commits.
    store
        .commit_blocks(
            &fresh,
            &["blk-00000000".into(), "blk-00000001".into()],
            "application/zip",
        )
        .await
        .unwrap();
    assert_eq!(
        store.read_small(&fresh).await.unwrap().0.as_ref(),
        b"datadata"
    );
    assert_eq!(store.read_small(&done).await.unwrap().0.as_ref(), b"data");
    assert_eq!(
        store
            .discard_stale_blocks("acct", time::Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert!(store
        .discard_stale_blocks("../x", time::Duration::days(1))
        .await
        .is_err());
}
