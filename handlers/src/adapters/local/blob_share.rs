//! The file share of local mode: the share modelled as a container of the local blob store
//! (the seed writes notebooks there), seen through the [`FileShare`] port with the File API's
//! semantics — directories are the `/`-separated prefixes of the blobs, a missing share is
//! [`ShareError::ShareNotFound`], a missing directory [`ShareError::DirectoryNotFound`], a
//! directory with anything left in it cannot be deleted.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use crate::ports::blob::{BlobRef, BlobStore, BlobStoreExt, DeleteOutcome, StoreError};
use crate::ports::file_share::{
    redact_path, FileEntry, FilePage, FileReader, FileShare, ShareError, ShareResult,
    ShareRetention,
};

pub struct BlobFileShare {
    store: Arc<dyn BlobStore>,
}

impl BlobFileShare {
    pub fn new(store: Arc<dyn BlobStore>) -> Self {
        Self { store }
    }

    async fn ensure_share(&self, account: &str, share: &str) -> ShareResult<()> {
        let found = self
            .store
            .list_containers(account, share)
            .await
            .map_err(|e| map_err(e, share, ""))?;
        if found.iter().any(|c| c == share) {
            Ok(())
        } else {
            Err(ShareError::ShareNotFound(format!("{account}/{share}")))
        }
    }
}

fn map_err(e: StoreError, share: &str, path: &str) -> ShareError {
    let at = format!("{share}/{}", redact_path(path));
    match e {
        StoreError::NotFound(_) => ShareError::FileNotFound(at),
        StoreError::Transient(m) => ShareError::Transient(format!("{at}: {}", redact_path(&m))),
        other => ShareError::Other(format!("{at}: {}", redact_path(&other.to_string()))),
    }
}

fn dir_prefix(dir: &str) -> String {
    let d = dir.trim_matches('/');
    if d.is_empty() {
        String::new()
    } else {
        format!("{d}/")
    }
}

#[async_trait]
impl FileShare for BlobFileShare {
    fn kind(&self) -> &'static str {
        "local store (share as a container)"
    }

    async fn list_page(
        &self,
        account: &str,
        share: &str,
        dir: &str,
        _marker: Option<String>,
        _max_results: u32,
    ) -> ShareResult<FilePage> {
        self.ensure_share(account, share).await?;
        let prefix = dir_prefix(dir);
        let blobs = self
            .store
            .list_all(account, share, &prefix)
            .await
            .map_err(|e| map_err(e, share, dir))?;
        if blobs.is_empty() && !prefix.is_empty() {
            return Err(ShareError::DirectoryNotFound(format!(
                "{share}/{}",
                redact_path(dir)
            )));
        }
        // One page: the local store lists a folder in one go.
        let mut page = FilePage::default();
        let mut dirs = BTreeSet::new();
        for b in blobs {
            let rest = &b.name[prefix.len()..];
            match rest.split_once('/') {
                Some((sub, _)) => {
                    dirs.insert(format!("{prefix}{sub}"));
                }
                None => page.files.push(FileEntry {
                    path: b.name.clone(),
                    size: b.size,
                }),
            }
        }
        page.directories = dirs.into_iter().collect();
        Ok(page)
    }

    async fn open(&self, account: &str, share: &str, path: &str) -> ShareResult<FileReader> {
        self.ensure_share(account, share).await?;
        let r = self
            .store
            .open(&BlobRef::new(account, share, path))
            .await
            .map_err(|e| map_err(e, share, path))?;
        let (share, path) = (share.to_string(), path.to_string());
        Ok(FileReader {
            size: r.props.size,
            content_type: r.props.content_type,
            body: r
                .body
                .map(move |c| {
                    c.map_err(|e| match map_err(e, &share, &path) {
                        ShareError::Transient(m) => StoreError::Transient(m),
                        other => StoreError::Other(other.to_string()),
                    })
                })
                .boxed(),
        })
    }

    async fn delete_file(
        &self,
        account: &str,
        share: &str,
        path: &str,
    ) -> ShareResult<DeleteOutcome> {
        self.ensure_share(account, share).await?;
        self.store
            .delete(&BlobRef::new(account, share, path))
            .await
            .map_err(|e| map_err(e, share, path))
    }

    async fn delete_directory(
        &self,
        account: &str,
        share: &str,
        dir: &str,
    ) -> ShareResult<DeleteOutcome> {
        self.ensure_share(account, share).await?;
        let prefix = dir_prefix(dir);
        let left = self
            .store
            .list_page(account, share, &prefix, None, 1)
            .await
            .map_err(|e| map_err(e, share, dir))?;
        if !left.items.is_empty() {
            return Err(ShareError::DirectoryNotEmpty(format!(
                "{share}/{}",
                redact_path(dir)
            )));
        }
        // Directories exist only through their files here: an emptied one is already gone.
        Ok(DeleteOutcome::Deleted)
    }

    async fn retention(&self, account: &str, share: &str) -> ShareResult<ShareRetention> {
        self.ensure_share(account, share).await?;
        Ok(ShareRetention::default())
    }

    /// The share is a container of the local store: its soft-deleted copies are the store's.
    async fn recoverable(
        &self,
        account: &str,
        share: &str,
        path: &str,
        now: time::OffsetDateTime,
    ) -> ShareResult<Vec<String>> {
        self.store
            .recoverable(&BlobRef::new(account, share, path), now)
            .await
            .map_err(|e| map_err(e, share, path))
    }
}
