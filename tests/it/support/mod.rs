//! Shared test support, a module of the one test binary (`tests/it/main.rs`).
#![allow(dead_code)]

pub mod archive_check;
pub mod azure;
pub mod azurite;
pub mod blob_conformance;
pub mod events;
pub mod fault_proxy;
pub mod forward;
pub mod pipeline;
