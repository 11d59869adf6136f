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

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Other(format!("local store I/O: {e}"))
}

/// Refuse `path` if it, or any folder between the store's root and it, is a symbolic link.
/// The root itself may be a link (the operator chose it); nothing the store holds may be. The
/// error names no path: blob names can be personal data.
fn no_links_below(root: &Path, path: &Path) -> StoreResult<()> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Err(StoreError::InvalidName(
            "path outside the local store".into(),
        ));
    };
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(StoreError::InvalidName(
                    "the local store does not follow symbolic links".into(),
                ))
            }
            Ok(_) => {}
            // Nothing further down exists yet, so nothing further down can be a link.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(()),
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

/// Blobs up to this size are read whole by `open` (one blocking hop); larger ones stream.
const SMALL_READ: u64 = 256 * 1024;

/// Run file-system work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(format!("local store task: {e}")))
}

/// `put` on the file system: write a temporary file, then link (create-if-absent) or rename
/// (overwrite, if-match) it into place, then the metadata side file.
#[allow(clippy::too_many_arguments)]
fn put_sync(
    path: &Path,
    meta_path: &Path,
    parent: &Path,
    tmp: &Path,
    body: &[u8],
    condition: &Condition,
    metadata: &BTreeMap<String, String>,
    name: &str,
    display: &str,
) -> StoreResult<String> {
    std::fs::create_dir_all(parent).map_err(|e| StoreError::InvalidName(format!("{name}: {e}")))?;
    std::fs::write(tmp, body).map_err(io_err)?;
    let result = match condition {
        // A hard link fails if the target exists: atomic create-if-absent, even across processes.
        Condition::IfNotExists => match std::fs::hard_link(tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists(display.to_string()))
            }
            Err(e) => Err(io_err(e)),
        },
        Condition::IfMatch(etag) => match std::fs::metadata(path) {
            Ok(md) if &etag_of(&md) == etag => std::fs::rename(tmp, path).map_err(io_err),
            Ok(_) => Err(StoreError::ConditionFailed(display.to_string())),
            Err(_) => Err(StoreError::ConditionFailed(display.to_string())),
        },
        Condition::None => {
            if path.is_dir() {
                Err(StoreError::InvalidName(format!(
                    "{name} is a folder of other blobs"
                )))
            } else {
                std::fs::rename(tmp, path).map_err(io_err)
            }
        }
    };
    let _ = std::fs::remove_file(tmp);
    result?;
    if !metadata.is_empty() {
        if let Some(p) = meta_path.parent() {
            std::fs::create_dir_all(p).map_err(io_err)?;
        }
        std::fs::write(meta_path, serde_json::to_vec(metadata).unwrap_or_default())
            .map_err(io_err)?;
    } else {
        let _ = std::fs::remove_file(meta_path);
    }
    let md = std::fs::metadata(path).map_err(io_err)?;
    Ok(etag_of(&md))
}

pub(crate) fn validate_account(a: &str) -> StoreResult<()> {
    if (3..=24).contains(&a.len())
        && a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(StoreError::InvalidName(format!(
            "account name must be 3-24 lowercase letters or digits: {a:?}"
        )))
    }
}

pub(crate) fn validate_container(c: &str) -> StoreResult<()> {
    let ok = (3..=63).contains(&c.len())
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(format!(
            "invalid container name {c:?}"
        )))
    }
}

/// Blob names that map to exactly one file inside the container folder.
pub(crate) fn validate_name(n: &str) -> StoreResult<()> {
    let bad = |why: &str| {
        Err(StoreError::InvalidName(format!(
            "{why}: {:?}",
            n.chars().take(80).collect::<String>()
        )))
    };
    if n.is_empty() || n.len() > 1024 {
        return bad("blob name must be 1-1024 bytes");
    }
    if n.starts_with('/') || n.ends_with('/') {
        return bad("blob name must not start or end with '/'");
    }
    if n.chars().any(|c| c.is_control() || c == '\\') {
        return bad("blob name must not contain control characters or '\\'");
    }
    for seg in n.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("blob name must not contain empty, '.' or '..' segments");
        }
        if seg.len() > 255 {
            return bad("blob name segment longer than 255 bytes");
        }
        if seg.starts_with(".dsr-") {
            return bad("blob name segment starting with '.dsr-' is reserved");
        }
    }
    Ok(())
}

fn etag_of(md: &std::fs::Metadata) -> String {
    format!(
        "\"0x{:x}{:x}{:x}\"",
        md.mtime_nsec() as u64 ^ (md.mtime() as u64) << 20,
        md.ino(),
        md.len()
    )
}

fn content_type_for(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "json" => "application/json",
        "jsonl" => "application/x-ndjson",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "py" => "text/x-python",
        "ipynb" => "application/x-ipynb+json",
        "yml" | "yaml" => "application/yaml",
        _ => "application/octet-stream",
    }
}

/// The `keep` smallest blob names under `dir` (relative to the container) that start with
/// `prefix` and sort after `marker`: one page of a listing. Only names are read while walking
/// and at most `keep` are held, so a page costs memory for the page, not for the folder (a
/// workspace's `jobs/` folder holds one file per run); only the kept names are stat'ed after.
fn select_page(
    dir: &Path,
    rel: &str,
    prefix: &str,
    marker: Option<&str>,
    keep: usize,
    heap: &mut std::collections::BinaryHeap<String>,
) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        // No such folder, or the prefix names a blob as if it were a folder ("a/b/" where
        // "a" is a blob): nothing under it, as in Azure.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(".dsr-") {
            continue;
        }
        // A link is neither a blob nor a folder of blobs (DirEntry::file_type does not follow).
        if entry.file_type()?.is_symlink() {
            continue;
        }
        let full = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            // A folder can hold matches only if it can still reach the prefix.
            let as_dir = format!("{full}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                select_page(&entry.path(), &full, prefix, marker, keep, heap)?;
            }
            continue;
        }
        if !full.starts_with(prefix) || marker.is_some_and(|m| full.as_str() <= m) {
            continue;
        }
        if heap.len() < keep {
            heap.push(full);
        } else if heap.peek().is_some_and(|largest| full < *largest) {
            heap.pop();
            heap.push(full);
        }
    }
    Ok(())
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
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_rejected() {
        for n in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a/",
            "x\0y",
            ".dsr-meta/x",
            &"a".repeat(2000),
        ] {
            assert!(validate_name(n).is_err(), "{n:?}");
        }
        for n in [
            "ExperimentRun/dcid.run_1/logs/std_log.txt",
            "Users/álice/nb.ipynb",
            "a b/c",
        ] {
            assert!(validate_name(n).is_ok(), "{n:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_name_escapes_the_container(name in "\\PC{0,40}") {
            let store = FsBlobStore::new("/nonexistent-root");
            if let Ok(p) = store.blob_path(&BlobRef::new("acct", "cont", name.clone())) {
                proptest::prop_assert!(p.starts_with("/nonexistent-root/acct/cont/"));
                proptest::prop_assert!(!p.components().any(|c| matches!(c, std::path::Component::ParentDir)));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Paging through any folder tree with any prefix and page size yields exactly the
        /// sorted names under the prefix, each once, as Azure's flat listing does.
        #[test]
        fn paging_lists_every_name_once_in_order(
            names in proptest::collection::btree_set("[ab-]{1,2}(/[ab-]{1,2}){0,2}", 0..40),
            prefix in "([ab-]{1,2}/?){0,2}",
            page in 1u32..7,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let s = FsBlobStore::new(dir.path());
            let mut stored = Vec::new();
            rt.block_on(async {
                for n in &names {
                    // A name that is also a folder of another ("a" and "a/b") cannot be held
                    // by a file system; skip those.
                    if s.put(&BlobRef::new("acct", "cont", n.clone()), Bytes::new(), "x",
                        Condition::None, &BTreeMap::new()).await.is_ok() {
                        stored.push(n.clone());
                    }
                }
            });
            let mut want: Vec<String> =
                stored.into_iter().filter(|n| n.starts_with(&prefix)).collect();
            want.sort();
            let mut got = Vec::new();
            let mut marker = None;
            for _ in 0..100 {
                let p = rt.block_on(s.list_page("acct", "cont", &prefix, marker, page)).unwrap();
                proptest::prop_assert!(p.items.len() <= page as usize);
                got.extend(p.items.into_iter().map(|i| i.name));
                marker = p.next;
                if marker.is_none() {
                    break;
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// A folder inside the store that is a link to somewhere else: nothing reaches through it.
    #[tokio::test]
    async fn symbolic_links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"not the store's").unwrap();
        let s = FsBlobStore::new(dir.path());
        s.create_container("acct", "cont").await.unwrap();
        let cont = dir.path().join("acct").join("cont");
        std::fs::create_dir_all(cont.join("Users")).unwrap();
        std::os::unix::fs::symlink(outside.path(), cont.join("Users").join("alice")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), cont.join("file.txt"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("acct").join("linked")).unwrap();

        // Listing: the linked folder is not listed into, nor is the linked file a blob.
        assert!(s
            .list_all("acct", "cont", "Users/alice/")
            .await
            .map_or(true, |l| l.is_empty()));
        assert!(s.list_all("acct", "cont", "").await.unwrap().is_empty());
        assert!(s
            .list_all("acct", "linked", "")
            .await
            .map_or(true, |l| l.is_empty()));
        // Reading, through a linked folder or of a linked file.
        let inside = BlobRef::new("acct", "cont", "Users/alice/secret.txt");
        assert!(s.read_small(&inside).await.is_err());
        assert!(s
            .read_small(&BlobRef::new("acct", "cont", "file.txt"))
            .await
            .is_err());
        // Writing and copying into the linked folder.
        assert!(s
            .put(
                &BlobRef::new("acct", "cont", "Users/alice/new.txt"),
                Bytes::from_static(b"x"),
                "text/plain",
                Condition::None,
                &BTreeMap::new(),
            )
            .await
            .is_err());
        s.put(
            &BlobRef::new("acct", "cont", "real.txt"),
            Bytes::from_static(b"x"),
            "text/plain",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        assert!(s
            .copy(
                &BlobRef::new("acct", "cont", "real.txt"),
                &BlobRef::new("acct", "cont", "Users/alice/copied.txt"),
            )
            .await
            .is_err());
        assert!(!outside.path().join("new.txt").exists());
        assert!(!outside.path().join("copied.txt").exists());
        // Deleting through the linked folder, one by one or in a batch, or the linked container.
        assert!(s.delete(&inside).await.is_err());
        let many = s
            .delete_many("acct", "cont", &["Users/alice/secret.txt".to_string()])
            .await;
        assert!(many.map_or(true, |r| r.iter().all(|o| o.is_err())));
        let _ = s.delete_container("acct", "linked").await;
        assert!(
            outside.path().join("secret.txt").exists(),
            "the file outside the store is untouched"
        );
        // Errors name no blob (names can be personal data).
        let e = s.read_small(&inside).await.unwrap_err().to_string();
        assert!(!e.contains("alice"), "{e}");
    }

    #[tokio::test]
    async fn conditional_writes_and_paging() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobStore::new(dir.path());
        let b = BlobRef::new("acct", "cont", "a/b.json");
        let e1 = s
            .put(
                &b,
                Bytes::from_static(b"1"),
                "application/json",
                Condition::IfNotExists,
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        assert!(matches!(
            s.put(
                &b,
                Bytes::from_static(b"2"),
                "application/json",
                Condition::IfNotExists,
                &BTreeMap::new()
            )
            .await,
            Err(StoreError::AlreadyExists(_))
        ));
        let e2 = s
            .put(
                &b,
                Bytes::from_static(b"22"),
                "application/json",
                Condition::IfMatch(e1.clone()),
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        assert!(matches!(
            s.put(
                &b,
                Bytes::from_static(b"3"),
                "application/json",
                Condition::IfMatch(e1),
                &BTreeMap::new()
            )
            .await,
            Err(StoreError::ConditionFailed(_))
        ));
        assert_ne!(e2, "");
        for i in 0..25 {
            s.put(
                &BlobRef::new("acct", "cont", format!("p/{i:03}")),
                Bytes::new(),
                "x",
                Condition::None,
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        }
        let all = s.list_all("acct", "cont", "p/").await.unwrap();
        assert_eq!(all.len(), 25);
        let p1 = s.list_page("acct", "cont", "p/", None, 10).await.unwrap();
        assert_eq!(p1.items.len(), 10);
        assert_eq!(p1.next.as_deref(), Some("p/009"));
        assert_eq!(s.delete(&b).await.unwrap(), DeleteOutcome::Deleted);
        assert_eq!(s.delete(&b).await.unwrap(), DeleteOutcome::NotFound);
        s.set_account_settings(
            "acct",
            &AccountSettings {
                delete_retention_days: 7,
            },
        )
        .unwrap();
        assert!(matches!(
            s.delete(&BlobRef::new("acct", "cont", "p/000"))
                .await
                .unwrap(),
            DeleteOutcome::Retained { .. }
        ));
        assert_eq!(s.list_all("acct", "cont", "p/").await.unwrap().len(), 24);
    }

    /// Blocks staged by a build that never committed (a crash) are discarded once stale; a
    /// build's fresh blocks, and committed blobs, are left alone.
    #[tokio::test]
    async fn stale_uncommitted_blocks_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path());
        store.create_container("acct", "exports").await.unwrap();
        let crashed = BlobRef::new("acct", "exports", "req-1/dsr-export-req-1.zip");
        let fresh = BlobRef::new("acct", "exports", "req-2/dsr-export-req-2.zip");
        let done = BlobRef::new("acct", "exports", "req-3/a.zip");
        for b in [&crashed, &fresh, &done] {
            for id in ["blk-00000000", "blk-00000001"] {
                store
                    .stage_block(b, id, Bytes::from_static(b"data"))
                    .await
                    .unwrap();
            }
        }
        store
            .commit_blocks(&done, &["blk-00000000".into()], "application/zip")
            .await
            .unwrap();
        let blocks = dir.path().join("acct").join(BLOCKS_DIR).join("exports");
        // The crashed build's blocks were staged two days ago.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        for e in std::fs::read_dir(blocks.join("req-1/dsr-export-req-1.zip")).unwrap() {
            std::fs::File::options()
                .write(true)
                .open(e.unwrap().path())
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let n = store
            .discard_stale_blocks("acct", time::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(
            !blocks.join("req-1").exists(),
            "stale blocks and their folder stay"
        );
        assert!(blocks
            .join("req-2/dsr-export-req-2.zip/blk-00000001")
            .exists());
        // The fresh build still commits.
        store
            .commit_blocks(
                &fresh,
                &["blk-00000000".into(), "blk-00000001".into()],
                "application/zip",
            )
            .await
            .unwrap();
        assert_eq!(
            store.read_small(&fresh).await.unwrap().0.as_ref(),
            b"datadata"
        );
        assert_eq!(store.read_small(&done).await.unwrap().0.as_ref(), b"data");
        assert_eq!(
            store
                .discard_stale_blocks("acct", time::Duration::days(1))
                .await
                .unwrap(),
            0
        );
        assert!(store
            .discard_stale_blocks("../x", time::Duration::days(1))
            .await
            .is_err());
    }
}
