//! Local adapters: the embedded default.

pub mod arm_server;
pub mod arm_throttle;
pub mod blob_share;
pub mod control_plane;
pub mod directory;
pub mod fs_blob;
pub mod memory_blob;
pub mod memory_bus;
pub mod run_history;
pub mod sqlite_queue;
pub mod telemetry;
