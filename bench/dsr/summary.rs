//! The whole-request table: counts per kind against the minimum the work needs, the scenario
//! rows (wall time against the raw ceiling, peak RSS, slice invocations) and the cost per
//! request at list prices.

use std::collections::BTreeMap;

use super::*;
use serde_json::Value;

pub(super) type PhaseResult = (
    Value,
    BTreeMap<(String, String), u64>,
    BTreeMap<String, u64>,
);

#[allow(clippy::too_many_arguments)]
pub(super) fn summarize(
    size: &DsrSize,
    truth: &azureml_dsr::seed::SeedTruth,
    subject_blobs: &[(String, String, String)],
    total_blobs: usize,
    ws_accounts: &[String],
    results: BTreeMap<&str, PhaseResult>,
    ceil_export: f64,
    ceil_delete: f64,
) -> anyhow::Result<DsrOutcome> {
    let mut rows = Vec::new();
    let mut tables = String::new();
    // Per container: the subject's blobs, and all blobs (for the listing floor).
    let mut per_container: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (a, c, _) in subject_blobs {
        *per_container.entry((a.clone(), c.clone())).or_default() += 1;
    }
    let mut container_total: BTreeMap<(String, String), usize> = BTreeMap::new();
    for k in truth.blobs.keys() {
        let mut p = k.splitn(3, '/');
        if let (Some(a), Some(c)) = (p.next(), p.next()) {
            if ws_accounts.iter().any(|w| w == a) {
                *container_total
                    .entry((a.to_string(), c.to_string()))
                    .or_default() += 1;
            }
        }
    }
    let n = subject_blobs.len() as u64;
    let batches_min: u64 = per_container
        .values()
        .map(|&v| (v as u64).div_ceil(256))
        .sum();
    let list_floor: u64 = per_container
        .keys()
        .map(|k| {
            (container_total.get(k).copied().unwrap_or(0) as u64)
                .div_ceil(5000)
                .max(1)
        })
        .sum();
    let jobs_per_ws: Vec<usize> = truth
        .workspaces
        .iter()
        .map(|w| {
            truth
                .resources
                .keys()
                .filter(|id| id.starts_with(&format!("{w}/jobs/")))
                .count()
        })
        .collect();
    let subject_resources = truth.resources_of("alice").len() as u64;
    let subject_jobs = truth
        .resources_of("alice")
        .iter()
        .filter(|id| id.contains("/jobs/"))
        .count() as u64;
    // ARM list pages the work needs: each kind listed once per workspace, 100 per page; model
    // and data versions are listed per container.
    let mut arm_pages: u64 = 0;
    for (w, ws) in truth.workspaces.iter().enumerate() {
        let prefix = format!("{ws}/");
        let ids: Vec<&String> = truth
            .resources
            .keys()
            .filter(|id| id.starts_with(&prefix))
            .collect();
        arm_pages += (jobs_per_ws[w] as u64).div_ceil(100).max(1);
        for kind in ["models", "data"] {
            let mut containers: BTreeMap<&str, u64> = BTreeMap::new();
            for id in &ids {
                let rest = &id[prefix.len()..];
                let mut p = rest.split('/');
                if p.next() == Some(kind) {
                    if let Some(c) = p.next() {
                        *containers.entry(c).or_default() += 1;
                    }
                }
            }
            arm_pages += (containers.len() as u64).div_ceil(100).max(1);
            arm_pages += containers.values().map(|v| v.div_ceil(100)).sum::<u64>();
        }
        let computes = ids
            .iter()
            .filter(|id| id[prefix.len()..].starts_with("computes/"))
            .count() as u64;
        arm_pages += computes.div_ceil(100).max(1);
    }
    let listed_jobs: u64 = jobs_per_ws.iter().map(|&j| j as u64).sum();
    let mut cost_total = 0.0;
    let mut cost_lines = String::new();

    for (kind, (v, storage, arm)) in &results {
        let sum_in = |accts: &dyn Fn(&str) -> bool, k: &str| -> u64 {
            storage
                .iter()
                .filter(|((a, kk), _)| accts(a) && kk == k)
                .map(|(_, n)| *n)
                .sum()
        };
        let is_ws = |a: &str| ws_accounts.iter().any(|w| w == a);
        let is_state = |a: &str| a == "dsrstate";
        let calls = v["calls"].as_object().cloned().unwrap_or_default();
        let call = |k: &str| calls.get(k).and_then(Value::as_u64).unwrap_or(0);
        let bus_total: u64 = calls
            .iter()
            .filter(|(k, _)| k.starts_with("bus.send:"))
            .filter_map(|(_, v)| v.as_u64())
            .sum();
        let inv_total: u64 = calls
            .iter()
            .filter(|(k, _)| k.starts_with("invocation:"))
            .filter_map(|(_, v)| v.as_u64())
            .sum();
        let inv_secs = call("invocation_us") as f64 / 1e6;
        let arm_get = |k: &str| arm.get(k).copied().unwrap_or(0);
        let del = *kind == "delete";
        let mut t = format!(
            "\n#### {} {kind}: {} workspace(s), subject {} of {} blobs, {} of {} resources ({} of {} jobs)\n\n| calls | workspace storage | DSR state account | minimum | ours/min | the minimum is |\n|---|---:|---:|---:|---:|---|\n",
            size.label, size.workspaces, n, total_blobs, subject_resources, truth.resources.len(), subject_jobs, listed_jobs
        );
        let ratio = |ours: u64, min: u64| {
            if min > 0 {
                format!("{:.2}", ours as f64 / min as f64)
            } else if ours == 0 {
                "–".into()
            } else {
                "above 0".into()
            }
        };
        let mut st = |k: &str, label: &str, min: Option<u64>, why: &str| {
            let (w, s_) = (sum_in(&is_ws, k), sum_in(&is_state, k));
            let (m, r) = match min {
                Some(m) => (m.to_string(), ratio(w + s_, m)),
                None => ("–".into(), "–".into()),
            };
            t.push_str(&format!(
                "| storage {label} | {w} | {s_} | {m} | {r} | {why} |\n"
            ));
        };
        st(
            "list",
            "list",
            Some(list_floor),
            "each container with the subject's blobs listed once, 5,000 per page",
        );
        st(
            "read",
            "read (GET/HEAD)",
            Some(if del { 0 } else { n }),
            "export: one GET per exported copy (SHA-256)",
        );
        st(
            "write",
            "write (PUT)",
            None,
            "state, manifests and the report (no floor computed)",
        );
        st(
            "copy",
            "copy",
            Some(if del { 0 } else { n }),
            "one per exported blob",
        );
        st("delete", "delete (single)", Some(0), "none: batches");
        st(
            "batch",
            "batch",
            Some(if del { batches_min } else { 0 }),
            "one per 256 of the subject's blobs per container",
        );
        st(
            "batch_subrequest",
            "batch sub-requests",
            Some(if del { n } else { 0 }),
            "one per deleted blob",
        );
        let mut other = |label: &str, ours: u64, min: Option<u64>, why: &str| {
            let (m, r) = match min {
                Some(m) => (m.to_string(), ratio(ours, m)),
                None => ("–".into(), "–".into()),
            };
            t.push_str(&format!("| {label} | {ours} | | {m} | {r} | {why} |\n"));
        };
        other(
            "ARM list pages (GET)",
            arm_get("GET list page"),
            Some(arm_pages),
            "each kind listed once per workspace, 100 per page (versions per container)",
        );
        other(
            "ARM other GET",
            arm_get("GET other"),
            None,
            "workspace, datastores, resource checks",
        );
        other(
            "ARM operation polls",
            arm_get("GET operation poll"),
            Some(if del { subject_resources } else { 0 }),
            "one per long-running delete",
        );
        other(
            "ARM DELETE",
            arm_get("DELETE other"),
            Some(if del { subject_resources } else { 0 }),
            "one per subject resource",
        );
        other(
            "run history: run records",
            call("run_history.run"),
            Some(listed_jobs),
            "one per listed job",
        );
        other(
            "run history: child-run pages",
            call("run_history.children_page"),
            Some(subject_jobs),
            "one per matched job",
        );
        other("Graph lookups", call("directory.lookup"), Some(1), "one");
        other(
            "Log Analytics queries",
            call("telemetry.query"),
            Some(size.workspaces as u64),
            "one per workspace",
        );
        other(
            "Log Analytics purges sent",
            call("telemetry.send_purge"),
            None,
            "",
        );
        other(
            "Service Bus messages sent",
            bus_total,
            None,
            "each also received and completed by its trigger",
        );
        other(
            "function invocations",
            inv_total,
            None,
            &format!("{inv_secs:.1} s of invocation time in all"),
        );
        // Cost at list prices (BENCHMARKS.md gives the sources; assumptions marked there).
        let all = |k: &str| sum_in(&|a: &str| is_ws(a) || is_state(a), k) as f64;
        let write_class = all("write") + all("copy") + all("list");
        let read_class = all("read") + all("batch") + all("other");
        let storage_usd = write_class * PRICE_BLOB_WRITE_PER_10K / 1e4
            + read_class * PRICE_BLOB_READ_PER_10K / 1e4;
        let sb_ops = bus_total as f64 * 3.0;
        let sb_usd = sb_ops * PRICE_SB_OP_PER_M / 1e6;
        let exec_usd = inv_total as f64 * PRICE_FLEX_EXEC_PER_M / 1e6;
        // Upper bound: every invocation billed on its own (concurrent invocations on one
        // instance are billed once in Flex Consumption); lower bound: one instance for the
        // request's wall time.
        let gbs = inv_secs * FLEX_INSTANCE_GB;
        let gbs_usd = gbs * PRICE_FLEX_GBS;
        let gbs_low = v["secs"].as_f64().unwrap_or(0.0) * FLEX_INSTANCE_GB;
        let usd = storage_usd + sb_usd + exec_usd + gbs_usd;
        cost_total += usd;
        cost_lines.push_str(&format!(
            "| {} {kind} | {:.0} write-class + {:.0} read-class blob ops: ${:.5} | {:.0} Service Bus ops: ${:.5} | {inv_total} executions: ${:.5}; {:.1} GB-s: ${:.5} (one instance for the wall time: {:.1} GB-s, ${:.5}) | ${:.4} |\n",
            size.label, write_class, read_class, storage_usd, sb_ops, sb_usd, exec_usd, gbs, gbs_usd, gbs_low, gbs_low * PRICE_FLEX_GBS, usd
        ));
        tables.push_str(&t);
        let secs = v["secs"].as_f64().unwrap_or(f64::NAN);
        let ceil = if *kind == "export" {
            ceil_export
        } else {
            ceil_delete
        };
        rows.push(crate::Row {
            scenario: format!(
                "{} {kind}: {} workspaces, subject {} of {} blobs, {} resources, local runtime",
                size.label, size.workspaces, n, total_blobs, subject_resources
            ),
            unit: "s (lower is better)",
            ours: secs,
            ceiling: Some(ceil),
            azcopy: None,
            note: format!(
                "status {}; peak RSS {:.1} MB; {} slice invocations (p50 {:.0} ms, max {:.0} ms, {:.1} s busy), up to {} invocations at once; ceiling = raw {} of the same {} blobs",
                v["status"].as_str().unwrap_or("?"),
                v["rss_mb"].as_f64().unwrap_or(f64::NAN),
                v["slice_invocations"],
                v["slice_ms_p50"].as_f64().unwrap_or(0.0),
                v["slice_ms_max"].as_f64().unwrap_or(0.0),
                v["slice_busy_secs"].as_f64().unwrap_or(0.0),
                v["peak_concurrent_invocations"],
                if *kind == "export" { "Copy Blob + GET" } else { "Blob Batch deletes" },
                n
            ),
        });
    }
    tables.push_str(&format!(
        "\n#### {} cost per request at list prices (export + delete: ${:.4})\n\n| request | Blob transactions | Service Bus | Flex Consumption | total |\n|---|---|---|---|---:|\n{cost_lines}",
        size.label, cost_total
    ));
    Ok(DsrOutcome { rows, tables })
}

// List prices (USD) used for the cost table; BENCHMARKS.md cites each and marks assumptions.
/// Blob hot LRS: Write, Copy, List and Create Container operations, per 10,000 (assumption).
const PRICE_BLOB_WRITE_PER_10K: f64 = 0.065;
/// Blob hot LRS: Read and All other operations, per 10,000 (assumption); deletes are free.
const PRICE_BLOB_READ_PER_10K: f64 = 0.005;
/// Service Bus Standard operations beyond the 13M included, per million (assumption).
const PRICE_SB_OP_PER_M: f64 = 0.80;
/// Flex Consumption on demand: executions per million (assumption) and GB-s (modal.com).
const PRICE_FLEX_EXEC_PER_M: f64 = 0.40;
const PRICE_FLEX_GBS: f64 = 0.000026;
/// Instance memory billed while executing (Flex Consumption default 2,048 MB); invocation time
/// summed over invocations, so concurrent invocations on one instance are counted twice (an
/// upper bound).
const FLEX_INSTANCE_GB: f64 = 2.0;
