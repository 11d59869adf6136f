//! The export archive's housekeeping (issue 17): blocks an archive build staged and never
//! committed (the process crashed mid-build) do not stay on the local file store for ever —
//! the retention sweep discards them once stale, and leaves a build in progress alone.

use std::sync::Arc;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::domain::holds::HoldSet;
use azureml_dsr::functions::{retention, Settings};
use azureml_dsr::ports::blob::BlobRef;
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use time::OffsetDateTime;

#[tokio::test]
async fn the_retention_sweep_discards_blocks_a_crashed_archive_build_left() {
    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let store = local_store(&paths);
    let svc = local_services(
        &paths,
        store.clone(),
        Arc::new(MemoryBus::new()),
        Settings::default(),
    );
    let state = svc.state();
    state.ensure_containers().await.unwrap();
    state.put_holds(&HoldSet::default()).await.unwrap();
    let crashed = BlobRef::new(&state.account, "dsr-exports", "X-1/dsr-export-X-1.zip");
    let running = BlobRef::new(&state.account, "dsr-exports", "X-2/dsr-export-X-2.zip");
    for b in [&crashed, &running] {
        store
            .stage_block(b, "blk-00000000", bytes::Bytes::from_static(b"PK"))
            .await
            .unwrap();
    }
    let blocks = paths
        .store()
        .join(&state.account)
        .join(".dsr-blocks")
        .join("dsr-exports");
    let staged = |name: &str| {
        walk(&blocks)
            .into_iter()
            .any(|p| p.to_string_lossy().contains(name))
    };
    assert!(staged("X-1") && staged("X-2"), "{:?}", walk(dir.path()));
    // The crashed build staged its block two days ago.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    for f in walk(&blocks)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("X-1"))
    {
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let timer = azureml_dsr::protocol::timer::TimerInfo {
        adjust_for_dst: true,
        schedule_status: None,
        is_past_due: false,
    };
    let out = retention::run(&svc, &timer, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(out.discarded_blocks, 1);
    assert!(!staged("X-1"), "the crashed build's blocks are gone");
    assert!(staged("X-2"), "a build in progress keeps its blocks");
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
