//! Delete scenario: `slice::delete_blobs` (the slice's Blob Batch path) against raw single
//! DELETEs, raw batches (the storage ceiling) and `azcopy remove`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::raw::Raw;
use anyhow::ensure;
use azureml_dsr::functions::{slice, Settings};
use azureml_dsr::ports::blob::{BlobStore, DeleteOutcome};
use futures::{StreamExt, TryStreamExt};

use crate::azcopy::Azcopy;
use crate::seed::*;
use crate::{fmt, median, Opts, Row, RAW_CONCURRENCY, WS_ACCOUNT};

pub(crate) async fn bench_delete(
    o: &Opts,
    raw: &Raw,
    store: &Arc<dyn BlobStore>,
    azcopy: Option<&Azcopy>,
) -> anyhow::Result<Vec<Row>> {
    let container = "azureml";
    raw.create_container(WS_ACCOUNT, container).await?;
    let others: Vec<String> = (0..o.total - o.items)
        .map(|i| {
            format!(
                "ExperimentRun/dcid.user{}_job_{i:07}/logs/std_log.txt",
                i % 9
            )
        })
        .collect();
    let t = Instant::now();
    put_many(raw, WS_ACCOUNT, container, &others, 1024).await?;
    eprintln!(
        "bench: delete: seeded {} other blobs in {:.1}s",
        others.len(),
        t.elapsed().as_secs_f64()
    );
    let names: Vec<String> = (0..o.items).map(subject_blob).collect();
    let list_file = std::env::temp_dir().join(format!("bench-delete-{}.txt", std::process::id()));
    std::fs::write(&list_file, names.join("\n"))?;
    let concurrency = Settings::default().concurrency;

    let methods = ["ours", "raw-single", "raw-batch", "azcopy"];
    let mut res: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut azcopy_err = None;
    for rep in 0..o.reps {
        for k in 0..methods.len() {
            let m = methods[(k + rep) % methods.len()];
            if m == "azcopy" && (azcopy.is_none() || azcopy_err.is_some()) {
                continue;
            }
            put_many(raw, WS_ACCOUNT, container, &names, 1024).await?;
            let t = Instant::now();
            let r: anyhow::Result<()> = match m {
                "ours" => {
                    let out =
                        slice::delete_blobs(store, WS_ACCOUNT, container, &names, concurrency)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    ensure!(out.len() == names.len());
                    for r in out {
                        // NotFound = already gone; the listing below proves nothing is left.
                        ensure!(
                            matches!(r, Ok(DeleteOutcome::Deleted | DeleteOutcome::NotFound)),
                            "ours: {r:?}"
                        );
                    }
                    Ok(())
                }
                "raw-single" => {
                    let ok: Vec<u16> = futures::stream::iter(names.iter())
                        .map(|n| raw.delete(WS_ACCOUNT, container, n))
                        .buffer_unordered(RAW_CONCURRENCY)
                        .try_collect()
                        .await?;
                    ensure!(ok.iter().all(|s| *s == 202), "raw delete statuses");
                    Ok(())
                }
                "raw-batch" => {
                    let n: Vec<usize> = futures::stream::iter(names.chunks(256))
                        .map(|c| raw.batch_delete(WS_ACCOUNT, container, c))
                        .buffer_unordered(slice::delete_batches_in_flight(concurrency))
                        .try_collect()
                        .await?;
                    ensure!(n.iter().sum::<usize>() == names.len(), "raw batch count");
                    Ok(())
                }
                _ => {
                    let az = azcopy.expect("checked");
                    let url = format!(
                        "{}/{WS_ACCOUNT}/{container}?{}",
                        raw.base,
                        raw.container_sas(WS_ACCOUNT, container, "rdl")
                    );
                    match az
                        .run(&[
                            "remove",
                            &url,
                            "--from-to=BlobTrash",
                            &format!("--list-of-files={}", list_file.display()),
                        ])
                        .await
                    {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            eprintln!("bench: azcopy remove failed: {e:#}");
                            azcopy_err = Some(e.to_string());
                            continue;
                        }
                    }
                }
            };
            r?;
            let dt = t.elapsed().as_secs_f64();
            let left = raw
                .list(WS_ACCOUNT, container, "ExperimentRun/dcid.alice_")
                .await?;
            ensure!(
                left.is_empty(),
                "{m}: {} subject blobs left after delete",
                left.len()
            );
            res.entry(m).or_default().push(names.len() as f64 / dt);
            eprintln!(
                "bench: delete rep {rep} {m}: {:.0} items/s",
                names.len() as f64 / dt
            );
        }
    }
    let _ = std::fs::remove_file(&list_file);
    let med = |m: &str| res.get(m).cloned().map(median);
    let single = med("raw-single").unwrap_or(f64::NAN);
    let batch = med("raw-batch").unwrap_or(f64::NAN);
    let ceiling = single.max(batch);
    Ok(vec![Row {
        scenario: format!("delete {} of {} blobs", o.items, o.total),
        unit: "items/s",
        ours: med("ours").unwrap_or(f64::NAN),
        ceiling: Some(ceiling),
        azcopy: med("azcopy"),
        note: format!(
            "ceiling = best of raw single DELETE x{RAW_CONCURRENCY} ({}) and raw batch ({}){}",
            fmt(single),
            fmt(batch),
            azcopy_err
                .map(|e| format!("; azcopy failed: {}", e.lines().next().unwrap_or("")))
                .unwrap_or_default()
        ),
    }])
}
