//! `box load` / `box save`: the tar reading and OCI archives (a tar of an OCI image layout);
//! docker archives are [`super::docker_archive`].
//!
//! Load streams each blob from the tar straight into the store through a verifying
//! [`super::BlobWriter`] (a blob whose bytes do not match its name is rejected before it is
//! stored), and only when every entry is read and every manifest's config and layers are
//! present does it set the tags from `org.opencontainers.image.ref.name`. An interrupted or
//! hostile archive therefore leaves no tag and at most unreferenced blobs for prune.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};

use super::index::REF_NAME;
use super::{Result, Store, StoreError, io_err};
use crate::digest::Digest;
use crate::image::{Descriptor, Index, Reference, media};

#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: Option<Reference>,
    pub manifest: Descriptor,
    pub image_id: Digest,
}

/// The annotation containerd (and so `docker save` since Docker 25) names an image with.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

pub(super) fn arch_err(what: impl Into<String>, why: impl Into<String>) -> StoreError {
    StoreError::Archive {
        what: what.into(),
        why: why.into(),
    }
}

/// An image config above the cap is refused, naming it, its size, the cap and the setting.
pub(super) fn config_within(what: &str, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(arch_err(
            format!("image config {what}"),
            format!(
                "is {}, over the {} limit for image configs; refused (if you trust the \
                 image, raise {})",
                crate::limits::human(size),
                crate::limits::human(max),
                crate::limits::MAX_CONFIG_SIZE_VAR
            ),
        ));
    }
    Ok(())
}

/// The two archive formats `box save` writes and `box load` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// `docker save`'s format: `manifest.json`, the config as `<hex>.json`, the layers as
    /// uncompressed tars (see [`super::docker_archive`]).
    #[default]
    DockerArchive,
    /// A tar of an OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/…`.
    OciArchive,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "docker-archive" => Ok(Self::DockerArchive),
            "oci-archive" => Ok(Self::OciArchive),
            other => Err(format!(
                "unknown archive format {other:?}: expected docker-archive or oci-archive"
            )),
        }
    }
}

/// Files of an archive that a docker archive's `manifest.json` may name but that are not
/// `blobs/sha256/<hex>`: kept in `tmp/` until the config they belong to has been checked.
/// Each holds a descriptor open, so a legitimate archive (one file per layer, plus configs)
/// stays far below this; more is refused rather than running out of descriptors.
const MAX_STAGED_FILES: usize = 4096;

/// A file of the archive, by its normalised path.
pub(super) enum ArchiveFile {
    /// Already in `blobs/`: it was named `blobs/sha256/<hex>` and matched its name.
    Stored { digest: Digest, size: u64 },
    /// Hashed into `tmp/`, waiting for a verdict.
    Staged(super::StagedBlob),
}

impl ArchiveFile {
    pub(super) fn digest(&self) -> &Digest {
        match self {
            Self::Stored { digest, .. } => digest,
            Self::Staged(s) => &s.digest,
        }
    }
    pub(super) fn size(&self) -> u64 {
        match self {
            Self::Stored { size, .. } => *size,
            Self::Staged(s) => s.size,
        }
    }
}

/// Everything read from one pass over an archive.
#[derive(Default)]
pub(super) struct Collected {
    index: Option<Index>,
    saw_layout: bool,
    /// A docker archive's `manifest.json`, raw.
    pub(super) docker_manifest: Option<Vec<u8>>,
    pub(super) files: BTreeMap<String, ArchiveFile>,
    /// Symbolic links (podman's `<id>/layer.tar -> ../<diff_id>.tar`), target resolved
    /// against the link's directory; None when it leaves the archive.
    pub(super) links: BTreeMap<String, Option<String>>,
}

/// An archive member's path without `./` and `.` components, `..` applied; None when it
/// leaves the archive's root. Absolute names are taken as relative to the root, as tar does.
pub(super) fn normalise(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// A JSON file of the archive, read whole (capped: it is parsed in memory).
fn read_small(entry: &mut impl Read, name: &str, size: u64) -> Result<Vec<u8>> {
    const MAX: u64 = 16 << 20;
    if size > MAX {
        return Err(arch_err(
            name,
            format!(
                "is {}, over the 16 MiB limit for it",
                crate::limits::human(size)
            ),
        ));
    }
    let mut buf = Vec::new();
    entry
        .take(MAX)
        .read_to_end(&mut buf)
        .map_err(|e| arch_err(name, e.to_string()))?;
    Ok(buf)
}

impl Store {
    /// Read an archive from `r` into the store and tag what it names: an OCI archive (it has
    /// `index.json`; docker ≥ 25 writes one beside `manifest.json`) or a docker archive (only
    /// `manifest.json`). The format is known only at the end of the stream (podman writes
    /// `manifest.json` last), so both are collected in one pass.
    pub fn load_archive(&self, r: impl Read) -> Result<Vec<Loaded>> {
        // `docker save x | gzip` is common, and docker load takes it: sniff the magic.
        let mut r = std::io::BufReader::with_capacity(1 << 20, r);
        let head = r.fill_buf().map_err(|e| arch_err("read", e.to_string()))?;
        let c = match head {
            [0x1f, 0x8b, ..] => self.collect_archive(flate2::read::MultiGzDecoder::new(r))?,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => self.collect_archive(
                zstd::Decoder::with_buffer(r).map_err(|e| arch_err("zstd", e.to_string()))?,
            )?,
            _ => self.collect_archive(r)?,
        };
        let limits =
            crate::limits::Limits::from_env().map_err(|e| arch_err("load", e.to_string()))?;
        if c.index.is_some() {
            self.finish_oci(c, &limits)
        } else if c.docker_manifest.is_some() {
            self.finish_docker(c, &limits)
        } else {
            Err(arch_err(
                "archive",
                "has neither index.json (an OCI archive) nor manifest.json (a docker archive): \
                 not an image archive",
            ))
        }
    }

    /// One pass over the tar: `blobs/sha256/<hex>` entries are verified against their name
    /// and stored; other files are staged (see [`ArchiveFile`]); the JSON entry points kept.
    fn collect_archive(&self, r: impl Read) -> Result<Collected> {
        let mut ar = tar::Archive::new(r);
        let mut c = Collected::default();
        let mut staged = 0usize;
        let entries = ar.entries().map_err(|e| arch_err("read", e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| arch_err("read entry", e.to_string()))?;
            let raw = entry
                .path()
                .map_err(|e| arch_err("entry name", e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let Some(p) = normalise(&raw) else {
                continue; // Never named by a loadable manifest (those are checked too).
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(|e| arch_err(format!("link {p}"), e.to_string()))?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                let resolved = if target.starts_with('/') {
                    None
                } else {
                    normalise(&format!("{dir}/{target}"))
                };
                c.links.insert(p, resolved);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.header().size().unwrap_or(0);
            match p.as_str() {
                "oci-layout" => c.saw_layout = true,
                "index.json" => {
                    let buf = read_small(&mut entry, "index.json", size)?;
                    c.index =
                        Some(
                            serde_json::from_slice(&buf).map_err(|source| StoreError::Json {
                                what: "archive index",
                                path: "index.json".into(),
                                source,
                            })?,
                        );
                }
                "manifest.json" => {
                    c.docker_manifest = Some(read_small(&mut entry, "manifest.json", size)?);
                }
                // The pre-1.10 docker metadata: never named by manifest.json.
                "repositories" => {}
                _ if p.ends_with("/VERSION") || p.ends_with("/json") => {}
                _ => {
                    let file = self.collect_file(&mut entry, &p, size, &mut staged)?;
                    c.files.insert(p, file);
                }
            }
        }
        Ok(c)
    }

    fn collect_file(
        &self,
        entry: &mut dyn Read,
        p: &str,
        size: u64,
        staged: &mut usize,
    ) -> Result<ArchiveFile> {
        if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            let expected = Digest::from_hex(hex)
                .map_err(|_| arch_err(p, "blob name is not a sha256 digest"))?;
            if !self.has_blob(&expected) {
                self.put_blob_from(entry, Some(&expected), Some(size))
                    .map_err(|e| arch_err(format!("blob {expected}"), e.to_string()))?;
            }
            return Ok(ArchiveFile::Stored {
                digest: expected,
                size,
            });
        }
        *staged += 1;
        if *staged > MAX_STAGED_FILES {
            return Err(arch_err(
                "archive",
                format!("has more than {MAX_STAGED_FILES} files outside blobs/: refused"),
            ));
        }
        let mut w = self.blob_writer()?;
        std::io::copy(entry, &mut w).map_err(|e| arch_err(p, e.to_string()))?;
        Ok(ArchiveFile::Staged(w.stage()?))
    }

    /// An OCI archive: every manifest complete and every config within the cap, then tags.
    fn finish_oci(&self, c: Collected, limits: &crate::limits::Limits) -> Result<Vec<Loaded>> {
        let index = c.index.expect("an OCI archive has an index");
        if !c.saw_layout {
            return Err(arch_err(
                "archive",
                "no oci-layout file: not an OCI archive",
            ));
        }
        // Verify completeness before touching any tag.
        let mut out = Vec::new();
        for d in &index.manifests {
            let (manifest_desc, image_id) = self.check_complete(d)?;
            self.check_config_size(&image_id, limits.max_config_size)?;
            // Every platform's config of an index, not only the one reported.
            if media::is_index(&d.media_type) {
                for e in self.read_image_index(&d.digest)?.manifests {
                    if media::is_manifest(&e.media_type) && self.has_blob(&e.digest) {
                        let cfg = self.read_manifest(&e.digest)?.config.digest;
                        self.check_config_size(&cfg, limits.max_config_size)?;
                    }
                }
            }
            // Docker ≥ 25 puts the full name in containerd's annotation and only the tag in
            // ref.name (moby's image/tarexport/save.go): "latest" is not the image's name.
            let name = match d
                .annotations
                .get(CONTAINERD_IMAGE_NAME)
                .or_else(|| d.annotations.get(REF_NAME))
            {
                Some(n) => Some(
                    n.parse::<Reference>()
                        .map_err(|e| arch_err(format!("ref.name {n:?}"), e.to_string()))?,
                ),
                None => None,
            };
            out.push(Loaded {
                name,
                manifest: manifest_desc,
                image_id,
            });
        }
        self.tag_loaded(&out)?;
        Ok(out)
    }

    pub(super) fn tag_loaded(&self, out: &[Loaded]) -> Result<()> {
        for l in out {
            match &l.name {
                Some(n) => self.set_tag(n, &l.manifest)?,
                None => self.add_untagged(&l.manifest)?,
            }
        }
        Ok(())
    }

    /// Check that a manifest's blobs are all present. An index (`skopeo copy --all`, podman's
    /// manifest lists) is loaded as an index: every entry the archive holds must be complete,
    /// entries it lacks stay absent (a partial index, as a pull leaves it), and the image ID
    /// reported is the host platform's (else the first present one's).
    fn check_complete(&self, d: &Descriptor) -> Result<(Descriptor, Digest)> {
        if media::is_index(&d.media_type) {
            let idx = self
                .read_image_index(&d.digest)
                .map_err(|e| arch_err(format!("index {}", d.digest), e.to_string()))?;
            let images = idx
                .manifests
                .iter()
                .filter(|e| media::is_manifest(&e.media_type));
            for e in images.filter(|e| self.has_blob(&e.digest)) {
                self.check_complete(e)?;
            }
            let entry = self
                .pick_in_index(&d.digest.to_string(), d, None)
                .map_err(|e| arch_err(format!("index {}", d.digest), e.to_string()))?;
            let mut desc = d.clone();
            desc.annotations.remove(REF_NAME);
            desc.annotations.remove(CONTAINERD_IMAGE_NAME);
            return Ok((desc, self.read_manifest(&entry.digest)?.config.digest));
        }
        let m = self.read_manifest(&d.digest)?;
        for b in std::iter::once(&m.config).chain(&m.layers) {
            if !self.has_blob(&b.digest) {
                return Err(arch_err(
                    format!("manifest {}", d.digest),
                    format!("blob {} is missing from the archive", b.digest),
                ));
            }
        }
        let mut desc = d.clone();
        // The names become tags; kept on the entry, a stale one would travel with `box save`.
        desc.annotations.remove(REF_NAME);
        desc.annotations.remove(CONTAINERD_IMAGE_NAME);
        Ok((desc, m.config.digest))
    }

    /// An image config is read into memory whole: one above the cap is refused before
    /// anything is tagged (its blob stays unreferenced, for prune, like any blob of a failed
    /// load; the archive cannot be read twice to know which entry is a config beforehand).
    fn check_config_size(&self, config: &Digest, max: u64) -> Result<()> {
        let path = self.blob_path(config);
        let size = std::fs::metadata(&path)
            .map_err(io_err("stat", &path))?
            .len();
        config_within(&config.to_string(), size, max)
    }

    /// Write the named images as one OCI archive, their plain tar layers (a build's)
    /// compressed with `compression` (see [`super::compress`]; the image IDs stay the same).
    pub fn save_archive(
        &self,
        names: &[String],
        compression: crate::layer::Compression,
        w: impl Write,
    ) -> Result<()> {
        let mut entries: Vec<Descriptor> = Vec::new();
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        for n in names {
            let img = self.resolve_image(n)?;
            let (mut desc, manifest) = self.compressed_manifest(&img, compression)?;
            // Keep the name the user asked for when it is a name, else the image's first tag.
            let name = n
                .parse::<Reference>()
                .ok()
                .filter(|r| img.names.contains(r))
                .or_else(|| img.names.first().cloned());
            if let Some(name) = name {
                desc.annotations.insert(REF_NAME.into(), name.to_string());
            }
            blobs.insert(desc.digest.clone());
            blobs.insert(manifest.config.digest.clone());
            blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
            entries.push(desc);
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: entries,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        };
        let mut tw = tar::Builder::new(w);
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            tw.append_data(&mut h, dir, std::io::empty())
                .map_err(|e| arch_err(format!("write {dir}"), e.to_string()))?;
        }
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        append_file(&mut tw, "oci-layout", &mut &layout[..], layout.len() as u64)?;
        let idx = serde_json::to_vec(&index).expect("index serialises");
        append_file(&mut tw, "index.json", &mut &idx[..], idx.len() as u64)?;
        for d in &blobs {
            let mut f = self.open_blob(d)?;
            let size = f
                .metadata()
                .map_err(io_err("stat blob", self.blob_path(d)))?
                .len();
            append_file(&mut tw, &format!("blobs/sha256/{}", d.hex()), &mut f, size)?;
        }
        tw.into_inner()
            .map_err(|e| arch_err("finish archive", e.to_string()))?
            .flush()
            .map_err(|e| arch_err("flush archive", e.to_string()))?;
        Ok(())
    }
}

/// Append one regular file to an archive being written: mode 0644, mtime 0 (a saved image
/// does not depend on when it was saved).
pub(super) fn append_file<W: Write>(
    tw: &mut tar::Builder<W>,
    path: &str,
    data: &mut dyn Read,
    size: u64,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tw.append_data(&mut h, path, data)
        .map_err(|e| arch_err(format!("write {path}"), e.to_string()))
}
