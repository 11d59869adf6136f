//! The Azure Files stand-in against the production adapter (`AzureFileShare`), and a notebooks
//! delete through the pipeline with that adapter wired.

use super::*;
use azureml_dsr::adapters::azure::files::{
    parse, AzureFileShare, FILES_SCOPE, FILE_API_VERSION, READ_CHUNK,
};
use azureml_dsr::ports::file_share::{FileShare, FileShareExt, ShareError};
use stand_ins::files::FilesStandIn;

const ACCT: &str = "mlwstore0";
const SHARE: &str = "code-391ff5ac-6576-460f-ba4d-7e03433c68b6";

fn adapter(f: &FilesStandIn) -> AzureFileShare {
    AzureFileShare::new(rest(FILES_SCOPE), f.template())
}

fn seeded() -> FilesStandIn {
    let f = FilesStandIn::start();
    f.create_share(ACCT, SHARE);
    for p in [
        "Users/alice/a.ipynb",
        "Users/alice/b.ipynb",
        "Users/alice/c.py",
        "Users/alice/nb/d.ipynb",
        "Users/alice/nb/deep/e.txt",
        "Users/alice/nb/deep/f.txt",
        "Users/alice2/x.ipynb",
        "Users/bob/y.ipynb",
    ] {
        f.put_file(ACCT, SHARE, p, format!("{{\"path\": \"{p}\"}}").as_bytes());
    }
    f
}

#[tokio::test]
async fn lists_recursively_across_pages_with_the_oauth_headers() {
    let f = seeded();
    f.set_page_cap(2);
    let tree = adapter(&f)
        .list_tree(ACCT, SHARE, "Users/alice/")
        .await
        .unwrap();
    let paths: Vec<&str> = tree.files.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Users/alice/a.ipynb",
            "Users/alice/b.ipynb",
            "Users/alice/c.py",
            "Users/alice/nb/d.ipynb",
            "Users/alice/nb/deep/e.txt",
            "Users/alice/nb/deep/f.txt",
        ]
    );
    assert_eq!(
        tree.directories,
        ["Users/alice/nb/deep", "Users/alice/nb", "Users/alice"],
        "deepest first"
    );
    let lists: Vec<_> = f
        .seen()
        .into_iter()
        .filter(|s| s.query("comp") == Some("list"))
        .collect();
    // Users/alice has 4 entries: two pages of 2, the second asked for with the marker.
    assert!(
        lists.iter().any(|s| s.query("marker").is_some()),
        "{lists:?}"
    );
    assert!(lists.len() >= 4, "{}", lists.len());
    for s in f.seen() {
        assert_eq!(s.header("x-ms-file-request-intent"), Some("backup"));
        assert_eq!(s.header("x-ms-version"), Some(FILE_API_VERSION));
        assert!(s.header("x-ms-version").unwrap() >= "2022-11-02");
        assert_eq!(s.query("restype"), Some("directory"));
        let token = s
            .header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        assert_eq!(claims(token)["aud"], "https://storage.azure.com");
    }
}

#[tokio::test]
async fn reads_in_ranges_then_deletes_files_and_the_emptied_directories() {
    let f = seeded();
    // Larger than one ranged read, so the stream is stitched from two 206 replies.
    let big: Vec<u8> = (0..READ_CHUNK + 10).map(|i| (i % 251) as u8).collect();
    f.put_file(ACCT, SHARE, "Users/alice/nb/big.bin", &big);
    let a = adapter(&f);
    let mut r = a.open(ACCT, SHARE, "Users/alice/nb/big.bin").await.unwrap();
    assert_eq!(r.size, big.len() as u64);
    let mut got = Vec::new();
    while let Some(c) = r.body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, big);
    let ranges: Vec<String> = f
        .seen()
        .iter()
        .filter_map(|s| s.header("x-ms-range").map(str::to_string))
        .collect();
    assert_eq!(
        ranges,
        [
            format!("bytes=0-{}", READ_CHUNK - 1),
            format!("bytes={READ_CHUNK}-{}", READ_CHUNK + 9)
        ]
    );

    let tree = a.list_tree(ACCT, SHARE, "Users/alice").await.unwrap();
    // A directory with files in it is refused.
    assert!(matches!(
        a.delete_directory(ACCT, SHARE, "Users/alice/nb").await,
        Err(ShareError::DirectoryNotEmpty(_))
    ));
    for file in &tree.files {
        assert_eq!(
            a.delete_file(ACCT, SHARE, &file.path).await.unwrap(),
            DeleteOutcome::Deleted
        );
    }
    for d in &tree.directories {
        assert_eq!(
            a.delete_directory(ACCT, SHARE, d).await.unwrap(),
            DeleteOutcome::Deleted
        );
    }
    assert_eq!(
        f.files(ACCT, SHARE),
        ["Users/alice2/x.ipynb", "Users/bob/y.ipynb"]
    );
    assert_eq!(f.dirs(ACCT, SHARE), ["Users", "Users/alice2", "Users/bob"]);
    // Again (a redelivery): already gone, not an error.
    assert_eq!(
        a.delete_file(ACCT, SHARE, "Users/alice/a.ipynb")
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
    assert!(matches!(
        a.open(ACCT, SHARE, "Users/alice/a.ipynb").await,
        Err(ShareError::FileNotFound(_))
    ));
}

/// The safety property: a share the API says is missing is an error, never "no files";
/// a missing folder of an existing share is the one "nothing there".
#[tokio::test]
async fn a_missing_share_is_an_error_and_a_missing_folder_is_empty() {
    let f = seeded();
    let a = adapter(&f);
    match a.list_tree(ACCT, "code-missing", "Users/alice").await {
        Err(ShareError::ShareNotFound(m)) => {
            assert!(m.contains("ShareNotFound"), "{m}");
            assert!(!m.contains("alice"), "path redacted: {m}");
        }
        other => panic!("expected ShareNotFound, got {:?}", other.map(|t| t.files)),
    }
    assert!(matches!(
        a.delete_file(ACCT, "code-missing", "Users/alice/a.ipynb")
            .await,
        Err(ShareError::ShareNotFound(_))
    ));
    assert!(matches!(
        a.list_tree(ACCT, SHARE, "Users/carol").await,
        Err(ShareError::DirectoryNotFound(_))
    ));
    let seen = f.seen();
    let miss = seen
        .iter()
        .find(|s| s.path.contains("code-missing"))
        .unwrap();
    assert_eq!(miss.status, 404);
}

#[tokio::test]
async fn refusals_are_errors_with_their_reason() {
    let f = seeded();
    // A token for another audience.
    let wrong = AzureFileShare::new(rest(GRAPH_SCOPE), f.template());
    match wrong.list_tree(ACCT, SHARE, "Users/alice").await {
        Err(ShareError::Forbidden(m)) => {
            assert!(m.contains("InvalidAuthenticationInfo"), "{m}")
        }
        other => panic!("expected Forbidden, got {:?}", other.map(|t| t.files)),
    }
    // Without the intent header the service refuses, as the docs say.
    let token = IdentityStandIn::shared().token_for("https://storage.azure.com");
    let r = http()
        .get(format!(
            "{}/{SHARE}/Users?restype=directory&comp=list",
            f.template().replace("{account}", ACCT)
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("x-ms-version", FILE_API_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-ms-error-code"],
        "AuthorizationPermissionMismatch"
    );
    let body = r.bytes().await.unwrap();
    assert_eq!(
        parse(&body).unwrap().text_at(&["Code"]).as_deref(),
        Some("AuthorizationPermissionMismatch")
    );
}

#[tokio::test]
async fn throttling_is_waited_out_as_retry_after_says() {
    let f = seeded();
    f.set_busy(2);
    let started = Instant::now();
    let tree = adapter(&f)
        .list_tree(ACCT, SHARE, "Users/bob")
        .await
        .unwrap();
    assert_eq!(tree.files.len(), 1);
    let statuses: Vec<u16> = f.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    // Retry-After: 1 twice, not the 20 ms backoff of the test's retry settings.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn share_snapshots_are_reported_and_the_fixtures_parse() {
    let f = seeded();
    let a = adapter(&f);
    assert!(a.retention(ACCT, SHARE).await.unwrap().snapshots.is_empty());
    f.add_snapshot(ACCT, SHARE, "2026-11-28T20:00:00.0000000Z");
    let r = a.retention(ACCT, SHARE).await.unwrap();
    assert_eq!(r.snapshots.len(), 1);
    assert!(r.note(SHARE).unwrap().contains("2026-11-28T20:00:00Z"));

    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/azure-rest/files/"
    );
    let list =
        parse(&std::fs::read(format!("{dir}list-directories-and-files.xml")).unwrap()).unwrap();
    let entries = &list.child("Entries").unwrap().children;
    assert_eq!(entries[0].name, "File");
    assert_eq!(
        entries[0]
            .text_at(&["Properties", "Content-Length"])
            .as_deref(),
        Some("1024")
    );
    assert_eq!(entries[1].name, "Directory");
    assert_eq!(
        list.text_at(&["NextMarker"]).as_deref(),
        Some("2!44!Users/alice/zz")
    );
    let shares = parse(&std::fs::read(format!("{dir}list-shares-snapshots.xml")).unwrap()).unwrap();
    assert_eq!(shares.child("Shares").unwrap().children.len(), 3);
    let err = parse(&std::fs::read(format!("{dir}error-share-not-found.xml")).unwrap()).unwrap();
    assert_eq!(err.text_at(&["Code"]).as_deref(), Some("ShareNotFound"));
}

/// A notebooks delete through the pipeline with the Azure Files adapter wired: the
/// subject's folder goes, `Users/<other>/` (including a longer name starting with the
/// subject's) stays.
#[tokio::test]
async fn a_notebooks_delete_through_the_pipeline_leaves_other_users_untouched() {
    use azureml_dsr::adapters::local::memory_bus::MemoryBus;
    use azureml_dsr::domain::plan::ResourceType;
    use azureml_dsr::domain::slice::{Item, ItemStatus};
    use azureml_dsr::functions::{intake, Delivery, Settings};
    use azureml_dsr::seed::{seed, SeedOptions};
    use azureml_dsr::wiring::{local_services, local_store, LocalPaths};

    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let store = local_store(&paths);
    let truth = seed(
        &store,
        &SeedOptions {
            users: 2,
            runs_per_user: 1,
            ..Default::default()
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    std::fs::write(
        paths.directory(),
        serde_json::to_vec(&truth.directory()).unwrap(),
    )
    .unwrap();
    let info = truth.infos[0].clone();
    let alice = truth.users[0].clone();
    let other = truth.users[1].clone();
    let f = FilesStandIn::start();
    let (acct, share) = (info.storage_account.as_str(), info.file_share.as_str());
    f.create_share(acct, share);
    for p in ["a.ipynb", "sub/b.ipynb", "sub/deeper/c.txt"] {
        f.put_file(acct, share, &format!("Users/{}/{p}", alice.key), b"{}");
    }
    f.put_file(
        acct,
        share,
        &format!("Users/{}/keep.ipynb", other.key),
        b"{}",
    );
    f.put_file(
        acct,
        share,
        &format!("Users/{}x/keep.ipynb", alice.key),
        b"{}",
    );
    f.set_page_cap(2);
    let bus = Arc::new(MemoryBus::new());
    let mut svc = local_services(&paths, store, bus.clone(), Settings::default());
    svc.files = Arc::new(AzureFileShare::new(rest(FILES_SCOPE), f.template()));
    svc.state().put_scope(&truth.workspaces).await.unwrap();
    let ws: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
    let req = json!({"schemaVersion": "1.0", "requestId": "NB-TWIN", "type": "delete",
        "dryRun": false, "subject": {"upn": alice.upn}, "scope": {"workspaces": ws}});
    intake::run(&svc, req.to_string().as_bytes(), &Delivery::default())
        .await
        .unwrap();
    support::pipeline::drive(&svc, &bus, 1).await;

    let report = svc
        .state()
        .report(&azureml_dsr::domain::request::RequestId::parse("NB-TWIN").unwrap())
        .await
        .unwrap()
        .unwrap();
    let nb = report
        .results
        .iter()
        .find(|s| s.resource_type == ResourceType::Notebooks && s.workspace == truth.workspaces[0])
        .unwrap();
    assert_eq!(nb.items.len(), 3, "{:?}", nb.items);
    for o in &nb.items {
        assert!(matches!(o.item, Item::File { .. }));
        assert_eq!(o.status, ItemStatus::Deleted { verified: true });
    }
    let mut left = f.files(acct, share);
    left.sort();
    let mut want = vec![
        format!("Users/{}/keep.ipynb", other.key),
        format!("Users/{}x/keep.ipynb", alice.key),
    ];
    want.sort();
    assert_eq!(left, want);
    assert!(
        !f.dirs(acct, share)
            .iter()
            .any(|d| d == &format!("Users/{}", alice.key)
                || d.starts_with(&format!("Users/{}/", alice.key))),
        "the subject's folders are removed once emptied: {:?}",
        f.dirs(acct, share)
    );
}
