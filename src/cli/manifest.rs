//! `box manifest create|add|inspect|push|rm|remove`: assemble an image index (a "manifest
//! list") from single-platform images and push it, as podman's `manifest` commands do.
//!
//! A list is an index blob tagged with the list's name in the store (see
//! [`crate::store::lists`]); `box push` and `boxrun` treat it like any index-tagged name.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Subcommand};

use super::store::open_store;
use super::{CmdResult, Global};
use crate::image::{Descriptor, Platform, Reference, media};
use crate::registry::{self, Progress, PullOptions, PullPolicy, PushOptions};
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Create a manifest list (image index), optionally with images in it
    Create(CreateArgs),
    /// Add an image (one platform, or every platform of an index with --all) to a list
    Add(AddArgs),
    /// Show a manifest list or image manifest, local or in a registry, as JSON
    Inspect(InspectArgs),
    /// Push a manifest list and all its images to a registry
    Push(PushArgs),
    /// Remove manifest lists from the store (the images stay)
    Rm(RmArgs),
    /// Remove one entry (by manifest digest) from a manifest list
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Name of the new list
    pub list: String,
    /// Images to add
    pub images: Vec<String>,
    /// Add every platform of an image that is itself an index
    #[arg(long)]
    pub all: bool,
    /// Media type of the list: oci (an OCI image index) or docker (v2s2: a Docker manifest list)
    #[arg(long, short = 'f', value_parser = ["oci", "docker", "v2s2"], default_value = "oci")]
    pub format: String,
    /// If a list of that name exists, use it instead of failing
    #[arg(long)]
    pub amend: bool,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    pub list: String,
    pub image: String,
    /// Add every platform of an image that is itself an index
    #[arg(long)]
    pub all: bool,
    /// Override the operating system recorded for the image in the list
    #[arg(long)]
    pub os: Option<String>,
    /// Override the architecture recorded for the image in the list
    #[arg(long)]
    pub arch: Option<String>,
    /// Override the architecture variant recorded for the image in the list
    #[arg(long)]
    pub variant: Option<String>,
    /// Read registry credentials from this file only (when the image is pulled)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A local list, or a name in a registry
    pub list: String,
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    pub list: String,
    /// Destination reference (default: LIST)
    pub destination: Option<String>,
    /// Push the images in the list too (podman's default; only true is supported: a registry
    /// refuses an index whose manifests it lacks)
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub all: bool,
    /// Remove the list from the store after a successful push
    #[arg(long)]
    pub rm: bool,
    /// Print only the digest of the pushed list
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Compress built (uncompressed) layers with gzip, zstd or none
    #[arg(long, value_name = "FORMAT", default_value = "gzip")]
    pub compression_format: crate::layer::Compression,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub lists: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    pub list: String,
    /// The manifest digest of the entry (sha256:…)
    pub digest: String,
}

pub fn manifest(g: &Global, c: ManifestCommand) -> CmdResult {
    match c {
        ManifestCommand::Create(a) => create(g, a),
        ManifestCommand::Add(a) => add(g, a),
        ManifestCommand::Inspect(a) => inspect(g, a),
        ManifestCommand::Push(a) => push(g, a),
        ManifestCommand::Rm(a) => rm(g, a),
        ManifestCommand::Remove(a) => remove(g, a),
    }
}

fn create(g: &Global, a: CreateArgs) -> CmdResult {
    let store = open_store(g)?;
    let list: Reference = a.list.parse()?;
    let mt = if a.format == "oci" {
        media::OCI_INDEX
    } else {
        media::DOCKER_MANIFEST_LIST
    };
    let mut desc = match store.create_list(&list, mt) {
        Err(crate::store::lists::ListError::Exists(_)) if a.amend => store
            .tag_target(&a.list)?
            .context("the list vanished while amending it")?,
        r => r?,
    };
    for image in &a.images {
        let entries = entries_of(&store, image, a.all, None, &Platforms::default())?;
        desc = store.list_add(&list, entries)?;
    }
    println!("{}", desc.digest);
    Ok(0)
}

/// `--os/--arch/--variant` overrides.
#[derive(Default)]
struct Platforms {
    os: Option<String>,
    arch: Option<String>,
    variant: Option<String>,
}

fn add(g: &Global, a: AddArgs) -> CmdResult {
    let store = open_store(g)?;
    let list: Reference = a.list.parse()?;
    // Refuse a missing list before pulling anything.
    match store.tag_target(&a.list)? {
        Some(t) if media::is_index(&t.media_type) => {}
        Some(_) => bail!(crate::store::lists::ListError::NotAList(list.to_string())),
        None => bail!(crate::store::lists::ListError::NoSuchList(list.to_string())),
    }
    let over = Platforms {
        os: a.os,
        arch: a.arch,
        variant: a.variant,
    };
    if a.all && (over.os.is_some() || over.arch.is_some() || over.variant.is_some()) {
        bail!("--os, --arch and --variant name one image: they cannot go with --all");
    }
    let entries = entries_of(&store, &a.image, a.all, a.authfile, &over)?;
    let desc = store.list_add(&list, entries)?;
    println!("{}", desc.digest);
    Ok(0)
}

/// The list entries for `image`: its manifest with its platform (overridden as asked), or
/// with `all` every platform of the index it is tagged to, each pulled when not stored yet.
fn entries_of(
    store: &Store,
    image: &str,
    all: bool,
    authfile: Option<PathBuf>,
    over: &Platforms,
) -> anyhow::Result<Vec<Descriptor>> {
    let opts = |platform: Option<String>| PullOptions {
        policy: PullPolicy::Missing,
        platform,
        progress: Progress::Quiet,
        unpack: None,
        authfile: authfile.clone(),
    };
    let img = registry::ensure_image(store, image, &opts(None))
        .with_context(|| format!("add {image}"))?;
    let entry = |d: &Descriptor, p: Option<Platform>| {
        let mut e = Descriptor::new(&d.media_type, d.digest.clone(), d.size);
        e.platform = p;
        e
    };
    match (&img.index, all) {
        (Some(idx), true) => {
            let mut out = vec![];
            let index = store.read_image_index(&idx.digest)?;
            for d in index
                .manifests
                .into_iter()
                .filter(|d| media::is_manifest(&d.media_type))
            {
                let p = d.platform.as_ref().and_then(Platform::known);
                if !store.has_blob(&d.digest)
                    && let Some(p) = &p
                {
                    registry::ensure_image(store, image, &opts(Some(p.to_string())))
                        .with_context(|| format!("add {image} for {p}"))?;
                }
                out.push(entry(&d, d.platform.clone()));
            }
            Ok(out)
        }
        _ => {
            let mut p = img.config.platform().unwrap_or_default();
            if let Some(os) = &over.os {
                p.os = os.clone();
            }
            if let Some(arch) = &over.arch {
                p.arch = arch.clone();
            }
            if over.variant.is_some() {
                p.variant = over.variant.clone();
            }
            let p = p.known();
            Ok(vec![entry(&img.manifest_desc, p)])
        }
    }
}

fn inspect(g: &Global, a: InspectArgs) -> CmdResult {
    let store = open_store(g)?;
    let local = store.tag_target(&a.list)?;
    let bytes = match local {
        Some(t) if media::is_index(&t.media_type) => store.read_blob(&t.digest)?,
        Some(_) => bail!(crate::store::lists::ListError::NotAList(a.list)),
        None => {
            let opts = PullOptions {
                authfile: a.authfile,
                ..Default::default()
            };
            registry::remote_manifest(&a.list, &opts)
                .with_context(|| format!("inspect {}", a.list))?
                .0
        }
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).context("the manifest is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

fn push(g: &Global, a: PushArgs) -> CmdResult {
    if !a.all {
        bail!(
            "--all=false is not supported: a registry refuses an index whose manifests it does \
             not have; push the images first, or push with --all"
        );
    }
    let store = open_store(g)?;
    match store.tag_target(&a.list)? {
        Some(t) if media::is_index(&t.media_type) => {}
        Some(_) => bail!(crate::store::lists::ListError::NotAList(a.list)),
        None => bail!(crate::store::lists::ListError::NoSuchList(a.list)),
    }
    let opts = PushOptions {
        progress: if a.quiet {
            Progress::Quiet
        } else {
            Progress::Auto
        },
        authfile: a.authfile,
        compression: a.compression_format,
    };
    let digest = registry::push_with(&store, &a.list, a.destination.as_deref(), &opts)
        .with_context(|| format!("push {}", a.list))?;
    if a.rm {
        store.remove_tag(&a.list.parse()?)?;
    }
    println!("{digest}");
    Ok(0)
}

fn rm(g: &Global, a: RmArgs) -> CmdResult {
    let store = open_store(g)?;
    let mut failed = false;
    for l in &a.lists {
        let r = (|| -> anyhow::Result<()> {
            match store.tag_target(l)? {
                Some(t) if media::is_index(&t.media_type) => {
                    store.remove_tag(&l.parse()?)?;
                    Ok(())
                }
                Some(_) => bail!(crate::store::lists::ListError::NotAList(l.clone())),
                None => bail!(crate::store::lists::ListError::NoSuchList(l.clone())),
            }
        })();
        match r {
            Ok(()) => println!("Untagged: {l}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn remove(g: &Global, a: RemoveArgs) -> CmdResult {
    let store = open_store(g)?;
    let digest: crate::digest::Digest = a
        .digest
        .parse()
        .with_context(|| format!("{:?} is not a manifest digest (sha256:…)", a.digest))?;
    let desc = store.list_remove(&a.list.parse()?, &digest)?;
    println!("{}", desc.digest);
    Ok(0)
}
