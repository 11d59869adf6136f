//! The domain: data-subject requests, plans, slices, aggregation and reports. Pure: no I/O,
//! no clocks read implicitly, testable without any adapter.

pub mod attribution;
pub mod deadline;
pub mod holds;
pub mod ids;
pub mod plan;
pub mod report;
pub mod request;
pub mod resource;
pub mod resource_type;
pub mod slice;
pub mod subject;
pub mod telemetry;
pub mod workspace;
