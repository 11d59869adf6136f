//! The export archive: one ZIP per export request, built once at fan-in from the export area
//! and written to the state account block by block (stage block, commit block list). Nothing
//! holds the archive, an entry or a list of entries: each exported blob is read as a stream,
//! and the person's report (JSON and Markdown, `domain::subject_report`: never the operator's
//! stored report, which can name other people) is serialised piece by piece; each is hashed
//! (SHA-256 for the manifest, CRC-32 for the ZIP) and appended to a block buffer of
//! [`BLOCK_SIZE`]; each entry's central-directory record
//! goes to a second, smaller buffer staged as blocks of its own ([`BlockSink::write_dir`]) and
//! committed after the data; `manifest.json` is serialised entry by entry, counted first and
//! then written. The report's items are read a page at a time, once per pass
//! (`state::paged_result`). Memory is the two buffers, one page, the planner's keys (32 bytes
//! per exported item: `domain::archive::Planner`) and the guide; it does not grow with the
//! data, and barely with the entries.
//!
//! The archive is deterministic for a stored report (entry order and timestamps come from it),
//! and the blob appears only when its block list is committed, so a redelivered fan-in that
//! finds it already there (a committed archive is always complete) does not build it again.

use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::FnError;
use crate::domain::archive::{
    self, Contents, ManifestEntry, ManifestHead, Part, Planned, Planner, INDEX_NAME, MANIFEST_NAME,
    REPORT_JSON, REPORT_MD,
};
use crate::domain::report::FinalReport;
use crate::domain::slice::{ItemOutcome, SliceResult};
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

/// Every page of the report's items, in document order: (result, page, whether it is the
/// result's last page). The archive goes over them several times instead of holding them.
fn page_list(report: &FinalReport) -> Vec<(&SliceResult, u32, bool)> {
    report
        .results
        .iter()
        .flat_map(|r| {
            let n = StateStore::result_pages(r);
            (0..n).map(move |p| (r, p, p + 1 == n))
        })
        .collect()
}

async fn read_page(
    state: &StateStore,
    report: &FinalReport,
    r: &SliceResult,
    page: u32,
) -> Result<Vec<ItemOutcome>, FnError> {
    state
        .result_page(&report.request_id, r, page)
        .await
        .map_err(|e| FnError::Transient(format!("export archive: reading the report's items: {e}")))
}

/// Build (or rebuild) the archive: guide, report, every exported item, CSV next to each
/// telemetry table, manifest last (it holds the SHA-256 of everything before it). `report` is
/// the stored report: a paged result's items are read a page at a time, in five passes (plan
/// and count; the person's report as JSON; as Markdown; the copies; the manifest), so memory
/// holds one page and the planner's keys, never every item.
pub async fn build(
    store: &dyn BlobStore,
    state: &StateStore,
    report: &FinalReport,
    block_size: usize,
) -> Result<ArchiveSummary, FnError> {
    let blob = archive_ref(state, report);
    let prefix = StateStore::export_prefix(&report.request_id);
    let pages = page_list(report);
    // Every item of the report: an upper bound on the planner's keys.
    let capacity = report
        .results
        .iter()
        .map(|r| r.item_count() as usize)
        .sum::<usize>();

    // Pass 1: the plan's left-out list, the telemetry tables as CSV, the guide's contents and
    // the person's report's size. Planned first on the likely guess that no two items share
    // a path (nothing kept between pages); planned again exactly when they do.
    let (first, exact) = match plan_pass(
        store,
        state,
        report,
        &pages,
        &prefix,
        Planner::optimistic(&prefix, capacity),
    )
    .await?
    {
        Some(first) => (first, false),
        None => {
            let exact = Planner::exact(&prefix, capacity);
            let first = plan_pass(store, state, report, &pages, &prefix, exact)
                .await?
                .ok_or_else(|| {
                    FnError::Transient("export archive: the exact plan was refused".into())
                })?;
            (first, true)
        }
    };
    // Passes 4 and 5 plan again, as pass 1 found they may.
    let new_planner = || {
        if exact {
            Planner::exact(&prefix, capacity)
        } else {
            Planner::distinct(&prefix)
        }
    };
    let FirstPass {
        mut csvs,
        mut contents,
        mut report_sizes,
        left_out,
    } = first;
    // The person's report (not the operator's stored one: see `domain::subject_report`).
    let json_opening = subject_report::json_opening(report).map_err(FnError::Transient)?;
    report_sizes[0] += json_opening.len() as u64;
    for piece in subject_report::json_closing(&left_out) {
        report_sizes[0] += piece.map_err(FnError::Transient)?.len() as u64;
    }
    let md_opening = subject_report::markdown_opening(report);
    report_sizes[1] += md_opening.len() as u64
        + subject_report::markdown_closing(&left_out)
            .map(|p| p.len() as u64)
            .sum::<u64>();
    // The guide lists the data entries, known before any byte is copied.
    contents.add(Part::Report, || REPORT_JSON.into(), report_sizes[0]);
    contents.add(Part::Report, || REPORT_MD.into(), report_sizes[1]);
    let index = archive::render_index(report, &contents, &left_out);
    drop(contents);
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

    // Passes 2 and 3: the person's report, JSON then Markdown.
    b.start(REPORT_JSON, report_sizes[0]).await?;
    let mut sha = Sha256::new();
    sha.update(&json_opening);
    b.data(&json_opening).await?;
    let mut first = true;
    for &(r, page, _) in &pages {
        for o in read_page(state, report, r, page).await? {
            let piece = subject_report::list_item(first, &subject_report::subject_item(r, &o))
                .map_err(FnError::Transient)?;
            first = false;
            sha.update(&piece);
            b.data(&piece).await?;
        }
    }
    for piece in subject_report::json_closing(&left_out) {
        let piece = piece.map_err(FnError::Transient)?;
        sha.update(&piece);
        b.data(&piece).await?;
    }
    b.finish().await?;
    firsts.push(entry(
        REPORT_JSON.into(),
        report_sizes[0],
        hex::encode(sha.finalize()),
        Part::Report,
        None,
    ));
    b.start(REPORT_MD, report_sizes[1]).await?;
    let mut sha = Sha256::new();
    sha.update(md_opening.as_bytes());
    b.data(md_opening.as_bytes()).await?;
    for &(r, page, _) in &pages {
        for o in read_page(state, report, r, page).await? {
            let line = subject_report::markdown_item(&subject_report::subject_item(r, &o));
            sha.update(line.as_bytes());
            b.data(line.as_bytes()).await?;
        }
    }
    for piece in subject_report::markdown_closing(&left_out) {
        sha.update(piece.as_bytes());
        b.data(piece.as_bytes()).await?;
    }
    b.finish().await?;
    firsts.push(entry(
        REPORT_MD.into(),
        report_sizes[1],
        hex::encode(sha.finalize()),
        Part::Report,
        None,
    ));

    // Pass 4: the copies (each checked against the SHA-256 the report proves), the CSVs, and
    // the manifest's size, counted as its entries become known.
    let head = ManifestHead {
        request_id: report.request_id.to_string(),
        regulation: format!("{:?}", report.regulation).to_lowercase(),
        created_at: report.finished_at,
    };
    let mut manifest_size = 0u64;
    let mut count = |piece: Result<Vec<u8>, String>| -> Result<(), FnError> {
        manifest_size += piece.map_err(FnError::Transient)?.len() as u64;
        Ok(())
    };
    count(archive::manifest_opening(&head))?;
    for (i, e) in firsts.iter().enumerate() {
        count(archive::manifest_item(i == 0, e))?;
    }
    let mut planner = new_planner();
    let mut csv_shas = std::collections::BTreeMap::new();
    let mut i = 0usize;
    for &(r, page, last) in &pages {
        let outcomes = read_page(state, report, r, page).await?;
        for p in planner.page(r, &outcomes) {
            let path = p.path(&prefix);
            let src = state.blob(EXPORTS, p.source.clone());
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
            for e in manifest_entries(&p, &prefix, csv_shas.get(&i)) {
                count(archive::manifest_item(false, &e))?;
            }
            i += 1;
        }
        if last {
            planner.end_slice(r);
        }
    }
    for piece in archive::manifest_closing(&left_out) {
        count(piece)?;
    }

    // Pass 5: the manifest, entry by entry.
    b.start(MANIFEST_NAME, manifest_size).await?;
    b.data(&archive::manifest_opening(&head).map_err(FnError::Transient)?)
        .await?;
    for (i, e) in firsts.iter().enumerate() {
        b.data(&archive::manifest_item(i == 0, e).map_err(FnError::Transient)?)
            .await?;
    }
    drop(planner);
    let mut planner = new_planner();
    let mut i = 0usize;
    for &(r, page, last) in &pages {
        let outcomes = read_page(state, report, r, page).await?;
        for p in planner.page(r, &outcomes) {
            for e in manifest_entries(&p, &prefix, csv_shas.get(&i)) {
                b.data(&archive::manifest_item(false, &e).map_err(FnError::Transient)?)
                    .await?;
            }
            i += 1;
        }
        if last {
            planner.end_slice(r);
        }
    }
    for piece in archive::manifest_closing(&left_out) {
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

/// What pass 1 found.
struct FirstPass {
    /// Telemetry tables as CSV, by plan index.
    csvs: std::collections::BTreeMap<usize, String>,
    contents: Contents,
    /// The person's report's items, as JSON and as Markdown, in bytes.
    report_sizes: [u64; 2],
    left_out: Vec<archive::LeftOut>,
}

/// Pass 1 over every page with `planner`: the left-out list, the telemetry CSVs (by plan
/// index, rendered up front so the guide shows real sizes; tables are bounded: the slice that
/// exported them held them in memory too), the guide's contents, the person's report's size.
/// `None` when `planner` was optimistic and two items shared a path.
async fn plan_pass(
    store: &dyn BlobStore,
    state: &StateStore,
    report: &FinalReport,
    pages: &[(&SliceResult, u32, bool)],
    prefix: &str,
    mut planner: Planner,
) -> Result<Option<FirstPass>, FnError> {
    let mut csvs = std::collections::BTreeMap::new();
    let mut contents = Contents::default();
    let mut report_sizes = [0u64; 2];
    let (mut items, mut planned) = (0usize, 0usize);
    for &(r, page, last) in pages {
        let outcomes = read_page(state, report, r, page).await?;
        for o in &outcomes {
            let si = subject_report::subject_item(r, o);
            report_sizes[0] += subject_report::list_item(items == 0, &si)
                .map_err(FnError::Transient)?
                .len() as u64;
            report_sizes[1] += subject_report::markdown_item(&si).len() as u64;
            items += 1;
        }
        for p in planner.page(r, &outcomes) {
            if p.telemetry {
                let body = read_all(store, state, &p.source).await?;
                let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    FnError::BadRequest(format!(
                        "telemetry export {} is not JSON: {e}",
                        p.path(prefix)
                    ))
                })?;
                if let Some(csv) = archive::telemetry_csv(&doc) {
                    csvs.insert(planned, csv);
                }
            }
            contents.add(p.part, || p.path(prefix), p.size);
            if let Some(csv) = csvs.get(&planned) {
                contents.add(p.part, || csv_path(&p.path(prefix)), csv.len() as u64);
            }
            planned += 1;
        }
        if last {
            planner.end_slice(r);
        }
    }
    if !planner.all_distinct() {
        return Ok(None);
    }
    Ok(Some(FirstPass {
        csvs,
        contents,
        report_sizes,
        left_out: planner.finish(report),
    }))
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
    p: &Planned,
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
mod tests;
