//! `box volume create | ls | inspect | rm | prune`: the named volumes `boxrun -v NAME:/path`
//! mounts (crate::store::volumes), with docker's flags and output.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::filter::{Filters, parse_bool};
use super::fmt::{Format, human_size, print_rows, print_table};
use super::store::open_store;
use super::{CmdResult, Global};
use crate::container::Containers;
use crate::store::{Store, Volume};

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused volumes (anonymous ones only, unless --all)
    Prune(VolumePruneArgs),
}

#[derive(Args, Debug)]
pub struct VolumeCreateArgs {
    /// Volume name (default: a random one)
    pub name: Option<String>,
    /// Volume driver (only "local")
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata on the volume (KEY=VALUE, repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VolumeLsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output: dangling=true|false, driver=local, label=KEY[=VALUE], name=SUBSTRING
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Format output: 'json', a Go template ('{{.Name}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct VolumeInspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Format output: 'json' or a Go template ('{{.Mountpoint}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct VolumeRmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Do not fail on a volume that does not exist (a volume in use is still refused, as
    /// docker refuses it)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct VolumePruneArgs {
    /// Remove every unused volume, not only anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation (prune never prompts; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
    /// Only volumes with (label=K[=V]) or without (label!=K[=V]) a label
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

pub fn volume(g: &Global, c: VolumeCommand) -> CmdResult {
    match c {
        VolumeCommand::Create(a) => create(g, a),
        VolumeCommand::Ls(a) => ls(g, a),
        VolumeCommand::Inspect(a) => inspect(g, a),
        VolumeCommand::Rm(a) => rm(g, a),
        VolumeCommand::Prune(a) => prune(g, a),
    }
}

/// Which containers (by id) use each volume: named and anonymous mounts of every container,
/// running or not, as docker counts them.
pub(super) fn volume_users(store: &Store) -> HashMap<String, Vec<String>> {
    let ctrs = Containers::new(store.containers_dir());
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    for id in ctrs.ids() {
        let Ok(st) = ctrs.load(&id) else { continue };
        let mut names: Vec<String> = st
            .mounts
            .iter()
            .filter_map(|m| store.volume_of_path(std::path::Path::new(&m.source)))
            .collect();
        names.extend(st.anonymous_volumes.iter().cloned());
        names.sort();
        names.dedup();
        for n in names {
            users.entry(n).or_default().push(id.clone());
        }
    }
    users
}

fn create(g: &Global, a: VolumeCreateArgs) -> CmdResult {
    if a.driver != "local" {
        bail!(
            "volume driver {:?} is not supported: boxkit has only \"local\"",
            a.driver
        );
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let store = open_store(g)?;
    // docker names an unnamed volume with 64 hex digits.
    let name = a.name.unwrap_or_else(|| {
        (0..4)
            .map(|_| crate::run::spec::random_id())
            .collect::<String>()
    });
    let v = store.create_volume(&name, labels)?;
    println!("{}", v.name);
    Ok(0)
}

fn labels_json(v: &Volume) -> serde_json::Map<String, serde_json::Value> {
    v.labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

/// docker volume inspect's object.
fn inspect_json(v: &Volume) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": labels_json(v),
        "Mountpoint": v.mountpoint.display().to_string(),
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    })
}

/// docker volume ls's `--format` fields: every value a string.
fn ls_row(v: &Volume, links: usize) -> serde_json::Value {
    let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serde_json::json!({
        "Availability": "N/A",
        "Driver": "local",
        "Group": "N/A",
        "Labels": labels.join(","),
        "Links": links.to_string(),
        "Mountpoint": v.mountpoint.display().to_string(),
        "Name": v.name,
        "Scope": "local",
        "Size": "N/A",
        "Status": "N/A",
    })
}

const LS_HEADERS: &[(&str, &str)] = &[("Name", "VOLUME NAME"), ("Driver", "DRIVER")];

fn ls(g: &Global, a: VolumeLsArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let filters = Filters::parse(
        "volume ls",
        &a.filter,
        &["dangling", "driver", "label", "name"],
    )?;
    let store = open_store(g)?;
    let users = volume_users(&store);
    let mut dangling = None;
    for v in filters.values("dangling") {
        dangling = Some(parse_bool("dangling", v)?);
    }
    let vols: Vec<Volume> = store
        .volumes()?
        .into_iter()
        .filter(|v| {
            dangling.is_none_or(|d| d != users.contains_key(&v.name))
                && filters.any("driver", |d| d == "local")
                && filters.any("name", |n| v.name.contains(n))
                && filters.labels_match(&labels_json(v))
        })
        .collect();
    let mut out = io::stdout().lock();
    if a.quiet {
        for v in &vols {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = vols
        .iter()
        .map(|v| ls_row(v, users.get(&v.name).map_or(0, Vec::len)))
        .collect();
    if print_rows(&mut out, &format, &rows, LS_HEADERS)? {
        return Ok(0);
    }
    let mut table = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
    table.extend(
        vols.iter()
            .map(|v| vec!["local".to_string(), v.name.clone()]),
    );
    print_table(&mut out, &table)?;
    Ok(0)
}

fn inspect(g: &Global, a: VolumeInspectArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let store = open_store(g)?;
    let mut arr = vec![];
    let mut failed = false;
    for n in &a.names {
        match store.volume(n) {
            Ok(v) => arr.push(inspect_json(&v)),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    match format {
        Format::Template { t, .. } => {
            let mut out = io::stdout().lock();
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

fn rm(g: &Global, a: VolumeRmArgs) -> CmdResult {
    let store = open_store(g)?;
    let users = volume_users(&store);
    let mut failed = false;
    for n in &a.names {
        let r = match users.get(n) {
            Some(ids) => Err(anyhow::anyhow!(
                "remove {n}: volume is in use - [{}]",
                ids.join(", ")
            )),
            None => match store.remove_volume(n) {
                Err(crate::store::StoreError::NoSuchVolume(_)) if a.force => Ok(()),
                r => r.map_err(anyhow::Error::from),
            },
        };
        match r {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from box: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn prune(g: &Global, a: VolumePruneArgs) -> CmdResult {
    let filters = Filters::parse("volume prune", &a.filter, &["label", "label!"])?;
    let store = open_store(g)?;
    let users = volume_users(&store);
    let mut freed = 0;
    let mut out = io::stdout().lock();
    let mut header = false;
    for v in store.volumes()? {
        let labels = labels_json(&v);
        let negated = filters.values("label!").iter().any(|f| {
            let (k, val) = f.split_once('=').map_or((*f, None), |(k, v)| (k, Some(v)));
            labels
                .get(k)
                .is_some_and(|x| val.is_none_or(|val| x.as_str() == Some(val)))
        });
        if users.contains_key(&v.name)
            || !(a.all || v.anonymous)
            || !filters.labels_match(&labels)
            || negated
        {
            continue;
        }
        let size = store.volume_size(&v.name);
        store.remove_volume(&v.name)?;
        freed += size;
        if !header {
            writeln!(out, "Deleted Volumes:")?;
            header = true;
        }
        writeln!(out, "{}", v.name)?;
    }
    if header {
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(freed))?;
    Ok(0)
}
