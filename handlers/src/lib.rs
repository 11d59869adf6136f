//! azureml-dsr: GDPR/CCPA data-subject requests (export, delete) for Azure Machine Learning
//! workspaces, served as an Azure Functions custom handler.
//!
//! Layout: `protocol` (the Functions host's wire format), `domain` (pure request/plan/report
//! logic), `ports` (traits for everything with I/O), `adapters` (local and Azure
//! implementations), `functions` (one module per function), `runtime` (the local stand-in for
//! the Functions host), `startup` and `telemetry`.

pub mod adapters;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod functions;
pub mod ports;
pub mod protocol;
pub mod runtime;
pub mod seed;
pub mod startup;
pub mod state;
pub mod telemetry;
