//! The export archive is handed to the person (issue 17): its report is the subject-facing one.
//! The operator's stored report names other people's things (display-name-only candidates of a
//! namesake under "Needs review", notes naming jobs nobody can attribute); none of that may
//! reach the archive, in any entry.

use std::sync::Arc;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::holds::HoldSet;
use azureml_dsr::domain::report::{FinalReport, FinalStatus};
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::functions::{intake, Delivery, Settings};
use azureml_dsr::ports::blob::{BlobRef, BlobStoreExt};
use azureml_dsr::seed::{review_owner, SeedOptions};
use serde_json::json;

use crate::support;

/// Every entry of `zip` as text (lossy), read by Python's zipfile.
fn entries(zip: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let script = "import sys, json, zipfile\n\
z = zipfile.ZipFile(sys.argv[1])\n\
assert z.testzip() is None\n\
print(json.dumps({i.filename: z.read(i).decode('utf-8', 'replace') for i in z.infolist()}))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(zip)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Alice's export, with Ali (her namesake: same display name) owning display-name-only assets
/// listed for review, and a job under her display name nobody can attribute (a note names it).
/// The stored report names them; no entry of the archive does, and the archive's report still
/// lists Alice's own exported items with their SHA-256, and the review and notes by count.
#[tokio::test]
async fn the_archive_report_names_nothing_of_other_people() {
    use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
    use azureml_dsr::ports::control_plane::ArmKind;
    let opts = SeedOptions {
        users: 4,
        runs_per_user: 5,
        ..Default::default()
    };
    let seeded = support::pipeline::Seeded::new(&opts, time::OffsetDateTime::now_utc())
        .await
        .with_directory();
    let bus = Arc::new(MemoryBus::new());
    let svc = seeded.services(bus.clone(), Settings::default()).await;
    svc.state().put_holds(&HoldSet::default()).await.unwrap();
    let truth = &seeded.truth;
    let alice = truth.user("alice").unwrap().clone();
    let ali = truth.user("ali").unwrap().clone();
    assert_eq!(alice.display_name, ali.display_name, "the seed's namesakes");
    let ws = &truth.workspaces[0];
    let orphan = "zed_private_orphan_run";
    LocalControlPlane::new(seeded.store.clone())
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

    let wss: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
    let body = json!({"schemaVersion": "1.0", "requestId": "SUBJ-1", "type": "export",
                      "dryRun": false, "subject": {"upn": alice.upn},
                      "scope": {"workspaces": wss}});
    intake::run(
        &svc,
        body.to_string().as_bytes(),
        &Delivery {
            delivery_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    support::pipeline::drive(&svc, &bus, 1).await;
    let report: FinalReport = svc
        .state()
        .report(&RequestId::parse("SUBJ-1").unwrap())
        .await
        .unwrap()
        .expect("report written");
    assert_eq!(report.status, FinalStatus::NeedsReview);

    // What the operator's report names that is not Alice's.
    let ali_candidates: Vec<String> = truth
        .resources
        .iter()
        .filter(|(_, o)| **o == review_owner("ali"))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!ali_candidates.is_empty());
    let listed: Vec<_> = report.results.iter().flat_map(|r| &r.review).collect();
    for id in &ali_candidates {
        assert!(listed.iter().any(|i| &i.resource_id == id), "{id} listed");
    }
    let notes: Vec<&String> = report.results.iter().flat_map(|r| &r.notes).collect();
    assert!(notes.iter().any(|n| n.contains(orphan)), "{notes:?}");
    let md = azureml_dsr::domain::report::render_markdown(&report);
    assert!(
        md.contains(&ali_candidates[0]),
        "the operator's report names them"
    );

    let state = svc.state();
    let blob: BlobRef = azureml_dsr::functions::archive::archive_ref(&state, &report);
    let (zip, _) = seeded.store.read_small(&blob).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.zip");
    std::fs::write(&file, &zip).unwrap();
    let all = entries(&file);
    // The candidates' last segments (asset names) are what a person would recognise.
    let mut others: Vec<String> = vec![
        orphan.to_string(),
        ali.upn.clone(),
        ali.object_id.to_string(),
    ];
    for id in &ali_candidates {
        others.push(id.clone());
        let name = id.split("/versions/").next().unwrap_or(id);
        others.push(format!("/{}", name.rsplit('/').next().unwrap()));
    }
    for (name, text) in &all {
        for other in &others {
            assert!(!text.contains(other.as_str()), "{name} names {other}");
        }
        // Alice's own files may carry her display name (which is Ali's too); the archive's
        // own documents never quote review evidence.
        if !name.starts_with("workspaces/") {
            assert!(
                !text.contains(&ali.display_name),
                "{name} quotes the display name"
            );
        }
    }
    // The archive's report: Alice's own items with their SHA-256, the rest by count.
    let rj = &all["report/export-report.json"];
    let exported: Vec<(&str, &str)> = report
        .results
        .iter()
        .flat_map(|r| &r.items)
        .filter_map(|o| match &o.status {
            azureml_dsr::domain::slice::ItemStatus::Exported { path, sha256, .. } => {
                Some((path.as_str(), sha256.as_str()))
            }
            _ => None,
        })
        .collect();
    assert!(!exported.is_empty());
    for (_, sha) in &exported {
        assert!(rj.contains(sha), "{sha} in the archive's report");
    }
    let rm = &all["report/export-report.md"];
    assert!(rm.contains("awaiting a person's review"), "{rm}");
    assert!(
        azureml_dsr::cli::export::verify(&file).unwrap().ok(),
        "export verify"
    );
}
