//! Notebooks discovery: the files under the subject's `Users/<alias>/` folders in the
//! workspace's Azure Files share, and the share's snapshot retention for a mutating request.

use super::DiscoveryError;
use crate::domain::attribution::UNATTRIBUTED_NOTE;
use crate::domain::slice::{Item, SliceTask};
use crate::functions::{FnError, Services};
use crate::ports::control_plane::WorkspaceInfo;
use crate::state::{Inventory, InventoryEntry};

/// The subject's folders in the workspace's Azure Files share (`Users/<alias>/`, from
/// [`crate::domain::subject::ResolvedSubject::notebook_prefixes`]): every file below them. A
/// folder that does not exist holds nothing; a missing share or a refused listing fails the
/// slice with its reason (never "no files").
pub(super) async fn notebooks(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
) -> Result<Inventory, DiscoveryError> {
    use crate::ports::file_share::{FileShareExt, ShareError};
    let prefixes = task.subject.notebook_prefixes();
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    if task.subject.notebook_alias_conflicts > 0 {
        // The folder name is shared: it may hold another person's files (issue 14, item 5).
        notes.push(format!("{UNATTRIBUTED_NOTE} a notebooks folder name the directory gives the subject is also another user's; that Users/ folder was left untouched for a person to decide"));
    }
    if prefixes.is_empty() && task.subject.notebook_alias_conflicts > 0 {
        return Ok(Inventory {
            entries,
            notes,
            candidates: vec![],
            pages: None,
        });
    }
    if prefixes.is_empty() {
        notes.push(if task.subject.upn.is_some() {
            // A departed user (no directory entry): the request's UPN alone never names a
            // folder to act on (issue 14, item 5).
            format!("{UNATTRIBUTED_NOTE} the subject has no directory entry, and a UPN from the request alone never names a notebooks folder; Users/ folders were not searched and were left untouched")
        } else {
            "no notebooks folder name is known for the subject (no UPN or alias); user files were not searched".into()
        });
        return Ok(Inventory {
            entries,
            notes,
            candidates: vec![],
            pages: None,
        });
    }
    let (account, share) = (&ws.storage_account, &ws.file_share);
    for p in prefixes {
        match svc.files.list_tree(account, share, &p).await {
            Ok(tree) => entries.extend(tree.files.into_iter().map(|f| InventoryEntry {
                item: Item::File {
                    account: account.clone(),
                    share: share.clone(),
                    path: f.path,
                    size: f.size,
                },
                doc: None,
                doc_sha256: None,
                hold: None,
            })),
            Err(ShareError::DirectoryNotFound(_)) => {}
            Err(e @ (ShareError::ShareNotFound(_) | ShareError::Forbidden(_))) => {
                return Err(DiscoveryError::Permanent(format!(
                    "notebooks share {account}/{share}: {e}"
                )))
            }
            Err(e) => return Err(DiscoveryError::Retry(FnError::Transient(e.to_string()))),
        }
    }
    if task.kind.mutates() {
        match svc.files.retention(account, share).await {
            Ok(r) => notes.extend(r.note(share)),
            Err(e) => notes.push(format!(
                "share snapshots of {share} could not be checked ({e}): deleted files may remain in them"
            )),
        }
    }
    Ok(Inventory {
        entries,
        notes,
        candidates: vec![],
        pages: None,
    })
}
