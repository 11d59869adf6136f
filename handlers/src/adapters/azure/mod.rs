//! Azure adapters.
