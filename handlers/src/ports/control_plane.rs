//! Placeholder so this branch compiles: the `control_plane` port is written on another branch; on merge, take that version.
