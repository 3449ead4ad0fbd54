//! Images in the store: resolving a user's name (tag, ID prefix or `name@digest`) to a
//! manifest and its config, and the records `box images` and `box inspect` print.

use super::index::Tag;
use super::{Result, Store, StoreError};
use crate::digest::Digest;
use crate::image::{Descriptor, ImageConfig, Manifest, Reference, media};

/// A resolved image: the manifest the name points at, and its parsed config.
#[derive(Clone, Debug)]
pub struct Image {
    pub names: Vec<Reference>,
    pub manifest_desc: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

impl Image {
    /// The image ID, as docker defines it: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }
    /// The uncompressed layer digests, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.config.diff_ids()
    }
    pub fn created(&self) -> Option<&str> {
        self.config.created.as_deref()
    }
    /// Bytes the image occupies in the store: config plus compressed layers.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// One row of `box images`.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    pub name: Option<Reference>,
    pub image: Image,
}

impl Store {
    pub fn read_manifest(&self, d: &Digest) -> Result<Manifest> {
        let data = self.read_blob(d)?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            what: "manifest",
            path: d.to_string(),
            source,
        })
    }

    /// An image config, verified against its digest.
    pub fn read_config(&self, d: &Digest) -> Result<ImageConfig> {
        let data = self.read_blob(d)?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            what: "image config",
            path: d.to_string(),
            source,
        })
    }

    /// Any JSON blob, untyped: GC sniffs blobs of unknown type with it.
    pub fn read_json(&self, d: &Digest, what: &'static str) -> Result<serde_json::Value> {
        let data = self.read_blob(d)?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            what,
            path: d.to_string(),
            source,
        })
    }

    fn load_image(&self, desc: &Descriptor, names: Vec<Reference>) -> Result<Image> {
        if !media::is_manifest(&desc.media_type) {
            return Err(StoreError::MediaType {
                media_type: desc.media_type.clone(),
                digest: desc.digest.clone(),
            });
        }
        let manifest = self.read_manifest(&desc.digest)?;
        let config = self.read_config(&manifest.config.digest)?;
        Ok(Image {
            names,
            manifest_desc: desc.clone(),
            manifest,
            config,
        })
    }

    /// Every image entry with its name (one record per tag; untagged entries have none).
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for Tag { name, target } in self.tags()? {
            let image = self.load_image(&target, name.iter().cloned().collect())?;
            out.push(ImageRecord { name, image });
        }
        Ok(out)
    }

    /// Resolve what a user typed: a name (normalised like docker), `name@sha256:…`, a full
    /// `sha256:…` image or manifest digest, or an unambiguous prefix (≥ 4 hex digits) of an
    /// image ID.
    pub fn resolve_image(&self, what: &str) -> Result<Image> {
        let tags = self.tags()?;
        let names_of = |d: &Digest| -> Vec<Reference> {
            tags.iter()
                .filter(|t| &t.target.digest == d)
                .filter_map(|t| t.name.clone())
                .collect()
        };
        if let Ok(r) = what.parse::<Reference>() {
            if let Some(dg) = r.digest() {
                if let Some(t) = tags.iter().find(|t| &t.target.digest == dg) {
                    return self.load_image(&t.target, names_of(dg));
                }
            } else if let Some(t) = tags.iter().find(|t| t.name.as_ref() == Some(&r)) {
                return self.load_image(&t.target, names_of(&t.target.digest));
            }
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<&Tag> = Vec::new();
            for t in &tags {
                let m = self.read_manifest(&t.target.digest)?;
                let hit = m.config.digest.hex().starts_with(hex) || t.target.digest.hex() == hex;
                if hit && !found.iter().any(|f| f.target.digest == t.target.digest) {
                    found.push(t);
                }
            }
            match found.len() {
                0 => {}
                1 => return self.load_image(&found[0].target, names_of(&found[0].target.digest)),
                n => return Err(StoreError::Ambiguous(what.to_string(), n)),
            }
        }
        Err(StoreError::NoSuchImage(what.to_string()))
    }
}
