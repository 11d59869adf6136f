//! Azure adapters.

pub mod arm;
pub mod blob;
pub mod files;
pub mod graph;
pub mod purge;
pub mod rest;
pub mod retry;
pub mod run_history;
pub mod sas;
pub mod servicebus;
pub mod shared_key;
pub mod throttle_gate;
