//! Shared test support; include with `mod support;`.
#![allow(dead_code)]

pub mod azure;
pub mod azurite;
pub mod blob_conformance;
pub mod fault_proxy;
pub mod pipeline;
