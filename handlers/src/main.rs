//! The `azureml-dsr` binary: the custom handler the Functions host starts (`handler`), and the
//! local tools around it (`run`, `demo`, `seed`, `submit`, `status`, `report`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = azureml_dsr::cli::Cli::parse();
    if !cli.command.serves() {
        quiet_on_closed_pipe();
    }
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

/// A printing command whose reader goes away (`azureml-dsr status T-1 | head -1`) ends as Unix
/// tools do, by SIGPIPE, instead of panicking inside `println!` (Rust ignores SIGPIPE, so every
/// write would fail with EPIPE). The servers keep Rust's default: a peer that closes a socket
/// is an error they handle, never a signal that ends the process.
#[cfg(unix)]
fn quiet_on_closed_pipe() {
    // SAFETY: called once at start-up, before any thread is spawned; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_on_closed_pipe() {}
