//! Chaos trials on the local runtime. Each seeded trial runs `azureml-dsr run` as a child process
//! with every message delivered twice and out of order, 10% of storage calls failing (some after
//! taking effect), continuation chunks of 2 items, and kills it with SIGKILL at a seeded moment,
//! then restarts it until idle. In every trial: each DSR reaches a final state, the export lists
//! every subject item exactly once, no subject item survives the delete, zero items of other
//! users changed, exactly one report, one result message and one audit record per DSR.
//! `CHAOS_TRIALS` (default 50) and `CHAOS_SEED` (default 1) choose the trials.
//!
//! A second set of trials (`CHAOS_AZURITE_TRIALS`, default 3: each costs seconds of real `Retry-After` waits) runs the same scenario on Azure
//! Blob Storage (the official SDK adapter) through a fault-injecting HTTP proxy in front of
//! Azurite: 10% of requests answered 429/500/503 or cut off mid-body after Azurite applied
//! them, and a burst of throttling with `Retry-After` at the start.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use azureml_dsr::cli::local::StorageChoice;
use azureml_dsr::cli::requests::enqueue;
use azureml_dsr::cli::seed::{seed_into, SeedArgs};
use azureml_dsr::config::LocalPaths;
use azureml_dsr::domain::report::{FinalReport, FinalStatus};
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::domain::slice::Item;
use azureml_dsr::ports::blob::{BlobRef, BlobStore, BlobStoreExt};
use rand::{Rng, SeedableRng};
use serde_json::json;

fn app_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn runtime(dir: &Path, seed: u64, storage: &StorageChoice) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_azureml-dsr"));
    match storage {
        StorageChoice::Azurite(url) => {
            c.env("DSR_STORAGE", format!("azurite={url}"));
        }
        _ => {
            // Faults at the adapter boundary (the local store has no HTTP to break).
            c.env("DSR_CHAOS_FAULT_RATE", "0.1");
        }
    }
    c.args(["run", "--until-idle", "--app-root"])
        .arg(app_root())
        .env("DSR_DATA_DIR", dir)
        .env("DSR_LOCK_SECONDS", "1")
        .env("DSR_CHAOS_REDELIVER", "1")
        .env("DSR_CHAOS_SHUFFLE", "1")
        .env("DSR_CHAOS_SEED", seed.to_string())
        .env("DSR_CHUNK_SIZE", "2")
        .env("DSR_POLL_MS", "20")
        .env("DSR_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

async fn blobs(
    store: &dyn BlobStore,
    truth: &azureml_dsr::seed::SeedTruth,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in truth.blobs.keys() {
        let mut p = key.splitn(3, '/');
        let b = BlobRef::new(p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
        if let Ok((bytes, _)) = store.read_small(&b).await {
            out.insert(key.clone(), azureml_dsr::domain::ids::sha256_hex(&bytes));
        }
    }
    out
}

const ACCOUNTS: [&str; 4] = ["mlwstore0", "armlocal", "telemetrylocal", "dsrstate"];

async fn trial(seed: u64, azurite: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let az = azurite.then(|| support::azurite::Azurite::start(&ACCOUNTS));
    // Seeding and checking talk to the store directly; the runtime goes through the proxy.
    let direct = match &az {
        Some(a) => StorageChoice::Azurite(a.base_url.clone()),
        None => StorageChoice::Local,
    };
    let proxy = match &az {
        Some(a) => Some(
            support::fault_proxy::start(
                &a.base_url,
                0.1,
                if seed.is_multiple_of(2) { 10 } else { 0 },
                seed,
            )
            .await,
        ),
        None => None,
    };
    let through = match &proxy {
        Some(p) => StorageChoice::Azurite(p.base_url.clone()),
        None => StorageChoice::Local,
    };
    let truth = seed_into(
        dir.path(),
        &direct,
        &SeedArgs {
            workspaces: 1,
            users: 3,
            runs_per_user: 2,
            files_per_run: 1,
            output_bytes: 64,
            seed,
        },
    )
    .await
    .unwrap();
    let paths = LocalPaths::new(dir.path());
    let store = direct.store(&paths);
    let before = blobs(store.as_ref(), &truth).await;
    let ws: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
    let (exporter, deleted) = ("alice", "bob");
    for (id, kind, user) in [("C-EXP", "export", exporter), ("C-DEL", "delete", deleted)] {
        let body = json!({"schemaVersion": "1.0", "requestId": id, "type": kind, "subject": {"upn": truth.user(user).unwrap().upn}, "scope": {"workspaces": ws}});
        enqueue(&paths, body.to_string().into_bytes())
            .await
            .unwrap();
    }

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kill_after = Duration::from_millis(if azurite {
        rng.gen_range(100..2500)
    } else {
        rng.gen_range(10..350)
    });
    let mut child = runtime(dir.path(), seed, &through).spawn().unwrap();
    std::thread::sleep(kill_after);
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    if std::env::var("CHAOS_VERBOSE").is_ok() {
        eprintln!("seed {seed}: first run killed at {:?}", kill_after);
    }
    let started = Instant::now();
    let status = tokio::task::spawn_blocking({
        let mut cmd = runtime(dir.path(), seed + 1_000_000, &through);
        move || cmd.status()
    })
    .await
    .unwrap()
    .unwrap();
    if !status.success() {
        return Err(format!("restarted runtime exited with {status}"));
    }

    if std::env::var("CHAOS_VERBOSE").is_ok() {
        eprintln!(
            "seed {seed}: killed after {kill_after:?}; restart ran {:?}",
            started.elapsed()
        );
    }
    if let Some(p) = &proxy {
        if p.faults.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return Err("the proxy injected no fault".into());
        }
    }
    if started.elapsed() > Duration::from_secs(180) {
        return Err("took too long".into());
    }

    let state = azureml_dsr::state::StateStore::new(store.clone(), "dsrstate");
    let report = |id: &'static str| {
        let state = state.clone();
        async move { state.report(&RequestId::parse(id).unwrap()).await.unwrap() }
    };
    let exp: FinalReport = report("C-EXP").await.ok_or("export has no report")?;
    let del: FinalReport = report("C-DEL").await.ok_or("delete has no report")?;
    if exp.status != FinalStatus::Completed || del.status != FinalStatus::Completed {
        return Err(format!("statuses {:?} / {:?}", exp.status, del.status));
    }
    // Export: every subject blob exactly once.
    let mut listed: Vec<String> = exp
        .results
        .iter()
        .flat_map(|r| &r.items)
        .filter_map(|o| match &o.item {
            Item::Blob {
                account,
                container,
                name,
                ..
            } => Some(format!("{account}/{container}/{name}")),
            _ => None,
        })
        .collect();
    listed.sort();
    let mut want: Vec<String> = truth.blobs_of(exporter).into_iter().cloned().collect();
    want.sort();
    if listed != want {
        return Err(format!(
            "export lists {} items, want {} (each exactly once)",
            listed.len(),
            want.len()
        ));
    }
    // Delete: none of bob's survive; nobody else's changed.
    let after = blobs(store.as_ref(), &truth).await;
    for (k, owner) in &truth.blobs {
        if owner == deleted {
            if after.contains_key(k) {
                return Err(format!("{k} survived the delete"));
            }
        } else if after.get(k) != before.get(k) {
            return Err(format!("collateral change to {k} ({owner})"));
        }
    }
    // One result message and one audit record per DSR.
    let queue =
        azureml_dsr::adapters::local::sqlite_queue::LocalQueue::open(paths.queue()).unwrap();
    let results: Vec<serde_json::Value> = queue
        .peek("dsr-results")
        .unwrap()
        .into_iter()
        .map(|m| serde_json::from_slice(&m.body).unwrap())
        .collect();
    for id in ["C-EXP", "C-DEL"] {
        let n = results.iter().filter(|r| r["requestId"] == id).count();
        if n != 1 {
            return Err(format!("{n} result messages for {id}"));
        }
    }
    let audit = state
        .store
        .list_all("dsrstate", "dsr-audit", "requests/")
        .await
        .unwrap();
    if audit.len() != 2 {
        return Err(format!("{} audit records", audit.len()));
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `count_var` (default `default`) seeded trials from `CHAOS_SEED`; fail with every
/// failing seed named.
async fn run_trials(label: &str, count_var: &str, default: u64, azurite: bool) {
    let trials = env_u64(count_var, default);
    let first = env_u64("CHAOS_SEED", 1);
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in first..first + trials {
        if let Err(e) = trial(seed, azurite).await {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    println!(
        "{label}: {trials} trials (seeds {first}..{}), {} failed, {:.1}s",
        first + trials,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_kill_and_fault_trials_keep_every_guarantee() {
    run_trials("chaos", "CHAOS_TRIALS", 50, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_kill_and_http_fault_trials_on_azurite_keep_every_guarantee() {
    run_trials(
        "chaos (Azurite + fault proxy)",
        "CHAOS_AZURITE_TRIALS",
        3,
        true,
    )
    .await;
}
