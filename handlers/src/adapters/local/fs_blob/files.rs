//! File-system primitives of the local store: I/O errors that name no path, the guard against
//! symbolic links below the root, the hop to the blocking pool, and the atomic `put` (temporary
//! file, then link or rename into place).

use super::*;

pub(super) fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Other(format!("local store I/O: {e}"))
}

/// Refuse `path` if it, or any folder between the store's root and it, is a symbolic link.
/// The root itself may be a link (the operator chose it); nothing the store holds may be. The
/// error names no path: blob names can be personal data.
pub(super) fn no_links_below(root: &Path, path: &Path) -> StoreResult<()> {
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
pub(super) const SMALL_READ: u64 = 256 * 1024;

/// Run file-system work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(format!("local store task: {e}")))
}

/// `put` on the file system: write a temporary file, then link (create-if-absent) or rename
/// (overwrite, if-match) it into place, then the metadata side file.
#[allow(clippy::too_many_arguments)]
pub(super) fn put_sync(
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
