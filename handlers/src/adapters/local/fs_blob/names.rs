//! Pure checks and helpers of the local store: account, container and blob name validation (the
//! guard that keeps a hostile name inside the root), etags, content types, and the page a listing
//! returns.

use super::*;

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

pub(super) fn etag_of(md: &std::fs::Metadata) -> String {
    format!(
        "\"0x{:x}{:x}{:x}\"",
        md.mtime_nsec() as u64 ^ (md.mtime() as u64) << 20,
        md.ino(),
        md.len()
    )
}

pub(super) fn content_type_for(name: &str) -> &'static str {
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
pub(super) fn select_page(
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
