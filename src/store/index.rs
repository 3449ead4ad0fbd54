//! Tags: `index.json` entries annotated `org.opencontainers.image.ref.name`.
//!
//! The value is the fully normalised reference (`docker.io/library/busybox:latest`), which
//! skopeo's `oci:` transport and umoci accept as-is. Each update is a read-modify-write under an
//! exclusive flock on `index.lock`, written to a temp file and renamed, so readers always see a
//! whole index and concurrent taggers never lose each other's tags.

use std::fs::{File, OpenOptions};

use super::{Result, Store, StoreError, blobs::write_atomic, io_err};
use crate::digest::Digest;
use crate::image::{Descriptor, Index, Reference};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(crate) const EMPTY_INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// One entry of index.json: a manifest and the name it is tagged with, if any.
#[derive(Clone, Debug)]
pub struct Tag {
    pub name: Option<Reference>,
    pub target: Descriptor,
}

/// What a tag should point at.
pub type TagTarget = Descriptor;

impl Store {
    fn index_path(&self) -> std::path::PathBuf {
        self.root().join("index.json")
    }

    pub fn read_index(&self) -> Result<Index> {
        let p = self.index_path();
        let data = std::fs::read(&p).map_err(io_err("read", &p))?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            what: "index",
            path: p.display().to_string(),
            source,
        })
    }

    /// Read-modify-write index.json under the index lock.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let lp = self.root().join("index.lock");
        let lock: File = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .map_err(io_err("open lock file", &lp))?;
        lock.lock().map_err(io_err("lock", &lp))?;
        let mut idx = self.read_index()?;
        let out = f(&mut idx)?;
        let data = serde_json::to_vec(&idx).expect("index serialises");
        write_atomic(self.root(), &self.index_path(), &data)?;
        Ok(out)
    }

    /// Every entry of index.json, tagged or not.
    pub fn tags(&self) -> Result<Vec<Tag>> {
        let idx = self.read_index()?;
        Ok(idx
            .manifests
            .into_iter()
            .map(|d| Tag {
                name: d.annotations.get(REF_NAME).and_then(|n| n.parse().ok()),
                target: d,
            })
            .collect())
    }

    /// Point `name` at `target`, replacing what it pointed at before.
    pub fn set_tag(&self, name: &Reference, target: &Descriptor) -> Result<()> {
        let name_s = name.to_string();
        let mut entry = target.clone();
        entry
            .annotations
            .insert(REF_NAME.to_string(), name_s.clone());
        self.update_index(|idx| {
            idx.manifests.retain(|d| {
                let same_name = d.annotations.get(REF_NAME) == Some(&name_s);
                // An untagged entry for the same manifest is superseded by the tag.
                let untagged_same =
                    d.digest == entry.digest && !d.annotations.contains_key(REF_NAME);
                !same_name && !untagged_same
            });
            idx.manifests.push(entry);
            Ok(())
        })
    }

    /// Record a manifest with no name (an image loaded without a ref.name), unless present.
    pub fn add_untagged(&self, target: &Descriptor) -> Result<()> {
        self.update_index(|idx| {
            if !idx.manifests.iter().any(|d| d.digest == target.digest) {
                let mut e = target.clone();
                e.annotations.remove(REF_NAME);
                idx.manifests.push(e);
            }
            Ok(())
        })
    }

    /// Remove the tag `name`; true if it existed.
    pub fn remove_tag(&self, name: &Reference) -> Result<bool> {
        let name_s = name.to_string();
        self.update_index(|idx| {
            let before = idx.manifests.len();
            idx.manifests
                .retain(|d| d.annotations.get(REF_NAME) != Some(&name_s));
            Ok(idx.manifests.len() != before)
        })
    }

    /// Remove every index entry for a manifest; returns how many there were.
    pub fn remove_manifest(&self, digest: &Digest) -> Result<usize> {
        self.update_index(|idx| {
            let before = idx.manifests.len();
            idx.manifests.retain(|d| &d.digest != digest);
            Ok(before - idx.manifests.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_retag_untag() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let a = Descriptor::new(crate::image::media::OCI_MANIFEST, Digest::of_bytes(b"a"), 1);
        let b = Descriptor::new(crate::image::media::OCI_MANIFEST, Digest::of_bytes(b"b"), 1);
        let r: Reference = "busybox".parse().unwrap();
        s.set_tag(&r, &a).unwrap();
        s.set_tag(&r, &b).unwrap();
        let tags = s.tags().unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].target.digest, b.digest);
        assert_eq!(
            tags[0].name.as_ref().unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert!(s.remove_tag(&r).unwrap());
        assert!(!s.remove_tag(&r).unwrap());
        assert!(s.tags().unwrap().is_empty());
    }

    #[test]
    fn concurrent_taggers_lose_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        Store::open(&root).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let s = Store::open(&root).unwrap();
                    for j in 0..10 {
                        let d = Descriptor::new(
                            crate::image::media::OCI_MANIFEST,
                            Digest::of_bytes(&[i, j]),
                            1,
                        );
                        s.set_tag(&format!("img{i}:t{j}").parse().unwrap(), &d)
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(Store::open(&root).unwrap().tags().unwrap().len(), 80);
    }
}
