//! `azure_services` wires the production adapters from the environment.

use super::*;

/// `wiring::build` in Azure mode builds every production adapter from the settings, with the
/// credential `azure_credential()` picks (managed identity here, because `IDENTITY_ENDPOINT` is
/// set), and they reach the configured endpoints; no local queue or store is involved.
#[tokio::test]
async fn azure_services_wires_production_adapters_from_the_environment() {
    let _ = credential(); // sets IDENTITY_ENDPOINT / IDENTITY_HEADER for azure_credential()
    let arm_srv = serve(ARM_SCOPE, |c| match c.req.path.as_str() {
        p if p == WS => (200, vec![], body("ml/workspace-get.json", "200")),
        p if p.ends_with("/datastores/workspaceblobstore") => {
            (200, vec![], body("ml/datastore-get.json", "200"))
        }
        _ => not_found(),
    })
    .await;
    let graph = serve(GRAPH_SCOPE, |_| {
        (200, vec![], example("graph/user-get.json"))
    })
    .await;
    let sb = serve(SERVICEBUS_SCOPE, |_| (201, vec![], Value::Null)).await;
    let env = azureml_dsr::settings::Env::from_pairs([
        ("DSR_MODE", "azure"),
        ("DSR_LOG_SALT", "a-test-salt-of-some-length"),
        (
            "DSR_STATE_ACCOUNT_URL",
            "https://dsrstate.blob.core.windows.net/",
        ),
        ("DSR_ARM_ENDPOINT", arm_srv.base.as_str()),
        ("DSR_GRAPH_ENDPOINT", graph.base.as_str()),
        ("DSR_SERVICEBUS_NAMESPACE", sb.base.as_str()),
    ]);
    let app = azureml_dsr::settings::AppSettings::load(&env, &Default::default()).unwrap();
    let wired = azureml_dsr::wiring::build(&app).unwrap();
    assert!(wired.queue.is_none(), "Azure mode opens no local queue");
    assert_eq!(wired.services.store.kind(), "azure-blob");
    assert_eq!(
        wired.services.files.kind(),
        "Azure Files (REST, Entra ID)",
        "notebooks go through the File API, not Blob"
    );
    let svc = wired.services;
    let info = svc.control.workspace(&ws()).await.unwrap();
    assert_eq!(info.storage_account, "teststorageaccount");
    let who = SubjectRef {
        object_id: None,
        upn: Some(Upn::parse("AdeleV@contoso.com").unwrap()),
        tenant_id: None,
        display_name: None,
    };
    assert!(svc.directory.lookup(&who).await.unwrap().is_some());
    svc.bus
        .send(OutMessage::json("dsr-results", "r-1", &json!({})))
        .await
        .unwrap();
    assert_eq!(sb.requests("POST", "/dsr-results/messages").len(), 1);
}
