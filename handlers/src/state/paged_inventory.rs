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

/// Pages written at once when an inventory is frozen.
const PAGE_WRITES_IN_FLIGHT: usize = 8;

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
        mut inv: Inventory,
        page_size: usize,
    ) -> StoreResult<Inventory> {
        let page_size = page_size.max(1);
        if inv.pages.is_none() && inv.entries.len() > page_size {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let entries = std::mem::take(&mut inv.entries);
            let pages = entries.len().div_ceil(page_size) as u32;
            let refs: Vec<BlobRef> = (0..pages)
                .map(|n| self.inventory_page_ref(t, &id, n))
                .collect();
            let writes: Vec<(&BlobRef, &[InventoryEntry])> =
                refs.iter().zip(entries.chunks(page_size)).collect();
            for group in writes.chunks(PAGE_WRITES_IN_FLIGHT) {
                futures::future::try_join_all(
                    group
                        .iter()
                        .map(|(blob, page)| self.store.write_json(blob, page)),
                )
                .await?;
            }
            inv.pages = Some(InventoryPages {
                id,
                page_size,
                pages,
                entries: entries.len(),
            });
        }
        if self.store.create_json(&self.inventory_ref(t), &inv).await? {
            return Ok(inv);
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
