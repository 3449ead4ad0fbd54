//! `box load` / `box save`: OCI archives, i.e. a tar of an OCI image layout.
//!
//! Load streams each blob from the tar straight into the store through a verifying
//! [`super::BlobWriter`] (a blob whose bytes do not match its name is rejected before it is
//! stored), and only when every entry is read and every manifest's config and layers are
//! present does it set the tags from `org.opencontainers.image.ref.name`. An interrupted or
//! hostile archive therefore leaves no tag and at most unreferenced blobs for prune.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

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

fn arch_err(what: impl Into<String>, why: impl Into<String>) -> StoreError {
    StoreError::Archive {
        what: what.into(),
        why: why.into(),
    }
}

impl Store {
    /// Read an OCI archive from `r` into the store and tag what it names.
    pub fn load_archive(&self, r: impl Read) -> Result<Vec<Loaded>> {
        let mut ar = tar::Archive::new(r);
        let mut index: Option<Index> = None;
        let mut saw_layout = false;
        let entries = ar.entries().map_err(|e| arch_err("read", e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| arch_err("read entry", e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| arch_err("entry name", e.to_string()))?
                .into_owned();
            let p = path.to_string_lossy().trim_start_matches("./").to_string();
            if !entry.header().entry_type().is_file() {
                continue;
            }
            if p == "oci-layout" {
                saw_layout = true;
            } else if p == "index.json" {
                let mut buf = Vec::new();
                entry
                    .by_ref()
                    .take(16 << 20)
                    .read_to_end(&mut buf)
                    .map_err(|e| arch_err("index.json", e.to_string()))?;
                index = Some(
                    serde_json::from_slice(&buf).map_err(|source| StoreError::Json {
                        what: "archive index",
                        path: "index.json".into(),
                        source,
                    })?,
                );
            } else if let Some(hex) = p.strip_prefix("blobs/sha256/") {
                let expected = Digest::from_hex(hex)
                    .map_err(|_| arch_err(&p, "blob name is not a sha256 digest"))?;
                let size = entry.header().size().ok();
                if self.has_blob(&expected) {
                    continue;
                }
                self.put_blob_from(&mut entry, Some(&expected), size)
                    .map_err(|e| arch_err(format!("blob {expected}"), e.to_string()))?;
            }
        }
        let index =
            index.ok_or_else(|| arch_err("archive", "no index.json: not an OCI archive"))?;
        if !saw_layout {
            return Err(arch_err(
                "archive",
                "no oci-layout file: not an OCI archive",
            ));
        }
        // Verify completeness before touching any tag.
        let limits =
            crate::limits::Limits::from_env().map_err(|e| arch_err("load", e.to_string()))?;
        let mut out = Vec::new();
        for d in &index.manifests {
            let (manifest_desc, image_id) = self.check_complete(d)?;
            self.check_config_size(&image_id, limits.max_config_size)?;
            let name = match d.annotations.get(REF_NAME) {
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
        for l in &out {
            match &l.name {
                Some(n) => self.set_tag(n, &l.manifest)?,
                None => self.add_untagged(&l.manifest)?,
            }
        }
        Ok(out)
    }

    /// Check that a manifest's blobs are all present; an index must hold exactly one image
    /// manifest for the host's platform to be loadable as one image.
    fn check_complete(&self, d: &Descriptor) -> Result<(Descriptor, Digest)> {
        if media::is_index(&d.media_type) {
            return Err(arch_err(
                format!("manifest {}", d.digest),
                "is a multi-platform index; load a single-platform archive (skopeo copy --override-arch …)",
            ));
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
        desc.annotations.remove(REF_NAME);
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
        if size > max {
            return Err(arch_err(
                format!("image config {config}"),
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
        let add =
            |tw: &mut tar::Builder<_>, path: &str, data: &mut dyn Read, size: u64| -> Result<()> {
                let mut h = tar::Header::new_ustar();
                h.set_size(size);
                h.set_mode(0o644);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                tw.append_data(&mut h, path, data)
                    .map_err(|e| arch_err(format!("write {path}"), e.to_string()))
            };
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
        add(&mut tw, "oci-layout", &mut &layout[..], layout.len() as u64)?;
        let idx = serde_json::to_vec(&index).expect("index serialises");
        add(&mut tw, "index.json", &mut &idx[..], idx.len() as u64)?;
        for d in &blobs {
            let mut f = self.open_blob(d)?;
            let size = f
                .metadata()
                .map_err(io_err("stat blob", self.blob_path(d)))?
                .len();
            add(&mut tw, &format!("blobs/sha256/{}", d.hex()), &mut f, size)?;
        }
        tw.into_inner()
            .map_err(|e| arch_err("finish archive", e.to_string()))?
            .flush()
            .map_err(|e| arch_err("flush archive", e.to_string()))?;
        Ok(())
    }
}
