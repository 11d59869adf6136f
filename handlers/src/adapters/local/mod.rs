//! Local adapters: the embedded default.

pub mod sqlite_queue;
