//! Placeholder so this branch compiles: the `telemetry` port is written on another branch; on merge, take that version.
