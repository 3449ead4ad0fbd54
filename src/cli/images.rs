//! `box images | tag | rmi | prune | load | save`, and the image side of `box inspect`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};

use anyhow::{Context, bail};

use super::fmt::{human_size, print_table};
use super::store::{open_store, open_store_with};
use super::{CmdResult, Global, ImagesArgs, LoadArgs, PruneArgs, RmiArgs, SaveArgs, TagArgs};
use crate::atomic::{Durability, Staged};
use crate::image::Reference;
use crate::store::{Access, Store};
use crate::timefmt::{human_age, parse_rfc3339};

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
            // A failed save leaves no half archive: the file appears whole or not at all.
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            // 0o666 before the umask, as File::create gives.
            let tmp = Staged::new_in(dir, &format!(".{name}.tmp-"), 0o666)
                .with_context(|| format!("create a temporary file in {}", dir.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, tmp);
            store
                .save_archive(&a.images, a.compression_format, &mut w)
                .map_err(anyhow::Error::from)
                .and_then(|_| {
                    let tmp = w.into_inner().map_err(|e| e.into_error())?;
                    tmp.commit(p, Durability::Durable)?;
                    Ok(())
                })
                .with_context(|| format!("save to {}", p.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&io::stdout()) {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let out = io::stdout();
            store.save_archive(&a.images, a.compression_format, BufWriter::new(out.lock()))?;
        }
    }
    Ok(0)
}
