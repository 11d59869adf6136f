//! Ports: the narrow traits the pipeline talks to. Each has a local adapter (embedded, on this
//! machine) and an Azure adapter; the domain and the functions never see which one is wired.

pub mod blob;
pub mod blob_layer;
pub mod bus;
pub mod control_plane;
pub mod directory;
pub mod file_share;
pub mod run_history;
pub mod telemetry;
