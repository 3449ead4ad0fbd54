//! boxbuild: Boxfile → stages → steps → layers and an image config.

pub mod config;
pub mod context;
