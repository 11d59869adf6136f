//! The local runtime: a stand-in for the Functions host and Service Bus.

pub mod dispatcher;
pub mod host_config;
pub mod host_encoding;
pub mod ncrontab;
