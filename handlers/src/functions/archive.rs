//! The export archive: one ZIP per export request, built once at fan-in from the export area
//! and written to the state account block by block (stage block, commit block list). Nothing
//! holds the archive, an entry or a list of entries: each exported blob is read as a stream,
//! and the person's report (JSON and Markdown, `domain::subject_report`: never the operator's
//! stored report, which can name other people) is serialised piece by piece; each is hashed
//! (SHA-256 for the manifest, CRC-32 for the ZIP) and appended to a block buffer of
//! [`BLOCK_SIZE`]; each entry's central-directory record
//! goes to a second, smaller buffer staged as blocks of its own ([`BlockSink::write_dir`]) and
//! committed after the data; `manifest.json` is serialised entry by entry, counted first and
//! then written. Memory is the two buffers, the plan (a few dozen bytes per item, borrowed from
//! the report) and the guide; it does not grow with the data, and barely with the entries.
//!
//! The archive is deterministic for a stored report (entry order and timestamps come from it),
//! and the blob appears only when its block list is committed, so a redelivered fan-in that
//! finds it already there (a committed archive is always complete) does not build it again.

use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::FnError;
use crate::domain::archive::{
    self, Contents, ManifestEntry, ManifestHead, Part, Planned, INDEX_NAME, MANIFEST_NAME,
    REPORT_JSON, REPORT_MD,
};
use crate::domain::report::FinalReport;
use crate::domain::subject_report;
use crate::domain::zip::{ZipError, ZipWriter};
use crate::ports::blob::{BlobRef, BlobStore, StoreError};
use crate::state::{StateStore, EXPORTS};

/// Bytes per staged block: 4 MiB keeps memory flat and stays far below Azure's limits (4,000
/// MiB per block, 50,000 blocks: this block size allows archives of up to ~195 GiB).
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;
/// Blocks of the central directory: smaller (it is ~130 bytes per entry).
const DIR_BLOCK_SIZE: usize = 1024 * 1024;
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

/// The export's stored copies of the operator's report (JSON, Markdown), written by fan-in
/// (`aggregate::finalise`, stem `manifest`). The archive does NOT copy them (they can name other
/// people: review candidates, notes, hold and error text); it holds the subject report instead.
pub fn stored_report_refs(state: &StateStore, report: &FinalReport) -> (BlobRef, BlobRef) {
    let prefix = StateStore::export_prefix(&report.request_id);
    (
        state.blob(EXPORTS, format!("{prefix}manifest.json")),
        state.blob(EXPORTS, format!("{prefix}manifest.md")),
    )
}

impl From<ZipError> for FnError {
    fn from(e: ZipError) -> Self {
        // The writer refuses only what retrying cannot change (a size that differs from the
        // one recorded, a call out of order): a permanent fault, reported loudly.
        FnError::BadRequest(format!("export archive: {e}"))
    }
}

/// Block ids of the data (`blk-…`) and of the central directory (`dir-…`): same length, as
/// Azure requires of one blob's blocks.
fn block_id(kind: &str, n: usize) -> String {
    format!("{kind}-{n:08}")
}

/// Appends bytes to a blob as staged blocks: the data stream, and the central directory in
/// blocks of its own that [`BlockSink::commit`] puts after the data. Nothing is visible before
/// the commit; blocks of a build that never commits are the store's to discard (Azure: after a
/// week; the local file store: [`crate::ports::blob::BlobStore::discard_stale_blocks`]).
pub struct BlockSink<'a> {
    store: &'a dyn BlobStore,
    blob: BlobRef,
    block_size: usize,
    data: Vec<u8>,
    data_ids: Vec<String>,
    dir: Vec<u8>,
    dir_block_size: usize,
    dir_ids: Vec<String>,
    written: u64,
}

impl<'a> BlockSink<'a> {
    pub fn new(store: &'a dyn BlobStore, blob: BlobRef, block_size: usize) -> Self {
        let block_size = block_size.max(1);
        let dir_block_size = block_size.min(DIR_BLOCK_SIZE);
        Self {
            store,
            blob,
            block_size,
            data: Vec::with_capacity(block_size.min(BLOCK_SIZE)),
            data_ids: Vec::new(),
            dir: Vec::with_capacity(dir_block_size),
            dir_block_size,
            dir_ids: Vec::new(),
            written: 0,
        }
    }

    /// Append to the archive's data.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.append(false, data).await
    }

    /// Append to the central directory (committed after all the data).
    pub async fn write_dir(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.append(true, data).await
    }

    async fn append(&mut self, dir: bool, mut data: &[u8]) -> Result<(), StoreError> {
        self.written += data.len() as u64;
        while !data.is_empty() {
            let (buf, size) = if dir {
                (&mut self.dir, self.dir_block_size)
            } else {
                (&mut self.data, self.block_size)
            };
            let room = size - buf.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            buf.extend_from_slice(now);
            data = rest;
            if buf.len() == size {
                self.flush(dir).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, dir: bool) -> Result<(), StoreError> {
        if (dir && self.dir.is_empty()) || (!dir && self.data.is_empty()) {
            return Ok(());
        }
        if self.data_ids.len() + self.dir_ids.len() >= MAX_BLOCKS {
            return Err(StoreError::Other(format!(
                "{}: more than {MAX_BLOCKS} blocks of {} bytes",
                self.blob, self.block_size
            )));
        }
        let (buf, ids, kind, size) = if dir {
            (&mut self.dir, &mut self.dir_ids, "dir", self.dir_block_size)
        } else {
            (&mut self.data, &mut self.data_ids, "blk", self.block_size)
        };
        let id = block_id(kind, ids.len());
        let body = bytes::Bytes::from(std::mem::replace(
            buf,
            Vec::with_capacity(size.min(BLOCK_SIZE)),
        ));
        self.store.stage_block(&self.blob, &id, body).await?;
        ids.push(id);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Commit the data, then the directory, then `tail` (the ZIP's end records).
    pub async fn commit(mut self, tail: &[u8], content_type: &str) -> Result<u64, StoreError> {
        self.flush(false).await?;
        self.write_dir(tail).await?;
        self.flush(true).await?;
        let ids: Vec<String> = self
            .data_ids
            .drain(..)
            .chain(self.dir_ids.drain(..))
            .collect();
        self.store
            .commit_blocks(&self.blob, &ids, content_type)
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
}

impl Builder<'_> {
    async fn start(&mut self, path: &str, size: u64) -> Result<(), FnError> {
        let h = self.zip.start(path, size)?;
        self.sink.write(&h).await?;
        Ok(())
    }

    async fn data(&mut self, chunk: &[u8]) -> Result<(), FnError> {
        self.zip.data(chunk)?;
        self.sink.write(chunk).await?;
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), FnError> {
        let f = self.zip.finish_entry()?;
        self.sink.write(&f.descriptor).await?;
        self.sink.write_dir(&f.central).await?;
        Ok(())
    }

    /// One entry whose bytes are in memory (the guide, CSV renderings); returns its SHA-256.
    async fn small(&mut self, path: &str, body: &[u8]) -> Result<String, FnError> {
        self.start(path, body.len() as u64).await?;
        self.data(body).await?;
        self.finish().await?;
        Ok(hex::encode(Sha256::digest(body)))
    }

    /// One entry copied from a blob as a stream; returns its SHA-256. `size` is what the
    /// caller recorded: a blob of another size fails the build.
    async fn copy(
        &mut self,
        store: &dyn BlobStore,
        src: &BlobRef,
        path: &str,
        size: u64,
    ) -> Result<String, FnError> {
        let mut reader = store.open(src).await.map_err(|e| match e {
            StoreError::NotFound(_) => FnError::BadRequest(format!(
                "export archive: the source of {path} is no longer in the export area"
            )),
            e => FnError::from(e),
        })?;
        self.start(path, size).await?;
        let mut sha = Sha256::new();
        while let Some(chunk) = reader.body.try_next().await? {
            sha.update(&chunk);
            self.data(&chunk).await?;
        }
        self.finish().await?;
        Ok(hex::encode(sha.finalize()))
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

/// The size of blob `b`, if it exists (one listing call).
async fn size_of(store: &dyn BlobStore, b: &BlobRef) -> Result<Option<u64>, FnError> {
    let page = store
        .list_page(&b.account, &b.container, &b.name, None, 1)
        .await?;
    Ok(page.items.iter().find(|i| i.name == b.name).map(|i| i.size))
}

/// The committed archive, if any (a committed archive is always complete).
async fn committed(
    store: &dyn BlobStore,
    state: &StateStore,
    report: &FinalReport,
) -> Result<Option<ArchiveSummary>, FnError> {
    let blob = archive_ref(state, report);
    Ok(size_of(store, &blob).await?.map(|bytes| ArchiveSummary {
        bytes,
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

    // Telemetry tables as CSV (by plan index), rendered up front so the guide shows real
    // sizes (tables are bounded: the slice that exported them held them in memory too).
    let mut csvs = std::collections::BTreeMap::new();
    for (i, p) in planned.iter().enumerate().filter(|(_, p)| p.telemetry) {
        let body = read_all(store, state, p.source).await?;
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            FnError::BadRequest(format!(
                "telemetry export {} is not JSON: {e}",
                p.path(&prefix)
            ))
        })?;
        if let Some(csv) = archive::telemetry_csv(&doc) {
            csvs.insert(i, csv);
        }
    }
    // The person's report (not the operator's stored one: see `domain::subject_report`),
    // serialised piece by piece: counted now (the guide shows sizes), written below.
    let json_pieces = || subject_report::json_pieces(report, &left_out);
    let md_pieces = || subject_report::markdown_pieces(report, &left_out);
    let mut report_sizes = [0u64; 2];
    for piece in json_pieces() {
        report_sizes[0] += piece.map_err(FnError::Transient)?.len() as u64;
    }
    report_sizes[1] = md_pieces().map(|p| p.len() as u64).sum();
    // The guide lists the data entries, known before any byte is copied.
    let index = {
        let mut contents = Contents::default();
        contents.add(Part::Report, || REPORT_JSON.into(), report_sizes[0]);
        contents.add(Part::Report, || REPORT_MD.into(), report_sizes[1]);
        for (i, p) in planned.iter().enumerate() {
            contents.add(p.part, || p.path(&prefix), p.size);
            if let Some(csv) = csvs.get(&i) {
                contents.add(p.part, || csv_path(&p.path(&prefix)), csv.len() as u64);
            }
        }
        archive::render_index(report, &contents, &left_out)
    };
    let mut b = Builder {
        zip: ZipWriter::new(report.finished_at),
        sink: BlockSink::new(store, blob.clone(), block_size),
    };
    // What the manifest lists besides the planned items: the guide, the report, the CSVs.
    let mut firsts: Vec<ManifestEntry> = Vec::with_capacity(3);
    let sha = b.small(INDEX_NAME, index.as_bytes()).await?;
    firsts.push(entry(
        INDEX_NAME.into(),
        index.len() as u64,
        sha,
        Part::Guide,
        None,
    ));
    drop(index);
    b.start(REPORT_JSON, report_sizes[0]).await?;
    let mut sha = Sha256::new();
    for piece in json_pieces() {
        let piece = piece.map_err(FnError::Transient)?;
        sha.update(&piece);
        b.data(&piece).await?;
    }
    b.finish().await?;
    let sha = hex::encode(sha.finalize());
    firsts.push(entry(
        REPORT_JSON.into(),
        report_sizes[0],
        sha,
        Part::Report,
        None,
    ));
    b.start(REPORT_MD, report_sizes[1]).await?;
    let mut sha = Sha256::new();
    for piece in md_pieces() {
        sha.update(piece.as_bytes());
        b.data(piece.as_bytes()).await?;
    }
    b.finish().await?;
    let sha = hex::encode(sha.finalize());
    firsts.push(entry(
        REPORT_MD.into(),
        report_sizes[1],
        sha,
        Part::Report,
        None,
    ));
    let mut csv_shas = std::collections::BTreeMap::new();
    for (i, p) in planned.iter().enumerate() {
        let path = p.path(&prefix);
        let src = state.blob(EXPORTS, p.source.to_string());
        let sha = b.copy(store, &src, &path, p.size).await?;
        if sha != p.sha256 {
            // The archive must hold what the report proves was exported, nothing else.
            return Err(FnError::BadRequest(format!(
                "export archive: {path} changed in the export area since it was exported"
            )));
        }
        if let Some(csv) = csvs.remove(&i) {
            let sha = b.small(&csv_path(&path), csv.as_bytes()).await?;
            csv_shas.insert(i, (csv.len() as u64, sha));
        }
    }

    // The manifest, serialised entry by entry twice: counted, then written.
    let head = ManifestHead {
        request_id: report.request_id.to_string(),
        regulation: format!("{:?}", report.regulation).to_lowercase(),
        created_at: report.finished_at,
    };
    let entries = || {
        firsts.iter().cloned().chain(
            planned
                .iter()
                .enumerate()
                .flat_map(|(i, p)| manifest_entries(p, &prefix, csv_shas.get(&i))),
        )
    };
    let mut size = 0u64;
    for piece in archive::manifest_pieces(&head, entries(), &left_out) {
        size += piece.map_err(FnError::Transient)?.len() as u64;
    }
    b.start(MANIFEST_NAME, size).await?;
    for piece in archive::manifest_pieces(&head, entries(), &left_out) {
        b.data(&piece.map_err(FnError::Transient)?).await?;
    }
    b.finish().await?;

    let Builder { zip, sink } = b;
    let n = zip.entries() as usize;
    let bytes = sink.commit(&zip.end()?, "application/zip").await?;
    Ok(ArchiveSummary {
        blob,
        entries: n,
        bytes,
        built: true,
    })
}

fn entry(
    path: String,
    size: u64,
    sha256: String,
    part: Part,
    origin: Option<String>,
) -> ManifestEntry {
    ManifestEntry {
        path,
        size,
        sha256,
        part,
        origin,
    }
}

/// A planned item's manifest line (its SHA-256 is the report's: the copy was checked against
/// it), and its CSV's when it has one.
fn manifest_entries(
    p: &Planned<'_>,
    prefix: &str,
    csv: Option<&(u64, String)>,
) -> impl Iterator<Item = ManifestEntry> {
    let path = p.path(prefix);
    let csv = csv.map(|(size, sha)| entry(csv_path(&path), *size, sha.clone(), p.part, None));
    std::iter::once(entry(
        path,
        p.size,
        p.sha256.to_string(),
        p.part,
        Some(p.item.label()),
    ))
    .chain(csv)
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
}
