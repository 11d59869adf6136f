//! Shared test support; include with `mod support;`.
#![allow(dead_code)]

pub mod azurite;
pub mod fault_proxy;
pub mod pipeline;
