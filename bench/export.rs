//! Export scenario: `slice::export_blob` (copy + streaming SHA-256) against raw Copy Blob + GET +
//! SHA-256 and `azcopy copy`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::raw::Raw;
use anyhow::ensure;
use azureml_dsr::domain::slice::ItemStatus;
use azureml_dsr::functions::{slice, Settings};
use azureml_dsr::ports::blob::{BlobRef, BlobStore};
use futures::{StreamExt, TryStreamExt};

use crate::azcopy::Azcopy;
use crate::seed::*;
use crate::{median, Opts, Row, WS_ACCOUNT};

pub(crate) async fn bench_export(
    o: &Opts,
    raw: &Raw,
    store: &Arc<dyn BlobStore>,
    azcopy: Option<&Azcopy>,
) -> anyhow::Result<Vec<Row>> {
    let src_c = "exportsrc";
    raw.create_container(WS_ACCOUNT, src_c).await?;
    for c in ["exports-ours", "exports-raw", "exports-azcopy"] {
        raw.create_container("dsrstate", c).await?;
    }
    let size = o.export_kib * 1024;
    let names: Vec<String> = (0..o.export_items)
        .map(|i| format!("azureml/alice_job_{i:07}/outputs/part-0000.bin"))
        .collect();
    // Distinct contents per blob would not change the server's work; one body is enough.
    put_many(raw, WS_ACCOUNT, src_c, &names, size).await?;
    let list_file = std::env::temp_dir().join(format!("bench-export-{}.txt", std::process::id()));
    std::fs::write(&list_file, names.join("\n"))?;
    let concurrency = Settings::default().concurrency;
    let src_sas = raw.container_sas(WS_ACCOUNT, src_c, "rl");
    let mb = (names.len() * size) as f64 / 1e6;

    // Warm-up, untimed: one pass of ours and the ceiling over every item, so each timed pass
    // overwrites existing copies (the first pass otherwise also grows Azurite's account, which
    // costs whichever method runs first: 250-278 items/s in the first slot, 300-360 after).
    futures::stream::iter(names.iter())
        .map(|n| {
            let src_sas = &src_sas;
            async move {
                let src = BlobRef::new(WS_ACCOUNT, src_c, n.clone());
                let dst = BlobRef::new("dsrstate", "exports-ours", n.clone());
                slice::export_blob(store.as_ref(), &src, &dst)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut src = raw.url(WS_ACCOUNT, src_c, Some(n));
                src.set_query(Some(src_sas));
                raw.copy(&src, "dsrstate", "exports-raw", n).await?;
                raw.get_sha256("dsrstate", "exports-raw", n).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;

    let methods = ["ours", "raw", "azcopy"];
    let mut res: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut azcopy_err: Option<String> = None;
    let mut azcopy_download = false;
    let mut azcopy_dead = false;
    for rep in 0..o.reps {
        for k in 0..methods.len() {
            let m = methods[(k + rep) % methods.len()];
            if m == "azcopy" && (azcopy.is_none() || azcopy_dead) {
                continue;
            }
            let mut t = Instant::now();
            match m {
                "ours" => {
                    let out: Vec<ItemStatus> = futures::stream::iter(names.iter())
                        .map(|n| {
                            let src = BlobRef::new(WS_ACCOUNT, src_c, n.clone());
                            let dst = BlobRef::new("dsrstate", "exports-ours", n.clone());
                            async move { slice::export_blob(store.as_ref(), &src, &dst).await }
                        })
                        .buffered(concurrency)
                        .try_collect()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    for s in out {
                        ensure!(
                            matches!(s, ItemStatus::Exported { size: n, .. } if n as usize == size),
                            "ours: {s:?}"
                        );
                    }
                }
                "raw" => {
                    let out: Vec<(u64, String)> = futures::stream::iter(names.iter())
                        .map(|n| {
                            let src_sas = &src_sas;
                            async move {
                                let mut src = raw.url(WS_ACCOUNT, src_c, Some(n));
                                src.set_query(Some(src_sas));
                                raw.copy(&src, "dsrstate", "exports-raw", n).await?;
                                raw.get_sha256("dsrstate", "exports-raw", n).await
                            }
                        })
                        .buffered(concurrency)
                        .try_collect()
                        .await?;
                    ensure!(out.iter().all(|(n, _)| *n as usize == size), "raw sizes");
                }
                _ => {
                    let az = azcopy.expect("checked");
                    let src = format!("{}/{WS_ACCOUNT}/{src_c}?{src_sas}", raw.base);
                    let list = format!("--list-of-files={}", list_file.display());
                    if !azcopy_download {
                        // Blob-to-blob first (server-side, what a user would run).
                        let dst = format!(
                            "{}/dsrstate/exports-azcopy?{}",
                            raw.base,
                            raw.container_sas("dsrstate", "exports-azcopy", "racwdl")
                        );
                        match az
                            .run(&[
                                "copy",
                                &src,
                                &dst,
                                "--from-to=BlobBlob",
                                &list,
                                "--overwrite=true",
                                "--s2s-preserve-access-tier=false",
                            ])
                            .await
                        {
                            Ok(()) => {
                                let got = raw.list("dsrstate", "exports-azcopy", "").await?;
                                ensure!(
                                    got.len() >= names.len(),
                                    "azcopy copied {} of {}",
                                    got.len(),
                                    names.len()
                                );
                            }
                            Err(e) => {
                                let first = e
                                    .to_string()
                                    .lines()
                                    .find(|l| l.contains("COPYFAILED"))
                                    .map(|l| l.split(" : ").skip(1).collect::<Vec<_>>().join(" : "))
                                    .unwrap_or_else(|| e.to_string());
                                eprintln!("bench: azcopy blob-to-blob copy failed on Azurite ({first}); using azcopy download (BlobLocal) to tmpfs instead");
                                azcopy_err = Some(format!(
                                    "azcopy blob-to-blob copy fails on Azurite ({}), so azcopy = download to tmpfs",
                                    first.trim()
                                ));
                                azcopy_download = true;
                                t = Instant::now();
                            }
                        }
                    }
                    if azcopy_download {
                        let base = if Path::new("/dev/shm").is_dir() {
                            PathBuf::from("/dev/shm")
                        } else {
                            std::env::temp_dir()
                        };
                        let dir = tempfile::tempdir_in(base)?;
                        if let Err(e) = az
                            .run(&[
                                "copy",
                                &src,
                                &dir.path().to_string_lossy(),
                                "--from-to=BlobLocal",
                                &list,
                                "--overwrite=true",
                            ])
                            .await
                        {
                            eprintln!("bench: azcopy download failed: {e:#}");
                            azcopy_err = Some(format!(
                                "azcopy download failed too: {}",
                                e.to_string().lines().next().unwrap_or("")
                            ));
                            azcopy_dead = true;
                            continue;
                        }
                    }
                }
            }
            let dt = t.elapsed().as_secs_f64();
            res.entry(m).or_default().push(names.len() as f64 / dt);
            eprintln!(
                "bench: export rep {rep} {m}: {:.0} items/s, {:.1} MB/s",
                names.len() as f64 / dt,
                mb / dt
            );
        }
    }
    let _ = std::fs::remove_file(&list_file);
    let med = |m: &str| res.get(m).cloned().map(median);
    let to_mb = |v: Option<f64>| v.map(|x| x * size as f64 / 1e6);
    let err_note = azcopy_err
        .map(|e| format!("; {}", e.lines().next().unwrap_or("")))
        .unwrap_or_default();
    Ok(vec![
        Row {
            scenario: format!("export {} blobs of {} KiB", names.len(), o.export_kib),
            unit: "items/s",
            ours: med("ours").unwrap_or(f64::NAN),
            ceiling: med("raw"),
            azcopy: med("azcopy"),
            note: format!("ours and ceiling: server-side copy + GET + SHA-256, {concurrency} in flight; azcopy copies only (no hash){err_note}"),
        },
        Row {
            scenario: format!("export {} blobs of {} KiB", names.len(), o.export_kib),
            unit: "MB/s",
            ours: to_mb(med("ours")).unwrap_or(f64::NAN),
            ceiling: to_mb(med("raw")),
            azcopy: to_mb(med("azcopy")),
            note: "same runs as the row above".into(),
        },
    ])
}
