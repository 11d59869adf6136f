//! The export half of a slice: copy each inventoried blob (or notebook file) into the
//! request's export area with a streaming SHA-256, and write ARM resource documents, each
//! under `<export prefix><workspace>/<resource type>/`.

use super::*;
use crate::domain::raw_json::RawJson;

pub(super) fn export_name(task: &SliceTask, rest: &str) -> String {
    format!(
        "{}{}/{}/{rest}",
        StateStore::export_prefix(&task.request_id),
        task.workspace.name(),
        task.resource_type.as_str()
    )
}

pub(super) async fn export(
    svc: &Services,
    task: &SliceTask,
    entries: &[InventoryEntry],
) -> Result<Vec<ItemOutcome>, FnError> {
    let state = svc.state();
    // Entries are borrowed: each holds its document text, and a chunk's worth of copies would
    // only add to the slice's peak.
    // (By index: a stream of `&InventoryEntry` trips the compiler's Send check on the handler.)
    futures::stream::iter(0..entries.len())
        .map(|i| {
            let state = state.clone();
            async move {
                let e = &entries[i];
                let status = match &e.item {
                    Item::Blob {
                        account,
                        container,
                        name,
                        ..
                    } => {
                        let src = BlobRef::new(account.clone(), container.clone(), name.clone());
                        let dst = state.blob(
                            EXPORTS,
                            export_name(task, &format!("files/{account}/{container}/{name}")),
                        );
                        export_blob(svc.store.as_ref(), &src, &dst).await?
                    }
                    Item::File {
                        account,
                        share,
                        path,
                        ..
                    } => {
                        let dst = state.blob(
                            EXPORTS,
                            export_name(task, &format!("files/{account}/{share}/{path}")),
                        );
                        export_file(svc, account, share, path, &dst).await?
                    }
                    Item::Resource { resource_type, id } => {
                        let leaf = id
                            .rsplit('/')
                            .take(3)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("_");
                        let leaf: String = leaf
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                        write_doc(
                            svc,
                            &state,
                            task,
                            &format!("resources/{resource_type}/{leaf}.json"),
                            e.doc.as_ref(),
                            DocLayout::Pretty,
                        )
                        .await?
                    }
                    Item::Telemetry {
                        table, destination, ..
                    } => {
                        // One file per table and Log Analytics workspace (named by its last
                        // id segment): the same table can come from several.
                        let path = match destination.as_deref().and_then(|d| d.rsplit('/').next()) {
                            Some(la) => format!("telemetry/{la}/{table}.json"),
                            None => format!("telemetry/{table}.json"),
                        };
                        write_doc(
                            svc,
                            &state,
                            task,
                            &path,
                            e.doc.as_ref(),
                            DocLayout::RowPerLine,
                        )
                        .await?
                    }
                };
                Ok(ItemOutcome {
                    item: e.item.clone(),
                    status,
                })
            }
        })
        .buffered(svc.settings.concurrency.max(1))
        .try_collect()
        .await
}

/// Export one blob: server-side copy to `dst`, then hash what was exported, streaming (the
/// manifest proves the bytes; memory stays bounded whatever the size).
pub async fn export_blob(
    store: &dyn BlobStore,
    src: &BlobRef,
    dst: &BlobRef,
) -> Result<ItemStatus, FnError> {
    match store.copy(src, dst).await {
        Ok(()) => {
            let mut reader = store.open(dst).await?;
            let mut h = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = reader.body.try_next().await? {
                size += chunk.len() as u64;
                h.update(&chunk);
            }
            Ok(ItemStatus::Exported {
                path: dst.name.clone(),
                sha256: hex::encode(h.finalize()),
                size,
                content_type: reader
                    .props
                    .content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
            })
        }
        // Copy Blob answers 404 for more than a missing source (the copy source refused as
        // unreadable — `CannotVerifyCopySource` —, a missing destination container): only a
        // source that is really gone is "deleted before it could be exported"; otherwise the
        // blob was not exported, and the report must say so (never Completed on a skip).
        Err(crate::ports::blob::StoreError::NotFound(_)) => match source_exists(store, src).await? {
            false => Ok(ItemStatus::Skipped {
                reason: "deleted before it could be exported".into(),
            }),
            true => Ok(ItemStatus::Failed {
                reason:
                    "the copy was answered 404 although the source blob exists; it was not exported"
                        .into(),
            }),
        },
        Err(e) => Err(FnError::from(e)),
    }
}

/// Whether `blob` still exists: one listing of at most one name (the cheapest call that
/// tells, with no body), a missing container meaning no.
async fn source_exists(store: &dyn BlobStore, blob: &BlobRef) -> Result<bool, FnError> {
    match store
        .list_page(&blob.account, &blob.container, &blob.name, None, 1)
        .await
    {
        Ok(page) => Ok(page.items.first().is_some_and(|b| b.name == blob.name)),
        Err(crate::ports::blob::StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(FnError::from(e)),
    }
}

/// How an exported document is laid out for the person reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DocLayout {
    /// Indented: an ARM resource with its run records (small).
    Pretty,
    /// An array with one compact element per line: telemetry rows, written from their text
    /// without parsing the table (thousands of rows a workspace).
    RowPerLine,
}

/// The bytes of an exported document.
pub(super) fn doc_body(doc: &RawJson, layout: DocLayout) -> Vec<u8> {
    match (layout, doc.elements()) {
        (DocLayout::RowPerLine, Some(rows)) => {
            let mut out = Vec::with_capacity(doc.get().len() + 2 * rows.len() + 4);
            out.push(b'[');
            for (i, row) in rows.iter().enumerate() {
                out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
                out.extend_from_slice(row.get().as_bytes());
            }
            out.extend_from_slice(b"\n]");
            out
        }
        _ => serde_json::to_vec_pretty(&doc.to_value()).unwrap_or_default(),
    }
}

pub(super) async fn write_doc(
    svc: &Services,
    state: &StateStore,
    task: &SliceTask,
    rel: &str,
    doc: Option<&RawJson>,
    layout: DocLayout,
) -> Result<ItemStatus, FnError> {
    let body = doc
        .map(|d| doc_body(d, layout))
        .unwrap_or_else(|| b"null".to_vec());
    let dst = state.blob(EXPORTS, export_name(task, rel));
    let sha = crate::domain::ids::sha256_hex(&body);
    let size = body.len() as u64;
    svc.store
        .put(
            &dst,
            bytes::Bytes::from(body),
            "application/json",
            crate::ports::blob::Condition::None,
            &BTreeMap::new(),
        )
        .await?;
    Ok(ItemStatus::Exported {
        path: dst.name,
        sha256: sha,
        size,
        content_type: "application/json".into(),
    })
}

/// Largest notebook-share file exported (read into memory to be written to the export area).
pub const EXPORT_FILE_MAX: u64 = 256 * 1024 * 1024;

/// Export one file of the share: read it through the file-share port (bounded), write it to
/// `dst`, hash what was written.
pub(super) async fn export_file(
    svc: &Services,
    account: &str,
    share: &str,
    path: &str,
    dst: &BlobRef,
) -> Result<ItemStatus, FnError> {
    use crate::ports::file_share::ShareError;
    let mut reader = match svc.files.open(account, share, path).await {
        Ok(r) => r,
        Err(ShareError::FileNotFound(_)) => {
            return Ok(ItemStatus::Skipped {
                reason: "deleted before it could be exported".into(),
            })
        }
        Err(e) if e.is_transient() => return Err(FnError::Transient(e.to_string())),
        Err(e) => {
            return Ok(ItemStatus::Failed {
                reason: e.to_string(),
            })
        }
    };
    if reader.size > EXPORT_FILE_MAX {
        return Ok(ItemStatus::Failed {
            reason: format!(
                "file of {} bytes is larger than the {EXPORT_FILE_MAX}-byte export limit for share files",
                reader.size
            ),
        });
    }
    let mut buf = Vec::with_capacity(reader.size as usize);
    while let Some(chunk) = reader.body.try_next().await? {
        if (buf.len() + chunk.len()) as u64 > EXPORT_FILE_MAX {
            return Ok(ItemStatus::Failed {
                reason: "file grew beyond the export limit while being read".into(),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    let sha256 = crate::domain::ids::sha256_hex(&buf);
    let size = buf.len() as u64;
    let content_type = reader
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    svc.store
        .put(
            dst,
            bytes::Bytes::from(buf),
            &content_type,
            crate::ports::blob::Condition::None,
            &BTreeMap::new(),
        )
        .await?;
    Ok(ItemStatus::Exported {
        path: dst.name.clone(),
        sha256,
        size,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory_blob::MemoryBlobStore;
    use crate::ports::blob::{Condition, StoreError, StoreResult};
    use crate::ports::blob_layer::BlobLayer;

    /// A store whose copies are all answered 404 (as Azurite answers a copy source it cannot
    /// read), whatever the source.
    struct CopyAnswers404(MemoryBlobStore);

    #[async_trait::async_trait]
    impl BlobLayer for CopyAnswers404 {
        fn inner(&self) -> &dyn BlobStore {
            &self.0
        }
        async fn copy(&self, src: &BlobRef, _dst: &BlobRef) -> StoreResult<()> {
            Err(StoreError::NotFound(format!("copy {src}")))
        }
    }

    #[test]
    fn telemetry_rows_are_written_one_per_line_and_resources_indented() {
        let rows = [
            serde_json::json!({"RunId": "r1", "Identity": {"oid": "a"}}),
            serde_json::json!({"RunId": "r2"}),
        ];
        let table = RawJson::array(rows.iter().map(RawJson::of).collect::<Vec<_>>().iter());
        let body = doc_body(&table, DocLayout::RowPerLine);
        let text = String::from_utf8(body.clone()).unwrap();
        assert_eq!(
            text,
            "[\n{\"Identity\":{\"oid\":\"a\"},\"RunId\":\"r1\"},\n{\"RunId\":\"r2\"}\n]"
        );
        // Still the same JSON document: the archive's CSV reads it back.
        let back: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, serde_json::Value::Array(rows.to_vec()));
        let empty = doc_body(&RawJson::array([]), DocLayout::RowPerLine);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&empty).unwrap(),
            serde_json::json!([])
        );
        let resource = RawJson::of(&serde_json::json!({"id": "/x", "name": "j"}));
        assert_eq!(
            doc_body(&resource, DocLayout::Pretty),
            serde_json::to_vec_pretty(&resource.to_value()).unwrap()
        );
    }

    #[tokio::test]
    async fn a_copy_answered_404_is_skipped_only_when_the_source_is_gone() {
        let mem = MemoryBlobStore::new();
        for c in ["data", "exports"] {
            mem.create_container("acct", c).await.unwrap();
        }
        let src = BlobRef::new("acct", "data", "runs/a/model.pkl");
        mem.put(
            &src,
            bytes::Bytes::from_static(b"weights"),
            "application/octet-stream",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        // A namesake prefix of the source (listed first) does not make a gone source exist.
        let gone = BlobRef::new("acct", "data", "runs/a/model");
        let dst = BlobRef::new("acct", "exports", "x/model.pkl");
        let store = CopyAnswers404(mem);

        let status = export_blob(&store, &src, &dst).await.unwrap();
        assert!(
            matches!(&status, ItemStatus::Failed { reason } if reason.contains("404")),
            "the source exists: not exported, never skipped: {status:?}"
        );
        let status = export_blob(&store, &gone, &dst).await.unwrap();
        assert!(matches!(status, ItemStatus::Skipped { .. }), "{status:?}");
        let status = export_blob(&store, &BlobRef::new("acct", "nocontainer", "x"), &dst)
            .await
            .unwrap();
        assert!(matches!(status, ItemStatus::Skipped { .. }), "{status:?}");
    }
}
