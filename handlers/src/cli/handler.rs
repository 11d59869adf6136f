//! `azureml-dsr handler`: the process the Functions host starts. Binds 127.0.0.1 on
//! FUNCTIONS_CUSTOMHANDLER_PORT and answers readiness before anything else is built.

use std::path::Path;

use super::local::{services_factory, StorageChoice};

pub async fn run(data_dir: &Path, storage: &StorageChoice) -> anyhow::Result<()> {
    let port = crate::startup::port_from_env();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(port, "custom handler listening");
    let app = crate::app::App::new(services_factory(data_dir.to_path_buf(), storage.clone()));
    crate::startup::serve(listener, crate::app::invoker(app), shutdown_signal()).await?;
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
