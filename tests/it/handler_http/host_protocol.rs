//! The handler's HTTP surface: readiness, host fixtures accepted, garbage answered with a JSON
//! 4xx naming the problem, GET on the host port.

use super::*;

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
