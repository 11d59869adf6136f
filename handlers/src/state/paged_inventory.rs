//! A slice's frozen inventory, in pages. A heavy subject's jobs slice holds ~100,000 entries
//! (1,000 runs of ~100 files in a workspace), and every chunk invocation used to read all of
//! them to process its own `chunk_size`: reads quadratic in the slice, and each invocation's
//! memory in proportion to the whole slice rather than to its chunk.
//!
//! The head (`inventory.json`: notes, review candidates, the page list) is still created once
//! with If-None-Match `*`, as the whole inventory was. The entries sit in pages of one chunk
//! each, written *before* the head, under an id of this freeze: two concurrent first deliveries
//! never mix pages, because the head that was created names its own. An inventory of one chunk
//! or less stays inline in the head, as before (and a head without a page list is read as
//! before, chunked by the setting).

use super::{Inventory, InventoryEntry, StateStore};
use crate::domain::slice::SliceTask;
use crate::ports::blob::{BlobRef, BlobStoreExt, StoreError, StoreResult};

/// Where a paged inventory's entries are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryPages {
    /// This freeze's id: the pages live under it.
    pub id: String,
    /// Entries per page; page `n` is chunk `n`.
    pub page_size: usize,
    pub pages: u32,
    /// Entries in all pages.
    pub entries: usize,
}

impl Inventory {
    /// How the stored inventory is processed: (entries per chunk, chunks). A paged inventory
    /// keeps the page size it was frozen with (a changed `DSR_CHUNK_SIZE` cannot shift chunk
    /// boundaries under a request in flight); an inline one chunks by `chunk_size`.
    pub fn chunking(&self, chunk_size: usize) -> (usize, u32) {
        match &self.pages {
            Some(p) => (p.page_size.max(1), p.pages.max(1)),
            None => {
                let size = chunk_size.max(1);
                (size, self.entries.len().div_ceil(size).max(1) as u32)
            }
        }
    }

    /// Entries in the inventory, inline or paged.
    pub fn len(&self) -> usize {
        self.pages
            .as_ref()
            .map_or(self.entries.len(), |p| p.entries)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateStore {
    fn inventory_page_ref(&self, t: &SliceTask, id: &str, page: u32) -> BlobRef {
        self.req(
            &t.request_id,
            &format!("slices/{}/inventory-pages/{id}/{page:06}.json", t.key),
        )
    }

    /// Freeze `inv` as `t`'s inventory, in pages of `page_size` when it is larger than one.
    /// Returns the stored head: this call's, or that of a concurrent delivery that froze first
    /// (so both process the same inventory).
    pub async fn freeze_inventory(
        &self,
        t: &SliceTask,
        inv: Inventory,
        page_size: usize,
    ) -> StoreResult<Inventory> {
        if inv.pages.is_some() {
            return self.commit_inventory(t, inv).await;
        }
        let mut pager = self.inventory_pager(t, page_size, false);
        pager.push(inv.entries).await?;
        let head = pager.finish(inv.notes, inv.candidates).await?;
        self.commit_inventory(t, head).await
    }

    /// A writer of `t`'s inventory entries as discovery finds them (see [`InventoryPager`]);
    /// `strip_docs`: store each document's SHA-256 instead of the document (requests that do
    /// not export: [`InventoryEntry::strip_doc`]).
    pub fn inventory_pager(
        &self,
        t: &SliceTask,
        page_size: usize,
        strip_docs: bool,
    ) -> InventoryPager {
        InventoryPager {
            state: self.clone(),
            task: t.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            page_size: page_size.max(1),
            strip_docs,
            buf: Vec::new(),
            pages: 0,
            entries: 0,
        }
    }

    /// Store `head` as `t`'s inventory unless one is stored already (If-None-Match `*`);
    /// returns the stored one, whichever delivery froze it.
    pub async fn commit_inventory(&self, t: &SliceTask, head: Inventory) -> StoreResult<Inventory> {
        if self
            .store
            .create_json(&self.inventory_ref(t), &head)
            .await?
        {
            return Ok(head);
        }
        self.inventory(t)
            .await?
            .ok_or_else(|| StoreError::Transient(format!("inventory of slice {} vanished", t.key)))
    }

    /// The entries of chunk `chunk` of `inv` (`chunk_size` chunks an inline inventory). A page
    /// the head names but the store lacks is damaged state: an error, never an empty chunk.
    pub async fn inventory_chunk(
        &self,
        t: &SliceTask,
        inv: &Inventory,
        chunk: u32,
        chunk_size: usize,
    ) -> StoreResult<Vec<InventoryEntry>> {
        match &inv.pages {
            None => {
                let size = chunk_size.max(1);
                let start = (chunk as usize * size).min(inv.entries.len());
                let end = (start + size).min(inv.entries.len());
                Ok(inv.entries[start..end].to_vec())
            }
            Some(p) if chunk < p.pages => self
                .store
                .read_json(&self.inventory_page_ref(t, &p.id, chunk))
                .await?
                .ok_or_else(|| {
                    StoreError::Other(format!(
                        "page {chunk} of the inventory of slice {} is missing",
                        t.key
                    ))
                }),
            Some(_) => Ok(Vec::new()),
        }
    }
}

/// Writes a slice's inventory as discovery finds it: each full page is stored at once, under
/// this freeze's id, so discovering a slice of 100,000 entries holds one page of them, not all.
/// An inventory of one page or less stays inline in the head ([`InventoryPager::finish`]).
pub struct InventoryPager {
    state: StateStore,
    task: SliceTask,
    id: String,
    page_size: usize,
    strip_docs: bool,
    /// Entries not yet stored: at most one page and one entry (a page is written only once
    /// it is known not to be the last, so "one page or less" can still stay inline).
    buf: Vec<InventoryEntry>,
    pages: u32,
    entries: usize,
}

impl InventoryPager {
    /// Entries found, in order.
    pub async fn push(
        &mut self,
        found: impl IntoIterator<Item = InventoryEntry>,
    ) -> StoreResult<()> {
        for mut e in found {
            if self.strip_docs {
                e.strip_doc();
            }
            self.buf.push(e);
            self.entries += 1;
            if self.buf.len() > self.page_size {
                let rest = self.buf.split_off(self.page_size);
                self.write_page(rest).await?;
            }
        }
        Ok(())
    }

    /// Store the buffered page (all of `buf`) and keep `rest` buffered.
    async fn write_page(&mut self, rest: Vec<InventoryEntry>) -> StoreResult<()> {
        let page = std::mem::replace(&mut self.buf, rest);
        let at = self
            .state
            .inventory_page_ref(&self.task, &self.id, self.pages);
        self.state.store.write_json(&at, &page).await?;
        self.pages += 1;
        Ok(())
    }

    /// The inventory's head (not yet stored: [`StateStore::commit_inventory`]), with the
    /// search's notes and review candidates.
    pub async fn finish(
        mut self,
        notes: Vec<String>,
        mut candidates: Vec<super::Candidate>,
    ) -> StoreResult<Inventory> {
        if self.strip_docs {
            for e in candidates.iter_mut().flat_map(|c| c.entries.iter_mut()) {
                e.strip_doc();
            }
        }
        if self.pages == 0 {
            return Ok(Inventory {
                entries: std::mem::take(&mut self.buf),
                notes,
                candidates,
                pages: None,
            });
        }
        if !self.buf.is_empty() {
            self.write_page(Vec::new()).await?;
        }
        Ok(Inventory {
            entries: Vec::new(),
            notes,
            candidates,
            pages: Some(InventoryPages {
                id: self.id,
                page_size: self.page_size,
                pages: self.pages,
                entries: self.entries,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::slice::Item;

    fn inv(n: usize) -> Inventory {
        Inventory {
            entries: (0..n)
                .map(|i| InventoryEntry {
                    item: Item::Blob {
                        account: "a".into(),
                        container: "c".into(),
                        name: format!("b{i:04}"),
                        size: 1,
                    },
                    doc: None,
                    doc_sha256: None,
                    hold: None,
                })
                .collect(),
            notes: vec![],
            candidates: vec![],
            pages: None,
        }
    }

    fn task() -> SliceTask {
        serde_json::from_value(serde_json::json!({
            "requestId": "R-1", "type": "delete", "dryRun": false,
            "subject": {"objectId": "00000000-0000-0000-0000-00000000000a", "tenantId": null, "upn": null},
            "workspace": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w",
            "resourceType": "jobs", "key": "k", "hold": null
        }))
        .unwrap()
    }

    /// Entries pushed one at a time come back in order, in pages of exactly the page size
    /// (the last one shorter), and an inventory of one page or less stays inline.
    #[tokio::test]
    async fn the_pager_writes_full_pages_as_entries_come_and_keeps_one_page_inline() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::adapters::local::fs_blob::FsBlobStore::new(
            dir.path(),
        ));
        let state = StateStore::new(store, "acct");
        state.ensure_containers().await.unwrap();
        let t = task();
        for n in [0usize, 1, 4, 5, 6, 10, 11] {
            let mut pager = state.inventory_pager(&t, 5, false);
            for e in inv(n).entries {
                pager.push([e]).await.unwrap();
            }
            let head = pager.finish(vec![], vec![]).await.unwrap();
            assert_eq!(head.len(), n);
            assert_eq!(head.pages.is_none(), n <= 5, "{n} entries");
            let (size, chunks) = head.chunking(5);
            let mut back = Vec::new();
            for c in 0..chunks {
                let page = state.inventory_chunk(&t, &head, c, size).await.unwrap();
                assert!(
                    page.len() == 5 || c + 1 == chunks,
                    "{n}: page {c} has {}",
                    page.len()
                );
                back.extend(page);
            }
            assert_eq!(back, inv(n).entries, "{n} entries");
        }
    }

    #[test]
    fn inline_inventories_chunk_by_the_setting_and_paged_ones_by_their_pages() {
        assert_eq!(inv(5).chunking(2), (2, 3));
        assert_eq!(inv(0).chunking(2), (2, 1));
        let mut paged = inv(0);
        paged.pages = Some(InventoryPages {
            id: "x".into(),
            page_size: 3,
            pages: 4,
            entries: 10,
        });
        // The setting changed since the freeze: the pages decide.
        assert_eq!(paged.chunking(100), (3, 4));
        assert_eq!(paged.len(), 10);
    }
}
