//! The local runtime: a stand-in for the Functions host and Service Bus.
