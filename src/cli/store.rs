//! Opening the store for a command: `--root`, else the default root.

use anyhow::Context;

use super::Global;
use crate::store::{Access, Store};

pub fn open_store(g: &Global) -> anyhow::Result<Store> {
    open_store_with(g, Access::Shared)
}

pub(super) fn open_store_with(g: &Global, access: Access) -> anyhow::Result<Store> {
    let root = g.root.clone().unwrap_or_else(Store::default_root);
    Store::open_with(&root, access).with_context(|| format!("open store {}", root.display()))
}
