//! boxkit: build and run OCI container images with no daemon and no root.
//!
//! The library holds everything; the binaries in `src/bin/` only parse arguments and print.
//! Dependencies flow one way, layer by layer: `cli` → `container`/`build` → `run`/`registry` →
//! `store` → `layer`/`boxfile` → `image` → `digest`/`atomic`/`limits`/`timefmt`/`procfs`
//! (docs/architecture.md; `tests/layering.rs` holds it).

// Every unsafe block says why it is sound; no function grows past clippy.toml's 120 lines.
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::too_many_lines)]

pub mod atomic;
pub mod bootid;
pub mod boxfile;
pub mod build;
pub mod cli;
pub mod container;
pub mod digest;
pub mod image;
pub mod layer;
pub mod limits;
mod pow;
pub mod procfs;
pub mod registry;
pub mod run;
pub mod store;
pub mod timefmt;
