//! Throttled ARM as a shared budget: the local ARM server with ARM's token buckets (429 +
//! `Retry-After` when the deletes bucket is empty), and the production ARM adapter
//! (`AzureMlControlPlane` over `RestClient`, default retry configuration) deleting jobs from
//! several concurrent "slice invocations" that share one client, as invocations in one Functions
//! process share `Services`. Each invocation deletes its share with the slice's concurrency
//! (`Settings::concurrency` in flight). What it shows: no item fails, the delete rate stays
//! near the bucket's refill rate, and how many 429s it took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use azureml_dsr::adapters::azure::arm::{ArmConfig, AzureMlControlPlane, ARM_SCOPE};
use azureml_dsr::adapters::azure::rest::RestClient;
use azureml_dsr::adapters::local::arm_server::{self, ArmServerOptions, LocalArmToken};
use azureml_dsr::adapters::local::arm_throttle::{ArmThrottle, Bucket, ThrottleOptions};
use azureml_dsr::adapters::local::control_plane::LocalControlPlane;
use azureml_dsr::adapters::local::memory_blob::MemoryBlobStore;
use azureml_dsr::domain::workspace::WorkspaceId;
use azureml_dsr::ports::blob::BlobStore;
use azureml_dsr::ports::control_plane::{ArmKind, ControlPlane, ResourceDelete};
use futures::StreamExt;
use serde_json::json;

use crate::{Opts, Row};
use azureml_dsr::functions::Settings;

pub struct ThrottleResult {
    pub jobs: usize,
    pub invocations: usize,
    pub concurrency: usize,
    pub bucket: Bucket,
    pub secs: f64,
    pub failed: usize,
    pub server_429: u64,
    pub client_429: u64,
}

impl ThrottleResult {
    /// Deletes per second measured.
    pub fn rate(&self) -> f64 {
        self.jobs as f64 / self.secs
    }
    /// The best any client can do against this bucket: the first `capacity` deletes at once,
    /// the rest at the refill rate.
    pub fn ceiling_rate(&self) -> f64 {
        let t = (self.jobs as f64 - self.bucket.capacity).max(0.0) / self.bucket.per_sec;
        if t <= 0.0 {
            f64::INFINITY
        } else {
            self.jobs as f64 / t
        }
    }
}

pub async fn run(
    jobs: usize,
    invocations: usize,
    concurrency: usize,
    deletes: Bucket,
) -> anyhow::Result<ThrottleResult> {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let ws = WorkspaceId::parse(
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-bench/providers/Microsoft.MachineLearningServices/workspaces/throttled",
    )
    .map_err(anyhow::Error::msg)?;
    crate::seed::seed_workspace_info(&store, &ws).await?;
    let lcp = LocalControlPlane::new(store.clone());
    let mut ids = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let id = format!("{ws}/jobs/job_{i:06}");
        lcp.put_resource(
            &ws,
            ArmKind::Job,
            &json!({"id": id, "name": format!("job_{i:06}"),
                    "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                    "properties": {"jobType": "Command", "status": "Completed"}}),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.push(id);
    }
    // ARM's documented shape (reads refill 2.5x as fast as deletes); a delete's operation poll
    // is a read, one per delete, so the deletes bucket is the one that binds.
    let opts = ThrottleOptions {
        reads: Bucket {
            capacity: deletes.capacity * 1.25,
            per_sec: deletes.per_sec * 2.5,
        },
        writes: deletes,
        deletes,
    };
    let throttle = Arc::new(ArmThrottle::new(opts));
    let server = arm_server::start_with_throttle(
        store.clone(),
        ArmServerOptions {
            lro_polls: 0,
            ..Default::default()
        },
        0,
        Some(throttle.clone()),
    )
    .await?;
    // The production client with its default retry configuration: one per process.
    let rest = RestClient::new(
        Arc::new(LocalArmToken::new(
            azureml_dsr::adapters::local::arm_server::LOCAL_ARM_TOKEN,
        )),
        ARM_SCOPE,
    );
    let mut cfg = ArmConfig::new(url::Url::parse(&server.base_url)?);
    cfg.poll_interval = Duration::from_millis(0);
    let cp = Arc::new(AzureMlControlPlane::new(rest.clone(), cfg));

    let per = jobs.div_ceil(invocations.max(1));
    let t = Instant::now();
    let handles: Vec<_> = ids
        .chunks(per.max(1))
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let cp = cp.clone();
            let ws = ws.clone();
            tokio::spawn(async move {
                futures::stream::iter(chunk)
                    .map(|id| {
                        let cp = cp.clone();
                        let ws = ws.clone();
                        async move { cp.delete(&ws, ArmKind::Job, &id).await }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .filter(|r| futures::future::ready(!matches!(r, Ok(ResourceDelete::Deleted))))
                    .count()
                    .await
            })
        })
        .collect();
    let mut failed = 0;
    for h in handles {
        failed += h.await?;
    }
    let secs = t.elapsed().as_secs_f64();
    // Every job is gone (read straight from the store, not through the throttled server).
    let left = lcp
        .list(&ws, ArmKind::Job, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .value
        .len();
    ensure!(
        failed > 0 || left == 0,
        "{left} jobs left after a delete that reported none failed"
    );
    Ok(ThrottleResult {
        jobs,
        invocations,
        concurrency,
        bucket: deletes,
        secs,
        failed,
        server_429: throttle.refused(),
        client_429: rest.throttled(),
    })
}

/// Which throttled service a row is about: the scenario's words for its items and bucket.
pub struct Service {
    pub verb: &'static str,
    pub items: &'static str,
    pub unit: &'static str,
    /// The service and its bucket, e.g. "throttled ARM (deletes bucket".
    pub through: &'static str,
    /// What the client-side count is.
    pub client: &'static str,
}

/// A throttle scenario's row: the measured rate against the bucket's best, failures and 429s
/// (the run fails if any item failed).
pub fn row(s: &Service, r: &ThrottleResult) -> anyhow::Result<Row> {
    eprintln!(
        "bench: throttle: {} {} in {:.1}s, {} failed, 429s server {} client {}",
        r.jobs, s.items, r.secs, r.failed, r.server_429, r.client_429
    );
    ensure!(
        r.failed == 0,
        "{} of {} {} failed under throttling",
        r.failed,
        r.jobs,
        s.items
    );
    Ok(Row {
        scenario: format!(
            "{} {} {} through {} {} refilled {}/s), {} callers x {} in flight",
            s.verb, r.jobs, s.items, s.through, r.bucket.capacity, r.bucket.per_sec, r.invocations, r.concurrency
        ),
        unit: s.unit,
        ours: r.rate(),
        ceiling: Some(r.ceiling_rate()),
        azcopy: None,
        note: format!(
            "{} failed; {} 429s answered ({} {}); ceiling = the bucket's best: {} at once, the rest at {}/s; {:.1} s",
            r.failed, r.server_429, r.client_429, s.client, r.bucket.capacity, r.bucket.per_sec, r.secs
        ),
    })
}

/// The throttle rows: ARM deletes, Graph lookups, Log Analytics purges.
pub async fn bench_throttle(o: &Opts, want: impl Fn(&str) -> bool) -> anyhow::Result<Vec<Row>> {
    let concurrency = Settings::default().concurrency;
    let mut rows = Vec::new();
    if want("throttle-arm") {
        let bucket = Bucket {
            capacity: o.arm_burst,
            per_sec: o.arm_rate,
        };
        let r = run(o.arm_jobs, 4, concurrency, bucket).await?;
        rows.push(row(
            &Service {
                verb: "delete",
                items: "jobs",
                unit: "deletes/s",
                through: "throttled ARM (deletes bucket",
                client: "the client waited out",
            },
            &r,
        )?);
    }
    if want("throttle-graph") {
        let bucket = Bucket {
            capacity: o.graph_burst,
            per_sec: o.graph_rate,
        };
        let r = crate::throttle_graph::run(o.graph_lookups, 4, concurrency, bucket).await?;
        rows.push(row(
            &Service {
                verb: "resolve",
                items: "subjects",
                unit: "lookups/s",
                through: "throttled Graph (resource-unit bucket",
                client: "the client waited out",
            },
            &r,
        )?);
    }
    if want("throttle-purge") {
        let bucket = Bucket {
            capacity: o.purge_burst,
            per_sec: o.purge_rate,
        };
        let r = crate::throttle_purge::run(o.purges, 4, concurrency, bucket).await?;
        rows.push(row(
            &Service {
                verb: "send",
                items: "purges",
                unit: "purges/s",
                through: "throttled Log Analytics purge (bucket",
                client: "purges deferred and re-sent",
            },
            &r,
        )?);
    }
    Ok(rows)
}
