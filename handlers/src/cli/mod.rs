//! Command-line interface: one small module per command.

pub mod demo;
pub mod handler;
pub mod local;
pub mod requests;
pub mod seed;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use local::{LocalRuntime, StorageChoice};

#[derive(Parser, Debug)]
#[command(
    name = "azureml-dsr",
    version,
    about = "GDPR/CCPA data-subject requests for Azure Machine Learning workspaces"
)]
pub struct Cli {
    /// Local data folder (store, queue, directory, holds).
    #[arg(long, global = true, env = "DSR_DATA_DIR", default_value = ".dsr")]
    pub data_dir: PathBuf,
    /// Blob storage: `local` (files under the data folder) or `azurite=<http://127.0.0.1:port>`.
    #[arg(long, global = true, env = "DSR_STORAGE", default_value = "local")]
    pub storage: String,
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
        /// App root holding host.json and functions/.
        #[arg(long, default_value = ".")]
        app_root: PathBuf,
        /// Exit when every queue is idle instead of running until Ctrl-C.
        #[arg(long)]
        until_idle: bool,
    },
    /// Seed a synthetic Azure ML workspace.
    Seed(seed::SeedArgs),
    /// Put a data-subject request on the intake queue.
    Submit(requests::SubmitArgs),
    /// Show a request's progress.
    Status { request_id: String },
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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::telemetry::init(if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    let storage = StorageChoice::parse(&cli.storage)?;
    match cli.command {
        Command::Handler => handler::run(&cli.data_dir, &storage).await,
        Command::Run {
            app_root,
            until_idle,
        } => local::run(&cli.data_dir, &storage, &app_root, until_idle).await,
        Command::Seed(args) => seed::run(&cli.data_dir, &storage, &args, cli.json).await,
        Command::Submit(args) => requests::submit(&cli.data_dir, &args, cli.json).await,
        Command::Status { request_id } => {
            requests::status(&cli.data_dir, &storage, &request_id, cli.json).await
        }
        Command::Report { request_id } => {
            requests::report(&cli.data_dir, &storage, &request_id, cli.json).await
        }
        Command::Event { file, function } => {
            requests::inject_events(&cli.data_dir, &file, &function, cli.json).await
        }
        Command::Demo(args) => demo::run(&storage, &args, cli.json).await,
        Command::ArmServer { port, page_size } => {
            arm_server(&cli.data_dir, &storage, port, page_size, cli.json).await
        }
    }
}

/// `arm-server`: the local ARM server over the data folder's store until Ctrl-C. It expects the
/// token the local runtime sends (`DSR_ARM_TOKEN`, default the local token).
async fn arm_server(
    data_dir: &std::path::Path,
    storage: &StorageChoice,
    port: u16,
    page_size: usize,
    json: bool,
) -> anyhow::Result<()> {
    use crate::adapters::local::arm_server::{start, ArmServerOptions, LOCAL_ARM_TOKEN};
    let paths = crate::config::LocalPaths::new(data_dir);
    let token = std::env::var("DSR_ARM_TOKEN").unwrap_or_else(|_| LOCAL_ARM_TOKEN.into());
    let options = ArmServerOptions {
        page_size: page_size.max(1),
        bearer: Some(format!("Bearer {token}")),
        ..Default::default()
    };
    let server = start(storage.store(&paths), options, port).await?;
    if json {
        println!("{}", serde_json::json!({ "url": server.base_url }));
    } else {
        println!("{}", server.base_url);
    }
    handler::shutdown_signal().await;
    Ok(())
}
