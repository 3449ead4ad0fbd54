//! boxbuild: Boxfile → stages → steps → layers and an image config.

pub mod context;
