//! The custom handler over real HTTP on a random port, with the payload shapes the Functions
//! host sends (tests/fixtures/functions-host, sources in its README) and with garbage.

use std::collections::BTreeMap;
use std::sync::Arc;

use azureml_dsr::adapters::local::memory_bus::MemoryBus;
use azureml_dsr::app::App;
use azureml_dsr::functions::Settings;
use azureml_dsr::wiring::{local_services, local_store, LocalPaths};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/functions-host"
);

struct Server {
    base: String,
    bus: Arc<MemoryBus>,
    _dir: tempfile::TempDir,
}

async fn spawn() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let paths = LocalPaths::new(dir.path());
    let bus = Arc::new(MemoryBus::new());
    let svc = local_services(
        &paths,
        local_store(&paths),
        bus.clone(),
        Settings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let invoker = azureml_dsr::app::invoker(App::with_services(svc));
    tokio::spawn(azureml_dsr::startup::serve(
        listener,
        invoker,
        std::future::pending(),
    ));
    Server {
        base,
        bus,
        _dir: dir,
    }
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
}

async fn post(
    s: &Server,
    function: &str,
    body: impl Into<reqwest::Body>,
    content_type: &str,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/{function}", s.base))
        .header("content-type", content_type)
        .header(
            "x-azure-functions-invocationid",
            "00000000-0000-0000-0000-0000000000aa",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{function}: content-type {ct}"
    );
    (status, r.json().await.unwrap())
}

fn assert_host_response(v: &Value) {
    assert!(v.get("Outputs").is_some_and(Value::is_object), "{v}");
    assert!(v.get("Logs").is_some_and(Value::is_array), "{v}");
    assert!(v.get("ReturnValue").is_some(), "{v}");
}

#[tokio::test]
async fn readiness_answers() {
    let s = spawn().await;
    let r = reqwest::get(&s.base).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn host_fixtures_are_accepted() {
    let s = spawn().await;
    let cases = [
        (
            "dsr-intake",
            fixture("derived-servicebus-session-json-body-request.json"),
        ),
        (
            "dsr-intake",
            fixture("msdocs-customhandler-queue-request.json"),
        ),
        (
            "retention-sweep",
            fixture("derived-timer-request-useMonitor-false.json"),
        ),
        (
            "workspace-deleted",
            fixture("derived-eventgrid-aml-workspace-delete-request.json"),
        ),
    ];
    for (f, body) in cases {
        let (status, v) = post(&s, f, body.to_string(), "application/json").await;
        assert_eq!(status, 200, "{f}: {v}");
        assert_host_response(&v);
    }
    // Doc samples are arrays of events (Event Grid and CloudEvents schemas), as objects and as strings.
    for name in [
        "msdocs-eventgrid-rg-resource-delete-success.json",
        "msdocs-eventgrid-subscription-resource-delete-success.json",
        "msdocs-eventgrid-aml-run-completed.json",
        "msdocs-eventgrid-aml-run-completed.cloudevent.json",
        "msdocs-eventgrid-aml-model-registered.json",
        "msdocs-eventgrid-aml-model-deployed.json",
        "msdocs-eventgrid-aml-dataset-drift-detected.json",
        "msdocs-eventgrid-aml-run-status-changed.json",
    ] {
        let ev = fixture(name);
        for data in [ev.clone(), ev[0].clone(), Value::String(ev[0].to_string())] {
            let env = json!({"Data": {"event": data}, "Metadata": {"sys": {"MethodName": "x"}}});
            let (status, v) =
                post(&s, "workspace-deleted", env.to_string(), "application/json").await;
            assert_eq!(status, 200, "{name}: {v}");
            assert_host_response(&v);
        }
    }
    // The two non-DSR Service Bus payloads were rejected (readable reason), not failed.
    let rejected: Vec<Value> = s
        .bus
        .sent()
        .iter()
        .map(|m| serde_json::from_slice(&m.body).unwrap())
        .collect();
    assert_eq!(rejected.len(), 2);
    assert!(rejected
        .iter()
        .all(|r| r["status"] == "rejected" && r["reason"].as_str().is_some_and(|x| !x.is_empty())));
}

#[tokio::test]
async fn garbage_gets_a_json_4xx_naming_the_problem() {
    let s = spawn().await;
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "dsr-intake",
            b"not json".to_vec(),
            "application/json",
            400,
            "JSON",
        ),
        (
            "dsr-intake",
            b"[1,2]".to_vec(),
            "application/json",
            400,
            "array",
        ),
        (
            "dsr-intake",
            b"{}".to_vec(),
            "application/json",
            400,
            "Data",
        ),
        (
            "dsr-intake",
            br#"{"Data":{"message":5}}"#.to_vec(),
            "application/json",
            400,
            "number",
        ),
        (
            "dsr-intake",
            br#"{"Data":{"message":"x"}}"#.to_vec(),
            "text/plain",
            200,
            "",
        ),
        (
            "slice-jobs",
            br#"{"Data":{"message":"{\"not\":\"a task\"}"}}"#.to_vec(),
            "application/json",
            400,
            "slice task",
        ),
        (
            "retention-sweep",
            br#"{"Data":{"timer":{"IsPastDue":"yes"}}}"#.to_vec(),
            "application/json",
            400,
            "IsPastDue",
        ),
        (
            "workspace-deleted",
            br#"{"Data":{"event":{"id":"1"}}}"#.to_vec(),
            "application/json",
            400,
            "eventType",
        ),
        (
            "dsr-intake",
            vec![b' '; 5 * 1024 * 1024],
            "application/json",
            413,
            "",
        ),
    ];
    for (f, body, ct, want, needle) in cases {
        let (status, v) = post(&s, f, body, ct).await;
        assert_eq!(status, want, "{f}: {v}");
        if want >= 400 {
            let detail = v["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains(needle),
                "{f}: {detail:?} should mention {needle:?}"
            );
        }
    }
    let (status, v) = post(&s, "no-such-function", b"{}".to_vec(), "application/json").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"], "unknown_function");
}

#[tokio::test]
async fn the_binary_serves_get_on_the_host_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("handler")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("DSR_DATA_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let mut ok = false;
    for _ in 0..400 {
        if let Ok(r) = reqwest::get(&url).await {
            ok = r.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "handler did not answer GET /");
}

mod as_deployed {
    //! The binary started the way the Functions host starts it in the deployed app: an empty
    //! working folder and only the app settings `infra/app-settings.json` declares (no platform
    //! identity endpoint, unreachable Azure). It must either refuse to start, naming the setting,
    //! or serve with Azure adapters and fail invocations with a clear error — and never create a
    //! local store, queue or file.
    use std::process::{Command, Stdio};

    fn infra_settings() -> Vec<(String, String)> {
        let spec = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/app-settings.json"
        ))
        .unwrap();
        azureml_dsr::settings::render_app_settings(&spec, &|p| {
            Some(
                match p {
                    "stateBlobEndpoint" => "https://stdsrstate123.blob.core.windows.net/",
                    "serviceBusFqdn" => "sb-dsr-abc.servicebus.windows.net",
                    "logSalt" => "4b9e2a4e-0d5f-4c3b-8a51-7d3c1f2e9b60",
                    "retentionSweepSchedule" => "0 30 2 * * *",
                    "jobRetentionEnabled" => "False",
                    "jobRetentionDays" => "365",
                    "stateRetentionDays" => "90",
                    "telemetryPurgeEnabled" => "False",
                    "exportLinkDays" => "7",
                    "maxDeliveryCount" => "10",
                    _ => "placeholder",
                }
                .to_string(),
            )
        })
        .unwrap()
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn handler(dir: &std::path::Path, settings: &[(String, String)], port: u16) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_azureml-dsr"));
        c.arg("handler")
            .current_dir(dir)
            .env_clear()
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdin(Stdio::null());
        c
    }

    fn entries(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn without_a_required_setting_it_exits_at_once_naming_it() {
        for missing in [
            "DSR_STATE_ACCOUNT_URL",
            "DSR_SERVICEBUS_NAMESPACE",
            "DSR_LOG_SALT",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let settings: Vec<_> = infra_settings()
                .into_iter()
                .filter(|(k, _)| k != missing)
                .collect();
            let out = handler(dir.path(), &settings, free_port())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{missing}: started anyway");
            assert!(stderr.contains(missing), "{missing}: {stderr}");
            assert!(
                entries(dir.path()).is_empty(),
                "{missing}: wrote {:?}",
                entries(dir.path())
            );
        }
    }

    #[test]
    fn a_local_setting_in_azure_mode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = infra_settings();
        settings.push(("DSR_STORAGE".into(), "local".into()));
        let out = handler(dir.path(), &settings, free_port())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("DSR_STORAGE"));
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn with_the_infra_settings_alone_it_serves_and_fails_invocations_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = handler(dir.path(), &infra_settings(), port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..400 {
            if client.get(&base).send().await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(ready, "handler did not answer GET /");
        let dsr = serde_json::json!({"schemaVersion": "1.0", "requestId": "AS-DEPLOYED-1", "type": "export",
            "subject": {"objectId": "11111111-1111-1111-1111-111111111111"},
            "scope": {"workspaces": ["/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"]}});
        let envelope = serde_json::json!({
            "Data": {"message": serde_json::to_string(&dsr.to_string()).unwrap()},
            "Metadata": {"MessageId": "\"m-1\"", "DeliveryCount": "1"}
        });
        let resp = client
            .post(format!("{base}/dsr-intake"))
            .json(&envelope)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        let _ = child.kill();
        let _ = child.wait();
        // No identity here: the Azure adapters cannot get a token, and the host must retry.
        assert_eq!(status, 500, "{body}");
        let detail = body["detail"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            detail.contains("token") || detail.contains("credential"),
            "the error does not say why: {body}"
        );
        assert!(
            entries(dir.path()).is_empty(),
            "wrote {:?}",
            entries(dir.path())
        );
    }
}

mod hostile {
    //! Generated hostile payloads against the running handler over HTTP: random bytes, random
    //! JSON in every trigger slot, and valid-looking DSRs, slice tasks and completions with one
    //! field made hostile. Whatever arrives, the handler answers JSON with 200 (a DSR rejected
    //! with a reason is a success for the host) or a 4xx — never a 5xx, which would make the
    //! host retry garbage, never a dropped connection (a panic) — and keeps serving.
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const FUNCTIONS: [&str; 10] = [
        "dsr-intake",
        "dsr-aggregate",
        "slice-jobs",
        "slice-models",
        "slice-data",
        "slice-compute",
        "slice-notebooks",
        "slice-telemetry",
        "retention-sweep",
        "workspace-deleted",
    ];
    const WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w1";

    fn hostile_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,40}",
            Just(String::new()),
            Just("*".to_string()),
            Just("%".to_string()),
            Just("../../etc/passwd".to_string()),
            Just("/etc/passwd".to_string()),
            Just("a/../../b".to_string()),
            Just("C:\\Windows\\system32".to_string()),
            Just("\u{0}\u{202e}\u{feff}".to_string()),
            Just("00000000-0000-0000-0000-000000000000".to_string()),
            Just("x".repeat(70_000)),
            Just("é".repeat(5_000)),
            Just(WS.to_string()),
            Just(format!("{WS}/../../other")),
            Just("9999-99-99T99:99:99Z".to_string()),
        ]
    }

    fn hostile_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            Just(json!(u64::MAX)),
            hostile_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Valid-looking messages of each kind, before one field is made hostile.
    fn templates() -> Vec<Value> {
        let subject = json!({"objectId": "11111111-2222-3333-4444-555555555555", "upn": "a@contoso.com", "notebookAliases": ["a"]});
        vec![
            json!({"schemaVersion": "1.0", "requestId": "R-1", "type": "delete", "dryRun": false,
                   "subject": {"upn": "a@contoso.com"}, "scope": {"workspaces": [WS]}}),
            json!({"requestId": "R-1", "type": "delete", "dryRun": false, "subject": subject,
                   "workspace": WS, "resourceType": "jobs", "key": "w1-jobs", "hold": null, "chunk": 0}),
            json!({"requestId": "R-1", "key": "w1-jobs"}),
            json!({"IsPastDue": false, "ScheduleStatus": null}),
            json!({"id": "1", "eventType": "Microsoft.Resources.ResourceDeleteSuccess", "subject": WS,
                   "eventTime": "2026-01-01T00:00:00Z", "data": {"resourceUri": WS, "operationName": "Microsoft.MachineLearningServices/workspaces/delete"},
                   "dataVersion": "", "metadataVersion": "1", "topic": "/subscriptions/00000000-1111-2222-3333-444444444444"}),
        ]
    }

    /// Replace (or remove) the value at a random path of `v`.
    fn mutate(v: &mut Value, path: &[usize], new: Option<Value>) {
        let Some((&i, rest)) = path.split_first() else {
            if let Some(n) = new {
                *v = n;
            }
            return;
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                let key = m.keys().nth(i % m.len()).cloned().unwrap();
                if rest.is_empty() && new.is_none() {
                    m.remove(&key);
                } else {
                    mutate(m.get_mut(&key).unwrap(), rest, new);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                let n = a.len();
                mutate(&mut a[i % n], rest, new)
            }
            _ => {
                if let Some(n) = new {
                    *v = n;
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Body {
        Bytes(Vec<u8>),
        Envelope {
            slot: String,
            payload: Value,
            as_string: bool,
        },
    }

    fn body() -> impl Strategy<Value = Body> {
        let slot = prop_oneof![
            Just("message".to_string()),
            Just("mySbMsg".to_string()),
            Just("timer".to_string()),
            Just("event".to_string()),
            "[a-z]{0,8}",
        ];
        let mutated = (
            0..templates().len(),
            proptest::collection::vec(0usize..16, 0..4),
            proptest::option::weighted(0.85, hostile_value()),
        )
            .prop_map(|(t, path, new)| {
                let mut v = templates()[t].clone();
                mutate(&mut v, &path, new);
                v
            });
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512).prop_map(Body::Bytes),
            (slot.clone(), hostile_value(), any::<bool>()).prop_map(
                |(slot, payload, as_string)| {
                    Body::Envelope {
                        slot,
                        payload,
                        as_string,
                    }
                }
            ),
            (slot, mutated, any::<bool>()).prop_map(|(slot, payload, as_string)| Body::Envelope {
                slot,
                payload,
                as_string
            }),
        ]
    }

    #[test]
    fn generated_hostile_payloads_get_json_2xx_or_4xx_and_the_handler_keeps_serving() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(spawn());
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let seen = std::sync::Mutex::new(BTreeMap::<(String, u16), usize>::new());
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(
                &(proptest::sample::select(FUNCTIONS.to_vec()), body()),
                |(function, body)| {
                    let bytes = match body {
                        Body::Bytes(b) => b,
                        Body::Envelope {
                            slot,
                            payload,
                            as_string,
                        } => {
                            let p = if as_string {
                                Value::String(payload.to_string())
                            } else {
                                payload
                            };
                            json!({"Data": {slot: p}, "Metadata": {"DeliveryCount": "1", "MessageId": "\"m-1\""}})
                                .to_string()
                                .into_bytes()
                        }
                    };
                    let (status, v) =
                        rt.block_on(post(&server, function, bytes, "application/json"));
                    *seen
                        .lock()
                        .unwrap()
                        .entry((function.to_string(), status))
                        .or_default() += 1;
                    prop_assert!(
                        status == 200 || (400..500).contains(&status),
                        "{function}: {status} {v}"
                    );
                    if status >= 400 {
                        prop_assert!(v["detail"].is_string() || v["error"].is_string(), "{v}");
                    }
                    Ok(())
                },
            )
            .unwrap();
        let alive = rt.block_on(reqwest::get(&server.base)).unwrap();
        assert_eq!(alive.status(), 200);
        // Not vacuous: the generator reached both answers, and intake accepted envelopes
        // (answering 200 with a rejection) as well as refusing malformed ones.
        let seen = seen.into_inner().unwrap();
        eprintln!("hostile payloads, (function, status) -> count: {seen:?}");
        assert!(
            seen.contains_key(&("dsr-intake".to_string(), 200)),
            "{seen:?}"
        );
        assert!(
            seen.contains_key(&("dsr-intake".to_string(), 400)),
            "{seen:?}"
        );
        assert!(
            seen.keys()
                .any(|(f, s)| f.starts_with("slice-") && *s == 400),
            "{seen:?}"
        );
        // Result messages are well-formed, and every rejection carries a readable reason.
        for m in server.bus.sent().iter().filter(|m| {
            m.queue == "dsr-results"
                && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
        }) {
            let r: Value = serde_json::from_slice(&m.body).unwrap();
            assert!(r["status"].is_string(), "{r}");
            if r["status"] == "rejected" {
                assert!(r["reason"].as_str().is_some_and(|x| !x.is_empty()), "{r}");
            }
        }
    }
}
