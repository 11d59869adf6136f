//! The domain: data-subject requests, plans, slices, aggregation and reports. Pure: no I/O,
//! no clocks read implicitly, testable without any adapter.

pub mod archive;
pub mod attribution;
pub mod audit_chain;
pub mod deadline;
pub mod follow_up;
pub mod holds;
pub mod ids;
pub mod lifecycle;
pub mod lineage;
pub mod merkle;
pub mod plan;
pub mod raw_json;
pub mod report;
pub mod report_document;
pub mod request;
pub mod resource;
pub mod resource_type;
pub mod review;
pub mod slice;
pub mod subject;
pub mod subject_report;
pub mod telemetry;
pub mod workspace;
pub mod zip;
