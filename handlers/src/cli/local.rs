//! `azureml-dsr run`: the handler plus the local Functions-host stand-in in one process, talking
//! over real HTTP on 127.0.0.1, on the embedded default (services from [`crate::wiring`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::adapters::local::sqlite_queue::LocalQueue;
use crate::app::App;
use crate::runtime::dispatcher::{Dispatcher, DispatcherOptions};
use crate::runtime::host_config::HostConfig;
use crate::settings::AppSettings;
pub use crate::settings::StorageChoice;

/// The handler and the dispatcher, running in this process.
pub struct LocalRuntime {
    pub queue: Arc<LocalQueue>,
    pub base_url: String,
    pub dispatcher: Arc<Dispatcher>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl LocalRuntime {
    /// The embedded default on `data_dir` with default settings and the function set found
    /// under `app_root` (tests and the demo).
    pub async fn start(
        data_dir: &Path,
        storage: &StorageChoice,
        app_root: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            &AppSettings::local(data_dir, storage.clone()),
            Some(app_root),
        )
        .await
    }

    /// Local mode from `app`'s settings; the function set from `app_root`, else the one built
    /// into the binary.
    pub(crate) async fn start_with(
        app: &AppSettings,
        app_root: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let local = app.local_only("run")?;
        let wired = crate::wiring::build(app)?;
        let queue = wired
            .queue
            .clone()
            .context("local mode wires a local queue")?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let handler = App::with_services(wired.services);
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) =
                crate::startup::serve(listener, crate::app::invoker(handler), stop).await
            {
                tracing::error!(error = %e, "handler server stopped");
            }
        });
        let options = DispatcherOptions {
            max_delivery_count: app.tunables.max_delivery_count,
            lock_duration: queue.options().lock_duration,
            // Reliability test mode: every message delivered twice.
            redeliver_once: local.redeliver_once,
            poll_interval: local.poll_interval,
            ..Default::default()
        };
        let config = match app_root {
            Some(root) => HostConfig::load(root, &options.settings),
            None => HostConfig::embedded(&options.settings),
        }
        .context("reading host.json and functions/")?;
        let dispatcher = Arc::new(
            Dispatcher::with_config(config, (*queue).clone(), &base_url, options)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        Ok(Self {
            queue,
            base_url,
            dispatcher,
            shutdown: tx,
            server,
        })
    }

    /// Deliver until every queue is idle (or the timeout passes).
    pub async fn drain(&self, timeout: Duration) -> anyhow::Result<()> {
        self.dispatcher
            .drain_until_idle(timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Stop the handler. The dispatcher (and its HTTP connection pool) goes first, and the
    /// graceful shutdown is bounded: an idle keep-alive connection must not hold the exit.
    pub async fn stop(self) {
        drop(self.dispatcher);
        let _ = self.shutdown.send(true);
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}

pub async fn run(
    app: &AppSettings,
    app_root: Option<&Path>,
    until_idle: bool,
) -> anyhow::Result<()> {
    let rt = LocalRuntime::start_with(app, app_root).await?;
    let data_dir = &app.local_only("run")?.data_dir;
    tracing::info!(handler = %rt.base_url, data_dir = %data_dir.display(), "local runtime started");
    if until_idle {
        rt.drain(Duration::from_secs(3600)).await?;
    } else {
        let d = rt.dispatcher.clone();
        d.run(super::handler::shutdown_signal())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    rt.stop().await;
    Ok(())
}
