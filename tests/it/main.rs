//! The one integration-test binary. Each former `tests/<name>.rs` binary is a module here, so
//! the whole stack (the library and its dependencies) is linked once instead of once per file;
//! `cargo test --test it <module>::` runs one of them (e.g. `cargo test --test it twin::`).
//!
//! All modules share one process, so no test may change process-global state another test
//! reads. What is process-wide is set once and never changed: the managed-identity endpoint
//! (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, [`stand_ins::identity::IdentityStandIn::shared`],
//! used by `twin` and `azure_control_plane` alike), the test CA bundle (`SSL_CERT_FILE`,
//! [`support::azurite::trust_test_ca`]). Log capture (`no_pii_in_logs`) is scoped to its own
//! runtime's threads instead of installed globally; servers bind `127.0.0.1:0`.

mod stand_ins;
mod support;

mod audit_redelivery;
mod azure_blob;
mod azure_control_plane;
mod chaos;
mod cli_pipe;
mod cli_report;
mod e2e;
mod export_edges;
mod features;
mod follow_up_azure;
mod handler_http;
mod lifecycle;
mod lifecycle_edges;
mod local_runtime;
mod no_pii_in_logs;
mod pipeline_direct;
mod protocol_fixtures;
mod retention;
mod subject_report;
mod twin;
