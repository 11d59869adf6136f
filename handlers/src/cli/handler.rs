//! `azureml-dsr handler`: the process the Functions host starts. The configuration is
//! validated and the services wired before the port is bound, so a misconfigured app exits at
//! once with the setting's name (the host reports the crash) instead of answering readiness and
//! failing every invocation. Wiring connects nothing, so readiness stays fast.

use crate::settings::AppSettings;

pub async fn run(app: &AppSettings) -> anyhow::Result<()> {
    let wired = crate::wiring::build(app)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app.port)).await?;
    tracing::info!(port = app.port, mode = ?app.mode, "custom handler listening");
    let handler = crate::app::App::with_services(wired.services);
    crate::startup::serve(listener, crate::app::invoker(handler), shutdown_signal()).await?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
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
