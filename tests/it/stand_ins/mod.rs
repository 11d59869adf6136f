//! Loopback stand-ins for the Azure services the handler calls in Azure mode (`DSR_MODE=azure`),
//! for the "Azure twin" tests: each answers as the real API documents (paths, bodies, paging,
//! long-running operations, throttling, error shapes, token audiences), binds 127.0.0.1 only, and
//! runs on its own thread so it can serve a child handler process. Declared in
//! `tests/it/main.rs` (it uses no other test module).
//!
//! - [`identity`]: App Service managed-identity token endpoint issuing JWTs (Azurite-compatible),
//!   and the bearer-audience check the others use;
//! - [`graph`]: Microsoft Graph `users`;
//! - [`log_analytics`]: Log Analytics query API + ARM workspace purge API;
//! - [`service_bus`]: Service Bus REST Send Message into a `LocalQueue`;
//! - [`files`]: Azure Files REST (list, read, delete files and directories, share snapshots).
//! - [`run_history`]: Azure ML run history (a run, its children, paged).
//!
//! Azurite over HTTPS with OAuth lives in `tests/it/support/azurite.rs`.
#![allow(dead_code)]

pub mod files;
pub mod graph;
pub mod identity;
pub mod log_analytics;
pub mod run_history;
pub mod server;
pub mod service_bus;
