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
