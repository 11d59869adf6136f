//! The `azureml-dsr` binary: the custom handler the Functions host starts (`handler`), and the
//! local tools around it (`run`, `demo`, `seed`, `submit`, `status`, `report`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = azureml_dsr::cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(azureml_dsr::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
