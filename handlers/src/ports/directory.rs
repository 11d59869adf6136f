//! Placeholder so this branch compiles: the `directory` port is written on another branch; on merge, take that version.
