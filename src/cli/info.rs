//! `box info`: what this environment allows, and what boxbuild would choose here.

use super::fmt::{Format, print_rows};
use super::info_checks;
use super::{CmdResult, Global, InfoArgs};

/// The user-mode network helper rootless containers would use (see run::rootless_net).
fn network_driver(root: bool) -> String {
    if root {
        return "bridge box0 (veth, NAT)".into();
    }
    ["pasta", "slirp4netns"]
        .into_iter()
        .find(|t| info_checks::find_tool(t).is_some())
        .map_or_else(
            || "none found: rootless containers get --network none or host".into(),
            |t| format!("bridge box0 in the keeper's namespace, connected by {t}"),
        )
}

/// `box info`: the version, then the probe (run in the caller's own environment: `info` does
/// not enter the tool's user namespace). `--format` sees the same facts as JSON.
pub fn info(g: &Global, a: InfoArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let probe = crate::run::probe::probe();
    let root = nix::unistd::geteuid().is_root();
    let store = g
        .root
        .clone()
        .unwrap_or_else(crate::store::Store::default_root);
    // What boxbuild and boxrun would choose here, with their default flags.
    use crate::build::backends::{self, SnapshotterChoice};
    use crate::run::isolation::{self, IsolationChoice};
    let chosen = backends::choose(
        IsolationChoice::Auto,
        SnapshotterChoice::Auto,
        &probe,
        root,
        &store.join("tmp"),
    );
    let run_isolation = isolation::choose(IsolationChoice::Auto, &probe, root)
        .map(|i| i.describe())
        .map_err(|e| e.to_string());
    let network = network_driver(root);
    let rows = info_checks::rows(&probe);
    if !matches!(format, Format::Default) {
        let v = serde_json::json!({
            "Version": env!("CARGO_PKG_VERSION"),
            "StoreRoot": store.display().to_string(),
            "StoreExists": store.is_dir(),
            "Checks": rows,
            "SubordinateIds": probe.subordinate_ids.map(|(start, count)| serde_json::json!({"Start": start, "Count": count})),
            "BuildBackend": chosen.as_ref().map(|b| b.describe()).ok(),
            "BuildBackendError": chosen.as_ref().err().map(|e| e.to_string()),
            "Isolation": run_isolation.as_ref().ok(),
            "IsolationError": run_isolation.as_ref().err(),
            "Network": network,
        });
        print_rows(&mut std::io::stdout().lock(), &format, &[v], &[])?;
        return Ok(0);
    }
    println!("boxkit {}", env!("CARGO_PKG_VERSION"));
    let made = if store.is_dir() {
        ""
    } else {
        " (made on first use)"
    };
    println!("store: {}{made}", store.display());
    println!("Environment (probed as this user):");
    print!("{}", info_checks::render(&rows));
    println!("  probed in {:.1} ms", probe.elapsed.as_secs_f64() * 1000.0);
    match chosen {
        Ok(b) => println!("boxbuild would use: {}", b.describe()),
        Err(e) => println!("boxbuild cannot run RUN steps here: {e}"),
    }
    match run_isolation {
        Ok(i) => println!("boxrun would use: isolation {i}"),
        Err(e) => println!("boxrun cannot run containers here: {e}"),
    }
    println!("network: {network}");
    Ok(0)
}
