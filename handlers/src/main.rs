//! The `azureml-dsr` binary: the custom handler the Functions host starts (`handler`), and the
//! local tools around it (`run`, `demo`, `seed`, `submit`, `status`, `report`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    return_freed_memory();
    let cli = azureml_dsr::cli::Cli::parse();
    if cli.command.serves() {
        trim_freed_memory_every(std::time::Duration::from_secs(5));
    } else {
        quiet_on_closed_pipe();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
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

/// Threads for file operations (the file store, the SQLite queue). Tokio's default is 512: ten
/// slices, each with 16 storage operations in flight, kept ~160 of them, each with its own
/// malloc arena share and stack; the disk, not the thread count, bounds these calls. At 10
/// workspaces and 309,320 exported items the peak RSS of `run` was 87.2 MiB with the default
/// and 80.8-80.9 MiB with 16 or 32 (BENCHMARKS.md, runs P, P2, Pb).
const BLOCKING_THREADS: usize = 32;

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

/// glibc's malloc keeps what a busy process freed: its mmap threshold rises with every large
/// buffer freed (up to 32 MiB), so pages of items, 4 MiB blocks and listings come from the heap
/// and are kept there, fragmented. Fixed thresholds of 128 KiB hand large buffers back at
/// once and trim the heap's free top: at 30,960 exported items the peak RSS of `run` fell from
/// 75-76 MiB to 54-56 MiB, with the same wall time (BENCHMARKS.md, "Memory the allocator keeps").
/// A threshold set in the environment (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`)
/// is the operator's and is left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_freed_memory() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    for (param, env) in [
        (libc::M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
        (libc::M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: called once at start-up, before any thread is spawned; both parameters
            // take a byte count, and a refused value (return 0) leaves glibc's default.
            unsafe {
                libc::mallopt(param, THRESHOLD);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory() {}

/// A server's invocations free memory in the middle of malloc's arenas, where the trim
/// threshold cannot reach it (it trims only an arena's top): `malloc_trim` hands back every
/// whole free page. Every few seconds, from a thread of its own, so no invocation waits on it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_freed_memory_every(period: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(move || loop {
            std::thread::sleep(period);
            // SAFETY: malloc_trim only returns free pages to the system; it is thread-safe.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    if let Err(e) = spawned {
        // Memory is then only what the thresholds return; nothing else depends on it.
        eprintln!("warning: cannot start the malloc-trim thread: {e}");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_freed_memory_every(_period: std::time::Duration) {}
