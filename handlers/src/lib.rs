//! azureml-dsr: GDPR/CCPA data-subject requests (export, delete) for Azure Machine Learning
//! workspaces, served as an Azure Functions custom handler.
//!
//! Layout: `protocol` (the Functions host's wire format), `domain` (pure request/plan/report
//! logic), `ports` (traits for everything with I/O), `adapters` (local and Azure
//! implementations), `functions` (one module per function), `runtime` (the local stand-in for
//! the Functions host), `settings` (the typed configuration, read once), `wiring` (the
//! composition root: ports to adapters per mode), `startup` and `logging`.

pub mod adapters;
pub mod app;
pub mod cli;
pub mod domain;
pub mod functions;
pub mod logging;
pub mod ports;
pub mod protocol;
pub mod runtime;
pub mod seed;
pub mod seed_lineage;
pub mod settings;
pub mod startup;
pub mod state;
pub mod trace;
pub mod wiring;
