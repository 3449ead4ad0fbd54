//! `box images | tag | rmi | prune | load | save`, and the image side of `box inspect`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};

use anyhow::{Context, bail};

use super::filter::{Filters, glob, parse_bool};
use super::fmt::{Format, human_size, print_rows, print_table};
use super::store::{open_store, open_store_with};
use super::{CmdResult, Global, ImagesArgs, LoadArgs, PruneArgs, RmiArgs, SaveArgs, TagArgs};
use crate::atomic::{Durability, Staged};
use crate::digest::Digest;
use crate::image::Reference;
use crate::store::{Access, ImageRecord, Store};
use crate::timefmt::{human_age, parse_rfc3339};

/// The filters `box images` supports.
const IMAGE_FILTERS: &[&str] = &["before", "dangling", "label", "reference", "since"];

/// docker images's column titles for `--format 'table ...'`.
const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

pub fn images(g: &Global, a: ImagesArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let filters = Filters::parse("images", &a.filter, IMAGE_FILTERS)?;
    let store = open_store(g)?;
    let repo_filter = a
        .repository
        .as_deref()
        .map(|r| r.parse::<Reference>())
        .transpose()
        .context("repository filter")?;
    let all = store.images()?;
    let created = |r: &ImageRecord| r.image.created().and_then(parse_rfc3339).unwrap_or(0);
    let mut rows = vec![];
    for r in &all {
        let positional = match (&repo_filter, &r.name) {
            (None, _) => true,
            (Some(f), Some(n)) => {
                f.name() == n.name()
                    && (a.repository.as_deref().is_some_and(|s| !s.contains(':'))
                        || f.tag() == n.tag())
            }
            (Some(_), None) => false,
        };
        if positional && image_match(&store, &filters, r, created(r))? {
            rows.push(r);
        }
    }
    // Newest first, like docker.
    rows.sort_by_key(|r| std::cmp::Reverse(created(r)));
    let out = io::stdout();
    let mut out = out.lock();
    let id_of = |r: &ImageRecord| {
        if a.no_trunc {
            r.image.list_id().to_string()
        } else {
            r.image.list_id().short().to_string()
        }
    };
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if seen.insert(r.image.list_id().clone()) {
                writeln!(out, "{}", id_of(r))?;
            }
        }
        return Ok(0);
    }
    let json: Vec<serde_json::Value> = rows.iter().map(|r| image_row(r, id_of(r))).collect();
    if print_rows(&mut out, &format, &json, IMAGE_HEADERS)? {
        return Ok(0);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for j in &json {
        let mut keys = vec!["Repository", "Tag"];
        if a.digests {
            keys.push("Digest");
        }
        keys.extend(["ID", "CreatedSince", "Size"]);
        table.push(
            keys.iter()
                .map(|k| j[*k].as_str().unwrap_or_default().to_string())
                .collect(),
        );
    }
    print_table(&mut out, &table)?;
    Ok(0)
}

/// docker images's `--format` fields for one image: every value a string, as docker's are.
fn image_row(r: &ImageRecord, id: String) -> serde_json::Value {
    let (repo, tag) = match &r.name {
        Some(n) => (n.familiar_name(), n.tag().unwrap_or("<none>").to_string()),
        None => ("<none>".into(), "<none>".into()),
    };
    let size = human_size(r.image.size());
    serde_json::json!({
        "Containers": "N/A",
        "CreatedAt": r.image.created().map(super::fmt::docker_time).unwrap_or_default(),
        "CreatedSince": human_age(r.image.created()),
        "Digest": r.image.target().digest.to_string(),
        "ID": id,
        "Repository": repo,
        "SharedSize": "N/A",
        "Size": size,
        "Tag": tag,
        "UniqueSize": "N/A",
        "VirtualSize": size,
    })
}

/// Whether image `r` (created at `created`, seconds) passes every `--filter` of `box images`.
fn image_match(store: &Store, f: &Filters, r: &ImageRecord, created: i64) -> anyhow::Result<bool> {
    let time_of = |what: &str| -> anyhow::Result<i64> {
        let img = store
            .resolve_image(what)
            .with_context(|| format!("invalid filter: no such image: {what}"))?;
        Ok(img.created().and_then(parse_rfc3339).unwrap_or(0))
    };
    for v in f.values("before") {
        if created >= time_of(v)? {
            return Ok(false);
        }
    }
    for v in f.values("since") {
        if created <= time_of(v)? {
            return Ok(false);
        }
    }
    let mut dangling = None;
    for v in f.values("dangling") {
        dangling = Some(parse_bool("dangling", v)?);
    }
    if dangling.is_some_and(|d| d != r.name.is_none()) {
        return Ok(false);
    }
    let labels: serde_json::Map<String, serde_json::Value> = r
        .image
        .config
        .config
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    // docker matches a reference pattern against the familiar name, with and without tag.
    let reference = |pat: &str| {
        r.name.as_ref().is_some_and(|n| {
            let name = n.familiar_name();
            let tagged = format!("{name}:{}", n.tag().unwrap_or("latest"));
            glob(pat, &name) || glob(pat, &tagged)
        })
    };
    Ok(f.labels_match(&labels) && f.any("reference", reference))
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
    // A name tagged to an index tags the index (all its platforms), as docker's containerd
    // store does.
    store.set_tag(&target, img.target())?;
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
    store.remove_manifest(&img.target().digest)?;
    out.push(format!("Deleted: {}", img.id()));
    Ok(out)
}

/// `box inspect` of a name tagged to an index: the host platform's image (docker's fields,
/// so `--format` templates work as with docker's containerd store, whose `Id` is the index
/// digest too), plus `Manifests`: the index's entries as podman's `manifest inspect` lists
/// them, each with `Present` (whether that platform was pulled).
pub fn inspect_json_in(
    store: &Store,
    img: &crate::store::Image,
) -> anyhow::Result<serde_json::Value> {
    let mut j = inspect_json(img);
    if let Some(i) = &img.index {
        let entries: Vec<serde_json::Value> = store
            .read_image_index(&i.digest)?
            .manifests
            .iter()
            .map(|d| {
                let mut e = serde_json::to_value(d).expect("descriptor serialises");
                e["Present"] = store.has_blob(&d.digest).into();
                e
            })
            .collect();
        j["Manifests"] = entries.into();
        j["Index"] = serde_json::json!({"Digest": i.digest.to_string(), "MediaType": i.media_type});
    }
    Ok(j)
}

/// The fields `docker image inspect` prints, filled from the OCI config.
pub fn inspect_json(img: &crate::store::Image) -> serde_json::Value {
    let c = &img.config;
    serde_json::json!({
        "Id": img.list_id().to_string(),
        "RepoTags": img.names.iter().map(|n| format!("{}:{}", n.familiar_name(), n.tag().unwrap_or("latest"))).collect::<Vec<_>>(),
        "RepoDigests": img.names.iter().map(|n| format!("{}@{}", n.familiar_name(), img.target().digest)).collect::<Vec<_>>(),
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

/// `box image …`: docker's management-command spelling of the image commands.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Show the history of an image
    History(super::history::HistoryArgs),
    /// Remove dangling images (every unused one with -a) and unreferenced content
    Prune(PruneArgs),
}

pub fn image(g: &Global, c: ImageCommand) -> CmdResult {
    match c {
        ImageCommand::Ls(a) => images(g, a),
        ImageCommand::Rm(a) => rmi(g, a),
        ImageCommand::History(a) => super::history::history(g, a),
        ImageCommand::Prune(a) => prune(g, a),
    }
}

/// Remove the images prune takes, as `docker image prune [-a]`: untagged (dangling) ones, or
/// with `all` every one no container uses. Returns docker's "untagged:"/"deleted:" lines.
fn prune_images(store: &Store, all: bool) -> anyhow::Result<Vec<String>> {
    let ctrs = crate::container::Containers::new(store.containers_dir());
    let mut used = std::collections::HashSet::new();
    for id in ctrs.ids() {
        if let Ok(st) = ctrs.load(&id) {
            used.insert(st.image_digest);
            used.insert(st.image_id);
        }
    }
    let mut lines = vec![];
    let mut touched = vec![];
    for r in store.images()? {
        let img = &r.image;
        let in_use = used_by(store, img)?
            .iter()
            .any(|d| used.contains(&d.to_string()));
        if in_use || !(all || r.name.is_none()) {
            continue;
        }
        match &r.name {
            Some(n) => {
                store.remove_tag(n)?;
                lines.push(format!(
                    "untagged: {}:{}",
                    n.familiar_name(),
                    n.tag().unwrap_or("latest")
                ));
            }
            None => {
                store.remove_manifest(&img.target().digest)?;
            }
        }
        if !touched.contains(&img.manifest_desc.digest) {
            touched.push(img.manifest_desc.digest.clone());
        }
    }
    // An image is deleted once no index entry (name or untagged) is left for it.
    let left: std::collections::HashSet<_> = store
        .images()?
        .into_iter()
        .map(|r| r.image.manifest_desc.digest)
        .collect();
    for r in touched.iter().filter(|d| !left.contains(*d)) {
        let id = store.read_manifest(r)?.config.digest;
        lines.push(format!("deleted: {id}"));
    }
    Ok(lines)
}

/// The digests a container records for an image made from `img`: its manifest and ID, and
/// for a name tagged to an index, those of every stored platform.
fn used_by(store: &Store, img: &crate::store::Image) -> anyhow::Result<Vec<Digest>> {
    let mut out = vec![img.manifest_desc.digest.clone(), img.id().clone()];
    if let Some(i) = &img.index {
        for e in store.read_image_index(&i.digest)?.manifests {
            if crate::image::media::is_manifest(&e.media_type) && store.has_blob(&e.digest) {
                out.push(store.read_manifest(&e.digest)?.config.digest);
                out.push(e.digest);
            }
        }
    }
    Ok(out)
}

pub fn prune(g: &Global, a: PruneArgs) -> CmdResult {
    let store = open_store_with(g, Access::Exclusive)?;
    let images = prune_images(&store, a.all)?;
    let rep = store.prune()?;
    if !images.is_empty() {
        println!("Deleted Images:");
        images.iter().for_each(|l| println!("{l}"));
        println!();
    }
    for d in &rep.blobs_removed {
        println!("deleted blob: {d}");
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
    use crate::store::archive::ArchiveFormat;
    let compression = match (a.format, a.compression_format) {
        (ArchiveFormat::DockerArchive, Some(_)) => bail!(
            "--compression-format applies to --format oci-archive only (add it): a docker archive's \
             layers are uncompressed tars"
        ),
        (_, c) => c.unwrap_or_default(),
    };
    let store = open_store(g)?;
    let write = |w: &mut dyn Write| match a.format {
        ArchiveFormat::DockerArchive => store.save_docker_archive(&a.images, w),
        ArchiveFormat::OciArchive => store.save_archive(&a.images, compression, w),
    };
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
            write(&mut w)
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
            write(&mut BufWriter::new(out.lock()))?;
        }
    }
    Ok(0)
}
