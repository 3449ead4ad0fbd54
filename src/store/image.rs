//! Images in the store: resolving a user's name (tag, ID prefix or `name@digest`) to a
//! manifest and its config, and the records `box images` and `box inspect` print.
//!
//! A tag may point at an image index (the OCI layout allows it). Such an index may be partial:
//! only the platforms that were pulled have their manifests and blobs in the store.
//! Resolution takes an optional platform: an index resolves to that platform's manifest (the
//! host's by default, else the first stored one, as a `pull --platform` then `run` always
//! did); a single-platform image that does not match an explicitly requested platform is
//! reported as [`StoreError::PlatformMismatch`], an index entry not pulled yet as
//! [`StoreError::PlatformNotStored`], so `registry::ensure_image` can pull exactly that
//! manifest into the same index instead of retagging.

use super::index::Tag;
use super::{Result, Store, StoreError};
use crate::digest::Digest;
use crate::image::platform::{self, Platform};
use crate::image::{Descriptor, ImageConfig, Index, Manifest, Reference, media};

/// A resolved image: the manifest the name points at, and its parsed config.
#[derive(Clone, Debug)]
pub struct Image {
    pub names: Vec<Reference>,
    pub manifest_desc: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The image index the name points at, when it points at one: `manifest_desc` is then
    /// one of its entries.
    pub index: Option<Descriptor>,
}

impl Image {
    /// The image ID, as docker defines it: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }
    /// What the name points at in index.json: the index, or the manifest itself.
    pub fn target(&self) -> &Descriptor {
        self.index.as_ref().unwrap_or(&self.manifest_desc)
    }
    /// The ID `box images` shows, as docker's containerd image store does: the index digest
    /// for a name tagged to an index, else the image ID (config digest).
    pub fn list_id(&self) -> &Digest {
        self.index.as_ref().map_or(self.id(), |i| &i.digest)
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

    /// An image index blob, verified and checked ([`Index::check`]).
    pub fn read_image_index(&self, d: &Digest) -> Result<Index> {
        let data = self.read_blob(d)?;
        let idx: Index = serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            what: "image index",
            path: d.to_string(),
            source,
        })?;
        idx.check().map_err(|why| StoreError::BadIndex {
            digest: d.clone(),
            why,
        })?;
        Ok(idx)
    }

    /// The image of one manifest, as an entry of `index` when given.
    pub fn image_from(
        &self,
        desc: &Descriptor,
        names: Vec<Reference>,
        index: Option<&Descriptor>,
    ) -> Result<Image> {
        let mut img = self.load_image(desc, names)?;
        img.index = index.cloned();
        Ok(img)
    }

    /// The entry of the index `idx_desc` for `want` (None: the host's if stored, else the
    /// first stored entry that names a real platform). Nothing is read but the index.
    pub fn pick_in_index(
        &self,
        name: &str,
        idx_desc: &Descriptor,
        want: Option<&Platform>,
    ) -> Result<Descriptor> {
        let index = self.read_image_index(&idx_desc.digest)?;
        let platforms = index.platforms();
        let present: Vec<Option<Platform>> = platforms
            .iter()
            .zip(&index.manifests)
            .map(|(p, d)| p.clone().filter(|_| self.has_blob(&d.digest)))
            .collect();
        let host = Platform::host();
        let chosen = match want {
            Some(w) => platform::pick(w, &platforms),
            None => platform::pick(&host, &present)
                .or_else(|| {
                    present
                        .iter()
                        .position(|p| p.as_ref().is_some_and(|p| p.os != "unknown"))
                })
                .or_else(|| platform::pick(&host, &platforms)),
        };
        let wanted = want.unwrap_or(&host).to_string();
        let Some(i) = chosen else {
            let mut available: Vec<String> =
                platforms.iter().flatten().map(|p| p.to_string()).collect();
            available.dedup();
            return Err(StoreError::PlatformMissing {
                name: name.to_string(),
                wanted,
                available,
            });
        };
        let entry = &index.manifests[i];
        if !self.has_blob(&entry.digest) {
            return Err(StoreError::PlatformNotStored(Box::new(super::NotStored {
                name: name.to_string(),
                wanted,
                index: idx_desc.digest.clone(),
                manifest: entry.digest.clone(),
            })));
        }
        Ok(entry.clone())
    }

    /// The image a tag target gives for `want`: an index's entry, or the manifest itself
    /// (checked against `want` when one was asked for).
    fn load_for(
        &self,
        name: &str,
        target: &Descriptor,
        names: Vec<Reference>,
        want: Option<&Platform>,
    ) -> Result<Image> {
        if media::is_index(&target.media_type) {
            let entry = self.pick_in_index(name, target, want)?;
            return self.image_from(&entry, names, Some(target));
        }
        let img = self.load_image(target, names)?;
        if let Some(w) = want
            && let Some(actual) = img.config.platform()
            && !w.matches(&actual)
        {
            return Err(StoreError::PlatformMismatch {
                name: name.to_string(),
                wanted: w.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(img)
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
            index: None,
        })
    }

    /// Every image entry with its name (one record per tag; untagged entries have none).
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for Tag { name, target } in self.tags()? {
            let label = name
                .as_ref()
                .map_or(target.digest.to_string(), |n| n.to_string());
            let image = match self.load_for(&label, &target, name.iter().cloned().collect(), None) {
                Ok(i) => i,
                // An index none of whose platforms is stored (an empty `box manifest create`)
                // has no image to show.
                Err(StoreError::PlatformNotStored(_) | StoreError::PlatformMissing { .. })
                    if media::is_index(&target.media_type) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            out.push(ImageRecord { name, image });
        }
        Ok(out)
    }

    /// Resolve what a user typed: a name (normalised like docker), `name@sha256:…`, a full
    /// `sha256:…` image or manifest digest, or an unambiguous prefix (≥ 4 hex digits) of an
    /// image ID. A name tagged to an index gives the host's platform (see [`Self::pick_in_index`]).
    pub fn resolve_image(&self, what: &str) -> Result<Image> {
        self.resolve_image_for(what, None)
    }

    /// [`Self::resolve_image`] for the platform `want` (None: no preference, which never
    /// rejects a single-platform image).
    pub fn resolve_image_for(&self, what: &str, want: Option<&Platform>) -> Result<Image> {
        let tags = self.tags()?;
        let names_of = |d: &Digest| -> Vec<Reference> {
            tags.iter()
                .filter(|t| &t.target.digest == d)
                .filter_map(|t| t.name.clone())
                .collect()
        };
        if let Some(t) = tag_target_in(&tags, what) {
            return self.load_for(what, &t, names_of(&t.digest), want);
        }
        let pinned = what
            .parse::<Reference>()
            .ok()
            .and_then(|r| r.digest().cloned());
        let hex = match &pinned {
            Some(d) => d.hex().to_string(),
            None => what.strip_prefix("sha256:").unwrap_or(what).to_string(),
        };
        if !(hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(StoreError::NoSuchImage(what.to_string()));
        }
        // Each stored manifest once: (its tag entry, the manifest, hit by the index's ID).
        let mut found: Vec<(&Tag, Descriptor, bool)> = Vec::new();
        for t in &tags {
            for (entry, index) in self.manifests_of(&t.target)? {
                let by_index = index.is_some_and(|i| i.digest.hex().starts_with(&hex));
                let hit = entry.digest.hex() == hex
                    || (pinned.is_none()
                        && (by_index
                            || self
                                .read_manifest(&entry.digest)?
                                .config
                                .digest
                                .hex()
                                .starts_with(&hex)));
                if hit && !found.iter().any(|(_, e, _)| e.digest == entry.digest) {
                    found.push((t, entry, by_index));
                }
            }
        }
        // An index's ID names the index (all its stored entries hit): resolve it as a tag.
        if let Some((t, _, true)) = found.first()
            && found
                .iter()
                .all(|(f, _, b)| *b && f.target.digest == t.target.digest)
        {
            return self.load_for(what, &t.target, names_of(&t.target.digest), want);
        }
        match found.as_slice() {
            [] => Err(StoreError::NoSuchImage(what.to_string())),
            [(t, entry, _)] if media::is_index(&t.target.media_type) => {
                self.image_from(entry, names_of(&t.target.digest), Some(&t.target))
            }
            // An image ID names that image whatever its platform (docker uses it as it is).
            [(t, _, _)] => {
                let want = want.filter(|_| media::is_index(&t.target.media_type));
                self.load_for(what, &t.target, names_of(&t.target.digest), want)
            }
            more => Err(StoreError::Ambiguous(what.to_string(), more.len())),
        }
    }

    /// The stored manifests a tag target stands for: itself, or an index's stored entries
    /// (paired with the index).
    fn manifests_of<'a>(
        &self,
        target: &'a Descriptor,
    ) -> Result<Vec<(Descriptor, Option<&'a Descriptor>)>> {
        if !media::is_index(&target.media_type) {
            return Ok(vec![(target.clone(), None)]);
        }
        let idx = self.read_image_index(&target.digest)?;
        Ok(idx
            .manifests
            .into_iter()
            .filter(|d| media::is_manifest(&d.media_type) && self.has_blob(&d.digest))
            .map(|d| (d, Some(target)))
            .collect())
    }

    /// What index.json says `what` names, when it is a name or `name@digest`: the tag's
    /// target, or for a `name@digest` whose digest is an entry of a tagged index, that entry.
    pub fn tag_target(&self, what: &str) -> Result<Option<Descriptor>> {
        Ok(tag_target_in(&self.tags()?, what))
    }
}

/// [`Store::tag_target`] among `tags`, already read from index.json.
fn tag_target_in(tags: &[Tag], what: &str) -> Option<Descriptor> {
    let r = what.parse::<Reference>().ok()?;
    match r.digest() {
        None => tags.iter().find(|t| t.name.as_ref() == Some(&r)),
        Some(dg) => tags.iter().find(|t| &t.target.digest == dg),
    }
    .map(|t| t.target.clone())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stored single-platform image for `arch`; returns its manifest descriptor.
    pub(crate) fn put_image(s: &Store, arch: &str) -> Descriptor {
        let cfg = serde_json::json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}});
        let cb = serde_json::to_vec(&cfg).unwrap();
        let c = s.put_blob(&cb).unwrap();
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": c.to_string(), "size": cb.len()},
            "layers": []});
        let mb = serde_json::to_vec(&m).unwrap();
        let mut d = Descriptor::new(
            media::OCI_MANIFEST,
            s.put_blob(&mb).unwrap(),
            mb.len() as u64,
        );
        d.platform = Some(Platform::parse(&format!("linux/{arch}")).unwrap());
        d
    }

    /// An index over `entries`, stored; returns its descriptor.
    pub(crate) fn put_index(s: &Store, entries: &[Descriptor]) -> Descriptor {
        let idx = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
            "manifests": entries});
        let b = serde_json::to_vec(&idx).unwrap();
        Descriptor::new(media::OCI_INDEX, s.put_blob(&b).unwrap(), b.len() as u64)
    }

    fn other_arch() -> &'static str {
        if Platform::host().arch == "arm64" {
            "amd64"
        } else {
            "arm64"
        }
    }

    #[test]
    fn an_index_resolves_per_platform_and_reports_what_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let host = put_image(&s, &Platform::host().arch);
        // The other platform is listed but its manifest was never stored.
        let mut absent = host.clone();
        absent.digest = Digest::of_bytes(b"not pulled");
        absent.platform = Some(Platform::parse(&format!("linux/{}", other_arch())).unwrap());
        let idx = put_index(&s, &[absent.clone(), host.clone()]);
        s.set_tag(&"multi".parse().unwrap(), &idx).unwrap();

        let img = s.resolve_image("multi").unwrap();
        assert_eq!(img.manifest_desc.digest, host.digest);
        assert_eq!(img.index.as_ref().unwrap().digest, idx.digest);
        assert_eq!(img.names[0].to_string(), "docker.io/library/multi:latest");
        let other = Platform::parse(&format!("linux/{}", other_arch())).unwrap();
        match s.resolve_image_for("multi", Some(&other)) {
            Err(StoreError::PlatformNotStored(n)) => {
                assert_eq!(
                    (n.index, n.manifest),
                    (idx.digest.clone(), absent.digest.clone())
                );
            }
            r => panic!("expected PlatformNotStored, got {r:?}"),
        }
        let s390 = Platform::parse("linux/s390x").unwrap();
        assert!(matches!(
            s.resolve_image_for("multi", Some(&s390)),
            Err(StoreError::PlatformMissing { .. })
        ));
        // The index's ID resolves to it; the host image's config ID to that entry.
        let by_id = s.resolve_image(&idx.digest.hex()[..12]).unwrap();
        assert_eq!(by_id.index.unwrap().digest, idx.digest);
        let by_cfg = s.resolve_image(&img.id().hex()[..12]).unwrap();
        assert_eq!(by_cfg.manifest_desc.digest, host.digest);
        let pinned = format!("multi@{}", host.digest);
        assert_eq!(
            s.resolve_image(&pinned).unwrap().manifest_desc.digest,
            host.digest
        );
        // One record per tag, the host's platform.
        let recs = s.images().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].image.manifest_desc.digest, host.digest);
    }

    #[test]
    fn a_single_platform_image_is_checked_only_when_a_platform_is_asked_for() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let d = put_image(&s, other_arch());
        s.set_tag(&"one".parse().unwrap(), &d).unwrap();
        assert!(s.resolve_image("one").is_ok());
        assert!(matches!(
            s.resolve_image_for("one", Some(&Platform::host())),
            Err(StoreError::PlatformMismatch { .. })
        ));
        // An index with only a foreign platform stored still resolves without a preference.
        let idx = put_index(&s, std::slice::from_ref(&d));
        s.set_tag(&"partial".parse().unwrap(), &idx).unwrap();
        assert_eq!(
            s.resolve_image("partial").unwrap().manifest_desc.digest,
            d.digest
        );
    }

    #[test]
    fn a_stored_nested_index_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let inner = put_index(&s, &[put_image(&s, "amd64")]);
        let outer = put_index(&s, &[inner]);
        s.set_tag(&"nested".parse().unwrap(), &outer).unwrap();
        let e = s.resolve_image("nested").unwrap_err();
        assert!(
            e.to_string().contains("nested indexes are not supported"),
            "{e}"
        );
    }
}
