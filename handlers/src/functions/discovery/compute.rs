//! Compute discovery: the subject's personal compute instances (assigned to their object id).

use super::{resource_entry, DiscoveryError};
use crate::domain::slice::SliceTask;
use crate::functions::Services;
use crate::ports::control_plane::ArmKind;
use crate::state::Inventory;

pub(super) async fn compute(svc: &Services, task: &SliceTask) -> Result<Inventory, DiscoveryError> {
    let mut entries = Vec::new();
    for doc in svc
        .control
        .list_all(&task.workspace, ArmKind::Compute)
        .await?
    {
        if crate::domain::attribution::personal_compute_of(&task.subject, &doc) {
            entries.extend(resource_entry(ArmKind::Compute, &doc));
        }
    }
    Ok(Inventory {
        entries,
        notes: vec![],
        candidates: vec![],
        pages: None,
    })
}
