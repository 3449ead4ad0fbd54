//! `box inspect`: containers first, then images, as docker does when no --type is given.

use std::io::Write;

use anyhow::Context;

use super::fmt::Format;
use super::store::open_store;
use super::{CmdResult, Global, InspectArgs};

pub fn inspect(g: &Global, a: InspectArgs) -> CmdResult {
    // A bad template fails before anything is looked up, as docker's does.
    let format = Format::parse(a.format.as_deref())?;
    let store = open_store(g)?;
    let mut arr = vec![];
    let mut failed = false;
    let ctrs = crate::container::Containers::new(store.containers_dir());
    for n in &a.names {
        // Containers first, as docker does when no --type is given.
        if a.r#type.as_deref() != Some("image")
            && let Some(j) = super::containers::inspect_json(&store, &ctrs, n)
        {
            arr.push(j);
            continue;
        }
        if a.r#type.as_deref() == Some("container") {
            eprintln!("Error: no such container: {n}");
            failed = true;
            continue;
        }
        match store.resolve_image(n) {
            Ok(img) => arr.push(super::images::inspect_json_in(&store, &img)?),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    // docker: `--format json` is the default array; a template runs once per object.
    match format {
        Format::Template { t, .. } => {
            let mut out = std::io::stdout().lock();
            for v in &arr {
                writeln!(out, "{}", t.render(v).context("template execution error")?)?;
            }
        }
        Format::Default | Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Array(arr))?
        ),
    }
    Ok(if failed { 1 } else { 0 })
}
