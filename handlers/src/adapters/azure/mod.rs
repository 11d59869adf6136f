//! Azure adapters.

pub mod retry;
pub mod sas;
pub mod shared_key;
