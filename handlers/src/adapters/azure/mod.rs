//! Azure adapters.

pub mod blob;
pub mod retry;
pub mod sas;
pub mod shared_key;
