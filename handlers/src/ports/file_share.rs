//! The file-share port: the workspace's notebooks and user files, which Azure ML keeps in an
//! Azure Files share (`code-<guid>`, datastore `workspaceworkingdirectory`), not in Blob Storage.
//!
//! Narrow on purpose: what the notebooks slice and the workspace clean-up need — list a
//! directory (one level, paged), read a file, delete a file, delete an emptied directory, and
//! say what stays recoverable after a delete (share snapshots). A missing share, a refused
//! request or any other failure is an error with its reason, never an empty listing: only a
//! missing *directory* in an existing share ([`ShareError::DirectoryNotFound`]) means "nothing
//! there".
//!
//! Paths are relative to the share root, `/`-separated, without a leading slash. Paths under
//! `Users/<name>/` are personal data: errors carry them through [`redact_path`].

use std::collections::BTreeSet;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use crate::ports::blob::{ByteStream, DeleteOutcome};

/// One file of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Full path from the share root.
    pub path: String,
    pub size: u64,
}

/// One page of one directory's direct children; `next` is the opaque `NextMarker`.
#[derive(Debug, Clone, Default)]
pub struct FilePage {
    pub files: Vec<FileEntry>,
    /// Full paths of the sub-directories.
    pub directories: Vec<String>,
    pub next: Option<String>,
}

/// A streaming read of one file.
pub struct FileReader {
    pub size: u64,
    pub content_type: Option<String>,
    pub body: ByteStream,
}

/// What may keep a deleted file recoverable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareRetention {
    /// Share snapshots that exist now (their `x-ms-snapshot` times): a file deleted from the
    /// live share stays readable in each of them until that snapshot is deleted.
    pub snapshots: Vec<OffsetDateTime>,
}

impl ShareRetention {
    /// The report's wording, `None` when nothing is retained.
    pub fn note(&self, share: &str) -> Option<String> {
        let newest = self.snapshots.iter().max()?;
        let when = newest
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Some(format!(
            "file share {share} has {} snapshot(s), the newest taken {when}: files deleted from the share are retained in those snapshots until the snapshots are deleted (share snapshots are not deleted by this tool)",
            self.snapshots.len()
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The share itself does not exist (`ShareNotFound`).
    #[error("file share not found: {0}")]
    ShareNotFound(String),
    /// The directory does not exist in an existing share (`ResourceNotFound`/`ParentNotFound`).
    #[error("directory not found: {0}")]
    DirectoryNotFound(String),
    /// The file does not exist (delete and read report it; a delete treats it as done).
    #[error("file not found: {0}")]
    FileNotFound(String),
    /// 401/403: wrong audience, missing role or missing `x-ms-file-request-intent`.
    #[error("file share access refused: {0}")]
    Forbidden(String),
    /// `DirectoryNotEmpty` (409).
    #[error("directory not empty: {0}")]
    DirectoryNotEmpty(String),
    /// Worth retrying (408/429/5xx, dropped connection).
    #[error("transient file share error: {0}")]
    Transient(String),
    #[error("file share error: {0}")]
    Other(String),
}

impl ShareError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ShareError::Transient(_))
    }
}

pub(crate) type ShareResult<T> = Result<T, ShareError>;

/// A path with every segment after `Users/` hidden (those segments name a person), for error
/// texts that may reach logs.
pub(crate) fn redact_path(path: &str) -> String {
    let mut out = Vec::new();
    let mut hide = false;
    for seg in path.split('/') {
        if hide && !seg.is_empty() {
            out.push("…");
            continue;
        }
        out.push(seg);
        if seg.eq_ignore_ascii_case("Users") {
            hide = true;
        }
    }
    out.join("/")
}

/// Implementations: `adapters::azure::files` (File service REST API with Entra tokens) and
/// `adapters::local::blob_share` (the share modelled as a container of the local store).
#[async_trait]
pub trait FileShare: Send + Sync + 'static {
    fn kind(&self) -> &'static str;

    /// One page of the direct children of `dir` (`""` = the share root).
    async fn list_page(
        &self,
        account: &str,
        share: &str,
        dir: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> ShareResult<FilePage>;

    /// Streaming read.
    async fn open(&self, account: &str, share: &str, path: &str) -> ShareResult<FileReader>;

    /// Delete one file; [`DeleteOutcome::NotFound`] when it was already gone.
    async fn delete_file(
        &self,
        account: &str,
        share: &str,
        path: &str,
    ) -> ShareResult<DeleteOutcome>;

    /// Delete an empty directory; [`ShareError::DirectoryNotEmpty`] otherwise.
    async fn delete_directory(
        &self,
        account: &str,
        share: &str,
        dir: &str,
    ) -> ShareResult<DeleteOutcome>;

    /// What keeps deleted files recoverable in this share.
    async fn retention(&self, account: &str, share: &str) -> ShareResult<ShareRetention>;

    /// What of a deleted file can still be read, as of `now` (the "retained until" follow-up):
    /// the file itself if it is back, each share snapshot still holding it, and, where the
    /// share is modelled on a soft-deleting store, its soft-deleted copies. Empty when gone.
    /// The default refuses, loudly: a share that cannot tell must never let a certificate say
    /// "fully erased".
    async fn recoverable(
        &self,
        account: &str,
        share: &str,
        path: &str,
        now: OffsetDateTime,
    ) -> ShareResult<Vec<String>> {
        let _ = (account, now);
        Err(ShareError::Other(format!(
            "{}: cannot tell what of {share}/{} is recoverable",
            self.kind(),
            redact_path(path)
        )))
    }
}

/// A directory tree as listed: every file, and every directory (the root included), deepest
/// first so they can be deleted in order once emptied.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub files: Vec<FileEntry>,
    pub directories: Vec<String>,
}

/// Helpers on top of any [`FileShare`].
#[async_trait]
pub trait FileShareExt: FileShare {
    /// Every file and directory under `dir`, following `NextMarker`s, breadth-first.
    async fn list_tree(&self, account: &str, share: &str, dir: &str) -> ShareResult<Tree> {
        let root = dir.trim_matches('/').to_string();
        let mut tree = Tree::default();
        let mut pending = vec![root.clone()];
        let mut seen = BTreeSet::new();
        let mut dirs = Vec::new();
        while let Some(d) = pending.pop() {
            // A listing that named a directory twice (or a cycle) must not loop forever.
            if !seen.insert(d.clone()) {
                continue;
            }
            dirs.push(d.clone());
            let mut marker = None;
            loop {
                let page = self.list_page(account, share, &d, marker, 5000).await?;
                tree.files.extend(page.files);
                pending.extend(page.directories);
                match page.next {
                    Some(m) if !m.is_empty() => marker = Some(m),
                    _ => break,
                }
            }
        }
        // Deepest first: a directory after all of its sub-directories.
        dirs.sort_by(|a, b| {
            b.matches('/')
                .count()
                .cmp(&a.matches('/').count())
                .then(b.cmp(a))
        });
        if root.is_empty() {
            dirs.retain(|d| !d.is_empty());
        }
        tree.directories = dirs;
        tree.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(tree)
    }
}

impl<T: FileShare + ?Sized> FileShareExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_what_follows_users() {
        assert_eq!(redact_path("Users/alice/nb/x.ipynb"), "Users/…/…/…");
        assert_eq!(redact_path("Users/alice/"), "Users/…/");
        assert_eq!(redact_path("shared/x"), "shared/x");
        assert_eq!(redact_path("code-1/Users/bob"), "code-1/Users/…");
    }

    #[test]
    fn retention_note_only_when_snapshots_exist() {
        assert_eq!(ShareRetention::default().note("s"), None);
        let r = ShareRetention {
            snapshots: vec![time::macros::datetime!(2026-01-02 03:04:05 UTC)],
        };
        assert!(r.note("s").unwrap().contains("2026-01-02T03:04:05Z"));
    }
}
