//! Adapters: implementations of the ports. `local` runs on this machine with no cloud account;
//! `azure` talks to the real services.

pub mod azure;
pub mod chaos;
pub mod counting;
pub mod local;
