//! Follow-up after the retention date: final certificate, soft-deleted copies named.

use super::*;

/// Soft delete on: the certificate first says "retained until"; the retention-sweep timer, run
/// with a clock past the date, writes the final version: "fully erased on …, verified" for one
/// request, and for the other names the blob that is still there (restored, simulated).
#[tokio::test]
async fn follow_up_after_the_retention_date_writes_the_final_certificate() {
    use azureml_dsr::adapters::local::fs_blob::{AccountSettings, FsBlobStore};
    use azureml_dsr::domain::report::{FinalReport, FinalStatus};
    use azureml_dsr::domain::slice::{Item, ItemStatus};
    use azureml_dsr::functions::{follow_up, retention};
    use azureml_dsr::protocol::timer::TimerInfo;

    let e = env_with(Settings::default()).await;
    let fs = FsBlobStore::new(LocalPaths::new(e.dir.path()).store());
    for info in &e.truth.infos {
        fs.set_account_settings(
            &info.storage_account,
            &AccountSettings {
                delete_retention_days: 9,
            },
        )
        .unwrap();
    }
    let t0 = time::OffsetDateTime::now_utc();
    submit(&e, "DEL-F1", "delete", "alice").await;
    submit(&e, "DEL-F2", "delete", "bob").await;
    let state = e.svc.state();
    let cert = |id: &str, v: &str| state.blob(REPORTS, format!("{id}/certificate{v}"));
    let read_cert = |b: BlobRef| {
        let store = e.store.clone();
        async move {
            store
                .read_json::<FinalReport>(&b)
                .await
                .unwrap()
                .expect("certificate")
        }
    };
    let v1 = read_cert(cert("DEL-F1", ".json")).await;
    assert!(v1.counts.retained > 0, "{:?}", v1.counts);
    let md = e.store.read_small(&cert("DEL-F1", ".md")).await.unwrap().0;
    assert!(String::from_utf8_lossy(&md).contains("physically retained until"));

    // Before the date nothing is final.
    let early = follow_up::sweep(&e.svc, t0 + time::Duration::days(8))
        .await
        .unwrap();
    assert!(early.finalised.is_empty(), "{early:?}");
    assert_eq!(early.waiting, 2);

    // One of alice's blobs is back (restored from soft delete, simulated by writing it again).
    let restored = e.truth.blobs_of("alice")[0].clone();
    let (acct, rest) = restored.split_once('/').unwrap();
    let (container, name) = rest.split_once('/').unwrap();
    let restored_ref = BlobRef::new(acct, container, name);
    e.store
        .put(
            &restored_ref,
            bytes::Bytes::from_static(b"restored"),
            "text/plain",
            Condition::None,
            &Default::default(),
        )
        .await
        .unwrap();

    let timer = TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: false,
    };
    let later = t0 + time::Duration::days(10);
    let sweep = retention::run(&e.svc, &timer, later).await.unwrap();
    let mut finalised = sweep.follow_ups.finalised.clone();
    finalised.sort();
    assert_eq!(
        finalised,
        vec!["DEL-F1", "DEL-F2"],
        "{:?}",
        sweep.follow_ups
    );
    assert_eq!(sweep.follow_ups.still_recoverable, 1);

    // Bob: every retained item verified gone.
    let f2 = read_cert(cert("DEL-F2", ".final.json")).await;
    assert_eq!(f2.counts.retained, 0, "{:?}", f2.counts);
    assert_eq!(f2.status, FinalStatus::Completed);
    let md2 = String::from_utf8_lossy(
        &e.store
            .read_small(&cert("DEL-F2", ".final.md"))
            .await
            .unwrap()
            .0,
    )
    .to_string();
    assert!(md2.contains("fully erased on"), "{md2}");

    // Alice: the restored blob is named; the rest verified gone.
    let f1 = read_cert(cert("DEL-F1", ".final.json")).await;
    assert_eq!(f1.status, FinalStatus::PartiallyFailed);
    let mut named = 0;
    for o in f1.results.iter().flat_map(|r| &r.items) {
        match (&o.item, &o.status) {
            (
                Item::Blob {
                    account: a,
                    container: c,
                    name: n,
                    ..
                },
                ItemStatus::Failed { reason },
            ) if BlobRef::new(a, c, n.clone()) == restored_ref => {
                assert!(reason.contains("present again"), "{reason}");
                named += 1;
            }
            (Item::Blob { .. }, ItemStatus::Deleted { verified: true }) => {}
            (Item::Blob { .. }, other) => panic!("unexpected blob status {other:?}"),
            _ => {}
        }
    }
    assert_eq!(named, 1);
    let md1 = String::from_utf8_lossy(
        &e.store
            .read_small(&cert("DEL-F1", ".final.md"))
            .await
            .unwrap()
            .0,
    )
    .to_string();
    assert!(md1.contains("still there") && md1.contains(name), "{md1}");
    // The first certificate is untouched; the follow-up is chained and verifies.
    assert_eq!(read_cert(cert("DEL-F1", ".json")).await, v1);
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
    assert!(e
        .store
        .read_small(&state.blob(AUDIT, "requests/DEL-F1.final.json"))
        .await
        .is_ok());
    // Nothing more to do on the next run.
    let again = follow_up::sweep(&e.svc, later).await.unwrap();
    assert!(
        again.finalised.is_empty() && again.waiting == 0,
        "{again:?}"
    );
}

/// A soft-deleted copy still inside its retention when the follow-up runs (the account's
/// retention lengthened after the delete, simulated) is named as still there.
#[tokio::test]
async fn follow_up_names_a_soft_deleted_copy_still_recoverable() {
    use azureml_dsr::adapters::local::fs_blob::{AccountSettings, FsBlobStore};
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBlobStore::new(dir.path());
    fs.set_account_settings(
        "acct",
        &AccountSettings {
            delete_retention_days: 2,
        },
    )
    .unwrap();
    fs.create_container("acct", "cont").await.unwrap();
    let b = BlobRef::new("acct", "cont", "dir/x.bin");
    fs.put(
        &b,
        bytes::Bytes::from_static(b"x"),
        "application/octet-stream",
        Condition::None,
        &Default::default(),
    )
    .await
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    fs.delete(&b).await.unwrap();
    let left = fs
        .recoverable(&b, now + time::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("soft-deleted copy"), "{left:?}");
    fs.set_account_settings(
        "acct",
        &AccountSettings {
            delete_retention_days: 30,
        },
    )
    .unwrap();
    let left = fs
        .recoverable(&b, now + time::Duration::days(3))
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "retention lengthened: still there {left:?}");
    let left = fs
        .recoverable(&b, now + time::Duration::days(31))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
