//! `azureml-dsr demo`: the README's main command. Seeds a synthetic workspace, runs an export and
//! a delete for one user through the local runtime (real handler over HTTP, durable queue), and
//! prints what was found, exported, deleted and retained — and checks that nobody else's data
//! changed.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::local::{LocalRuntime, StorageChoice};
use super::requests::{enqueue, request_from_flags, SubmitArgs};
use super::seed::{seed_into, SeedArgs};
use crate::domain::report::FinalReport;
use crate::domain::request::RequestId;
use crate::settings::{AppSettings, LocalSettings};
use crate::wiring::LocalPaths;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Demo data folder (wiped first).
    #[arg(long, default_value = ".dsr-demo")]
    pub dir: PathBuf,
    /// App root with host.json and functions/ (default: the function set built into this binary).
    #[arg(long)]
    pub app_root: Option<PathBuf>,
    /// The user whose data is exported then deleted.
    #[arg(long, default_value = "alice")]
    pub user: String,
    #[arg(long, default_value_t = 5)]
    pub users: usize,
    #[arg(long, default_value_t = 20)]
    pub runs_per_user: usize,
    /// Blob soft-delete retention of the workspace storage account (local store only), to show
    /// honest "retained until" reporting; 0 = permanent deletes.
    #[arg(long, default_value_t = 0)]
    pub soft_delete_days: u32,
}

pub async fn run(storage: &StorageChoice, a: &DemoArgs, json: bool) -> anyhow::Result<()> {
    if a.dir.exists() {
        std::fs::remove_dir_all(&a.dir)?;
    }
    let paths = LocalPaths::new(&a.dir);
    let seed_args = SeedArgs {
        workspaces: 1,
        users: a.users,
        runs_per_user: a.runs_per_user,
        files_per_run: 3,
        output_bytes: 4096,
        seed: 7,
    };
    let truth = seed_into(&a.dir, storage, &seed_args).await?;
    let user = truth
        .user(&a.user)
        .ok_or_else(|| anyhow::anyhow!("no seeded user {:?}", a.user))?
        .clone();
    if a.soft_delete_days > 0 {
        if let StorageChoice::Local = storage {
            let fs = crate::adapters::local::fs_blob::FsBlobStore::new(paths.store());
            for info in &truth.infos {
                fs.set_account_settings(
                    &info.storage_account,
                    &crate::adapters::local::fs_blob::AccountSettings {
                        delete_retention_days: a.soft_delete_days,
                    },
                )?;
            }
        }
    }
    let store = crate::wiring::store(&LocalSettings::new(&a.dir, storage.clone()));
    // Another user's job trained on the subject's data (the report's "derived" section).
    let lineage = crate::seed_lineage::add(&store, &truth, &user.key).await?;
    let before = snapshot_others(&store, &truth, &user.key).await?;
    say(
        json,
        &format!(
            "Seeded {} blobs and {} resources for {} users in {}.",
            truth.blobs.len(),
            truth.resources.len(),
            truth.users.len(),
            truth.workspaces[0]
        ),
    );
    say(
        json,
        &format!(
            "Subject: {} ({} blobs, {} resources).",
            user.upn,
            truth.blobs_of(&user.key).len(),
            truth.resources_of(&user.key).len()
        ),
    );

    if let Some(l) = &lineage {
        say(
            json,
            &format!(
                "Lineage example: job {} of another user read the subject's data asset {}, produced a model, served by deployment {}.",
                l.job, l.data_asset, l.deployment
            ),
        );
    }

    let app = AppSettings::local(&a.dir, storage.clone());
    let rt = LocalRuntime::start_with(&app, a.app_root.as_deref()).await?;
    let mut reports = Vec::new();
    for kind in ["export", "delete"] {
        let args = SubmitArgs {
            file: None,
            kind: Some(kind.into()),
            upn: Some(user.upn.clone()),
            object_id: None,
            workspaces: vec![],
            request_id: Some(format!("DEMO-{}", kind.to_uppercase())),
            dry_run: false,
            regulation: None,
        };
        let body = serde_json::to_vec(&request_from_flags(&paths, &args)?)?;
        let id = enqueue(&rt.queue, body).await?;
        let started = Instant::now();
        let drain = rt.drain(Duration::from_secs(600));
        tokio::pin!(drain);
        let spinner = ['|', '/', '-', '\\'];
        let mut tick = 0usize;
        loop {
            tokio::select! {
                r = &mut drain => { r?; break; }
                _ = tokio::time::sleep(Duration::from_millis(150)) => {
                    if !json {
                        let pending = rt.queue.pending(&rt.queue.queues().unwrap_or_default()).unwrap_or(0);
                        eprint!("\r{} {kind}: {pending} message(s) in flight, {:.1}s ", spinner[tick % 4], started.elapsed().as_secs_f64());
                        let _ = std::io::stderr().flush();
                        tick += 1;
                    }
                }
            }
        }
        if !json {
            eprintln!(
                "\r{kind}: done in {:.2}s{}",
                started.elapsed().as_secs_f64(),
                " ".repeat(30)
            );
        }
        let state =
            crate::state::StateStore::new(store.clone(), app.tunables.state_account.clone());
        let report: FinalReport = state
            .report(&RequestId::parse(&id).map_err(anyhow::Error::msg)?)
            .await?
            .ok_or_else(|| anyhow::anyhow!("request {id} produced no report"))?;
        if !json {
            let c = &report.counts;
            println!("\n== {kind} {id}: {:?}", report.status);
            println!("   found {} items; exported {} ({} bytes); deleted {} ({} verified gone); retained {}; held {}; failed {}", c.items, c.exported, c.bytes_exported, c.deleted, c.verified_gone, c.retained, c.held, c.failed);
            for s in &report.slices {
                println!(
                    "   - {:<10} {:>5} items  {:?}{}",
                    s.resource_type.as_str(),
                    s.counts.items,
                    s.status,
                    s.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
            for r in &report.results {
                for n in &r.notes {
                    println!("   note: {n}");
                }
            }
            let review: Vec<_> = report.results.iter().flat_map(|r| &r.review).collect();
            if !review.is_empty() {
                println!(
                    "   needs review: {} item(s) only a display name ties to the subject, left untouched:",
                    review.len()
                );
                for i in &review {
                    println!(
                        "     {} {} {} — {}",
                        i.id, i.resource_type, i.resource_id, i.evidence
                    );
                }
                println!(
                    "   (decide with: azureml-dsr --data-dir {} review approve|reject {id} <item>... --reason TEXT --by YOU)",
                    a.dir.display()
                );
            }
            if let Some(l) = report
                .derived_from_subject_data
                .as_ref()
                .filter(|l| !l.derived.is_empty() || !l.incomplete.is_empty())
            {
                for line in crate::domain::lineage::render(l).lines() {
                    if !line.trim().is_empty() {
                        println!("   {}", line.trim_start_matches("## "));
                    }
                }
            }
            let where_ = if kind == "export" {
                "dsr-exports"
            } else {
                "dsr-reports"
            };
            println!(
                "   report: {}/store/dsrstate/{where_}/{id}/",
                a.dir.display()
            );
        }
        if kind == "export" && !json {
            // What the person receives: one ZIP (the result message links to it on Azure
            // storage), checked here as `azureml-dsr export verify` would.
            let blob = crate::functions::archive::archive_ref(&state, &report);
            match storage {
                StorageChoice::Local => {
                    let file = a
                        .dir
                        .join("store")
                        .join(&blob.account)
                        .join(&blob.container)
                        .join(&blob.name);
                    let v = super::export::verify(&file)?;
                    println!(
                        "   archive: {} ({} entries, {} bytes of data; index.html explains it; export verify: {})",
                        file.display(),
                        v.entries,
                        v.bytes,
                        if v.ok() { "every entry matches manifest.json" } else { "MISMATCH" }
                    );
                    anyhow::ensure!(
                        v.ok(),
                        "export archive failed verification: {:?}",
                        v.problems
                    );
                }
                _ => println!("   archive: {blob} (the result message's exportLink points to it)"),
            }
        }
        if report.counts.pending > 0 {
            // A telemetry purge finishes later, as Log Analytics' do: the timer polls it (here
            // at once, as the host's next tick would) and writes the certificate's second version.
            rt.dispatcher
                .invoke_timer_now(crate::app::RETENTION_SWEEP)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let v2: Option<FinalReport> = {
                use crate::ports::blob::BlobStoreExt;
                store
                    .read_json(
                        &state.blob(crate::state::REPORTS, format!("{id}/certificate.v2.json")),
                    )
                    .await?
            };
            if !json {
                match &v2 {
                    Some(v2) => println!(
                        "   telemetry purge: polled by the timer; certificate v2: {:?}",
                        v2.status
                    ),
                    None => println!("   telemetry purge: still pending after the timer's poll"),
                }
            }
        }
        reports.push(report);
    }
    rt.stop().await;
    let after = snapshot_others(&store, &truth, &user.key).await?;
    let untouched = before == after;
    if json {
        println!(
            "{}",
            serde_json::json!({"subject": user.upn, "reports": reports.iter().map(|r| serde_json::json!({"requestId": r.request_id, "status": r.status, "counts": r.counts})).collect::<Vec<_>>(), "otherUsersUntouched": untouched, "otherUsersBlobs": before.len()})
        );
    } else {
        println!(
            "\nOther users' data: {} blobs checked, {}.",
            before.len(),
            if untouched {
                "all unchanged"
            } else {
                "CHANGED — this is a bug"
            }
        );
        println!(
            "Inspect everything under {}/store (plain files).",
            a.dir.display()
        );
    }
    if !untouched {
        anyhow::bail!("collateral change detected");
    }
    Ok(())
}

fn say(json: bool, s: &str) {
    if !json {
        println!("{s}");
    }
}

/// sha256 of every seeded blob that is not the subject's.
async fn snapshot_others(
    store: &std::sync::Arc<dyn crate::ports::blob::BlobStore>,
    truth: &crate::seed::SeedTruth,
    subject: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    use crate::ports::blob::BlobStoreExt;
    let mut out = std::collections::BTreeMap::new();
    for (key, owner) in &truth.blobs {
        if owner == subject {
            continue;
        }
        let mut parts = key.splitn(3, '/');
        let (Some(a), Some(c), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (bytes, _) = store
            .read_small(&crate::ports::blob::BlobRef::new(a, c, n))
            .await?;
        out.insert(key.clone(), crate::domain::ids::sha256_hex(&bytes));
    }
    Ok(out)
}
