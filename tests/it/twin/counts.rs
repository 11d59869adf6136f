//! **Calls per request in the Azure twin** (issue 19, item 1): the built binary started as
//! deployed (as in `as_deployed`), one export and one delete of one seeded subject, and every
//! call it made counted where it landed — storage transactions by kind from Azurite's debug log
//! (method, URL and headers of each request), Service Bus sends, Graph, run-history and Log
//! Analytics calls from the stand-ins' own logs, ARM reads and writes and function invocations
//! through counting proxies (in front of the local ARM server, and between the host's
//! dispatcher and the handler). Each count is printed beside the minimum the work needs,
//! derived from what the request found (blobs, resources, workspaces), and must stay within
//! the bound stated for its kind: a check of call counts, never of time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::Response;
use azureml_dsr::adapters::local::arm_server::{self, ArmServerOptions};
use azureml_dsr::domain::report::FinalReport;
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::ports::blob::BlobStoreExt;
use azureml_dsr::ports::bus::queues;
use azureml_dsr::runtime::dispatcher::{Dispatcher, DispatcherOptions};
use azureml_dsr::seed::{seed, SeedOptions};
use azureml_dsr::state::StateStore;

use super::as_deployed::{admin_store, app_folder, Handler, ACCOUNTS, ARM_RESOURCE, STATE};
use super::*;
use crate::stand_ins::files::FilesStandIn;
use crate::stand_ins::server::BackgroundServer;
use crate::support::azurite::{trust_test_ca, Azurite};

const LAW: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.OperationalInsights/workspaces/law-counts";

/// An http proxy that forwards everything to `upstream` and records `(method, path?query)`.
struct Counting {
    base_url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    _server: BackgroundServer,
}

struct CountingState {
    upstream: String,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn count_and_forward(State(s): State<Arc<CountingState>>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    s.seen.lock().unwrap().push((parts.method.to_string(), pq));
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    match crate::support::forward::forward(&s.client, &s.upstream, &parts, body).await {
        Ok((builder, bytes)) => builder.body(Body::from(bytes)).unwrap(),
        Err(bad_gateway) => bad_gateway,
    }
}

impl Counting {
    fn start(name: &str, upstream: &str) -> Counting {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(CountingState {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            seen: seen.clone(),
        });
        let server = BackgroundServer::start(
            name,
            axum::Router::new()
                .fallback(count_and_forward)
                .with_state(state),
        );
        Counting {
            base_url: server.base_url.clone(),
            seen,
            _server: server,
        }
    }
    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn since(&self, from: usize) -> Vec<(String, String)> {
        self.seen.lock().unwrap()[from..].to_vec()
    }
}

/// One storage request from Azurite's debug log.
struct StorageCall {
    method: String,
    url: String,
    headers: Value,
}

/// The handler's storage requests in Azurite's debug log: those with a bearer token (the test's
/// own reads use Shared Key; Azurite's fetch of a copy source carries neither).
fn storage_calls(log: &Path) -> Vec<StorageCall> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line
            .split("BlobStorageContextMiddleware: RequestMethod=")
            .nth(1)
        else {
            continue;
        };
        let Some((method, rest)) = rest.split_once(" RequestURL=") else {
            continue;
        };
        let Some((url, rest)) = rest.split_once(" RequestHeaders:") else {
            continue;
        };
        let Some((headers, _)) = rest.rsplit_once(" ClientIP=") else {
            continue;
        };
        let headers: Value = serde_json::from_str(headers).unwrap_or(Value::Null);
        let bearer = headers["authorization"]
            .as_str()
            .is_some_and(|a| a.starts_with("Bearer "));
        if bearer {
            out.push(StorageCall {
                method: method.to_string(),
                url: url.to_string(),
                headers,
            });
        }
    }
    out
}

/// The billing class of a storage request. Azurite logs each sub-request of a batch too, with
/// the absolute URL from the batch body (host and port), where a request of its own has a URL
/// without the port: those are counted apart, as the deletes a batch carried.
fn storage_kind(c: &StorageCall) -> &'static str {
    let authority = c.url.split("://").nth(1).and_then(|r| r.split('/').next());
    if authority.is_some_and(|a| a.contains(':')) {
        return "batched delete";
    }
    let q = c.url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let has = |k: &str| {
        q.split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    match c.method.as_str() {
        "DELETE" => "delete",
        "POST" if q.contains("comp=batch") => "batch",
        // Get User Delegation Key (for the export link's SAS).
        "POST" => "delegation key",
        "PUT" if c.headers.get("x-ms-copy-source").is_some() => "copy",
        "PUT" => "write",
        "GET" if has("comp") && q.contains("comp=list") => "list",
        _ => "read",
    }
}

/// Counts of one request, by row of the table.
type Tally = BTreeMap<String, u64>;

fn bump(t: &mut Tally, k: impl Into<String>) {
    *t.entry(k.into()).or_default() += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_per_request_against_the_minimum() {
    let ca = trust_test_ca();
    let identity = IdentityStandIn::shared();
    let logs = tempfile::tempdir().unwrap();
    let debug_log = logs.path().join("azurite-debug.log");
    let az = Azurite::start_https_oauth_debug(&ACCOUNTS, &debug_log);
    let admin = admin_store(&az);
    let now = time::OffsetDateTime::now_utc();
    let truth = seed(
        &admin,
        &SeedOptions {
            users: 3,
            runs_per_user: 3,
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    let files = FilesStandIn::start();
    for info in &truth.infos {
        files.create_share(&info.storage_account, &info.file_share);
        for item in admin
            .list_all(&info.storage_account, &info.file_share, "")
            .await
            .unwrap()
        {
            let b = BlobRef::new(&info.storage_account, &info.file_share, &item.name);
            let (bytes, _) = admin.read_small(&b).await.unwrap();
            files.put_file(&info.storage_account, &info.file_share, &item.name, &bytes);
        }
        admin
            .delete_container(&info.storage_account, &info.file_share)
            .await
            .unwrap();
    }
    StateStore::new(admin.clone(), STATE)
        .put_scope(&truth.workspaces)
        .await
        .unwrap();
    let graph = GraphStandIn::start(
        truth
            .directory()
            .iter()
            .map(|e| {
                DirectoryUser::new(
                    &e.object_id.to_string(),
                    e.upn.as_ref().unwrap().as_str(),
                    e.display_name.as_deref().unwrap_or_default(),
                )
            })
            .collect(),
    );
    // Telemetry goes to one Log Analytics workspace holding the seed's rows.
    let la = LogAnalyticsStandIn::start();
    let lcp = azureml_dsr::adapters::local::control_plane::LocalControlPlane::new(admin.clone());
    let mut info0 =
        azureml_dsr::ports::control_plane::ControlPlane::workspace(&lcp, &truth.workspaces[0])
            .await
            .unwrap();
    info0.diagnostic_destinations = vec![LAW.to_string()];
    lcp.put_workspace(&info0).await.unwrap();
    la.add_workspace(LAW);
    la.add_table(
        LAW,
        "AmlRunEvent",
        &[
            ("TimeGenerated", "datetime"),
            ("Identity", "dynamic"),
            ("RunId", "string"),
            ("EventType", "string"),
        ],
    );
    let tel_container = azureml_dsr::adapters::local::telemetry::LocalTelemetry::container(&info0);
    let (bytes, _) = admin
        .read_small(&BlobRef::new(
            "telemetrylocal",
            tel_container,
            "AmlRunEvent.jsonl",
        ))
        .await
        .unwrap();
    let rows: Vec<Value> = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    la.insert(LAW, "AmlRunEvent", &rows);
    let mut run_docs = Vec::new();
    for ws in &truth.workspaces {
        let c = azureml_dsr::adapters::local::run_history::LocalRunHistory::container(ws);
        for b in admin
            .list_all("runhistorylocal", &c, "runs/")
            .await
            .unwrap()
        {
            run_docs.push(
                admin
                    .read_json::<Value>(&BlobRef::new("runhistorylocal", c.clone(), b.name))
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
    }
    // Run history and ARM page at their documented sizes, so page counts are the real ones.
    let alice_oid = truth.user("alice").unwrap().object_id.to_string();
    let her_runs = run_docs
        .iter()
        .filter(|d| d.to_string().contains(&alice_oid))
        .count() as u64;
    let run_history = stand_ins::run_history::RunHistoryStandIn::start(run_docs, 100);
    let arm = BackgroundServer::start(
        "arm",
        la.arm_router(Some(arm_server::router(
            admin.clone(),
            ArmServerOptions {
                page_size: 100,
                bearer: Some(identity.bearer(ARM_RESOURCE)),
                lro_polls: 0,
                retry_after: None,
                throttle: None,
            },
        ))),
    );
    let arm_proxy = Counting::start("arm counter", &arm.base_url);
    let host_dir = tempfile::tempdir().unwrap();
    let bus_queue = LocalQueue::open(host_dir.path().join("servicebus.sqlite")).unwrap();
    let all_queues: Vec<String> = [queues::INTAKE, queues::COMPLETIONS, queues::RESULTS]
        .into_iter()
        .map(str::to_string)
        .chain(
            azureml_dsr::domain::plan::ResourceType::ALL
                .iter()
                .map(|t| t.queue()),
        )
        .collect();
    let names: Vec<&str> = all_queues.iter().map(String::as_str).collect();
    let sb = ServiceBusStandIn::start(bus_queue.clone(), &names);

    let app = tempfile::tempdir().unwrap();
    let config = app_folder(app.path());
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/app-settings.json"),
    )
    .unwrap();
    let state_url = format!("{}/{STATE}", az.base_url);
    let settings = azureml_dsr::settings::render_app_settings(&spec, &|p| {
        Some(match p {
            "stateBlobEndpoint" => state_url.clone(),
            "serviceBusFqdn" => sb.base_url().to_string(),
            "logSalt" => "counts-salt-0123456789abcdef".into(),
            "retentionSweepSchedule" => "0 30 2 * * *".into(),
            "jobRetentionEnabled" => "False".into(),
            "jobRetentionDays" => "365".into(),
            "stateRetentionDays" => "90".into(),
            "telemetryPurgeEnabled" => "True".into(),
            "exportLinkDays" => "7".into(),
            "maxDeliveryCount" => "10".into(),
            "identityClientId" => "00000000-0000-0000-0000-0000000000c1".into(),
            _ => "placeholder".into(),
        })
    })
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ch = config.custom_handler.clone().unwrap();
    let files_template = files.template();
    let mut deployed_env: Vec<(String, String)> = settings.clone();
    deployed_env.extend(
        [
            ("DSR_ARM_ENDPOINT", arm_proxy.base_url.as_str()),
            ("DSR_GRAPH_ENDPOINT", graph.base_url()),
            ("DSR_LOGANALYTICS_ENDPOINT", la.query_url()),
            ("DSR_FILE_ENDPOINT", files_template.as_str()),
            ("DSR_RUN_HISTORY_ENDPOINT", run_history.base_url()),
            ("DSR_ARM_POLL_MS", "20"),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
            ("DSR_LOG", "warn"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    deployed_env.extend(identity.env());
    let _handler = Handler(
        Command::new(app.path().join(&ch.default_executable_path))
            .args(&ch.arguments)
            .current_dir(app.path().join(&ch.working_directory))
            .env_clear()
            .envs(deployed_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(&base).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "handler not ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The host's invocations go through a counter on their way to the handler.
    let invocations = Counting::start("invocation counter", &base);
    let dispatcher = Dispatcher::with_config(
        config,
        bus_queue.clone(),
        &invocations.base_url,
        DispatcherOptions {
            poll_interval: Duration::from_millis(20),
            settings: settings.iter().cloned().collect(),
            ..Default::default()
        },
    )
    .unwrap();

    let alice = truth.user("alice").unwrap().clone();
    let ws: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
    let mut tallies: Vec<(&str, Tally)> = Vec::new();
    for (id, kind) in [("COUNT-EXPORT", "export"), ("COUNT-DELETE", "delete")] {
        let storage_from = storage_calls(&debug_log).len();
        let (sb_from, graph_from, rh_from, laq_from, files_from) = (
            sb.requests().len(),
            graph.requests().len(),
            run_history.requests().len(),
            la.query_requests().len(),
            files.seen().len(),
        );
        let (arm_from, inv_from) = (arm_proxy.len(), invocations.len());
        let body = json!({"schemaVersion": "1.0", "requestId": id, "type": kind,
            "subject": {"upn": alice.upn}, "scope": {"workspaces": ws}});
        let mut msg = OutMessage::json(queues::INTAKE, id, &Value::Null);
        msg.body = body.to_string().into_bytes();
        bus_queue.send(msg).await.unwrap();
        dispatcher
            .drain_until_idle(Duration::from_secs(240))
            .await
            .unwrap();
        // Azurite writes its debug log asynchronously.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut t = Tally::new();
        // Azurite logs a batch's sub-requests twice, in order (one pass checks them, one runs
        // them): a batched delete counts once per batch.
        let mut in_batch = std::collections::BTreeSet::new();
        for c in &storage_calls(&debug_log)[storage_from..] {
            let kind = storage_kind(c);
            if kind == "batch" {
                in_batch.clear();
            }
            if kind != "batched delete" || in_batch.insert(c.url.clone()) {
                bump(&mut t, format!("storage {kind}"));
            }
        }
        for _ in &sb.requests()[sb_from..] {
            bump(&mut t, "service bus send");
        }
        for _ in &graph.requests()[graph_from..] {
            bump(&mut t, "graph");
        }
        for _ in &run_history.requests()[rh_from..] {
            bump(&mut t, "run history");
        }
        for _ in &la.query_requests()[laq_from..] {
            bump(&mut t, "log analytics query");
        }
        for _ in &files.seen()[files_from..] {
            bump(&mut t, "azure files");
        }
        for (method, path) in arm_proxy.since(arm_from) {
            let row = if path.contains("Microsoft.OperationalInsights") {
                "log analytics purge (ARM)"
            } else if method == "GET" {
                "arm read"
            } else {
                "arm write"
            };
            bump(&mut t, row);
        }
        for (_, path) in invocations.since(inv_from) {
            bump(
                &mut t,
                format!("invocation {}", path.trim_start_matches('/')),
            );
        }
        let report: FinalReport = StateStore::new(admin.clone(), STATE)
            .report(&RequestId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.counts.failed, 0, "{id}: {:?}", report.counts);
        tallies.push((kind, t));
    }

    // What the work is: her blobs (blob storage) and notebook files (the share), her ARM
    // resources and her runs, in the one workspace.
    let in_share = |key: &str| {
        let mut p = key.splitn(3, '/');
        let (a, c) = (p.next().unwrap(), p.next().unwrap());
        truth
            .infos
            .iter()
            .any(|i| i.storage_account == a && i.file_share == c)
    };
    let hers = truth.blobs_of("alice");
    let blobs = hers.iter().filter(|k| !in_share(k)).count() as u64;
    let notebooks = hers.iter().filter(|k| in_share(k)).count() as u64;
    let resources = truth.resources.values().filter(|o| *o == "alice").count() as u64;
    let w = truth.workspaces.len() as u64;
    assert!(blobs > 0 && notebooks > 0 && resources > 0 && her_runs > 0);
    let mut failures = Vec::new();
    eprintln!(
        "work: {blobs} blobs, {notebooks} notebook files, {resources} ARM resources, \
         {her_runs} runs, {w} workspace(s)"
    );
    eprintln!(
        "{:8} {:26} {:>6} {:>6} {:>6} {:>6}",
        "request", "kind", "count", "min", "ratio", "bound"
    );
    for (kind, t) in &tallies {
        let n = |k: &str| t.get(k).copied().unwrap_or(0);
        let slices = t
            .keys()
            .filter(|k| k.starts_with("invocation slice-"))
            .map(|k| n(k))
            .sum::<u64>();
        let invocations = t
            .keys()
            .filter(|k| k.starts_with("invocation "))
            .map(|k| n(k))
            .sum::<u64>();
        let export = *kind == "export";
        let (copies, deletes) = if export { (blobs, 0) } else { (0, blobs) };
        // (row, count, minimum, bound). Minimum: what the work needs at best (one listing page
        // per 5,000 blobs of a container, one copy per exported blob, one batch per 256
        // deletes, one ARM page per 100 resources, one run-history page per 100 runs). Bound:
        // the most this design may use; BENCHMARKS.md ("Counts in the Azure twin") says why
        // each kind above 1.1x is there.
        let rows: Vec<(&str, u64, u64, u64)> = vec![
            (
                "storage list",
                n("storage list"),
                2 * w,
                8 * her_runs + 2 * slices,
            ),
            (
                "storage read",
                n("storage read"),
                copies,
                2 * copies + 10 * invocations,
            ),
            ("storage write", n("storage write"), 1, 8 * invocations),
            (
                "storage copy",
                n("storage copy"),
                copies,
                copies + copies / 10,
            ),
            ("storage delete", n("storage delete"), 0, 2),
            (
                "storage batch",
                n("storage batch"),
                deletes.div_ceil(256),
                slices / 2,
            ),
            (
                "storage batched delete",
                n("storage batched delete"),
                deletes,
                deletes + deletes / 10,
            ),
            (
                "storage delegation key",
                n("storage delegation key"),
                u64::from(export),
                2,
            ),
            (
                "azure files",
                n("azure files"),
                notebooks,
                4 * notebooks + 4,
            ),
            ("arm read", n("arm read"), 10 * w, 3 * 10 * w),
            (
                "arm write",
                n("arm write"),
                if export { 0 } else { resources },
                if export {
                    0
                } else {
                    resources + resources / 10
                },
            ),
            ("run history", n("run history"), w, 6 * her_runs),
            ("graph", n("graph"), 1, 2),
            (
                "log analytics query",
                n("log analytics query"),
                1,
                2 * slices,
            ),
            (
                "log analytics purge",
                n("log analytics purge (ARM)"),
                u64::from(!export),
                1,
            ),
            (
                "service bus send",
                n("service bus send"),
                2 * slices + 1,
                2 * slices + 6,
            ),
            (
                "function invocations",
                invocations,
                slices + 2,
                2 * slices + 1,
            ),
        ];
        for (row, count, min, bound) in rows {
            let ratio = if min == 0 {
                "-".to_string()
            } else {
                format!("{:.2}", count as f64 / min as f64)
            };
            eprintln!("{kind:8} {row:26} {count:>6} {min:>6} {ratio:>6} {bound:>6}");
            if count < min || count > bound {
                failures.push(format!("{kind} {row}: {count} outside [{min}, {bound}]"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
