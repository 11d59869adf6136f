//! Local adapters: the embedded default.
