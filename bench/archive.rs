//! The export-archive memory scenario: an export area holding one large file (1 GiB by default)
//! or many small ones (100,000), a report naming them, and the archive built from it in a child
//! process whose peak RSS is the figure. A second child only loads the report (what the
//! aggregator holds anyway), so the difference is the archive builder's own memory. Runs on the
//! file store: what is measured is the builder, not a storage emulator's memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use azureml_dsr::adapters::local::fs_blob::FsBlobStore;
use azureml_dsr::domain::deadline::Regulation;
use azureml_dsr::domain::plan::ResourceType;
use azureml_dsr::domain::report::{Counts, FinalReport, FinalStatus};
use azureml_dsr::domain::request::{RequestId, RequestKind};
use azureml_dsr::domain::slice::{Item, ItemOutcome, ItemStatus, SliceResult, SliceStatus};
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::functions::archive;
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt, Condition};
use azureml_dsr::state::{StateStore, EXPORTS};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

const STATE: &str = "dsrstate";
const WS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/bench";

fn exported(req: &RequestId, rel: &str, sha256: String, size: u64) -> ItemOutcome {
    let name = format!("{req}/bench/jobs/files/mlwbench/azureml/{rel}");
    ItemOutcome {
        item: Item::Blob {
            account: "mlwbench".into(),
            container: "azureml".into(),
            name: rel.into(),
            size,
        },
        status: ItemStatus::Exported {
            path: name,
            sha256,
            size,
            content_type: "application/octet-stream".into(),
        },
    }
}

fn report(req: RequestId, items: Vec<ItemOutcome>) -> anyhow::Result<FinalReport> {
    let now = time::OffsetDateTime::now_utc();
    let ws = WorkspaceId::parse(WS).map_err(anyhow::Error::msg)?;
    Ok(FinalReport {
        request_id: req,
        kind: RequestKind::Export,
        status: FinalStatus::Completed,
        dry_run: false,
        regulation: Regulation::Gdpr,
        subject_object_id: "00000000-0000-0000-0000-00000000b0b0".into(),
        subject_log_id: "bench".into(),
        received_at: now,
        deadline: now + time::Duration::days(30),
        finished_at: now,
        within_deadline: true,
        counts: Counts::default(),
        slices: vec![],
        results: vec![SliceResult {
            key: "bench-jobs".into(),
            workspace: ws,
            resource_type: ResourceType::Jobs,
            status: SliceStatus::Completed,
            reason: None,
            notes: vec![],
            items,
            review: vec![],
            pages: None,
        }],
        items_merkle_root: None,
        derived_from_subject_data: None,
    })
}

/// Seed an export area under `root` (file store): `files` files of `file_size` bytes, or one
/// file of `big` bytes written in 8 MiB blocks. Returns the report's path.
pub async fn seed(
    root: &Path,
    req: &str,
    files: usize,
    file_size: usize,
    big: u64,
) -> anyhow::Result<PathBuf> {
    let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(root));
    let req = RequestId::parse(req).map_err(anyhow::Error::msg)?;
    store.create_container(STATE, EXPORTS).await?;
    let mut items = Vec::new();
    if big > 0 {
        let rel = "big/model.bin";
        let item = exported(&req, rel, String::new(), big);
        let ItemStatus::Exported { path, .. } = &item.status else {
            unreachable!()
        };
        let blob = BlobRef::new(STATE, EXPORTS, path.clone());
        let mut sha = Sha256::new();
        let mut ids = Vec::new();
        let block = 8u64 << 20;
        let mut left = big;
        let mut n = 0u64;
        while left > 0 {
            let len = left.min(block) as usize;
            // Data that differs per block (a constant would hide a writer that repeats blocks).
            let body: Vec<u8> = (0..len)
                .map(|i| (i as u64 ^ n.wrapping_mul(0x9E37_79B9)) as u8)
                .collect();
            sha.update(&body);
            let id = format!("seed-{n:08}");
            store.stage_block(&blob, &id, Bytes::from(body)).await?;
            ids.push(id);
            left -= len as u64;
            n += 1;
        }
        store
            .commit_blocks(&blob, &ids, "application/octet-stream")
            .await?;
        items.push(exported(&req, rel, hex::encode(sha.finalize()), big));
    }
    let made: Vec<ItemOutcome> = futures::stream::iter(0..files)
        .map(|i| {
            let store = store.clone();
            let req = req.clone();
            async move {
                let rel = format!("runs/run-{:03}/outputs/file-{i:06}.txt", i % 997);
                let body = Bytes::from(
                    format!("{i:0width$}\n", width = file_size.max(2) - 1).into_bytes(),
                );
                let sha = hex::encode(Sha256::digest(&body));
                let size = body.len() as u64;
                let item = exported(&req, &rel, sha, size);
                let ItemStatus::Exported { path, .. } = &item.status else {
                    unreachable!()
                };
                store
                    .put(
                        &BlobRef::new(STATE, EXPORTS, path.clone()),
                        body,
                        "text/plain",
                        Condition::None,
                        &Default::default(),
                    )
                    .await?;
                Ok::<_, anyhow::Error>(item)
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    items.extend(made);
    let report = report(req.clone(), items)?;
    let file = root.join(format!("{req}-report.json"));
    std::fs::write(&file, serde_json::to_vec(&report)?)?;
    // The export's stored report (JSON, Markdown), as fan-in writes it before the archive
    // (the archive no longer copies it: it serialises the subject report itself).
    let state = StateStore::new(store.clone(), STATE);
    let (json, md) = archive::stored_report_refs(&state, &report);
    store.write_json(&json, &report).await?;
    store
        .put(
            &md,
            Bytes::from(azureml_dsr::domain::report::render_markdown(&report)),
            "text/markdown",
            Condition::None,
            &Default::default(),
        )
        .await?;
    Ok(file)
}

/// The child's work: load the report, then (unless `load_only`) build the archive.
pub async fn child(root: &str, report_file: &str, load_only: bool) -> anyhow::Result<()> {
    let report: FinalReport = serde_json::from_slice(&std::fs::read(report_file)?)?;
    if load_only {
        anyhow::ensure!(!report.results.is_empty());
        return Ok(());
    }
    let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(root));
    let state = StateStore::new(store.clone(), STATE);
    let built = archive::build(store.as_ref(), &state, &report, archive::BLOCK_SIZE)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let data: u64 = report
        .results
        .iter()
        .flat_map(|r| &r.items)
        .map(|o| match &o.status {
            ItemStatus::Exported { size, .. } => *size,
            _ => 0,
        })
        .sum();
    anyhow::ensure!(built.bytes > data, "archive smaller than its data");
    Ok(())
}

/// The archive a seeded request produced, checked with `export verify` (in the parent, after
/// the measurement). Returns (entries, archive bytes).
pub fn verify(root: &Path, req: &str) -> anyhow::Result<(usize, u64)> {
    let file = root
        .join(STATE)
        .join(EXPORTS)
        .join(req)
        .join(format!("dsr-export-{req}.zip"));
    let v = azureml_dsr::cli::export::verify(&file)
        .with_context(|| format!("verify {}", file.display()))?;
    anyhow::ensure!(v.ok(), "archive does not verify: {:?}", v.problems);
    Ok((v.entries, std::fs::metadata(&file)?.len()))
}
