//! `report` and `status` on a finished request, through the binary as a privacy engineer runs
//! it. `report` copies the stored document out as it streams: the document of record, byte for
//! byte (its SHA-256 is in the audit record), never parsed whole — at a million items parsing
//! it took 1.2 GB (BENCHMARKS.md, run Q). `status` reads only the report's head.

use std::path::Path;
use std::process::Command;

use azureml_dsr::adapters::local::fs_blob::FsBlobStore;
use azureml_dsr::ports::blob::{BlobRef, BlobStoreExt};
use azureml_dsr::wiring::LocalPaths;

fn dsr(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn report_prints_the_stored_documents_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dsr(d, &["seed", "--users", "2", "--runs-per-user", "2"]);
    dsr(
        d,
        &[
            "submit",
            "--type",
            "export",
            "--upn",
            "alice@contoso.com",
            "--request-id",
            "CLI-1",
        ],
    );
    dsr(d, &["run", "--until-idle"]);

    let store = FsBlobStore::new(LocalPaths::new(d).store());
    let stored = |name: &str| {
        let store = &store;
        let name = name.to_string();
        async move {
            let (bytes, _) = store
                .read_small(&BlobRef::new("dsrstate", "dsr-exports", name))
                .await
                .unwrap();
            bytes.to_vec()
        }
    };
    let with_newline = |mut b: Vec<u8>| {
        if b.last() != Some(&b'\n') {
            b.push(b'\n');
        }
        b
    };

    let json = dsr(d, &["--json", "report", "CLI-1"]);
    assert_eq!(json, with_newline(stored("CLI-1/manifest.json").await));
    let parsed: azureml_dsr::domain::report::FinalReport = serde_json::from_slice(&json).unwrap();
    assert_eq!(parsed.request_id.to_string(), "CLI-1");
    assert!(parsed.counts.exported > 0);
    let md = dsr(d, &["report", "CLI-1"]);
    assert_eq!(md, with_newline(stored("CLI-1/manifest.md").await));

    // The head's status and counts, as before.
    let status: serde_json::Value =
        serde_json::from_slice(&dsr(d, &["--json", "status", "CLI-1"])).unwrap();
    assert_eq!(status["requestId"], "CLI-1");
    let items = parsed.counts.items;
    assert!(
        status["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{items} items; finished ")),
        "{status}"
    );
}
