//! Logging and tracing in one place. Logs go to stdout (info) and stderr (warn/error) with
//! levels, because the Functions host keeps the response's `Logs` only on success. Subject
//! identifiers are never logged: code logs `ResolvedSubject::log_id()` (a salted hash).

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// `default_level` applies unless `DSR_LOG` says otherwise (`info` for the handler; the demo
/// keeps its console for people and logs warnings only).
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_env("DSR_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let writer = std::io::stderr
        .with_max_level(tracing::Level::WARN)
        .or_else(std::io::stdout);
    let json = std::env::var("DSR_LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or(false);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
