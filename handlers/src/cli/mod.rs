//! Command-line interface: one small module per command.

pub mod audit;
pub mod config;
pub mod demo;
pub mod export;
pub mod handler;
pub mod lifecycle;
pub mod lineage;
pub mod local;
pub mod requests;
pub mod review;
pub mod seed;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use local::{LocalRuntime, StorageChoice};

use crate::settings::{AppSettings, Env, LocalSettings, Overrides};

#[derive(Parser, Debug)]
#[command(
    name = "azureml-dsr",
    version,
    about = "GDPR/CCPA data-subject requests for Azure Machine Learning workspaces"
)]
pub struct Cli {
    /// Local data folder (store, queue, directory); local mode only. [env: DSR_DATA_DIR, default .dsr]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Blob storage in local mode: `local` (files under the data folder) or
    /// `azurite=<http://127.0.0.1:port>`. [env: DSR_STORAGE, default local]
    #[arg(long, global = true)]
    pub storage: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the custom handler (what the Functions host runs); port from FUNCTIONS_CUSTOMHANDLER_PORT.
    Handler,
    /// Run the handler and the local Functions-host stand-in (queues, timers, Event Grid).
    Run {
        /// App root holding host.json and functions/ (default: the function set built into
        /// this binary).
        #[arg(long)]
        app_root: Option<PathBuf>,
        /// Exit when every queue is idle instead of running until Ctrl-C.
        #[arg(long)]
        until_idle: bool,
    },
    /// Seed a synthetic Azure ML workspace.
    Seed(seed::SeedArgs),
    /// Put a data-subject request on the intake queue.
    Submit(requests::SubmitArgs),
    /// Show a request's progress and state history.
    Status { request_id: String },
    /// Cancel a request (a control message on the intake queue): one not yet started stops; a
    /// delete under way finishes its current chunk and stops.
    Cancel {
        request_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Extend a request's deadline (GDPR: at most two further months; CCPA: once, 45 days).
    Extend {
        request_id: String,
        #[arg(long)]
        days: u32,
        #[arg(long)]
        reason: String,
    },
    /// Print a request's report (certificate or manifest).
    Report { request_id: String },
    /// Inject Event Grid event(s) from a JSON file (an event or an array) for an Event Grid function.
    Event {
        file: PathBuf,
        #[arg(long, default_value = "workspace-deleted")]
        function: String,
    },
    /// Seed a workspace, run an export and a delete for one user end to end, print what happened.
    Demo(demo::DemoArgs),
    /// Items a request left for a person's review: list them, approve or reject them.
    Review(review::ReviewArgs),
    /// Legal holds, kept in the state account: data under hold is never deleted.
    Hold {
        #[command(subcommand)]
        action: config::HoldAction,
    },
    /// The workspaces in scope, kept in the state account: intake and retention cover only these.
    Workspace {
        #[command(subcommand)]
        action: config::WorkspaceAction,
    },
    /// The tamper-evident audit trail: `audit verify` checks the hash chain and every root.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Lineage impact: models and deployments derived from a subject's data, and the
    /// controller's decision on each (`lineage decide`).
    Lineage {
        #[command(subcommand)]
        action: lineage::LineageAction,
    },
    /// Export archives: `export verify <zip>` checks one against its manifest.
    Export {
        #[command(subcommand)]
        action: export::ExportAction,
    },
    /// Serve the seeded workspaces' ARM documents as a local ARM server on 127.0.0.1 (prints its
    /// URL; point `DSR_ARM_ENDPOINT` at it to run the production ARM adapter locally).
    ArmServer {
        /// 0: any free port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Items per list page (small values exercise nextLink paging).
        #[arg(long, default_value_t = 100)]
        page_size: usize,
    },
}

impl Command {
    /// The long-running servers (`handler`, `run`, `arm-server`): they write to sockets, not to
    /// a pipe a reader may close.
    pub fn serves(&self) -> bool {
        matches!(
            self,
            Command::Handler | Command::Run { .. } | Command::ArmServer { .. }
        )
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Env::from_process();
    let app = AppSettings::load(
        &env,
        &Overrides {
            data_dir: cli.data_dir.clone(),
            storage: cli.storage.clone(),
        },
    )?;
    crate::logging::init(
        if matches!(cli.command, Command::Demo(_)) {
            "warn"
        } else {
            "info"
        },
        &app,
    );
    crate::domain::subject::set_log_salt(&app.log_salt);
    for name in env.unknown_dsr_names() {
        tracing::warn!(setting = %name, "unknown DSR_ setting ignored (a typo?)");
    }
    match cli.command {
        Command::Handler => handler::run(&app).await,
        Command::Run {
            app_root,
            until_idle,
        } => local::run(&app, app_root.as_deref(), until_idle).await,
        Command::Seed(args) => seed::run(app.local_only("seed")?, &args, cli.json).await,
        Command::Submit(args) => requests::submit(app.local_only("submit")?, &args, cli.json).await,
        Command::Status { request_id } => requests::status(&app, &request_id, cli.json).await,
        Command::Cancel { request_id, reason } => {
            let m = lifecycle::cancel_message(&request_id, reason.as_deref());
            lifecycle::send(app.local_only("cancel")?, m, cli.json).await
        }
        Command::Extend {
            request_id,
            days,
            reason,
        } => {
            let m = lifecycle::extend_message(&request_id, days, &reason);
            lifecycle::send(app.local_only("extend")?, m, cli.json).await
        }
        Command::Report { request_id } => requests::report(&app, &request_id, cli.json).await,
        Command::Event { file, function } => {
            requests::inject_events(app.local_only("event")?, &file, &function, cli.json).await
        }
        Command::Demo(args) => demo::run(&app.local_only("demo")?.storage, &args, cli.json).await,
        Command::Review(args) => review::run(&app, args, cli.json).await,
        Command::Hold { action } => config::hold(&app, action, cli.json).await,
        Command::Workspace { action } => config::workspace(&app, action, cli.json).await,
        Command::Audit { action } => audit::run(&app, action, cli.json).await,
        Command::Lineage { action } => lineage::run(&app, action, cli.json).await,
        Command::Export { action } => export::run(action, cli.json),
        Command::ArmServer { port, page_size } => {
            arm_server(app.local_only("arm-server")?, port, page_size, cli.json).await
        }
    }
}

/// `arm-server`: the local ARM server over the data folder's store until Ctrl-C. It expects the
/// token the local runtime sends (`DSR_ARM_TOKEN`, default the local token).
async fn arm_server(
    local: &LocalSettings,
    port: u16,
    page_size: usize,
    json: bool,
) -> anyhow::Result<()> {
    use crate::adapters::local::arm_server::{start, ArmServerOptions};
    let options = ArmServerOptions {
        page_size: page_size.max(1),
        bearer: Some(format!("Bearer {}", local.arm_token)),
        ..Default::default()
    };
    let server = start(crate::wiring::store(local), options, port).await?;
    if json {
        println!("{}", serde_json::json!({ "url": server.base_url }));
    } else {
        println!("{}", server.base_url);
    }
    handler::shutdown_signal().await;
    Ok(())
}
