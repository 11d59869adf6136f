//! The REST client's retry budget, stated once.

use super::*;

/// One REST operation against a server that always answers 503 is sent exactly the stated
/// budget of times (`TRANSPORT_ATTEMPTS`, the default `max_retries` + 1): the pipeline retries,
/// nothing wraps it in more retries, and the caller gets a transient error.
#[tokio::test]
async fn rest_retry_budget() {
    use azureml_dsr::adapters::azure::retry::TRANSPORT_ATTEMPTS;
    let server = serve(ARM_SCOPE, |_| {
        (
            503,
            vec![],
            json!({"error": {"code": "ServerBusy", "message": "busy"}}),
        )
    })
    .await;
    // The default budget, with short waits.
    let retry = RetryConfig {
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryConfig::default()
    };
    let plane = AzureMlControlPlane::new(
        RestClient::new(credential(), ARM_SCOPE).with_retry(retry),
        ArmConfig::new(server.url()),
    );
    let r = plane.list(&ws(), ArmKind::Job, None).await;
    assert!(matches!(r, Err(ControlPlaneError::Transient(_))), "{r:?}");
    let sent = server.seen.lock().unwrap().len() as u32;
    assert_eq!(sent, TRANSPORT_ATTEMPTS, "ARM list sent {sent} times");
}
