//! `box images | tag | rmi | inspect | prune | load | save`: the store's commands.

use crate::timefmt::parse_rfc3339;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};

use anyhow::{Context, bail};

use super::{
    CmdResult, Global, ImagesArgs, InspectArgs, LoadArgs, PruneArgs, RmiArgs, SaveArgs, TagArgs,
};
use crate::image::Reference;
use crate::store::{Access, Store};

pub fn open_store(g: &Global) -> anyhow::Result<Store> {
    open_store_with(g, Access::Shared)
}

fn open_store_with(g: &Global, access: Access) -> anyhow::Result<Store> {
    let root = g.root.clone().unwrap_or_else(Store::default_root);
    Store::open_with(&root, access).with_context(|| format!("open store {}", root.display()))
}

/// "2 hours ago", as docker prints CREATED.
pub fn human_age(created: Option<&str>) -> String {
    let Some(ts) = created.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let s = (now - ts).max(0);
    let (n, unit) = match s {
        0..=59 => {
            return if s <= 1 {
                "Less than a second ago".into()
            } else {
                format!("{s} seconds ago")
            };
        }
        60..=3599 => (s / 60, "minute"),
        3600..=172_799 => (s / 3600, "hour"),
        172_800..=1_209_599 => (s / 86_400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    if n == 1 {
        match unit {
            "hour" => "About an hour ago".into(),
            "minute" => "About a minute ago".into(),
            _ => format!("1 {unit} ago"),
        }
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Docker's size format: SI units, 3 significant digits ("4.26MB").
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

pub fn images(g: &Global, a: ImagesArgs) -> CmdResult {
    let store = open_store(g)?;
    let filter = a
        .repository
        .as_deref()
        .map(|r| r.parse::<Reference>())
        .transpose()
        .context("repository filter")?;
    let mut rows = store.images()?;
    rows.retain(|r| match (&filter, &r.name) {
        (None, _) => true,
        (Some(f), Some(n)) => {
            f.name() == n.name()
                && (a.repository.as_deref().is_some_and(|s| !s.contains(':')) || f.tag() == n.tag())
        }
        (Some(_), None) => false,
    });
    // Newest first, like docker.
    rows.sort_by_key(|r| std::cmp::Reverse(r.image.created().and_then(parse_rfc3339).unwrap_or(0)));
    let out = io::stdout();
    let mut out = out.lock();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let id = r.image.id();
            if seen.insert(id.clone()) {
                writeln!(
                    out,
                    "{}",
                    if a.no_trunc {
                        id.to_string()
                    } else {
                        id.short().to_string()
                    }
                )?;
            }
        }
        return Ok(0);
    }
    let mut table: Vec<Vec<String>> = vec![];
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    table.push(header.iter().map(|s| s.to_string()).collect());
    for r in &rows {
        let (repo, tag) = match &r.name {
            Some(n) => (n.familiar_name(), n.tag().unwrap_or("<none>").to_string()),
            None => ("<none>".into(), "<none>".into()),
        };
        let mut row = vec![repo, tag];
        if a.digests {
            row.push(r.image.manifest_desc.digest.to_string());
        }
        let id = if a.no_trunc {
            r.image.id().to_string()
        } else {
            r.image.id().short().to_string()
        };
        row.extend([id, human_age(r.image.created()), human_size(r.image.size())]);
        table.push(row);
    }
    print_table(&mut out, &table)?;
    Ok(0)
}

/// Left-aligned columns separated by at least three spaces, as docker's tabwriter does.
pub fn print_table(out: &mut dyn Write, rows: &[Vec<String>]) -> io::Result<()> {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub fn tag(g: &Global, a: TagArgs) -> CmdResult {
    let store = open_store(g)?;
    let img = store.resolve_image(&a.source)?;
    let target: Reference = a.target.parse()?;
    if target.digest().is_some() {
        bail!(
            "refusing to create a tag with a digest reference: {}",
            a.target
        );
    }
    store.set_tag(&target, &img.manifest_desc)?;
    Ok(0)
}

pub fn rmi(g: &Global, a: RmiArgs) -> CmdResult {
    let store = open_store(g)?;
    let mut failed = false;
    for name in &a.images {
        match rmi_one(&store, name, a.force) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("Error response from box: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn rmi_one(store: &Store, name: &str, force: bool) -> anyhow::Result<Vec<String>> {
    let img = store.resolve_image(name)?;
    let by_name = name
        .parse::<Reference>()
        .ok()
        .filter(|r| img.names.contains(r));
    let mut out = vec![];
    // Removing one of several names only untags, as docker does; by ID it needs -f then.
    if let Some(r) = by_name.filter(|_| img.names.len() > 1) {
        store.remove_tag(&r)?;
        out.push(format!(
            "Untagged: {}",
            r.familiar_name() + ":" + r.tag().unwrap_or("latest")
        ));
        return Ok(out);
    }
    if img.names.len() > 1 && !force {
        bail!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            img.id().short()
        );
    }
    for n in &img.names {
        out.push(format!(
            "Untagged: {}:{}",
            n.familiar_name(),
            n.tag().unwrap_or("latest")
        ));
    }
    store.remove_manifest(&img.manifest_desc.digest)?;
    out.push(format!("Deleted: {}", img.id()));
    Ok(out)
}

pub fn inspect(g: &Global, a: InspectArgs) -> CmdResult {
    let store = open_store(g)?;
    let mut arr = vec![];
    let mut failed = false;
    let ctrs = crate::container::Containers::new(store.containers_dir());
    for n in &a.names {
        // Containers first, as docker does when no --type is given.
        if a.r#type.as_deref() != Some("image")
            && let Some(j) = super::containers::inspect_json(&ctrs, n)
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
            Ok(img) => arr.push(inspect_json(&img)),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Array(arr))?
    );
    Ok(if failed { 1 } else { 0 })
}

/// The fields `docker image inspect` prints, filled from the OCI config.
pub fn inspect_json(img: &crate::store::Image) -> serde_json::Value {
    let c = &img.config;
    serde_json::json!({
        "Id": img.id().to_string(),
        "RepoTags": img.names.iter().map(|n| format!("{}:{}", n.familiar_name(), n.tag().unwrap_or("latest"))).collect::<Vec<_>>(),
        "RepoDigests": img.names.iter().map(|n| format!("{}@{}", n.familiar_name(), img.manifest_desc.digest)).collect::<Vec<_>>(),
        "Created": c.created,
        "Author": c.author.as_deref().unwrap_or_default(),
        "Config": c.config,
        "Architecture": c.architecture,
        "Variant": c.variant,
        "Os": c.os,
        "Size": img.size(),
        "RootFS": c.rootfs,
        "History": (!c.history.is_empty()).then_some(&c.history),
        "Manifest": {
            "Digest": img.manifest_desc.digest.to_string(),
            "MediaType": img.manifest_desc.media_type,
            "Layers": img.manifest.layers,
        },
    })
}

pub fn prune(g: &Global, _a: PruneArgs) -> CmdResult {
    let store = open_store_with(g, Access::Exclusive)?;
    let rep = store.prune()?;
    for d in &rep.blobs_removed {
        println!("deleted: {d}");
    }
    for l in &rep.layers_removed {
        println!("deleted unpacked layer: {l}");
    }
    println!("\nTotal reclaimed space: {}", human_size(rep.bytes_freed));
    Ok(0)
}

pub fn load(g: &Global, a: LoadArgs) -> CmdResult {
    let store = open_store(g)?;
    let loaded = match &a.input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("open archive {}", p.display()))?;
            store.load_archive(BufReader::with_capacity(1 << 20, f))
        }
        None => store.load_archive(BufReader::with_capacity(1 << 20, io::stdin().lock())),
    }
    .with_context(|| {
        format!(
            "load {}",
            a.input
                .as_ref()
                .map_or("stdin".into(), |p| p.display().to_string())
        )
    })?;
    if !a.quiet {
        for l in loaded {
            match l.name {
                Some(n) => println!(
                    "Loaded image: {}:{}",
                    n.familiar_name(),
                    n.tag().unwrap_or("latest")
                ),
                None => println!("Loaded image ID: {}", l.image_id),
            }
        }
    }
    Ok(0)
}

pub fn save(g: &Global, a: SaveArgs) -> CmdResult {
    let store = open_store(g)?;
    match &a.output {
        Some(p) => {
            // Write beside the target and rename, so a failed save leaves no half archive.
            let tmp = p.with_extension("boxsave-tmp");
            let f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let r = store
                .save_archive(&a.images, &mut w)
                .map_err(anyhow::Error::from)
                .and_then(|_| {
                    let f = w.into_inner().map_err(|e| e.into_error())?;
                    f.sync_all()?;
                    Ok(())
                });
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("save to {}", p.display())));
            }
            std::fs::rename(&tmp, p).with_context(|| format!("rename into {}", p.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&io::stdout()) {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let out = io::stdout();
            store.save_archive(&a.images, BufWriter::new(out.lock()))?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(72_800_000), "72.8MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(123_456_789), "123MB");
    }
}
