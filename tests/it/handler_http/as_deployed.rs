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
