//! `box system df` (what the store holds and what prune could free) and `box builder prune`
//! (the build cache, crate::build::cache).

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::fmt::{Format, human_size, print_rows, print_table};
use super::store::{open_store, open_store_with};
use super::{CmdResult, Global};
use crate::build::cache::{self, CachePrune};
use crate::container::Containers;
use crate::digest::Digest;
use crate::store::{Access, Store};

#[derive(Subcommand, Debug)]
/// `box system …`.
pub enum SystemCommand {
    /// Show the store's disk usage: images, containers, volumes, build cache
    Df(DfArgs),
    /// Stop your user namespace keeper (rootless), as `podman system migrate` stops its pause
    /// process: the next command starts a new one with the current /etc/subuid ranges. The
    /// rootless bridge network goes with it; running rootless containers lose it.
    Migrate,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output: 'json', a Go template ('{{.Type}} {{.Size}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(BuilderPruneArgs),
}

#[derive(Args, Debug)]
pub struct BuilderPruneArgs {
    /// Remove all build cache, not only records whose layer no image uses
    #[arg(short, long)]
    pub all: bool,
    /// Amount of disk space to keep for cache (e.g. 512MB, 2g); the oldest records go first
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub keep_storage: Option<u64>,
    /// Do not prompt for confirmation (prune never prompts; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::limits::parse_size(s).ok_or_else(|| format!("invalid size {s:?}: e.g. 512MB, 2g"))
}

/// One line of docker's summary table.
struct Usage {
    kind: &'static str,
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

impl Usage {
    fn new(kind: &'static str) -> Usage {
        Usage {
            kind,
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        }
    }
    /// Count one object of `size` bytes; an inactive one could be reclaimed.
    fn add(&mut self, size: u64, active: bool) {
        self.total += 1;
        self.size += size;
        if active {
            self.active += 1;
        } else {
            self.reclaimable += size;
        }
    }
    fn row(&self, percent: bool) -> serde_json::Value {
        let mut rec = human_size(self.reclaimable);
        if percent {
            let p = (self.reclaimable * 100).checked_div(self.size).unwrap_or(0);
            rec = format!("{rec} ({p}%)");
        }
        serde_json::json!({
            "Type": self.kind,
            "TotalCount": self.total.to_string(),
            "Active": self.active.to_string(),
            "Size": human_size(self.size),
            "Reclaimable": rec,
        })
    }
}

/// Images: distinct IDs; active when a container uses one; size counts each blob once.
fn image_usage(store: &Store, used: &HashSet<String>) -> anyhow::Result<(Usage, Rows)> {
    let images = store.images()?;
    let mut blobs: HashMap<Digest, u64> = HashMap::new();
    let mut active_blobs: HashSet<Digest> = HashSet::new();
    let mut ids = HashSet::new();
    let mut active = HashSet::new();
    let mut rows = vec![];
    for r in &images {
        let img = &r.image;
        let id = img.id().to_string();
        let is_active = used.contains(&id);
        let descs = img.manifest.layers.iter().chain([&img.manifest.config]);
        for d in descs {
            blobs.insert(d.digest.clone(), d.size);
            if is_active {
                active_blobs.insert(d.digest.clone());
            }
        }
        if is_active {
            active.insert(id.clone());
        }
        let (repo, tag) = match &r.name {
            Some(n) => (n.familiar_name(), n.tag().unwrap_or("<none>").to_string()),
            None => ("<none>".into(), "<none>".into()),
        };
        if ids.insert(id) || r.name.is_some() {
            rows.push(vec![
                repo,
                tag,
                img.id().short().to_string(),
                crate::timefmt::human_age(img.created()),
                human_size(img.size()),
                if is_active { "1+" } else { "0" }.to_string(),
            ]);
        }
    }
    let size: u64 = blobs.values().sum();
    let kept: u64 = active_blobs.iter().map(|d| blobs[d]).sum();
    let u = Usage {
        kind: "Images",
        total: ids.len(),
        active: active.len(),
        size,
        reclaimable: size - kept,
    };
    Ok((u, rows))
}

type Rows = Vec<Vec<String>>;

/// Containers: active when running; the size of their directories in the store.
fn container_usage(store: &Store) -> (Usage, Rows, HashSet<String>) {
    let ctrs = Containers::new(store.containers_dir());
    let states: Vec<_> = ctrs
        .ids()
        .iter()
        .filter_map(|id| ctrs.load(id).ok())
        .collect();
    let mut c = Usage::new("Containers");
    let mut rows = vec![];
    for s in &states {
        let size = crate::store::gc::dir_size(&ctrs.dir(&s.id));
        c.add(size, s.is_running());
        rows.push(vec![
            s.id[..12.min(s.id.len())].to_string(),
            s.image.clone(),
            human_size(size),
            s.status_text(),
            s.name.clone(),
        ]);
    }
    let used = states.iter().map(|s| s.image_id.clone()).collect();
    (c, rows, used)
}

/// Volumes: active when a container uses one.
fn volume_usage(store: &Store) -> anyhow::Result<(Usage, Rows)> {
    let users = super::volumes::volume_users(store);
    let mut v = Usage::new("Local Volumes");
    let mut rows = vec![];
    for vol in store.volumes()? {
        let size = store.volume_size(&vol.name);
        let links = users.get(&vol.name).map_or(0, Vec::len);
        v.add(size, links > 0);
        rows.push(vec![vol.name.clone(), links.to_string(), human_size(size)]);
    }
    Ok((v, rows))
}

/// The build cache: the blobs only its records keep (what builder prune then frees).
fn cache_usage(store: &Store) -> anyhow::Result<(Usage, Rows)> {
    let in_images = image_blobs(store)?;
    let entries = cache::entries(store);
    let mut own: HashMap<Digest, u64> = HashMap::new();
    let mut rows = vec![];
    for e in &entries {
        let shared = e.layer.as_ref().is_some_and(|l| in_images.contains(l));
        if let Some(l) = e.layer.as_ref().filter(|_| !shared) {
            own.insert(l.clone(), e.size);
        }
        let secs = e
            .written
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        rows.push(vec![
            e.key[..12.min(e.key.len())].to_string(),
            "regular".into(),
            human_size(e.size),
            crate::timefmt::human_age(Some(&crate::timefmt::rfc3339(secs))),
            shared.to_string(),
        ]);
    }
    let mut b = Usage::new("Build Cache");
    b.total = entries.len();
    b.size = own.values().sum();
    b.reclaimable = b.size;
    Ok((b, rows))
}

fn section(out: &mut dyn Write, title: &str, head: &[&str], rows: Rows) -> io::Result<()> {
    writeln!(out, "{title}:")?;
    let mut t = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    t.extend(rows);
    print_table(out, &t)?;
    writeln!(out)
}

pub fn df(g: &Global, a: DfArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let store = open_store(g)?;
    let (c, ctr_rows, used) = container_usage(&store);
    let (images, image_rows) = image_usage(&store, &used)?;
    let (v, vol_rows) = volume_usage(&store)?;
    let (b, cache_rows) = cache_usage(&store)?;
    let summary = [images.row(true), c.row(true), v.row(true), b.row(false)];
    let mut out = io::stdout().lock();
    let titles = [("TotalCount", "TOTAL"), ("Reclaimable", "RECLAIMABLE")];
    if print_rows(&mut out, &format, &summary, &titles)? {
        return Ok(0);
    }
    if !a.verbose {
        let keys = ["Type", "TotalCount", "Active", "Size", "Reclaimable"];
        let mut t = vec![["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"].map(String::from)];
        for r in &summary {
            t.push(keys.map(|k| r[k].as_str().unwrap_or_default().to_string()));
        }
        print_table(&mut out, &t)?;
        return Ok(0);
    }
    let image_head = [
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "CONTAINERS",
    ];
    section(&mut out, "Images space usage", &image_head, image_rows)?;
    let ctr_head = ["CONTAINER ID", "IMAGE", "SIZE", "STATUS", "NAMES"];
    section(&mut out, "Containers space usage", &ctr_head, ctr_rows)?;
    let vol_head = ["VOLUME NAME", "LINKS", "SIZE"];
    section(&mut out, "Local Volumes space usage", &vol_head, vol_rows)?;
    let cache_head = ["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "SHARED"];
    section(&mut out, "Build cache usage", &cache_head, cache_rows)?;
    Ok(0)
}

/// The blobs tagged images keep (so not the build cache's own).
fn image_blobs(store: &Store) -> anyhow::Result<HashSet<Digest>> {
    let mut out = HashSet::new();
    for r in store.images()? {
        out.extend(r.image.manifest.layers.iter().map(|l| l.digest.clone()));
        out.insert(r.image.manifest.config.digest.clone());
    }
    Ok(out)
}

pub fn builder(g: &Global, c: BuilderCommand) -> CmdResult {
    let BuilderCommand::Prune(a) = c;
    // Exclusive: the blobs the removed records kept are collected at once, and no build may
    // be between writing a record and tagging its image meanwhile.
    let store = open_store_with(g, Access::Exclusive)?;
    let removed = cache::prune(
        &store,
        CachePrune {
            all: a.all,
            keep_storage: a.keep_storage,
        },
    )
    .context("prune the build cache")?;
    let rep = store.prune()?;
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted build cache objects:")?;
        for e in &removed {
            writeln!(out, "{}", e.key)?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(rep.bytes_freed)
    )?;
    Ok(0)
}
