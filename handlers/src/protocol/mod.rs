//! The Functions host wire protocol for custom handlers.
