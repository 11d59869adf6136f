//! The certificate or manifest, JSON and Markdown, written from the stored report's head and
//! its slices' pages one page at a time (`state::paged_result`): a subject's million items are
//! never one buffer. The JSON is byte for byte `serde_json::to_vec` of the whole report
//! (`domain::report_document`), so its SHA-256 (the audit record's `reportSha256`) and every
//! reader see the same document as when it was serialised at once. The ledger of what the
//! certificate says is retained is gathered on the way.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::super::FnError;
use crate::domain::follow_up::Ledger;
use crate::domain::report::{
    markdown_head, markdown_item, markdown_slice_title, markdown_tail, FinalReport,
};
use crate::domain::report_document::{item_bytes, report_frame, result_frame, SEPARATOR};
use crate::domain::slice::ItemStatus;
use crate::ports::blob::{BlobRef, BlobStore, Condition, StoreError};
use crate::state::StateStore;

/// Bytes held before they are staged as a block (Azure's blocks may be up to 4,000 MiB; this
/// keeps memory flat and the block count of a 1 GB document near 250).
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;

/// What writing the documents found.
pub struct Written {
    /// SHA-256 (hex) of the JSON document.
    pub sha256: String,
    /// What the certificate says is retained ([`Ledger::of`]).
    pub ledger: Option<Ledger>,
}

/// Write `report` (a head: paged results' items are read from their pages) as JSON to `json`
/// and Markdown to `md`.
pub async fn write(
    state: &StateStore,
    report: &FinalReport,
    json: &BlobRef,
    md: &BlobRef,
    block_size: usize,
) -> Result<Written, FnError> {
    let id = &report.request_id;
    let store = state.store.as_ref();
    let mut j = Sink::new(store, json.clone(), block_size);
    let mut m = Sink::new(store, md.clone(), block_size);
    let frame = report_frame(report).map_err(FnError::Transient)?;
    j.write(&frame.open).await?;
    m.write(markdown_head(report, &pending_operations(state, report).await?).as_bytes())
        .await?;
    let mut retained = Vec::new();
    for (n, res) in report.results.iter().enumerate() {
        if n > 0 {
            j.write(SEPARATOR).await?;
        }
        let f = result_frame(res).map_err(FnError::Transient)?;
        j.write(&f.open).await?;
        let listed = res.item_count() > 0;
        if listed {
            m.write(markdown_slice_title(res).as_bytes()).await?;
        }
        let mut first = true;
        for page in 0..StateStore::result_pages(res) {
            let items = state
                .result_page(id, res, page)
                .await
                .map_err(missing_page)?;
            for item in &items {
                if !first {
                    j.write(SEPARATOR).await?;
                }
                first = false;
                j.write(&item_bytes(item).map_err(FnError::Transient)?)
                    .await?;
                m.write(markdown_item(item).as_bytes()).await?;
            }
            retained.extend(Ledger::entries(report.finished_at, res, &items));
        }
        j.write(&f.close).await?;
        if listed {
            m.write(b"\n").await?;
        }
    }
    j.write(&frame.close).await?;
    m.write(markdown_tail(report).as_bytes()).await?;
    let sha256 = j.commit("application/json").await?;
    m.commit("text/markdown").await?;
    Ok(Written {
        sha256,
        ledger: Ledger::of(report, json.to_string(), retained),
    })
}

/// The purges still open, for the status line: read only from the slices whose counts say
/// they have pending items (telemetry, a handful of items).
async fn pending_operations(
    state: &StateStore,
    report: &FinalReport,
) -> Result<Vec<(String, Option<time::OffsetDateTime>)>, FnError> {
    let mut out = Vec::new();
    for (res, summary) in report.results.iter().zip(&report.slices) {
        if summary.counts.pending == 0 {
            continue;
        }
        for page in 0..StateStore::result_pages(res) {
            let items = state
                .result_page(&report.request_id, res, page)
                .await
                .map_err(missing_page)?;
            out.extend(items.into_iter().filter_map(|i| match i.status {
                ItemStatus::Pending {
                    operation,
                    requested_at,
                } => Some((operation, requested_at)),
                _ => None,
            }));
        }
    }
    Ok(out)
}

/// A page the stored report names is missing: retried (it was written before the result that
/// names it, so this is a fault of the store, not of the request).
fn missing_page(e: StoreError) -> FnError {
    FnError::Transient(format!("reading the report's items: {e}"))
}

/// A blob written piece by piece, hashed on the way: one put when it fits in a block, staged
/// blocks and one commit when it does not.
struct Sink<'a> {
    store: &'a dyn BlobStore,
    blob: BlobRef,
    block_size: usize,
    buf: Vec<u8>,
    ids: Vec<String>,
    hash: Sha256,
}

impl<'a> Sink<'a> {
    fn new(store: &'a dyn BlobStore, blob: BlobRef, block_size: usize) -> Self {
        Self {
            store,
            blob,
            block_size: block_size.max(1),
            buf: Vec::new(),
            ids: Vec::new(),
            hash: Sha256::new(),
        }
    }

    async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        self.hash.update(data);
        // Blocks are filled to exactly `block_size`, in a buffer that never grows past it: one
        // grown by doubling would hold up to two blocks' worth, for each of the two documents
        // written at once (issue 19: the fan-in's peak).
        while !data.is_empty() {
            let take = (self.block_size - self.buf.len()).min(data.len());
            if self.buf.capacity() - self.buf.len() < take {
                let want = (self.buf.len() + take)
                    .max(self.buf.capacity() * 2)
                    .min(self.block_size);
                self.buf.reserve_exact(want - self.buf.len());
            }
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() >= self.block_size {
                self.stage().await?;
            }
        }
        Ok(())
    }

    async fn stage(&mut self) -> Result<(), StoreError> {
        // Same length for every id, as Azure requires of one blob's blocks.
        let id = format!("doc-{:08}", self.ids.len());
        let body = Bytes::from(std::mem::take(&mut self.buf));
        self.store.stage_block(&self.blob, &id, body).await?;
        self.ids.push(id);
        Ok(())
    }

    /// Make the blob what was written (replacing any earlier one); returns its SHA-256.
    async fn commit(mut self, content_type: &str) -> Result<String, StoreError> {
        if self.ids.is_empty() {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            self.store
                .put(
                    &self.blob,
                    body,
                    content_type,
                    Condition::None,
                    &Default::default(),
                )
                .await?;
        } else {
            if !self.buf.is_empty() {
                self.stage().await?;
            }
            self.store
                .commit_blocks(&self.blob, &self.ids, content_type)
                .await?;
        }
        Ok(hex::encode(self.hash.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory_blob::MemoryBlobStore;
    use crate::ports::blob::BlobStoreExt;

    #[tokio::test]
    async fn a_sink_fills_blocks_exactly_and_never_holds_more_than_one() {
        let store = MemoryBlobStore::new();
        store.create_container("acct", "docs").await.unwrap();
        let blob = BlobRef::new("acct", "docs", "report.json");
        let block = 7;
        let mut sink = Sink::new(&store, blob.clone(), block);
        let mut all = Vec::new();
        // Writes smaller than, equal to and several times a block, in an uneven order.
        for (n, len) in [3usize, 7, 1, 20, 2, 6, 15].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|i| b'a' + ((n + i) % 26) as u8).collect();
            sink.write(&data).await.unwrap();
            all.extend_from_slice(&data);
            assert!(
                sink.buf.capacity() <= block,
                "the buffer grew past one block: {} > {block}",
                sink.buf.capacity()
            );
        }
        let staged = sink.ids.len();
        assert_eq!(staged, all.len() / block, "every full block staged at once");
        let sha = sink.commit("application/json").await.unwrap();
        let (body, _) = store.read_small(&blob).await.unwrap();
        assert_eq!(
            body.as_ref(),
            all.as_slice(),
            "the blob is what was written"
        );
        assert_eq!(sha, hex::encode(Sha256::digest(&all)));
    }
}
