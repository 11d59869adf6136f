//! Logging and tracing in one place. Logs go to stdout (info) and stderr (warn/error) with
//! levels, because the Functions host keeps the response's `Logs` only on success. Subject
//! identifiers are never logged: code logs `ResolvedSubject::log_id()` (a salted hash).

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

use crate::settings::AppSettings;

/// `default_level` applies unless `DSR_LOG` says otherwise (`info` for the handler; the demo
/// keeps its console for people and logs warnings only).
pub fn init(default_level: &str, app: &AppSettings) {
    let filter = app
        .log_filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let writer = std::io::stderr
        .with_max_level(tracing::Level::WARN)
        .or_else(std::io::stdout);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false);
    let _ = if app.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
