//! boxkit: build and run OCI container images with no daemon and no root.
//!
//! The library holds everything; the binaries in `src/bin/` only parse arguments and print.
//! Dependencies flow one way: `cli` → `build`/`run` → `registry`/`store`/`layer` → `image`,
//! `digest`. The sandbox knows nothing about Boxfiles; the parser knows nothing about the kernel.

pub mod atomic;
pub mod boxfile;
pub mod build;
pub mod cli;
pub mod container;
pub mod digest;
pub mod image;
pub mod layer;
pub mod limits;
pub mod registry;
pub mod run;
pub mod store;
pub mod timefmt;
