//! **The Azure twin, end to end.** The built binary runs exactly as the Functions host starts
//! it from the deployment package (`host.json` `customHandler`: executable, arguments,
//! working directory, `FUNCTIONS_CUSTOMHANDLER_PORT`), with exactly the app settings of
//! `infra/app-settings.json` plus endpoint overrides to loopback stand-ins and the platform's
//! managed-identity variables: Azurite over https with bearer tokens for every storage
//! account, the local ARM server (behind the Log Analytics purge routes) for ARM, and the
//! Graph, Log Analytics, Azure Files (notebooks) and Service Bus stand-ins. The test side plays the Functions host:
//! the Service Bus stand-in feeds a queue the local dispatcher delivers from, over HTTP, to
//! the child process. Everything is asserted from Azurite's and the stand-ins' state, never
//! from the handler's own word — and the app folder must hold nothing new afterwards.
//!
//! One file, one test, above the usual size on purpose: the phases (deploy, holds and scope,
//! control messages, telemetry purge, review, reports, trace, export, delete, the empty app
//! folder) run against one deployed process and one set of stand-ins, each phase reading what
//! the earlier ones left; split into tests they would each need the whole deployment again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use azureml_dsr::adapters::azure::blob::SharedKeys;
use azureml_dsr::adapters::azure::shared_key::DEV_KEY;
use azureml_dsr::adapters::local::arm_server::{self, ArmServerOptions};
use azureml_dsr::adapters::local::control_plane::ARM_ACCOUNT;
use azureml_dsr::domain::report::{FinalReport, FinalStatus};
use azureml_dsr::domain::request::RequestId;
use azureml_dsr::ports::blob::BlobStoreExt;
use azureml_dsr::ports::bus::queues;
use azureml_dsr::runtime::dispatcher::{Dispatcher, DispatcherOptions};
use azureml_dsr::runtime::host_config::HostConfig;
use azureml_dsr::seed::{seed, SeedOptions, SeedTruth};
use azureml_dsr::state::StateStore;

use super::*;
use crate::stand_ins::files::FilesStandIn;
use crate::stand_ins::server::BackgroundServer;
use crate::support::azurite::{trust_test_ca, Azurite};

pub(super) const STATE: &str = "dsrstate";
pub(super) const ACCOUNTS: [&str; 5] = [
    "mlwstore0",
    ARM_ACCOUNT,
    "telemetrylocal",
    STATE,
    "runhistorylocal",
];
pub(super) const ARM_RESOURCE: &str = "https://management.azure.com";
const LAW: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.OperationalInsights/workspaces/law-twin";

/// The test's own view of Azurite: Shared Key over the same https endpoint.
pub(super) fn admin_store(az: &Azurite) -> Arc<dyn BlobStore> {
    Arc::new(AzureBlobStore::new(AzureBlobConfig::new(
        Endpoints::Template(format!("{}/{{account}}", az.base_url)),
        Auth::SharedKey(SharedKeys::default().fallback(DEV_KEY)),
    )))
}

/// A deployment package's layout: host.json, the function folders beside it, and the binary
/// where `defaultExecutablePath` says.
pub(super) fn app_folder(dir: &Path) -> HostConfig {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(repo.join("host.json"), dir.join("host.json")).unwrap();
    for f in std::fs::read_dir(repo.join("functions")).unwrap() {
        let f = f.unwrap();
        let to = dir.join(f.file_name());
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(f.path().join("function.json"), to.join("function.json")).unwrap();
    }
    let config = HostConfig::load(dir, &BTreeMap::new()).unwrap();
    let exe = &config
        .custom_handler
        .as_ref()
        .unwrap()
        .default_executable_path;
    std::fs::copy(env!("CARGO_BIN_EXE_azureml-dsr"), dir.join(exe)).unwrap();
    config
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

/// Every seeded blob -> hash of its content (absent: deleted). (Listing an account's
/// containers is refused by Azurite's OAuth mode with Shared Key, so go by the seed.)
/// Notebooks live in the Files stand-in (their presence is recorded, as `file`).
async fn blobs(
    store: &dyn BlobStore,
    files: &FilesStandIn,
    truth: &SeedTruth,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in truth.blobs.keys() {
        let mut p = key.splitn(3, '/');
        let b = BlobRef::new(p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
        if is_share(truth, &b) {
            if files.files(&b.account, &b.container).contains(&b.name) {
                out.insert(key.clone(), "file".into());
            }
            continue;
        }
        match store.read_small(&b).await {
            Ok((bytes, _)) => {
                out.insert(key.clone(), azureml_dsr::domain::ids::sha256_hex(&bytes));
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => panic!("{key}: {e}"),
        }
    }
    out
}

fn is_share(truth: &SeedTruth, b: &BlobRef) -> bool {
    truth
        .infos
        .iter()
        .any(|i| i.storage_account == b.account && i.file_share == b.container)
}

pub(super) struct Handler(pub(super) Child);
impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_delete_through_the_production_adapters_as_deployed() {
    let ca = trust_test_ca();
    let identity = IdentityStandIn::shared();
    let az = Azurite::start_https_oauth(&ACCOUNTS);
    let admin = admin_store(&az);
    let now = time::OffsetDateTime::now_utc();
    let truth = seed(
        &admin,
        &SeedOptions {
            users: 4,
            runs_per_user: 3,
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    // Notebooks live in an Azure Files share: move the seeded ones into the Files stand-in.
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
    // The state account holds the scope (as `azureml-dsr workspace add` writes it).
    StateStore::new(admin.clone(), STATE)
        .put_scope(&truth.workspaces)
        .await
        .unwrap();

    // Stand-ins.
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
    let la = LogAnalyticsStandIn::start();
    // Telemetry: the workspace's diagnostic settings send to a Log Analytics workspace (the
    // stand-in), which holds the seed's AmlRunEvent rows; a purge stays pending for a poll.
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
    let mut rows = Vec::new();
    let tel_container = azureml_dsr::adapters::local::telemetry::LocalTelemetry::container(&info0);
    let (bytes, _) = admin
        .read_small(&BlobRef::new(
            "telemetrylocal",
            tel_container,
            "AmlRunEvent.jsonl",
        ))
        .await
        .unwrap();
    for line in String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        rows.push(serde_json::from_str::<Value>(line).unwrap());
    }
    la.insert(LAW, "AmlRunEvent", &rows);
    la.set_pending_polls(1);
    // Run history answers with the seed's run records (who created each job, its children).
    let mut run_docs = Vec::new();
    for ws in &truth.workspaces {
        let c = azureml_dsr::adapters::local::run_history::LocalRunHistory::container(ws);
        for b in admin
            .list_all("runhistorylocal", &c, "runs/")
            .await
            .unwrap()
        {
            let doc: Value = admin
                .read_json(&BlobRef::new("runhistorylocal", c.clone(), b.name))
                .await
                .unwrap()
                .unwrap();
            run_docs.push(doc);
        }
    }
    assert!(!run_docs.is_empty());
    let run_history = stand_ins::run_history::RunHistoryStandIn::start(run_docs, 2);
    let arm = BackgroundServer::start(
        "arm",
        la.arm_router(Some(arm_server::router(
            admin.clone(),
            ArmServerOptions {
                page_size: 2,
                bearer: Some(identity.bearer(ARM_RESOURCE)),
                lro_polls: 1,
                retry_after: None,
                throttle: None,
            },
        ))),
    );
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

    // The app folder and the process, as the host starts it.
    let app = tempfile::tempdir().unwrap();
    let config = app_folder(app.path());
    let files_before = files_under(app.path());
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/app-settings.json"),
    )
    .unwrap();
    let state_url = format!("{}/{STATE}", az.base_url);
    let settings = azureml_dsr::settings::render_app_settings(&spec, &|p| {
        Some(match p {
            "stateBlobEndpoint" => state_url.clone(),
            "serviceBusFqdn" => sb.base_url().to_string(),
            "logSalt" => "twin-salt-0123456789abcdef".into(),
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
    // The environment of the deployed app: its settings, endpoint overrides to the stand-ins
    // (production defaults otherwise), the platform's managed-identity variables, and the
    // test CA (Azurite's certificate) trusted as a machine trusts Azure's.
    let files_template = files.template();
    let mut deployed_env: Vec<(String, String)> = settings.clone();
    deployed_env.extend(
        [
            ("DSR_ARM_ENDPOINT", arm.base_url.as_str()),
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
    let handler = Handler(
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
    // An operator's CLI in Azure mode, same settings, another empty folder: the legal holds
    // and the scope it manages are the ones the handler reads (the state account).
    let operator = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
            .args(args)
            .arg("--json")
            .current_dir(operator.path())
            .env_clear()
            .envs(deployed_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
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

    let dispatcher = Dispatcher::with_config(
        config,
        bus_queue.clone(),
        &base,
        DispatcherOptions {
            poll_interval: Duration::from_millis(20),
            settings: settings.iter().cloned().collect(),
            ..Default::default()
        },
    )
    .unwrap();

    let alice = truth.user("alice").unwrap().clone();
    let before_blobs = blobs(admin.as_ref(), &files, &truth).await;
    let before_resources = crate::support::pipeline::seeded_resources(admin.as_ref(), &truth).await;
    let ws: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
    let scope = cli(&["workspace", "list"]);
    assert_eq!(
        scope,
        json!(ws),
        "the CLI reads the scope from the state account"
    );
    let alice_oid = alice.object_id.to_string();
    let holds = cli(&[
        "hold",
        "add",
        "--id",
        "TWIN-HOLD",
        "--reason",
        "litigation",
        "--subject",
        &alice_oid,
        "--type",
        "compute",
    ]);
    assert_eq!(holds["holds"][0]["id"], "TWIN-HOLD");
    assert!(std::fs::read_dir(operator.path()).unwrap().next().is_none());
    for (id, kind) in [("TWIN-EXPORT", "export"), ("TWIN-DELETE", "delete")] {
        // The ticketing system's message, as Service Bus delivers it.
        let body = json!({"schemaVersion": "1.0", "requestId": id, "type": kind,
            "subject": {"upn": alice.upn}, "scope": {"workspaces": ws}});
        let mut msg = OutMessage::json(queues::INTAKE, id, &Value::Null);
        msg.body = body.to_string().into_bytes();
        bus_queue.send(msg).await.unwrap();
        dispatcher
            .drain_until_idle(Duration::from_secs(240))
            .await
            .unwrap();
    }
    // Control messages through the deployed handler: an extension beyond GDPR's two further
    // months and an unknown envelope version are refused, a cancel of a request never
    // received is remembered; each answered on dsr-results through the production sender.
    // (Both requests wait in needs review, where a valid cancel or extension would apply.)
    for (n, body) in [
        json!({"type": "extend", "version": 1, "requestId": "TWIN-EXPORT", "days": 120, "reason": "complex"}),
        json!({"type": "cancel", "version": 1, "requestId": "TWIN-NOBODY"}),
        json!({"type": "cancel", "version": 2, "requestId": "TWIN-DELETE"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut msg = OutMessage::json(queues::INTAKE, format!("control-{n}"), &Value::Null);
        msg.body = body.to_string().into_bytes();
        bus_queue.send(msg).await.unwrap();
    }
    dispatcher
        .drain_until_idle(Duration::from_secs(120))
        .await
        .unwrap();
    // Delivered concurrently: compared in order of request and code.
    let mut refusals: Vec<(String, String)> = sb
        .accepted()
        .into_iter()
        .filter(|a| a.message.queue == queues::RESULTS && !a.duplicate)
        .map(|a| serde_json::from_slice::<Value>(&a.message.body).unwrap())
        .filter(|v| v["event"] == "control_rejected")
        .map(|v| {
            assert!(v["reason"].as_str().is_some_and(|r| r.len() > 10), "{v}");
            (
                v["requestId"].as_str().unwrap().to_string(),
                v["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    refusals.sort();
    assert_eq!(
        refusals,
        [
            ("TWIN-DELETE".to_string(), "unsupported_version".to_string()),
            (
                "TWIN-EXPORT".to_string(),
                "extension_beyond_legal_limit".to_string()
            ),
        ]
    );
    // A cancel for a request never received is remembered, not refused: on a queue without
    // sessions it may have overtaken its request (`cancel_pending`).
    assert!(sb
        .accepted()
        .into_iter()
        .filter(|a| a.message.queue == queues::RESULTS && !a.duplicate)
        .map(|a| serde_json::from_slice::<Value>(&a.message.body).unwrap())
        .any(|v| v["event"] == "cancel_pending" && v["requestId"] == "TWIN-NOBODY"));
    // Telemetry: the purge was requested once and is pending; her rows are still there.
    let rows_of = |oid: &str| {
        la.rows(LAW, "AmlRunEvent")
            .iter()
            .filter(|r| r["Identity"]["oid"] == oid)
            .count()
    };
    let alice_oid_s = alice.object_id.to_string();
    let rows_before = rows_of(&alice_oid_s);
    assert!(rows_before > 0, "the seed gave her telemetry");
    assert_eq!(la.purges().len(), 1, "{:?}", la.purges());
    let others_rows = la.rows(LAW, "AmlRunEvent").len() - rows_before;
    // The timer (as the host fires it) polls the purge until it completes.
    let v2 = BlobRef::new(STATE, "dsr-reports", "TWIN-DELETE/certificate.v2.json");
    let mut polls = 0;
    while admin.read_small(&v2).await.is_err() {
        polls += 1;
        assert!(polls <= 4, "the purge never completed: {:?}", la.purges());
        assert_eq!(
            dispatcher
                .invoke_timer_now("retention-sweep")
                .await
                .unwrap(),
            Some(200)
        );
    }
    assert!(polls >= 2, "pending for one poll, then completed");
    assert_eq!(rows_of(&alice_oid_s), 0, "her rows are purged");
    assert_eq!(
        la.rows(LAW, "AmlRunEvent").len(),
        others_rows,
        "others' rows stay"
    );
    assert_eq!(la.purges().len(), 1, "the purge was never sent twice");

    // Review (issue 14, item 3): the assets only a display name ties to her — hers and
    // those of Ali, who shares it — were listed and left alone. The CLI lists them (Azure
    // mode), an approval of hers arrives as a control message on the intake queue (the
    // deployed handler applies it through the production adapters), and a rejection of
    // Ali's is recorded with the CLI.
    let candidates_of = |who: &str| -> Vec<String> {
        truth
            .resources
            .iter()
            .filter(|(_, o)| **o == azureml_dsr::seed::review_owner(who))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let (hers, alis) = (candidates_of("alice"), candidates_of("ali"));
    assert!(!hers.is_empty() && !alis.is_empty());
    let listed = tokio::task::block_in_place(|| cli(&["review", "TWIN-DELETE"]));
    let listed_ids: BTreeSet<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["resourceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed_ids,
        hers.iter().chain(&alis).cloned().collect::<BTreeSet<_>>(),
        "{listed:#}"
    );
    let pending_resources =
        crate::support::pipeline::seeded_resources(admin.as_ref(), &truth).await;
    for id in hers.iter().chain(&alis) {
        assert!(
            pending_resources.contains_key(id),
            "{id} untouched before approval"
        );
    }
    let approve = json!({"type": "approve", "version": 1, "requestId": "TWIN-DELETE",
        "items": hers, "approver": "dpo@contoso.com", "reason": "confirmed with the subject"});
    let mut msg = OutMessage::json(queues::INTAKE, "TWIN-APPROVE", &Value::Null);
    msg.body = approve.to_string().into_bytes();
    bus_queue.send(msg).await.unwrap();
    dispatcher
        .drain_until_idle(Duration::from_secs(240))
        .await
        .unwrap();
    let mut reject = vec!["review", "reject", "TWIN-DELETE"];
    reject.extend(alis.iter().map(String::as_str));
    reject.extend(["--reason", "her namesake's", "--by", "dpo@contoso.com"]);
    let rejected = tokio::task::block_in_place(|| cli(&reject));
    let last = rejected["reportVersion"].as_u64().unwrap();
    assert_eq!(rejected["status"], "completed", "{rejected}");
    let newest: FinalReport = admin
        .read_json(&BlobRef::new(
            STATE,
            "dsr-reports",
            format!("TWIN-DELETE/certificate.v{last}.json"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.status, FinalStatus::Completed, "{newest:#?}");
    let decided: Vec<_> = newest.results.iter().flat_map(|r| &r.review).collect();
    assert!(decided.iter().all(|i| i
        .decision
        .as_ref()
        .is_some_and(|d| d.approved == hers.contains(&i.resource_id))));
    drop(handler);

    // The reports, audit records and results, read from the state account on Azurite.
    let state = StateStore::new(admin.clone(), STATE);
    let v2_report: FinalReport = admin.read_json(&v2).await.unwrap().unwrap();
    // Purges done; her display-name-only assets still awaited review at that point.
    assert_eq!(v2_report.status, FinalStatus::NeedsReview, "{v2_report:#?}");
    let report = |id: &'static str| {
        let state = state.clone();
        async move {
            state
                .report(&RequestId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no report for {id} in the state account"))
        }
    };
    // The operator's view in Azure mode agrees with the state account: the lifecycle waited
    // in needs review (display-name-only assets; the purge's end left it there) until the
    // last review decision above completed the request.
    let status = cli(&["status", "TWIN-DELETE"]);
    assert_eq!(
        status["status"], "completed",
        "needs review until the decisions, then completed"
    );
    let states: Vec<&str> = status["lifecycle"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "received",
            "planned",
            "in_progress",
            "needs_review",
            "completed"
        ]
    );
    assert_eq!(cli(&["report", "TWIN-EXPORT"])["requestId"], "TWIN-EXPORT");
    let export: FinalReport = report("TWIN-EXPORT").await;
    let delete: FinalReport = report("TWIN-DELETE").await;
    assert_eq!(export.status, FinalStatus::NeedsReview, "{export:#?}");
    assert_eq!(delete.status, FinalStatus::NeedsReview, "{delete:#?}");
    for r in [&export, &delete] {
        let audit = state.audit_ref(&r.request_id);
        assert!(
            admin.read_small(&audit).await.is_ok(),
            "no audit record {audit}"
        );
    }
    let results: Vec<_> = sb
        .accepted()
        .into_iter()
        .filter(|a| a.message.queue == queues::RESULTS)
        .map(|a| serde_json::from_slice::<Value>(&a.message.body).unwrap())
        .collect();
    for id in ["TWIN-EXPORT", "TWIN-DELETE"] {
        assert!(
            results.iter().any(|r| r["requestId"] == id),
            "no result message for {id}: {results:?}"
        );
    }
    // One request, one trace, through the production Service Bus sender: every message the
    // handler sent carries a W3C traceparent as the Diagnostic-Id application property (a
    // custom header; names arrive lower-cased), one trace per request.
    let mut traces: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for a in sb.accepted().into_iter().filter(|a| !a.duplicate) {
        let tp = a
            .message
            .application_properties
            .get("diagnostic-id")
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no Diagnostic-Id on {}", a.message.message_id));
        let ctx = azureml_dsr::trace::TraceContext::parse(tp)
            .unwrap_or_else(|| panic!("not a traceparent: {tp}"));
        let request = a.message.correlation_id.clone().unwrap_or_default();
        traces.entry(request).or_default().insert(ctx.trace_id);
    }
    for id in ["TWIN-EXPORT", "TWIN-DELETE"] {
        assert_eq!(traces.get(id).map(|t| t.len()), Some(1), "{id}: {traces:?}");
    }
    assert!(
        results
            .iter()
            .filter(|r| r["requestId"] == "TWIN-DELETE" && r["event"] == "state_changed")
            .count()
            >= 5,
        "{results:?}"
    );

    // Export: every one of the subject's blobs was copied into the export area.
    let exported = admin
        .list_all(STATE, "dsr-exports", "TWIN-EXPORT/")
        .await
        .unwrap();
    assert!(
        exported.len() >= truth.blobs_of(&alice.key).len(),
        "{} exported blobs for {} of the subject's",
        exported.len(),
        truth.blobs_of(&alice.key).len()
    );
    // Each exported item is in the export area with the checksum the manifest states.
    let mut checked = 0;
    for item in export.results.iter().flat_map(|r| &r.items) {
        if let azureml_dsr::domain::slice::ItemStatus::Exported { path, sha256, .. } = &item.status
        {
            let (bytes, _) = admin
                .read_small(&BlobRef::new(STATE, "dsr-exports", path.clone()))
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                &azureml_dsr::domain::ids::sha256_hex(&bytes),
                sha256,
                "{path}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked as u64, export.counts.exported);
    let exported_keys: BTreeSet<String> = export
        .results
        .iter()
        .flat_map(|r| &r.items)
        .filter(|o| {
            matches!(
                o.status,
                azureml_dsr::domain::slice::ItemStatus::Exported { .. }
            )
        })
        .filter_map(|o| o.item.blob_key())
        .collect();
    for key in truth.blobs_of(&alice.key) {
        assert!(exported_keys.contains(key), "{key} was not exported");
    }
    // The archive, downloaded as the person would: through the result message's link
    // (a user delegation SAS: read-only, https-only, no credential), unzipped by Python's
    // zipfile and checked against the seeded data; `export verify` catches a flipped byte.
    let exp_msg = results
        .iter()
        .find(|r| r["requestId"] == "TWIN-EXPORT" && r["exportLink"].is_string())
        .expect("an export result message with its link");
    let link = exp_msg["exportLink"].as_str().expect("an export link");
    assert!(link.starts_with("https://"), "{link}");
    for part in ["sp=r&", "spr=https&", "skoid=", "sig="] {
        assert!(link.contains(part), "{part} missing from {link}");
    }
    // Valid for the configured 7 days (the user-delegation-key maximum), no longer.
    let se = url::Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "se")
        .map(|(_, v)| v.to_string())
        .unwrap();
    let se =
        time::OffsetDateTime::parse(&se, &time::format_description::well_known::Rfc3339).unwrap();
    let left = se - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::days(6) && left <= time::Duration::days(7),
        "link expires in {left}"
    );
    let zip_dir = tempfile::tempdir().unwrap();
    let zip = zip_dir.path().join("export.zip");
    // Python downloads it (urllib over https, trusting the test CA via SSL_CERT_FILE): a
    // standard client, no credential but the link.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())")
        .arg(link)
        .arg(&zip)
        .env("SSL_CERT_FILE", ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "download through the link: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let matched = crate::support::archive_check::check_archive(&zip, &export, &before_blobs);
    let seeded_blobs = truth
        .blobs_of(&alice.key)
        .into_iter()
        .filter(|k| before_blobs.get(*k).is_some_and(|h| h.len() == 64))
        .count();
    assert!(seeded_blobs > 0);
    assert_eq!(matched, seeded_blobs, "each of her blobs, byte for byte");
    crate::support::archive_check::flipped_byte_is_detected(&zip);

    // Delete: the subject's blobs and resources are gone, everyone else's unchanged.
    let after_blobs = blobs(admin.as_ref(), &files, &truth).await;
    let after_resources = crate::support::pipeline::seeded_resources(admin.as_ref(), &truth).await;
    // Hers: by evidence, and the display-name-only items approved above.
    let approved_owner = azureml_dsr::seed::review_owner(&alice.key);
    let theirs: BTreeSet<String> = truth
        .blobs
        .iter()
        .filter(|(_, o)| **o == alice.key || **o == approved_owner)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(!theirs.is_empty());
    for key in &theirs {
        assert!(!after_blobs.contains_key(key), "{key} survived the delete");
    }
    for (key, hash) in &before_blobs {
        if !theirs.contains(key) {
            assert_eq!(after_blobs.get(key), Some(hash), "{key} changed");
        }
    }
    // Her compute is under the legal hold the CLI placed: kept, and the report says so.
    let (held, their_resources): (BTreeSet<&String>, BTreeSet<&String>) = truth
        .resources
        .iter()
        .filter(|(_, o)| **o == alice.key || **o == approved_owner)
        .map(|(id, _)| id)
        .partition(|id| id.contains("/computes/"));
    assert!(!their_resources.is_empty() && !held.is_empty());
    assert!(
        delete.counts.held >= held.len() as u64,
        "{:?}",
        delete.counts
    );
    for (id, hash) in &before_resources {
        if their_resources.contains(id) {
            assert!(
                !after_resources.contains_key(id),
                "{id} survived the delete"
            );
        } else {
            assert_eq!(after_resources.get(id), Some(hash), "{id} changed");
        }
    }
    // The handler wrote nothing to the local disk.
    assert_eq!(files_under(app.path()), files_before);
    // Every token the handler asked for came from the platform identity endpoint.
    assert!(identity
        .requested()
        .iter()
        .any(|r| r.contains("storage.azure.com")));
}
