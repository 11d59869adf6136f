//! Unit tests of the parent module (kept apart so the module reads at a readable size).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::adapters::local::memory_blob::MemoryBlobStore;
use crate::domain::deadline::Regulation;
use crate::domain::plan::ResourceType;
use crate::domain::report::{Counts, FinalStatus};
use crate::domain::request::{RequestId, RequestKind};
use crate::domain::slice::{Item, ItemOutcome, ItemStatus, SliceResult, SliceStatus};
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobStoreExt, Condition};

const WS: &str =
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1";

/// A file in the export area, as the export step leaves it.
async fn put_export(
    store: &dyn BlobStore,
    state: &StateStore,
    path: &str,
    body: &[u8],
    content_type: &str,
) {
    store
        .put(
            &state.blob(EXPORTS, path),
            bytes::Bytes::from(body.to_vec()),
            content_type,
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
}

/// An export area with two files, one telemetry table and one item left out, and its report.
async fn seeded() -> (Arc<dyn BlobStore>, StateStore, FinalReport) {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let state = StateStore::new(store.clone(), "dsrstate");
    let req = RequestId::parse("T-9").unwrap();
    let mut items = Vec::new();
    let files: [(&str, Vec<u8>); 2] = [
        (
            "T-9/ws1/jobs/files/acct/azureml/run/log.txt",
            b"hello log".to_vec(),
        ),
        (
            "T-9/ws1/models/files/acct/azureml/m/weights.bin",
            (0..5000u32).map(|i| (i * 7) as u8).collect(),
        ),
    ];
    for (path, body) in files {
        put_export(
            store.as_ref(),
            &state,
            path,
            &body,
            "application/octet-stream",
        )
        .await;
        items.push(ItemOutcome {
            item: Item::Blob {
                account: "acct".into(),
                container: "azureml".into(),
                name: path.rsplit("azureml/").next().unwrap().into(),
                size: body.len() as u64,
            },
            status: ItemStatus::Exported {
                path: path.into(),
                sha256: crate::domain::ids::sha256_hex(&body),
                size: body.len() as u64,
                content_type: "application/octet-stream".into(),
            },
        });
    }
    let rows = serde_json::to_vec_pretty(&serde_json::json!([
        {"TimeGenerated": "2026-11-28T10:00:00Z", "RunId": "r1", "Message": "a, \"b\""}
    ]))
    .unwrap();
    let tpath = "T-9/ws1/telemetry/telemetry/la1/AmlRunEvent.json";
    put_export(store.as_ref(), &state, tpath, &rows, "application/json").await;
    items.push(ItemOutcome {
        item: Item::Telemetry {
            table: "AmlRunEvent".into(),
            records: 1,
            destination: Some("/subscriptions/s/x/la1".into()),
        },
        status: ItemStatus::Exported {
            path: tpath.into(),
            sha256: crate::domain::ids::sha256_hex(&rows),
            size: rows.len() as u64,
            content_type: "application/json".into(),
        },
    });
    items.push(ItemOutcome {
        item: Item::Blob {
            account: "acct".into(),
            container: "azureml".into(),
            name: "gone.txt".into(),
            size: 1,
        },
        status: ItemStatus::Skipped {
            reason: "deleted before it could be exported".into(),
        },
    });
    let now = time::macros::datetime!(2026-11-28 12:00 UTC);
    let report = FinalReport {
        request_id: req,
        kind: RequestKind::Export,
        status: FinalStatus::Completed,
        dry_run: false,
        regulation: Regulation::Gdpr,
        subject_object_id: "oid".into(),
        subject_log_id: "log".into(),
        received_at: now,
        deadline: now,
        finished_at: now,
        within_deadline: true,
        counts: Counts::default(),
        slices: vec![],
        results: vec![SliceResult {
            key: "k".into(),
            workspace: WorkspaceId::parse(WS).unwrap(),
            resource_type: ResourceType::Jobs,
            status: SliceStatus::Completed,
            reason: None,
            notes: vec![],
            items,
            review: vec![],
            pages: None,
        }],
        items_merkle_root: None,
        derived_from_subject_data: None,
    };
    store_report(store.as_ref(), &state, &report).await;
    (store, state, report)
}

/// The export's stored report (JSON, Markdown), as fan-in writes it before the archive.
async fn store_report(store: &dyn BlobStore, state: &StateStore, report: &FinalReport) {
    let (json, md) = stored_report_refs(state, report);
    store.write_json(&json, report).await.unwrap();
    store
        .put(
            &md,
            bytes::Bytes::from(crate::domain::report::render_markdown(report)),
            "text/markdown",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
}

/// Built in 1,000-byte blocks (many blocks), read back by Python's zipfile; `export verify`
/// passes; a second `ensure` does not rebuild; the guide names what was left out.
#[tokio::test]
async fn archive_in_many_blocks_is_a_standard_zip() {
    let (store, state, report) = seeded().await;
    let s = ensure(store.as_ref(), &state, &report, 1000).await.unwrap();
    assert!(s.built && s.entries == 8, "{s:?}");
    let (zip, _) = store.read_small(&s.blob).await.unwrap();
    assert!(zip.len() > 5 * 1000, "several blocks");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.zip");
    std::fs::write(&file, &zip).unwrap();
    let script = "import sys, zipfile, hashlib, json\n\
z = zipfile.ZipFile(sys.argv[1])\n\
assert z.testzip() is None\n\
print(json.dumps({i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        [
            "index.html",
            "manifest.json",
            "report/export-report.json",
            "report/export-report.md",
            "workspaces/ws1/jobs/files/acct/azureml/run/log.txt",
            "workspaces/ws1/models/files/acct/azureml/m/weights.bin",
            "workspaces/ws1/telemetry/la1/AmlRunEvent.csv",
            "workspaces/ws1/telemetry/la1/AmlRunEvent.json",
        ]
    );
    assert_eq!(
        got["workspaces/ws1/jobs/files/acct/azureml/run/log.txt"],
        crate::domain::ids::sha256_hex(b"hello log")
    );
    let csv = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read('workspaces/ws1/telemetry/la1/AmlRunEvent.csv').decode())",
            ])
            .arg(&file)
            .output()
            .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        // Columns in the rows' field order (serde_json's maps: alphabetical).
        "Message,RunId,TimeGenerated\r\n\"a, \"\"b\"\"\",r1,2026-11-28T10:00:00Z\r\n"
    );
    let v = crate::cli::export::verify(&file).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    let index = String::from_utf8(
        std::process::Command::new("unzip")
            .args(["-p"])
            .arg(&file)
            .arg("index.html")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        index.contains("gone.txt — deleted before it could be exported"),
        "{index}"
    );
    for part in [
        "Jobs",
        "Models",
        "Data",
        "Compute",
        "Notebooks",
        "Telemetry",
    ] {
        assert!(index.contains(&format!("<h3>{part}</h3>")), "{part}");
    }
    // One flipped byte inside the model file's data: verify names that entry.
    let mut bytes = zip.to_vec();
    let at = bytes
        .windows(8)
        .position(|w| w == [0, 7, 14, 21, 28, 35, 42, 49])
        .expect("the model file's first bytes");
    bytes[at + 3] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let v = crate::cli::export::verify(&file).unwrap();
    assert!(
            v.problems.iter().any(|p| p
                == "workspaces/ws1/models/files/acct/azureml/m/weights.bin: SHA-256 does not match the manifest"),
            "{:?}",
            v.problems
        );
    let again = ensure(store.as_ref(), &state, &report, 1000).await.unwrap();
    assert!(!again.built, "a committed archive is not rebuilt");
}

/// The archive holds exactly what the report proves was exported: a file changed in the
/// export area since fails the build, and nothing is committed.
#[tokio::test]
async fn a_changed_export_fails_the_build() {
    let (store, state, report) = seeded().await;
    store
        .put(
            &state.blob(EXPORTS, "T-9/ws1/jobs/files/acct/azureml/run/log.txt"),
            bytes::Bytes::from_static(b"HELLO LOG"),
            "text/plain",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let err = build(store.as_ref(), &state, &report, 1000)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("changed in the export area"),
        "{err}"
    );
    assert!(store
        .read_small(&archive_ref(&state, &report))
        .await
        .is_err());
}

/// The guide's "left out" section and the manifest's `leftOut` say what was left out and
/// why by category and count, and never name what may be another person's: search notes
/// (which name other people's jobs), items awaiting review, a failed part's own error text,
/// a legal hold's text. The person's own items left out are named.
#[tokio::test]
async fn left_out_is_told_by_category_without_other_peoples_identifiers() {
    use crate::domain::resource::ArmKind;
    use crate::domain::review::ReviewItem;
    let (store, state, mut report) = seeded().await;
    let ws = WorkspaceId::parse(WS).unwrap();
    let r = &mut report.results[0];
    r.notes = vec![
            "unattributed: job \"dana-private-run\" was left untouched: its creator cannot be established (no record)".into(),
            "unattributed: job \"erin-other-run\" was left untouched: its creator cannot be established (no record)".into(),
            "model frank-model:3: its files are shared with another user's assets or jobs and were left in place".into(),
        ];
    r.review = vec![ReviewItem::new(
        "k",
        ArmKind::ModelVersion,
        "/subscriptions/s/x/models/gina-candidate-model/versions/1",
        "display name only (gina@contoso.example)".into(),
        3,
    )];
    for i in 0..3 {
        r.items.push(ItemOutcome {
            item: Item::Blob {
                account: "acct".into(),
                container: "azureml".into(),
                name: format!("later-{i}.txt"),
                size: 1,
            },
            status: ItemStatus::Skipped {
                reason: crate::domain::lifecycle::cancelled_item_reason(RequestKind::Export),
            },
        });
    }
    r.items.push(ItemOutcome {
        item: Item::Blob {
            account: "acct".into(),
            container: "azureml".into(),
            name: "held.txt".into(),
            size: 1,
        },
        status: ItemStatus::Held {
            hold: "LH-7".into(),
            reason: "litigation Harry Hollis v. Contoso".into(),
        },
    });
    r.items.push(ItemOutcome {
        item: Item::Blob {
            account: "acct".into(),
            container: "azureml".into(),
            name: "unreadable.txt".into(),
            size: 1,
        },
        status: ItemStatus::Failed {
            reason: "403 while reading jane-neighbour-notes".into(),
        },
    });
    report.results.push(SliceResult {
        key: "k2".into(),
        workspace: ws,
        resource_type: ResourceType::Data,
        status: SliceStatus::Failed,
        reason: Some("listing of ivan-secret-dataset failed".into()),
        notes: vec![],
        items: vec![],
        review: vec![],
        pages: None,
    });
    store_report(store.as_ref(), &state, &report).await;
    let s = build(store.as_ref(), &state, &report, 1000).await.unwrap();
    let (zip, _) = store.read_small(&s.blob).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.zip");
    std::fs::write(&file, &zip).unwrap();
    let entry = |name: &str| {
        let out = std::process::Command::new("unzip")
            .arg("-p")
            .arg(&file)
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "unzip {name}");
        String::from_utf8(out.stdout).unwrap()
    };
    let (index, manifest) = (entry("index.html"), entry("manifest.json"));
    // The person's report too: the operator's stored report (seeded above) names them all.
    let (report_json, report_md) = (
        entry("report/export-report.json"),
        entry("report/export-report.md"),
    );
    for other in [
        "jane-neighbour-notes",
        "dana-private-run",
        "erin-other-run",
        "frank-model",
        "gina",
        "Harry Hollis",
        "LH-7",
        "ivan-secret-dataset",
    ] {
        assert!(!index.contains(other), "index.html names {other}:\n{index}");
        assert!(!manifest.contains(other), "manifest.json names {other}");
        assert!(
            !report_json.contains(other),
            "export-report.json names {other}"
        );
        assert!(!report_md.contains(other), "export-report.md names {other}");
    }
    // Its own items with their outcome and SHA-256, the rest by category.
    let subject: crate::domain::subject_report::SubjectReport =
        serde_json::from_str(&report_json).unwrap();
    assert_eq!(subject.items.len(), 9, "{:#?}", subject.items);
    assert!(
        report_json.contains(&crate::domain::ids::sha256_hex(b"hello log")),
        "{report_json}"
    );
    assert!(report_md.contains("blob acct/azureml/held.txt` — kept under a legal hold"));
    assert!(
        report_md.contains("awaiting a person's review"),
        "{report_md}"
    );
    for told in [
            // Two unattributed notes counted as one category, the shared-files note another.
            "2 note(s) from the search of Jobs in workspace ws1 — left untouched: whose they are could not be established",
            "1 note(s) from the search of Jobs in workspace ws1 — left in place: files shared with other people&#x27;s work",
            "1 item(s) among Jobs in workspace ws1 — awaiting a person&#x27;s review",
            "3 item(s) among Jobs in workspace ws1 — not exported: the request was cancelled before they were reached",
            "blob acct/azureml/held.txt — kept under a legal hold",
            "Data in workspace ws1 — this part could not be searched completely",
            // The person's own item left out is still named.
            "gone.txt — deleted before it could be exported",
        ] {
            let told_plain = told.replace("&#x27;", "'");
            assert!(
                index.contains(told) || index.contains(&told_plain),
                "index.html lacks {told:?}:\n{index}"
            );
        }
    let m: crate::domain::archive::ArchiveManifest = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m.left_out.len(), 8, "{:#?}", m.left_out);
    assert!(crate::cli::export::verify(&file).unwrap().ok());
}

/// Two exported sources cleaned to one archive path, and one export path listed twice: the
/// optimistic first pass finds the collision, the archive is planned exactly (the second
/// source under `~2`, the repeated path once) and it verifies.
#[tokio::test]
async fn colliding_paths_are_planned_exactly_and_the_archive_verifies() {
    let (store, state, mut report) = seeded().await;
    let first = report.results[0].items[0].clone();
    // The archive drops the doubled telemetry folder: this blob's archive path is the
    // telemetry table's (blob names allow no other collision: no backslash, `.` or empty
    // segment).
    {
        let name = "la1/AmlRunEvent.json";
        let path = format!("T-9/ws1/telemetry/{name}");
        let body = format!("body of {name}").into_bytes();
        put_export(store.as_ref(), &state, &path, &body, "text/plain").await;
        report.results[0].items.push(ItemOutcome {
            item: Item::Blob {
                account: "acct".into(),
                container: "azureml".into(),
                name: name.into(),
                size: body.len() as u64,
            },
            status: ItemStatus::Exported {
                path,
                sha256: crate::domain::ids::sha256_hex(&body),
                size: body.len() as u64,
                content_type: "text/plain".into(),
            },
        });
    }
    report.results[0].items.push(first);
    store_report(store.as_ref(), &state, &report).await;
    let s = build(store.as_ref(), &state, &report, 1000).await.unwrap();
    assert_eq!(s.entries, 9, "{s:?}");
    let (zip, _) = store.read_small(&s.blob).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.zip");
    std::fs::write(&file, &zip).unwrap();
    let v = crate::cli::export::verify(&file).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    let names = String::from_utf8(
        std::process::Command::new("unzip")
            .arg("-Z1")
            .arg(&file)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let names: Vec<&str> = names.lines().collect();
    let run = "workspaces/ws1/jobs/files/acct/azureml/run";
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == format!("{run}/log.txt"))
            .count(),
        1,
        "{names:?}"
    );
    let table = "workspaces/ws1/telemetry/la1/AmlRunEvent.json";
    assert!(names.contains(&table), "{names:?}");
    assert!(names.contains(&format!("{table}~2").as_str()), "{names:?}");
}
