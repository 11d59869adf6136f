//! A heavy slice's result, and so the request's stored report, in pages. A slice of 100,000
//! items used to gather every chunk's outcomes into one `result.json`, and the aggregator then
//! held every slice's items, the serialised report and its Markdown at once: peak memory grew
//! by ~1.5 KB per item (1.46 GiB for a subject of a million items, BENCHMARKS.md run L).
//!
//! A result of more than one chunk is now a head (`result.json`: status, notes, review list,
//! `pages`) whose items stay in pages of one chunk each: the chunks' own outcome documents
//! when nothing was checked after them, or `result-pages/` when the slice's deletes were
//! verified. The stored report (`report.json`) holds the slices' heads, so it names the same
//! pages. Readers that need every item at once ([`StateStore::report`]) get them inline, as
//! before; the aggregator reads a page at a time ([`StateStore::report_head`],
//! [`StateStore::result_page`]). A result of one chunk stays inline.

use super::StateStore;
use crate::domain::report::FinalReport;
use crate::domain::request::RequestId;
use crate::domain::slice::{ItemOutcome, PageSet, SliceResult};
use crate::ports::blob::{BlobRef, BlobStoreExt, StoreError, StoreResult};

impl StateStore {
    /// Page `page` of a slice's outcomes in `set`. A chunk's own outcomes are page `n` of
    /// [`PageSet::Chunks`] (the same document as [`StateStore::chunk_ref`]).
    pub(crate) fn result_page_ref(
        &self,
        id: &RequestId,
        key: &str,
        set: PageSet,
        page: u32,
    ) -> BlobRef {
        let dir = match set {
            PageSet::Chunks => "chunks",
            PageSet::Verified => "result-pages",
        };
        self.req(id, &format!("slices/{key}/{dir}/{page:06}.json"))
    }

    /// The items of page `page` of a paged result (all of an inline one's for page 0). A page
    /// the head names that is missing is an error, never an empty page.
    pub async fn result_page(
        &self,
        id: &RequestId,
        result: &SliceResult,
        page: u32,
    ) -> StoreResult<Vec<ItemOutcome>> {
        let Some(p) = &result.pages else {
            return Ok(if page == 0 {
                result.items.clone()
            } else {
                Vec::new()
            });
        };
        let at = self.result_page_ref(id, &result.key, p.set, page);
        self.store
            .read_json(&at)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{at}: a page of a slice result")))
    }

    /// How many pages [`StateStore::result_page`] reads for `result`.
    pub fn result_pages(result: &SliceResult) -> u32 {
        result.pages.as_ref().map_or(1, |p| p.pages)
    }

    /// The stored report as written: a paged slice's result is its head (items empty, `pages`
    /// set). For readers that go a page at a time.
    pub async fn report_head(&self, id: &RequestId) -> StoreResult<Option<FinalReport>> {
        self.store.read_json(&self.report_ref(id)).await
    }

    /// The stored report with every item inline (its pages read): memory in proportion to the
    /// items, for the readers that need them all (the CLI, the export archive).
    pub async fn report(&self, id: &RequestId) -> StoreResult<Option<FinalReport>> {
        let Some(mut report) = self.report_head(id).await? else {
            return Ok(None);
        };
        for r in &mut report.results {
            self.inline_items(id, r).await?;
        }
        Ok(Some(report))
    }

    /// Read a paged result's pages into its `items`.
    pub async fn inline_items(&self, id: &RequestId, result: &mut SliceResult) -> StoreResult<()> {
        if result.pages.is_none() {
            return Ok(());
        }
        let mut items = Vec::new();
        for page in 0..Self::result_pages(result) {
            items.extend(self.result_page(id, result, page).await?);
        }
        result.items = items;
        result.pages = None;
        Ok(())
    }
}
