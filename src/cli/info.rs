//! `box info`: what this environment allows, and what boxbuild would choose here.

use super::fmt::{Format, print_rows};
use super::{CmdResult, Global, InfoArgs};

/// `box info`: the version, then the probe (run in the caller's own environment: `info` does
/// not enter the tool's user namespace). `--format` sees the same facts as JSON.
pub fn info(g: &Global, a: InfoArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let probe = crate::run::probe::probe();
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
    if !matches!(format, Format::Default) {
        let checks: Vec<serde_json::Value> = probe
            .checks
            .iter()
            .map(|c| serde_json::json!({"Name": c.name, "Ok": c.ok, "Detail": c.detail}))
            .collect();
        let v = serde_json::json!({
            "Version": env!("CARGO_PKG_VERSION"),
            "StoreRoot": store.display().to_string(),
            "Checks": checks,
            "SubordinateIds": probe.subordinate_ids.map(|(start, count)| serde_json::json!({"Start": start, "Count": count})),
            "BuildBackend": chosen.as_ref().map(|b| b.describe()).ok(),
            "BuildBackendError": chosen.as_ref().err().map(|e| e.to_string()),
        });
        print_rows(&mut std::io::stdout().lock(), &format, &[v], &[])?;
        return Ok(0);
    }
    println!("boxkit {}", env!("CARGO_PKG_VERSION"));
    print!("{}", crate::run::probe::render(&probe));
    match chosen {
        Ok(b) => println!("boxbuild would use: {}", b.describe()),
        Err(e) => println!("boxbuild cannot run RUN steps here: {e}"),
    }
    Ok(0)
}
