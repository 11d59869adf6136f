//! Checks an export archive the way its recipient would: unzipped by a standard ZIP reader
//! (Python's `zipfile`, not our code), every exported item compared with the seeded data, the
//! guide and the manifest present, `export verify` passing — and failing once a byte is flipped.

use std::collections::BTreeMap;
use std::path::Path;

use azureml_dsr::domain::archive::{archive_path, ArchiveManifest};
use azureml_dsr::domain::report::FinalReport;
use azureml_dsr::domain::slice::{Item, ItemStatus};
use azureml_dsr::state::StateStore;

/// name -> (sha256 hex, local header offset), as Python's zipfile reads the archive (its
/// `testzip` checks every CRC first).
pub fn python_unzip(zip: &Path) -> BTreeMap<String, (String, u64)> {
    let script = r#"
import sys, json, zipfile, hashlib
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
assert bad is None, "bad CRC in " + str(bad)
out = {}
for i in z.infolist():
    out[i.filename] = [hashlib.sha256(z.read(i)).hexdigest(), i.header_offset]
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(zip)
        .output()
        .expect("python3 (a standard ZIP reader) is needed for this test");
    assert!(
        out.status.success(),
        "python zipfile could not read the archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: BTreeMap<String, (String, u64)> = serde_json::from_slice(&out.stdout).unwrap();
    v
}

/// Everything the report says was exported is in the archive under its readable path with the
/// recorded SHA-256; each blob's bytes equal the seeded blob's (`seeded`: blob key -> sha256 of
/// the data as seeded, taken before the export). Returns how many blobs matched seeded data.
pub fn check_archive(zip: &Path, report: &FinalReport, seeded: &BTreeMap<String, String>) -> usize {
    let got = python_unzip(zip);
    assert!(got.contains_key("index.html"), "{:?}", got.keys());
    assert!(got.contains_key("manifest.json"), "{:?}", got.keys());
    // The manifest read through Python too: its bytes are what the person gets.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('manifest.json'))")
        .arg(zip)
        .output()
        .unwrap();
    let manifest: ArchiveManifest = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest.request_id, report.request_id.to_string());
    assert_eq!(
        manifest.entries.len() + 1,
        got.len(),
        "manifest lists every other entry"
    );
    for e in &manifest.entries {
        assert_eq!(
            got.get(&e.path).map(|g| g.0.as_str()),
            Some(e.sha256.as_str()),
            "{}",
            e.path
        );
    }
    let prefix = StateStore::export_prefix(&report.request_id);
    let mut matched_seed = 0;
    let mut exported = 0;
    for o in report.results.iter().flat_map(|r| &r.items) {
        let ItemStatus::Exported { path, sha256, .. } = &o.status else {
            continue;
        };
        exported += 1;
        let apath = archive_path(&prefix, path);
        let (sha, _) = got
            .get(&apath)
            .unwrap_or_else(|| panic!("{apath} missing from the archive"));
        assert_eq!(sha, sha256, "{apath}");
        if let Some(key) = o.item.blob_key() {
            if let Some(seed) = seeded.get(&key).filter(|s| s.len() == 64) {
                assert_eq!(sha, seed, "{apath}: not the seeded bytes of {key}");
                matched_seed += 1;
            }
        }
        if matches!(o.item, Item::Telemetry { .. }) {
            let csv = format!("{}.csv", apath.trim_end_matches(".json"));
            assert!(got.contains_key(&csv), "{csv} (telemetry as CSV) missing");
        }
    }
    assert!(exported > 0, "nothing exported");
    let v = azureml_dsr::cli::export::verify(zip).unwrap();
    assert!(v.ok(), "export verify: {:?}", v.problems);
    matched_seed
}

/// Flip one byte inside the data of the first exported file: `export verify` must name it, the
/// CLI must exit non-zero.
pub fn flipped_byte_is_detected(zip: &Path) {
    let got = python_unzip(zip);
    let (name, (_, offset)) = got
        .iter()
        .find(|(n, _)| n.starts_with("workspaces/"))
        .expect("an exported file");
    let mut bytes = std::fs::read(zip).unwrap();
    let at = *offset as usize;
    let n = u16::from_le_bytes([bytes[at + 26], bytes[at + 27]]) as usize;
    let e = u16::from_le_bytes([bytes[at + 28], bytes[at + 29]]) as usize;
    let data = at + 30 + n + e;
    bytes[data] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("flipped.zip");
    std::fs::write(&bad, &bytes).unwrap();
    let v = azureml_dsr::cli::export::verify(&bad).unwrap();
    assert!(!v.ok(), "a flipped byte in {name} went unnoticed");
    assert!(
        v.problems
            .iter()
            .any(|p| p.starts_with(name.as_str()) && p.contains("SHA-256")),
        "{name}: {:?}",
        v.problems
    );
    let run = |p: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
            .args(["export", "verify"])
            .arg(p)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .unwrap()
    };
    let out = run(&bad);
    assert!(
        !out.status.success(),
        "the CLI accepted a flipped byte: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISMATCH"));
    let out = run(zip);
    assert!(
        out.status.success(),
        "the CLI refused the intact archive: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
