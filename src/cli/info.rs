//! `box info`: what this environment allows, and what boxbuild would choose here.

use super::{CmdResult, Global};

/// `box info`: the version, then the probe (run in the caller's own environment: `info` does
/// not enter the tool's user namespace).
pub fn info(g: &Global) -> CmdResult {
    println!("boxkit {}", env!("CARGO_PKG_VERSION"));
    let probe = crate::run::probe::probe();
    print!("{}", crate::run::probe::render(&probe));
    // What boxbuild would choose here, with its default flags.
    let store = g
        .root
        .clone()
        .unwrap_or_else(crate::store::Store::default_root);
    use crate::build::backends::{self, SnapshotterChoice};
    let chosen = backends::choose(
        crate::run::isolation::IsolationChoice::Auto,
        SnapshotterChoice::Auto,
        &probe,
        nix::unistd::geteuid().is_root(),
        &store.join("tmp"),
    );
    match chosen {
        Ok(b) => println!("boxbuild would use: {}", b.describe()),
        Err(e) => println!("boxbuild cannot run RUN steps here: {e}"),
    }
    Ok(0)
}
