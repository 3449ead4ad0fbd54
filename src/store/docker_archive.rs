//! Docker archives, the format of `docker save` (before Docker 25 only this; since, beside an
//! OCI layout in the same tar) and `podman save` (its default):
//!
//! ```text
//! manifest.json          [{"Config": "<hex>.json", "RepoTags": ["busybox:latest"],
//!                          "Layers": ["<diff_id hex>.tar", …]}, …]
//! <hex>.json             the image config; its rootfs.diff_ids name the layers, bottom first
//! <diff_id hex>.tar      each layer, an uncompressed tar
//! repositories           {"busybox": {"latest": "<id>"}}: pre-1.10 docker's tag list
//! ```
//!
//! Loading: the paths in `manifest.json` are arbitrary, and it comes last in podman's archives,
//! so every file is staged in `tmp/` first ([`super::archive`]). Then, for every image and
//! before any blob enters `blobs/` or any tag moves: its paths must stay inside the archive,
//! its config must be within the cap and parse, and each layer must hash to its `diff_id`
//! (uncompressed) or decompress to it (gzip or zstd, as go-containerregistry's tarballs hold).
//! Only then are the files committed, an OCI manifest is written for each image (the config
//! bytes are kept, so the image ID is docker's), and the RepoTags are set.
//!
//! Saving writes the config, each layer uncompressed under its diff_id (a compressed layer is
//! decompressed into a scratch file in `tmp/` first and checked against its diff_id: a tar
//! header needs the size before the data), then `manifest.json` and `repositories`. boxkit
//! writes no pre-1.10 `<id>/{json,VERSION,layer.tar}` directories: every loader of the last
//! decade (docker ≥ 1.10, podman, skopeo, crane) reads `manifest.json`; `repositories` maps each
//! tag to its top layer's diff_id for tools that only list tags.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, Write};

use serde::{Deserialize, Serialize};

use super::archive::{
    ArchiveFile, Collected, Loaded, append_file, arch_err, config_within, normalise,
};
use super::{Result, Store, StoreError, io_err};
use crate::digest::{Digest, HashingWriter};
use crate::image::{Descriptor, ImageConfig, Manifest, Reference, media};
use crate::layer::Compression;

/// One image of `manifest.json`. `RepoTags` is null for an image saved by ID.
#[derive(Serialize, Deserialize, Debug)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// An image of the archive, checked and ready to commit.
struct Checked {
    tags: Vec<Reference>,
    config_path: String,
    config: Descriptor,
    /// (archive path, descriptor) bottom first.
    layers: Vec<(String, Descriptor)>,
}

/// A path `manifest.json` names: relative, no `..`, as docker's and podman's writers make them.
fn member_path(what: &str, p: &str) -> Result<String> {
    let escapes = p.starts_with('/') || p.split('/').any(|c| c == "..");
    match normalise(p) {
        Some(n) if !escapes && !n.is_empty() => Ok(n),
        _ => Err(arch_err(
            format!("manifest.json {what} {p:?}"),
            "leaves the archive (an absolute path or one with '..'); refused",
        )),
    }
}

impl Collected {
    /// The file at `path`, through at most a few symbolic links inside the archive.
    fn file(&self, what: &str, path: &str) -> Result<&ArchiveFile> {
        let mut p = path.to_string();
        for _ in 0..8 {
            if let Some(f) = self.files.get(&p) {
                return Ok(f);
            }
            match self.links.get(&p) {
                Some(Some(t)) => p = t.clone(),
                Some(None) => {
                    return Err(arch_err(
                        format!("{what} {path:?}"),
                        "is a symbolic link that leaves the archive; refused",
                    ));
                }
                None => break,
            }
        }
        Err(arch_err(
            format!("{what} {path:?}"),
            "named by manifest.json is missing from the archive",
        ))
    }

    /// The path of the file a member resolves to (links followed): the key to commit it.
    fn key(&self, path: &str) -> String {
        let mut p = path.to_string();
        for _ in 0..8 {
            match self.links.get(&p) {
                Some(Some(t)) if !self.files.contains_key(&p) => p = t.clone(),
                _ => break,
            }
        }
        p
    }
}

impl Store {
    fn open_archive_file(&self, f: &ArchiveFile) -> Result<File> {
        match f {
            ArchiveFile::Stored { digest, .. } => self.open_blob(digest),
            ArchiveFile::Staged(s) => File::open(s.path()).map_err(io_err("open", s.path())),
        }
    }

    /// A docker archive (see the module comment): check every image, then store and tag.
    pub(super) fn finish_docker(
        &self,
        mut c: Collected,
        limits: &crate::limits::Limits,
    ) -> Result<Vec<Loaded>> {
        let raw = c.docker_manifest.take().expect("a docker archive");
        let entries: Vec<Entry> =
            serde_json::from_slice(&raw).map_err(|source| StoreError::Json {
                what: "docker archive manifest",
                path: "manifest.json".into(),
                source,
            })?;
        if entries.is_empty() {
            return Err(arch_err("manifest.json", "lists no image"));
        }
        let mut checked = Vec::new();
        for e in &entries {
            checked.push(self.check_docker_image(&c, e, limits.max_config_size)?);
        }
        // Everything is verified: now the files go into blobs/.
        let keys: BTreeSet<String> = checked
            .iter()
            .flat_map(|i| std::iter::once(&i.config_path).chain(i.layers.iter().map(|l| &l.0)))
            .map(|p| c.key(p))
            .collect();
        for k in keys {
            if let Some(ArchiveFile::Staged(s)) = c.files.remove(&k) {
                s.commit()?;
            }
        }
        let mut out = Vec::new();
        for img in checked {
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(media::OCI_MANIFEST.into()),
                config: img.config.clone(),
                layers: img.layers.into_iter().map(|l| l.1).collect(),
                annotations: BTreeMap::new(),
                extra: BTreeMap::new(),
            };
            let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
            let digest = self.put_blob(&bytes)?;
            let desc = Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64);
            let image_id = img.config.digest.clone();
            let names: Vec<Option<Reference>> = if img.tags.is_empty() {
                vec![None]
            } else {
                img.tags.into_iter().map(Some).collect()
            };
            for name in names {
                out.push(Loaded {
                    name,
                    manifest: desc.clone(),
                    image_id: image_id.clone(),
                });
            }
        }
        self.tag_loaded(&out)?;
        Ok(out)
    }

    /// One image of `manifest.json`: paths inside the archive, tags that parse, a config
    /// within the cap whose diff_ids the layers match, one for one.
    fn check_docker_image(&self, c: &Collected, e: &Entry, max_config: u64) -> Result<Checked> {
        let config_path = member_path("Config", &e.config)?;
        let layer_paths = e
            .layers
            .iter()
            .map(|l| member_path("layer", l))
            .collect::<Result<Vec<_>>>()?;
        let tags = e
            .repo_tags
            .iter()
            .flatten()
            .map(|t| {
                t.parse::<Reference>()
                    .map_err(|err| arch_err(format!("RepoTags {t:?}"), err.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let cf = c.file("Config", &config_path)?;
        config_within(&config_path, cf.size(), max_config)?;
        let mut bytes = Vec::new();
        self.open_archive_file(cf)?
            .read_to_end(&mut bytes)
            .map_err(|e| arch_err(&config_path, e.to_string()))?;
        let config: ImageConfig =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                what: "image config",
                path: config_path.clone(),
                source,
            })?;
        let diff_ids = config.diff_ids();
        if diff_ids.len() != config.rootfs.diff_ids.len() || diff_ids.len() != layer_paths.len() {
            return Err(arch_err(
                format!("image config {config_path}"),
                format!(
                    "lists {} diff_ids but manifest.json {} layers",
                    config.rootfs.diff_ids.len(),
                    layer_paths.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (p, want) in layer_paths.into_iter().zip(diff_ids) {
            let f = c.file("layer", &p)?;
            let compression = self.layer_matches(f, &p, &want)?;
            let desc = Descriptor::new(compression.media_type(), f.digest().clone(), f.size());
            layers.push((p, desc));
        }
        Ok(Checked {
            tags,
            config: Descriptor::new(media::OCI_CONFIG, cf.digest().clone(), cf.size()),
            config_path,
            layers,
        })
    }

    /// Whether the layer file is the tar `want` names: its own digest (uncompressed), or
    /// that of its content once decompressed. Returns its compression.
    fn layer_matches(&self, f: &ArchiveFile, path: &str, want: &Digest) -> Result<Compression> {
        if f.digest() == want {
            return Ok(Compression::None);
        }
        let mut file = self.open_archive_file(f)?;
        let mut magic = [0u8; 4];
        let n = file
            .read(&mut magic)
            .map_err(|e| arch_err(path, e.to_string()))?;
        let compression = match &magic[..n] {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
            _ => Compression::None,
        };
        let actual = if compression == Compression::None {
            f.digest().clone()
        } else {
            file.rewind().map_err(|e| arch_err(path, e.to_string()))?;
            let mut h = HashingWriter::new(std::io::sink());
            decompress(compression, file, &mut h).map_err(|e| arch_err(path, e.to_string()))?;
            h.finish().1
        };
        if &actual != want {
            return Err(arch_err(
                format!("layer {path}"),
                format!(
                    "does not match the image config: its diff_id is {want} but its content \
                     hashes to {actual}; refused"
                ),
            ));
        }
        Ok(compression)
    }

    /// Write the named images as one docker archive (see the module comment).
    pub fn save_docker_archive(&self, names: &[String], w: impl Write) -> Result<()> {
        let mut entries: Vec<(Digest, Entry)> = Vec::new();
        let mut layers: Vec<(Descriptor, Digest)> = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for n in names {
            let img = self.resolve_image(n)?;
            let diff_ids = img.diff_ids();
            if diff_ids.len() != img.manifest.layers.len() {
                return Err(arch_err(
                    format!("image {n}"),
                    "its config's diff_ids do not match its layers",
                ));
            }
            // Docker writes the name asked for; an image saved by ID has no RepoTags.
            let tag = n
                .parse::<Reference>()
                .ok()
                .filter(|r| img.names.contains(r))
                .map(|r| {
                    let t = r.tag().unwrap_or("latest").to_string();
                    let top = diff_ids.last().map(|d| d.hex().to_string());
                    repositories
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(t.clone(), top.unwrap_or_default());
                    format!("{}:{t}", r.familiar_name())
                });
            if let Some((_, e)) = entries.iter_mut().find(|(id, _)| id == img.id()) {
                e.repo_tags.get_or_insert_default().extend(tag);
                continue;
            }
            for (l, d) in img.manifest.layers.iter().zip(&diff_ids) {
                if !layers.iter().any(|(_, seen)| seen == d) {
                    layers.push((l.clone(), d.clone()));
                }
            }
            entries.push((
                img.id().clone(),
                Entry {
                    config: format!("{}.json", img.id().hex()),
                    repo_tags: tag.map(|t| vec![t]),
                    layers: diff_ids
                        .iter()
                        .map(|d| format!("{}.tar", d.hex()))
                        .collect(),
                },
            ));
        }
        let mut tw = tar::Builder::new(w);
        for (id, e) in &entries {
            let size = self.blob_size(id)?;
            append_file(&mut tw, &e.config, &mut self.open_blob(id)?, size)?;
        }
        for (desc, diff_id) in &layers {
            self.append_layer(&mut tw, desc, diff_id)?;
        }
        let manifest: Vec<&Entry> = entries.iter().map(|(_, e)| e).collect();
        let m = serde_json::to_vec(&manifest).expect("manifest.json serialises");
        append_file(&mut tw, "manifest.json", &mut &m[..], m.len() as u64)?;
        let r = serde_json::to_vec(&repositories).expect("repositories serialises");
        append_file(&mut tw, "repositories", &mut &r[..], r.len() as u64)?;
        tw.into_inner()
            .map_err(|e| arch_err("finish archive", e.to_string()))?
            .flush()
            .map_err(|e| arch_err("flush archive", e.to_string()))
    }

    /// One layer as `<diff_id hex>.tar`, uncompressed.
    fn append_layer<W: Write>(
        &self,
        tw: &mut tar::Builder<W>,
        desc: &Descriptor,
        diff_id: &Digest,
    ) -> Result<()> {
        let name = format!("{}.tar", diff_id.hex());
        let compression = Compression::from_media_type(&desc.media_type)
            .map_err(|e| arch_err(format!("layer {}", desc.digest), e.to_string()))?;
        if compression == Compression::None {
            if &desc.digest != diff_id {
                return Err(arch_err(
                    format!("layer {}", desc.digest),
                    format!("is an uncompressed tar but its config names it {diff_id}"),
                ));
            }
            let size = self.blob_size(diff_id)?;
            return append_file(tw, &name, &mut self.open_blob(diff_id)?, size);
        }
        // An unnamed scratch file in the store's tmp/: gone when dropped, even after a crash.
        let tmp = self.tmp_dir();
        let scratch = tempfile::tempfile_in(&tmp).map_err(io_err("create a file in", &tmp))?;
        let mut h = HashingWriter::new(std::io::BufWriter::new(scratch));
        decompress(compression, self.open_blob(&desc.digest)?, &mut h)
            .map_err(|e| arch_err(format!("decompress layer {}", desc.digest), e.to_string()))?;
        let (buf, actual, size) = h.finish();
        if &actual != diff_id {
            return Err(arch_err(
                format!("layer {}", desc.digest),
                format!(
                    "decompresses to {actual}, not to its diff_id {diff_id}: the store is \
                     damaged; run `box prune` and pull the image again"
                ),
            ));
        }
        let mut scratch = buf
            .into_inner()
            .map_err(|e| io_err("write", &tmp)(e.into_error()))?;
        scratch.rewind().map_err(io_err("rewind", &tmp))?;
        append_file(tw, &name, &mut scratch, size)
    }
}

fn decompress(c: Compression, r: File, w: &mut dyn Write) -> std::io::Result<u64> {
    let r = std::io::BufReader::with_capacity(256 * 1024, r);
    match c {
        Compression::None => std::io::copy(&mut { r }, w),
        Compression::Gzip => std::io::copy(&mut flate2::read::MultiGzDecoder::new(r), w),
        Compression::Zstd => std::io::copy(&mut zstd::Decoder::with_buffer(r)?, w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_stay_inside_the_archive() {
        assert_eq!(member_path("layer", "./a/b.tar").unwrap(), "a/b.tar");
        assert_eq!(member_path("layer", "a//./b.tar").unwrap(), "a/b.tar");
        for bad in ["../a.tar", "/a.tar", "a/../../a.tar", "a/../b.tar", "", "."] {
            let e = member_path("layer", bad).unwrap_err().to_string();
            assert!(e.contains("leaves the archive"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn links_resolve_inside_the_archive_only() {
        let mut c = Collected::default();
        c.files.insert(
            "x.tar".into(),
            ArchiveFile::Stored {
                digest: Digest::of_bytes(b"x"),
                size: 1,
            },
        );
        c.links
            .insert("id/layer.tar".into(), normalise("id/../x.tar"));
        c.links.insert("loop".into(), Some("loop".into()));
        c.links.insert("out".into(), None);
        assert_eq!(c.file("layer", "id/layer.tar").unwrap().size(), 1);
        assert_eq!(c.key("id/layer.tar"), "x.tar");
        assert!(
            c.file("layer", "loop")
                .err()
                .expect("refused")
                .to_string()
                .contains("missing")
        );
        let e = c.file("layer", "out").err().expect("refused").to_string();
        assert!(e.contains("leaves the archive"), "{e}");
    }
}
