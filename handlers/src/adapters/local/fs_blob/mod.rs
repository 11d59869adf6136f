//! Local blob store: blobs as plain files under `<root>/<account>/<container>/<name>`, so a person
//! can inspect a synthetic workspace with `ls` and `cat`. Same semantics as the Azure adapter
//! where the pipeline relies on them: conditional writes, ordered paged listings, streaming reads,
//! and soft delete (`<root>/<account>/.dsr-account.json` `{"deleteRetentionDays": N}` makes
//! deletes keep a copy under `.dsr-deleted/` and report `Retained { until }`).
//!
//! Names are validated before they touch the file system: no `..`, no absolute paths, no empty
//! segments, no backslashes or control characters — a hostile blob name can never escape the root.
//! Nor can the file system: symbolic links below the root are never followed (listing skips
//! them, reading, writing, copying and deleting through one is refused), because a linked folder
//! would let a listing or a delete reach files outside the store.
//!
//! Here: the store, its on-disk layout and the `BlobStore` impl; `files` holds the file-system
//! primitives, `names` the pure checks, `tests` the unit tests.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::ports::blob::*;

mod files;
use files::*;
mod names;
pub(crate) use names::*;

const META_DIR: &str = ".dsr-meta";
const DELETED_DIR: &str = ".dsr-deleted";
const ACCOUNT_FILE: &str = ".dsr-account.json";
/// Staged, uncommitted blocks: `<account>/.dsr-blocks/<container>/<name>/<block id>`.
const BLOCKS_DIR: &str = ".dsr-blocks";

pub struct FsBlobStore {
    root: PathBuf,
    /// Serialises conditional writes and deletes within this process (check-then-act).
    write_lock: Mutex<()>,
    tmp_counter: AtomicU64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    #[serde(default)]
    pub delete_retention_days: u32,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            write_lock: Mutex::new(()),
            tmp_counter: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Configure an account's soft-delete retention (0 = permanent deletes).
    pub fn set_account_settings(
        &self,
        account: &str,
        settings: &AccountSettings,
    ) -> StoreResult<()> {
        validate_account(account)?;
        let dir = self.root.join(account);
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        std::fs::write(
            dir.join(ACCOUNT_FILE),
            serde_json::to_vec(settings).unwrap_or_default(),
        )
        .map_err(io_err)
    }

    fn account_settings(&self, account: &str) -> AccountSettings {
        std::fs::read(self.root.join(account).join(ACCOUNT_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn container_dir(&self, account: &str, container: &str) -> StoreResult<PathBuf> {
        validate_account(account)?;
        validate_container(container)?;
        Ok(self.root.join(account).join(container))
    }

    fn blob_path(&self, blob: &BlobRef) -> StoreResult<PathBuf> {
        validate_name(&blob.name)?;
        Ok(self
            .container_dir(&blob.account, &blob.container)?
            .join(&blob.name))
    }

    fn meta_path(&self, blob: &BlobRef) -> StoreResult<PathBuf> {
        validate_name(&blob.name)?;
        Ok(self
            .container_dir(&blob.account, &blob.container)?
            .join(META_DIR)
            .join(format!("{}.json", blob.name)))
    }

    fn blocks_dir(&self, blob: &BlobRef) -> StoreResult<PathBuf> {
        validate_name(&blob.name)?;
        self.container_dir(&blob.account, &blob.container)?;
        Ok(self
            .root
            .join(&blob.account)
            .join(BLOCKS_DIR)
            .join(&blob.container)
            .join(&blob.name))
    }

    fn tmp_path(&self, dir: &Path) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(".dsr-tmp-{}-{n}", std::process::id()))
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn create_container(&self, account: &str, container: &str) -> StoreResult<()> {
        let dir = self.container_dir(account, container)?;
        tokio::fs::create_dir_all(dir).await.map_err(io_err)
    }

    async fn list_containers(&self, account: &str, prefix: &str) -> StoreResult<Vec<String>> {
        validate_account(account)?;
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(self.root.join(account)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(e)),
        };
        while let Some(e) = rd.next_entry().await.map_err(io_err)? {
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type().await.map_err(io_err)?.is_dir()
                && name.starts_with(prefix)
                && validate_container(&name).is_ok()
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete_container(&self, account: &str, container: &str) -> StoreResult<DeleteOutcome> {
        let dir = self.container_dir(account, container)?;
        let _g = self.write_lock.lock().await;
        no_links_below(&self.root, &dir)?;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(DeleteOutcome::Deleted),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeleteOutcome::NotFound),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn list_page(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        let cdir = self.container_dir(account, container)?;
        // Walk only the deepest folder the prefix pins down.
        let (base_rel, _) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i], &prefix[i + 1..]),
            None => ("", prefix),
        };
        if !base_rel.is_empty() && validate_name(base_rel).is_err() {
            return Ok(ListPage::default());
        }
        no_links_below(&self.root, &cdir.join(base_rel))?;
        let prefix = prefix.to_string();
        let base_rel = base_rel.to_string();
        let meta_root = cdir.join(META_DIR);
        let page = tokio::task::spawn_blocking(move || -> std::io::Result<ListPage> {
            // One more than the page, to know whether another page follows.
            let keep = max_results.max(1) as usize + 1;
            let mut heap = std::collections::BinaryHeap::with_capacity(keep + 1);
            select_page(
                &cdir.join(&base_rel),
                &base_rel,
                &prefix,
                marker.as_deref(),
                keep,
                &mut heap,
            )?;
            let mut names = heap.into_sorted_vec();
            let more = names.len() == keep;
            if more {
                names.pop();
            }
            // The marker is the page's last name even if that blob goes before it is stat'ed.
            let next = if more { names.last().cloned() } else { None };
            let mut found = Vec::with_capacity(names.len());
            for name in names {
                // A blob deleted since the walk is left out, as a later listing would.
                match std::fs::symlink_metadata(cdir.join(&name)) {
                    Ok(md) if md.is_file() => found.push((name, md)),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            let items = found
                .into_iter()
                .map(|(name, md)| {
                    let metadata = std::fs::read(meta_root.join(format!("{name}.json")))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<BTreeMap<String, String>>(&b).ok())
                        .unwrap_or_default();
                    BlobItem {
                        content_type: Some(content_type_for(&name).to_string()),
                        etag: etag_of(&md),
                        size: md.len(),
                        last_modified: md.modified().ok().map(OffsetDateTime::from),
                        metadata,
                        name,
                    }
                })
                .collect();
            Ok(ListPage { items, next })
        })
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
        .map_err(io_err)?;
        Ok(page)
    }

    async fn open(&self, blob: &BlobRef) -> StoreResult<BlobReader> {
        let path = self.blob_path(blob)?;
        no_links_below(&self.root, &path)?;
        // Open, stat and (for small blobs, the common case: documents, manifests) read in one
        // hop to the blocking pool; each tokio::fs call would be a hop of its own.
        let opened = blocking(
            move || -> std::io::Result<(std::fs::File, std::fs::Metadata, Option<Vec<u8>>)> {
                let mut file = std::fs::File::open(&path)?;
                let md = file.metadata()?;
                let small = if md.is_file() && md.len() <= SMALL_READ {
                    let mut buf = Vec::with_capacity(md.len() as usize);
                    std::io::Read::read_to_end(&mut file, &mut buf)?;
                    Some(buf)
                } else {
                    None
                };
                Ok((file, md, small))
            },
        )
        .await?;
        let (file, md, small) = match opened {
            Ok(v) => v,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                return Err(StoreError::NotFound(blob.to_string()))
            }
            Err(e) => return Err(io_err(e)),
        };
        if md.is_dir() {
            return Err(StoreError::NotFound(blob.to_string()));
        }
        let mut props = BlobProps {
            size: md.len(),
            etag: etag_of(&md),
            content_type: Some(content_type_for(&blob.name).to_string()),
        };
        let body: ByteStream = match small {
            Some(buf) => {
                // What was read is the blob (a concurrent rename swaps whole files).
                props.size = buf.len() as u64;
                Box::pin(futures::stream::iter([Ok(Bytes::from(buf))]))
            }
            None => Box::pin(
                tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(file),
                    256 * 1024,
                )
                .map(|r| r.map_err(io_err)),
            ),
        };
        Ok(BlobReader { props, body })
    }

    async fn put(
        &self,
        blob: &BlobRef,
        body: Bytes,
        _content_type: &str,
        condition: Condition,
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        let path = self.blob_path(blob)?;
        let meta_path = self.meta_path(blob)?;
        let parent = path
            .parent()
            .ok_or_else(|| StoreError::InvalidName(blob.name.clone()))?
            .to_path_buf();
        let tmp = self.tmp_path(&parent);
        let metadata = metadata.clone();
        let name = blob.name.clone();
        let display = blob.to_string();
        let _g = self.write_lock.lock().await;
        let root = self.root.clone();
        // The whole check-then-act runs in one blocking hop, under the process's write lock.
        blocking(move || {
            no_links_below(&root, &path)?;
            no_links_below(&root, &meta_path)?;
            put_sync(
                &path, &meta_path, &parent, &tmp, &body, &condition, &metadata, &name, &display,
            )
        })
        .await?
    }

    async fn copy(&self, src: &BlobRef, dst: &BlobRef) -> StoreResult<()> {
        let from = self.blob_path(src)?;
        let to = self.blob_path(dst)?;
        no_links_below(&self.root, &from)?;
        no_links_below(&self.root, &to)?;
        if !from.is_file() {
            return Err(StoreError::NotFound(src.to_string()));
        }
        let parent = to
            .parent()
            .ok_or_else(|| StoreError::InvalidName(dst.name.clone()))?
            .to_path_buf();
        tokio::fs::create_dir_all(&parent).await.map_err(io_err)?;
        let tmp = self.tmp_path(&parent);
        tokio::fs::copy(&from, &tmp).await.map_err(io_err)?;
        tokio::fs::rename(&tmp, &to).await.map_err(io_err)
    }

    async fn delete(&self, blob: &BlobRef) -> StoreResult<DeleteOutcome> {
        let path = self.blob_path(blob)?;
        let settings = self.account_settings(&blob.account);
        let _g = self.write_lock.lock().await;
        no_links_below(&self.root, &path)?;
        if !path.is_file() {
            return Ok(DeleteOutcome::NotFound);
        }
        let outcome = if settings.delete_retention_days > 0 {
            // Soft delete: keep a restorable copy and say until when, honestly.
            let now = OffsetDateTime::now_utc();
            let keep = self
                .root
                .join(&blob.account)
                .join(DELETED_DIR)
                .join(&blob.container)
                .join(format!("{}@{}", blob.name, now.unix_timestamp_nanos()));
            no_links_below(&self.root, &keep)?;
            if let Some(p) = keep.parent() {
                std::fs::create_dir_all(p).map_err(io_err)?;
            }
            std::fs::rename(&path, &keep).map_err(io_err)?;
            DeleteOutcome::Retained {
                until: now + time::Duration::days(settings.delete_retention_days as i64),
            }
        } else {
            std::fs::remove_file(&path).map_err(io_err)?;
            DeleteOutcome::Deleted
        };
        let meta = self.meta_path(blob)?;
        if no_links_below(&self.root, &meta).is_ok() {
            let _ = std::fs::remove_file(meta);
        }
        // Remove now-empty folders so the tree shows what is left.
        let stop = self.container_dir(&blob.account, &blob.container)?;
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == stop || std::fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(outcome)
    }

    /// The live file, and the soft-deleted copies under `.dsr-deleted/` (named
    /// `<name>@<deleted at, unix ns>`). A copy whose retention has passed by `now` is removed,
    /// as Azure removes an expired soft-deleted blob by itself, and not reported.
    async fn recoverable(&self, blob: &BlobRef, now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let path = self.blob_path(blob)?;
        let settings = self.account_settings(&blob.account);
        let _g = self.write_lock.lock().await;
        no_links_below(&self.root, &path)?;
        let mut out = Vec::new();
        if path.is_file() {
            out.push("the blob itself (present again: restored or re-created)".to_string());
        }
        let kept = self
            .root
            .join(&blob.account)
            .join(DELETED_DIR)
            .join(&blob.container)
            .join(&blob.name);
        let (Some(dir), Some(base)) = (kept.parent(), kept.file_name()) else {
            return Ok(out);
        };
        no_links_below(&self.root, dir)?;
        let stem = format!("{}@", base.to_string_lossy());
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(e)),
        };
        let mut copies = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err)?;
            let file = entry.file_name().to_string_lossy().to_string();
            let Some(nanos) = file
                .strip_prefix(&stem)
                .and_then(|n| n.parse::<i128>().ok())
            else {
                continue;
            };
            let Ok(deleted) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
                continue;
            };
            copies.push((deleted, entry.path()));
        }
        copies.sort();
        for (deleted, p) in copies {
            let until = deleted + time::Duration::days(i64::from(settings.delete_retention_days));
            if until <= now {
                std::fs::remove_file(&p).map_err(io_err)?;
            } else {
                out.push(format!(
                    "soft-deleted copy (deleted {deleted}, recoverable until {until})"
                ));
            }
        }
        Ok(out)
    }

    /// No links locally: the export is read from the store directly.
    async fn read_link(
        &self,
        _blob: &BlobRef,
        _expiry: time::Duration,
    ) -> StoreResult<Option<String>> {
        Ok(None)
    }

    /// No batch API: one delete per name.
    async fn delete_many(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<StoreResult<DeleteOutcome>>> {
        delete_one_by_one(self, account, container, names).await
    }

    async fn stage_block(&self, blob: &BlobRef, block_id: &str, body: Bytes) -> StoreResult<()> {
        check_block_id(block_id)?;
        let dir = self.blocks_dir(blob)?;
        let file = dir.join(block_id);
        let tmp = self.tmp_path(&dir);
        let root = self.root.clone();
        blocking(move || {
            no_links_below(&root, &file)?;
            std::fs::create_dir_all(&dir).map_err(io_err)?;
            std::fs::write(&tmp, &body).map_err(io_err)?;
            std::fs::rename(&tmp, &file).map_err(io_err)
        })
        .await?
    }

    async fn commit_blocks(
        &self,
        blob: &BlobRef,
        block_ids: &[String],
        _content_type: &str,
    ) -> StoreResult<String> {
        for id in block_ids {
            check_block_id(id)?;
        }
        let dir = self.blocks_dir(blob)?;
        let path = self.blob_path(blob)?;
        let meta_path = self.meta_path(blob)?;
        let parent = path
            .parent()
            .ok_or_else(|| StoreError::InvalidName(blob.name.clone()))?
            .to_path_buf();
        let tmp = self.tmp_path(&parent);
        let ids = block_ids.to_vec();
        let root = self.root.clone();
        let display = blob.to_string();
        let _g = self.write_lock.lock().await;
        // Concatenate the blocks into a temporary file (streaming, file to file), then rename it
        // into place: readers see the old blob or the whole new one, never a part.
        blocking(move || {
            no_links_below(&root, &dir)?;
            no_links_below(&root, &path)?;
            std::fs::create_dir_all(&parent).map_err(io_err)?;
            if path.is_dir() {
                return Err(StoreError::InvalidName(format!(
                    "{display} is a folder of other blobs"
                )));
            }
            let written = (|| -> StoreResult<()> {
                let mut out = std::fs::File::create(&tmp).map_err(io_err)?;
                for id in &ids {
                    let mut block = std::fs::File::open(dir.join(id)).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            StoreError::Other(format!("{display}: block {id} not staged"))
                        } else {
                            io_err(e)
                        }
                    })?;
                    std::io::copy(&mut block, &mut out).map_err(io_err)?;
                }
                out.sync_all().map_err(io_err)?;
                std::fs::rename(&tmp, &path).map_err(io_err)
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written?;
            let _ = std::fs::remove_file(&meta_path);
            // Committing discards the blob's other uncommitted blocks, as Azure does.
            let _ = std::fs::remove_dir_all(&dir);
            let md = std::fs::metadata(&path).map_err(io_err)?;
            Ok(etag_of(&md))
        })
        .await?
    }

    /// Blocks of a build that never committed (a crash, a failed build) would stay under
    /// `.dsr-blocks/` for ever: a blob's blocks whose newest is older than `older_than` go.
    async fn discard_stale_blocks(
        &self,
        account: &str,
        older_than: time::Duration,
    ) -> StoreResult<usize> {
        validate_account(account)?;
        let dir = self.root.join(account).join(BLOCKS_DIR);
        let root = self.root.clone();
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than.unsigned_abs())
            .unwrap_or(std::time::UNIX_EPOCH);
        // A commit in this process holds the lock while it reads a blob's blocks.
        let _g = self.write_lock.lock().await;
        blocking(move || {
            if !dir.exists() {
                return Ok(0);
            }
            no_links_below(&root, &dir)?;
            discard_stale_under(&dir, cutoff).map_err(io_err)
        })
        .await?
    }
}

/// [`FsBlobStore::discard_stale_blocks`] below `dir`: a folder's block files (one blob's blocks)
/// go when the newest of them is older than `cutoff`; emptied folders go too. Symbolic links
/// are never followed (nor removed). Returns the number of blobs whose blocks went.
fn discard_stale_under(dir: &Path, cutoff: std::time::SystemTime) -> std::io::Result<usize> {
    let mut files = Vec::new();
    let mut newest = std::time::UNIX_EPOCH;
    let mut discarded = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            discarded += discard_stale_under(&e.path(), cutoff)?;
            // Only if now empty (a folder still holding a newer blob's blocks stays).
            let _ = std::fs::remove_dir(e.path());
        } else if t.is_file() {
            newest = newest.max(e.metadata()?.modified()?);
            files.push(e.path());
        }
    }
    if !files.is_empty() && newest < cutoff {
        for f in &files {
            std::fs::remove_file(f)?;
        }
        discarded += 1;
    }
    Ok(discarded)
}

#[cfg(test)]
mod tests;
