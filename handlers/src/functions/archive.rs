//! The export archive: one ZIP per export request, built once at fan-in from the export area
//! and written to the state account block by block (stage block, commit block list). Nothing
//! holds the archive or an entry: each exported blob is read as a stream, hashed (SHA-256 for the
//! manifest, CRC-32 for the ZIP) and appended to a block buffer of [`BLOCK_SIZE`]; memory is one
//! block plus, per entry, its central-directory record and manifest line.
//!
//! The archive is deterministic for a stored report (entry order and timestamps come from it),
//! and the blob appears only when its block list is committed, so a redelivered fan-in that
//! finds it already there (a committed archive is always complete) does not build it again.

use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::FnError;
use crate::domain::archive::{
    self, ArchiveManifest, ManifestEntry, Part, INDEX_NAME, MANIFEST_NAME, MANIFEST_SCHEMA,
    REPORT_JSON, REPORT_MD,
};
use crate::domain::report::{render_markdown, FinalReport};
use crate::domain::zip::{ZipError, ZipWriter};
use crate::ports::blob::{BlobRef, BlobStore, StoreError};
use crate::state::{StateStore, EXPORTS};

/// Bytes per staged block: 4 MiB keeps memory flat and stays far below Azure's limits (4,000
/// MiB per block, 50,000 blocks: this block size allows archives of up to ~195 GiB).
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;
/// Azure's limit on blocks per blob.
const MAX_BLOCKS: usize = 50_000;

/// Where a request's archive lives: next to the export area, named so that a download keeps a
/// meaningful file name.
pub fn archive_ref(state: &StateStore, report: &FinalReport) -> BlobRef {
    state.blob(
        EXPORTS,
        format!(
            "{}dsr-export-{}.zip",
            StateStore::export_prefix(&report.request_id),
            report.request_id
        ),
    )
}

impl From<ZipError> for FnError {
    fn from(e: ZipError) -> Self {
        // The writer refuses only what retrying cannot change (a size that differs from the
        // one recorded, a call out of order): a permanent fault, reported loudly.
        FnError::BadRequest(format!("export archive: {e}"))
    }
}

/// Appends bytes to a blob as staged blocks; [`BlockSink::commit`] makes them the blob.
pub struct BlockSink<'a> {
    store: &'a dyn BlobStore,
    blob: BlobRef,
    buf: Vec<u8>,
    block_size: usize,
    ids: Vec<String>,
    written: u64,
}

impl<'a> BlockSink<'a> {
    pub fn new(store: &'a dyn BlobStore, blob: BlobRef, block_size: usize) -> Self {
        Self {
            store,
            blob,
            buf: Vec::with_capacity(block_size.min(BLOCK_SIZE)),
            block_size: block_size.max(1),
            ids: Vec::new(),
            written: 0,
        }
    }

    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        self.written += data.len() as u64;
        while !data.is_empty() {
            let room = self.block_size - self.buf.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() == self.block_size {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.ids.len() >= MAX_BLOCKS {
            return Err(StoreError::Other(format!(
                "{}: more than {MAX_BLOCKS} blocks of {} bytes",
                self.blob, self.block_size
            )));
        }
        // Same-length ids (Azure's rule), in order.
        let id = format!("blk-{:08}", self.ids.len());
        let body = bytes::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(self.block_size.min(BLOCK_SIZE)),
        ));
        self.store.stage_block(&self.blob, &id, body).await?;
        self.ids.push(id);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn commit(mut self, content_type: &str) -> Result<u64, StoreError> {
        self.flush().await?;
        self.store
            .commit_blocks(&self.blob, &self.ids, content_type)
            .await?;
        Ok(self.written)
    }
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub blob: BlobRef,
    /// Entries in the archive, `manifest.json` included.
    pub entries: usize,
    pub bytes: u64,
    /// False when the archive was already there (a redelivery).
    pub built: bool,
}

struct Builder<'a> {
    zip: ZipWriter,
    sink: BlockSink<'a>,
    manifest: Vec<ManifestEntry>,
}

impl Builder<'_> {
    /// One entry whose bytes are in memory (the guide, the report, CSV renderings).
    async fn small(&mut self, path: &str, body: &[u8], part: Part) -> Result<(), FnError> {
        let h = self.zip.start(path, body.len() as u64)?;
        self.sink.write(&h).await?;
        self.zip.data(body)?;
        self.sink.write(body).await?;
        let (d, _) = self.zip.finish_entry()?;
        self.sink.write(&d).await?;
        self.manifest.push(ManifestEntry {
            path: path.to_string(),
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
            part,
            origin: None,
        });
        Ok(())
    }
}

/// Build the request's archive unless it is already there. `report` is the stored report.
pub async fn ensure(
    store: &dyn BlobStore,
    state: &StateStore,
    report: &FinalReport,
    block_size: usize,
) -> Result<ArchiveSummary, FnError> {
    if let Some(found) = committed(store, state, report).await? {
        return Ok(found);
    }
    match build(store, state, report, block_size).await {
        Ok(s) => Ok(s),
        // Concurrent finalisers (redeliveries) build the same bytes; the first commit discards
        // the blocks the others staged, so their commits fail. The archive is then there.
        Err(e) => match committed(store, state, report).await? {
            Some(found) => Ok(found),
            None => Err(e),
        },
    }
}

/// The committed archive, if any (a committed archive is always complete).
async fn committed(
    store: &dyn BlobStore,
    state: &StateStore,
    report: &FinalReport,
) -> Result<Option<ArchiveSummary>, FnError> {
    let blob = archive_ref(state, report);
    let page = store
        .list_page(&blob.account, &blob.container, &blob.name, None, 1)
        .await?;
    Ok(page
        .items
        .iter()
        .find(|i| i.name == blob.name)
        .map(|found| ArchiveSummary {
            bytes: found.size,
            blob: blob.clone(),
            entries: 0,
            built: false,
        }))
}

/// Build (or rebuild) the archive: guide, report, every exported item, CSV next to each
/// telemetry table, manifest last (it holds the SHA-256 of everything before it).
pub async fn build(
    store: &dyn BlobStore,
    state: &StateStore,
    report: &FinalReport,
    block_size: usize,
) -> Result<ArchiveSummary, FnError> {
    let blob = archive_ref(state, report);
    let prefix = StateStore::export_prefix(&report.request_id);
    let (planned, left_out) = archive::plan(report, &prefix);
    let mut b = Builder {
        zip: ZipWriter::new(report.finished_at),
        sink: BlockSink::new(store, blob.clone(), block_size),
        manifest: Vec::with_capacity(planned.len() + 4),
    };

    // Telemetry tables as CSV, rendered up front so the guide shows real sizes (tables are
    // bounded: the slice that exported them held them in memory too).
    let mut csvs = std::collections::BTreeMap::new();
    for p in planned.iter().filter(|p| p.telemetry) {
        let body = read_all(store, state, &p.source).await?;
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            FnError::BadRequest(format!("telemetry export {} is not JSON: {e}", p.path))
        })?;
        if let Some(csv) = archive::telemetry_csv(&doc) {
            csvs.insert(p.path.clone(), csv);
        }
    }
    let report_json =
        serde_json::to_vec_pretty(report).map_err(|e| FnError::Transient(e.to_string()))?;
    let report_md = render_markdown(report);
    // The guide lists the data entries, known before any byte is copied.
    let mut listed: Vec<(String, u64, Part)> = Vec::with_capacity(planned.len() + csvs.len() + 2);
    listed.push((REPORT_JSON.into(), report_json.len() as u64, Part::Report));
    listed.push((REPORT_MD.into(), report_md.len() as u64, Part::Report));
    for p in &planned {
        listed.push((p.path.clone(), p.size, p.part));
        if let Some(csv) = csvs.get(&p.path) {
            listed.push((csv_path(&p.path), csv.len() as u64, p.part));
        }
    }
    let index = archive::render_index(report, &listed, &left_out);
    drop(listed);
    b.small(INDEX_NAME, index.as_bytes(), Part::Guide).await?;
    b.small(REPORT_JSON, &report_json, Part::Report).await?;
    b.small(REPORT_MD, report_md.as_bytes(), Part::Report)
        .await?;
    drop(report_json);

    for p in &planned {
        let src = state.blob(EXPORTS, p.source.clone());
        let mut reader = store.open(&src).await.map_err(|e| match e {
            StoreError::NotFound(_) => FnError::BadRequest(format!(
                "export archive: {} was exported but is no longer in the export area",
                p.path
            )),
            e => FnError::from(e),
        })?;
        let h = b.zip.start(&p.path, p.size)?;
        b.sink.write(&h).await?;
        let mut sha = Sha256::new();
        while let Some(chunk) = reader.body.try_next().await? {
            b.zip.data(&chunk)?;
            sha.update(&chunk);
            b.sink.write(&chunk).await?;
        }
        let (d, _) = b.zip.finish_entry()?;
        b.sink.write(&d).await?;
        let sha = hex::encode(sha.finalize());
        if sha != p.sha256 {
            // The archive must hold what the report proves was exported, nothing else.
            return Err(FnError::BadRequest(format!(
                "export archive: {} changed in the export area since it was exported",
                p.path
            )));
        }
        b.manifest.push(ManifestEntry {
            path: p.path.clone(),
            size: p.size,
            sha256: sha,
            part: p.part,
            origin: Some(p.origin.clone()),
        });
        if let Some(csv) = csvs.remove(&p.path) {
            b.small(&csv_path(&p.path), csv.as_bytes(), p.part).await?;
        }
    }

    let manifest = ArchiveManifest {
        schema: MANIFEST_SCHEMA.into(),
        request_id: report.request_id.to_string(),
        regulation: format!("{:?}", report.regulation).to_lowercase(),
        created_at: report.finished_at,
        entries: std::mem::take(&mut b.manifest),
        left_out,
    };
    let body =
        serde_json::to_vec_pretty(&manifest).map_err(|e| FnError::Transient(e.to_string()))?;
    let n = manifest.entries.len() + 1;
    drop(manifest);
    let h = b.zip.start(MANIFEST_NAME, body.len() as u64)?;
    b.sink.write(&h).await?;
    b.zip.data(&body)?;
    b.sink.write(&body).await?;
    let (d, _) = b.zip.finish_entry()?;
    b.sink.write(&d).await?;
    drop(body);

    let Builder { zip, mut sink, .. } = b;
    // The central directory, 64 KiB at a time.
    let mut dir = zip.into_directory(64 * 1024)?;
    while let Some(piece) = dir.next_piece() {
        sink.write(&piece).await?;
    }
    let bytes = sink.commit("application/zip").await?;
    Ok(ArchiveSummary {
        blob,
        entries: n,
        bytes,
        built: true,
    })
}

fn csv_path(json_path: &str) -> String {
    format!(
        "{}.csv",
        json_path.strip_suffix(".json").unwrap_or(json_path)
    )
}

async fn read_all(
    store: &dyn BlobStore,
    state: &StateStore,
    source: &str,
) -> Result<Vec<u8>, FnError> {
    use crate::ports::blob::BlobStoreExt;
    let (b, _) = store.read_small(&state.blob(EXPORTS, source)).await?;
    Ok(b.to_vec())
}

#[cfg(test)]
mod tests {
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

    const WS: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1";

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
            store
                .put(
                    &state.blob(EXPORTS, path),
                    bytes::Bytes::from(body.clone()),
                    "application/octet-stream",
                    Condition::None,
                    &BTreeMap::new(),
                )
                .await
                .unwrap();
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
        store
            .put(
                &state.blob(EXPORTS, tpath),
                bytes::Bytes::from(rows.clone()),
                "application/json",
                Condition::None,
                &BTreeMap::new(),
            )
            .await
            .unwrap();
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
            }],
            items_merkle_root: None,
            derived_from_subject_data: None,
        };
        (store, state, report)
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
}
