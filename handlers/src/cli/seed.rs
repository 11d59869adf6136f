//! `azureml-dsr seed`: generate a synthetic workspace (plus its identity directory), put it in
//! scope (in the state store, as `azureml-dsr workspace add` would) and record who owns what in
//! `seed-truth.json`.

use std::path::Path;

use clap::Args;

use super::local::StorageChoice;
use crate::seed::{seed, SeedOptions, SeedTruth};
use crate::settings::LocalSettings;
use crate::wiring::LocalPaths;

#[derive(Args, Debug, Clone)]
pub struct SeedArgs {
    #[arg(long, default_value_t = 1)]
    pub workspaces: usize,
    #[arg(long, default_value_t = 5)]
    pub users: usize,
    #[arg(long, default_value_t = 8)]
    pub runs_per_user: usize,
    #[arg(long, default_value_t = 3)]
    pub files_per_run: usize,
    #[arg(long, default_value_t = 2048)]
    pub output_bytes: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub async fn seed_into(
    data_dir: &Path,
    storage: &StorageChoice,
    args: &SeedArgs,
) -> anyhow::Result<SeedTruth> {
    let paths = LocalPaths::new(data_dir);
    std::fs::create_dir_all(&paths.root)?;
    let store = crate::wiring::store(&LocalSettings::new(data_dir, storage.clone()));
    let opts = SeedOptions {
        workspaces: args.workspaces,
        users: args.users,
        runs_per_user: args.runs_per_user,
        files_per_run: args.files_per_run,
        output_bytes: args.output_bytes,
        seed: args.seed,
        ..Default::default()
    };
    let truth = seed(&store, &opts, time::OffsetDateTime::now_utc()).await?;
    std::fs::write(
        paths.directory(),
        serde_json::to_vec_pretty(&truth.directory())?,
    )?;
    std::fs::write(paths.truth(), serde_json::to_vec_pretty(&truth)?)?;
    crate::state::StateStore::new(store, crate::functions::Settings::default().state_account)
        .put_scope(&truth.workspaces)
        .await?;
    Ok(truth)
}

pub async fn run(local: &LocalSettings, args: &SeedArgs, json: bool) -> anyhow::Result<()> {
    let data_dir = local.data_dir.as_path();
    let truth = seed_into(data_dir, &local.storage, args).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"workspaces": truth.workspaces, "users": truth.users.iter().map(|u| &u.upn).collect::<Vec<_>>(),
                "blobs": truth.blobs.len(), "resources": truth.resources.len()})
        );
    } else {
        println!(
            "Seeded {} workspace(s), {} users, {} blobs, {} resources.",
            truth.workspaces.len(),
            truth.users.len(),
            truth.blobs.len(),
            truth.resources.len()
        );
        for w in &truth.workspaces {
            println!("  workspace {w}");
        }
        println!(
            "  users: {}",
            truth
                .users
                .iter()
                .map(|u| u.upn.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("  data folder: {}", data_dir.display());
    }
    Ok(())
}
