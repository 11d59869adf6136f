//! Unit tests of the parent module (kept apart so the module reads at a readable size).

use super::*;

#[test]
fn paths_are_readable_and_safe() {
    assert_eq!(
        archive_path("r1/", "r1/ws/jobs/files/acct/azureml/ExperimentRun/x.txt"),
        "workspaces/ws/jobs/files/acct/azureml/ExperimentRun/x.txt"
    );
    assert_eq!(
        archive_path("r1/", "r1/ws/telemetry/telemetry/la/AppEvents.json"),
        "workspaces/ws/telemetry/la/AppEvents.json"
    );
    let p = archive_path("r1/", "r1/ws/data/files/a/c/../x\\y//z");
    assert_eq!(p, "workspaces/ws/data/files/a/c/__/x_y/z");
    assert!(super::super::zip::check_name(&p).is_ok());
}

#[test]
fn csv_quotes_and_columns() {
    let doc = serde_json::json!([
        {"a": "x,y", "b": 1},
        {"b": {"k": "v"}, "c": "say \"hi\""}
    ]);
    let csv = telemetry_csv(&doc).unwrap();
    assert_eq!(
        csv,
        "a,b,c\r\n\"x,y\",1,\r\n,\"{\"\"k\"\":\"\"v\"\"}\",\"say \"\"hi\"\"\"\r\n"
    );
    assert_eq!(telemetry_csv(&serde_json::json!({"a": 1})), None);
}

#[test]
fn streamed_manifest_parses_as_the_manifest() {
    let head = ManifestHead {
        request_id: "R-1".into(),
        regulation: "gdpr".into(),
        created_at: time::macros::datetime!(2026-11-28 12:00 UTC),
    };
    let entries = vec![
        ManifestEntry {
            path: "a \"quoted\" ü/b.txt".into(),
            size: 3,
            sha256: "ab".repeat(32),
            part: Part::Jobs,
            origin: Some("blob x/y/z".into()),
        },
        ManifestEntry {
            path: "index.html".into(),
            size: 10,
            sha256: "cd".repeat(32),
            part: Part::Guide,
            origin: None,
        },
    ];
    let left = vec![LeftOut {
        item: "blob x/y/gone".into(),
        reason: "deleted before it could be exported".into(),
    }];
    for (e, l) in [(entries.clone(), left.clone()), (vec![], vec![])] {
        let bytes: Vec<u8> = manifest_pieces(&head, e.clone().into_iter(), &l)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .concat();
        let parsed: ArchiveManifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            parsed,
            ArchiveManifest {
                schema: MANIFEST_SCHEMA.into(),
                request_id: "R-1".into(),
                regulation: "gdpr".into(),
                created_at: head.created_at,
                entries: e,
                left_out: l,
            }
        );
    }
}

#[test]
fn html_is_escaped() {
    assert_eq!(esc("<b>&\""), "&lt;b&gt;&amp;&quot;");
}

/// Export paths as a slice result lists them, each exported once.
fn exported(paths: &[&str]) -> SliceResult {
    SliceResult {
        key: "k".into(),
        workspace: crate::domain::workspace::WorkspaceId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
        )
        .unwrap(),
        resource_type: crate::domain::plan::ResourceType::Jobs,
        status: SliceStatus::Completed,
        reason: None,
        notes: vec![],
        items: paths
            .iter()
            .map(|p| ItemOutcome {
                item: Item::Blob {
                    account: "a".into(),
                    container: "c".into(),
                    name: p.to_string(),
                    size: 1,
                },
                status: ItemStatus::Exported {
                    path: p.to_string(),
                    sha256: "00".into(),
                    size: 1,
                    content_type: "text/plain".into(),
                },
            })
            .collect(),
        review: vec![],
        pages: None,
    }
}

/// The plan of `r`'s items, a page of one item at a time, as archive paths; and whether the
/// planner calls it exact.
fn plan_of(mut planner: Planner, r: &SliceResult) -> (Vec<String>, bool) {
    let mut paths = Vec::new();
    for one in r.items.chunks(1) {
        paths.extend(planner.page(r, one).iter().map(|p| p.path("T-1/")));
    }
    (paths, planner.all_distinct())
}

/// The optimistic planner keeps nothing between pages but 8 bytes a path: where no two items
/// share an export path or an archive path its plan is the exact one (and so is the keyless
/// planner's after it); where they do, it says so, and the exact planner resolves them.
#[test]
fn an_optimistic_plan_is_the_exact_plan_or_says_it_is_not() {
    let cases: [(&[&str], bool); 4] = [
        (&["T-1/ws/jobs/a", "T-1/ws/jobs/b", "T-1/ws/jobs/a~2"], true),
        // The same export path twice: copied once.
        (&["T-1/ws/jobs/a", "T-1/ws/jobs/b", "T-1/ws/jobs/a"], false),
        // Two sources cleaned to one archive path (an empty segment dropped).
        (&["T-1/ws/jobs/x/a", "T-1/ws/jobs/x//a"], false),
        // ... and one whose own name is the `~2` the second gets.
        (
            &["T-1/ws/jobs/a\\b", "T-1/ws/jobs/a_b", "T-1/ws/jobs/a_b~2"],
            false,
        ),
    ];
    for (paths, distinct) in cases {
        let r = exported(paths);
        let (exact, exact_says) = plan_of(Planner::exact("T-1/", 0), &r);
        assert!(exact_says, "the exact planner's plan is exact");
        let (optimistic, optimistic_says) = plan_of(Planner::optimistic("T-1/", 0), &r);
        assert_eq!(optimistic_says, distinct, "{paths:?}");
        if distinct {
            assert_eq!(optimistic, exact, "{paths:?}");
            assert_eq!(plan_of(Planner::distinct("T-1/"), &r).0, exact, "{paths:?}");
        } else {
            assert_ne!(optimistic, exact, "{paths:?}");
        }
    }
    assert_eq!(
        plan_of(Planner::exact("T-1/", 0), &exported(cases[3].0)).0,
        [
            "workspaces/ws/jobs/a_b",
            "workspaces/ws/jobs/a_b~2",
            "workspaces/ws/jobs/a_b~2~2"
        ]
    );
    assert_eq!(
        plan_of(Planner::exact("T-1/", 0), &exported(cases[1].0)).0,
        ["workspaces/ws/jobs/a", "workspaces/ws/jobs/b"]
    );
}
