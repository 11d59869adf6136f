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
    }
}
