//! Manifest lists assembled locally (`box manifest create|add|remove`): an image index blob
//! tagged with the list's name, rewritten (new blob, same tag) on every change.
//!
//! Each change is a read-modify-write of the tag under the index.json lock, so two
//! concurrent `manifest add`s to one list both land. The old index blob is left for GC.

use std::collections::BTreeMap;

use super::{REF_NAME, Result, Store, StoreError};
use crate::digest::Digest;
use crate::image::{Descriptor, Index, Reference, media};

/// What a list change was refused for.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(
        "{0} already exists; remove it first (`box manifest rm {0}`) or add to it with `box manifest add`"
    )]
    Exists(String),
    #[error(
        "{0} is not a manifest list (it names a single image); create one with `box manifest create`"
    )]
    NotAList(String),
    #[error("no manifest list named {0}; create it with `box manifest create {0}`")]
    NoSuchList(String),
    #[error("manifest list {list} has no entry {digest}")]
    NoSuchEntry { list: String, digest: Digest },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// A new, empty list named `name` of the given index media type (OCI index or Docker
    /// manifest list).
    pub fn create_list(&self, name: &Reference, media_type: &str) -> Result<Descriptor, ListError> {
        if self.tags()?.iter().any(|t| t.name.as_ref() == Some(name)) {
            return Err(ListError::Exists(name.to_string()));
        }
        let idx = Index {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            manifests: vec![],
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        };
        let desc = self.put_index_blob(&idx, media_type)?;
        self.set_tag(name, &desc)?;
        Ok(desc)
    }

    /// Change the list `name` with `f` (entries added or removed) and retag it; returns the
    /// new index descriptor.
    pub fn update_list(
        &self,
        name: &Reference,
        f: impl FnOnce(&mut Index) -> Result<(), ListError>,
    ) -> Result<Descriptor, ListError> {
        let name_s = name.to_string();
        let mut f = Some(f);
        let mut out: Option<Result<Descriptor, ListError>> = None;
        self.update_index(|top| {
            let Some(entry) = top
                .manifests
                .iter_mut()
                .find(|d| d.annotations.get(REF_NAME) == Some(&name_s))
            else {
                out = Some(Err(ListError::NoSuchList(name_s.clone())));
                return Ok(());
            };
            if !media::is_index(&entry.media_type) {
                out = Some(Err(ListError::NotAList(name_s.clone())));
                return Ok(());
            }
            let mut idx = self.read_image_index(&entry.digest)?;
            if let Err(e) = (f.take().expect("called once"))(&mut idx) {
                out = Some(Err(e));
                return Ok(());
            }
            idx.check().map_err(|why| StoreError::BadIndex {
                digest: entry.digest.clone(),
                why,
            })?;
            let desc = self.put_index_blob(&idx, &entry.media_type)?;
            entry.digest = desc.digest.clone();
            entry.size = desc.size;
            out = Some(Ok(desc));
            Ok(())
        })?;
        out.expect("set in the closure")
    }

    /// Add `entries` to the list (an entry with the same digest is replaced in place).
    pub fn list_add(
        &self,
        name: &Reference,
        entries: Vec<Descriptor>,
    ) -> Result<Descriptor, ListError> {
        self.update_list(name, |idx| {
            for e in entries {
                match idx.manifests.iter_mut().find(|d| d.digest == e.digest) {
                    Some(d) => *d = e,
                    None => idx.manifests.push(e),
                }
            }
            Ok(())
        })
    }

    /// Remove the entry `digest` from the list.
    pub fn list_remove(&self, name: &Reference, digest: &Digest) -> Result<Descriptor, ListError> {
        self.update_list(name, |idx| {
            let before = idx.manifests.len();
            idx.manifests.retain(|d| &d.digest != digest);
            if idx.manifests.len() == before {
                return Err(ListError::NoSuchEntry {
                    list: name.to_string(),
                    digest: digest.clone(),
                });
            }
            Ok(())
        })
    }

    fn put_index_blob(&self, idx: &Index, media_type: &str) -> Result<Descriptor> {
        let mut idx = idx.clone();
        idx.media_type = Some(media_type.to_string());
        let bytes = serde_json::to_vec(&idx).expect("index serialises");
        let digest = self.put_blob(&bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::image::tests::put_image;

    #[test]
    fn create_add_replace_remove() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let list: Reference = "localhost/list:v1".parse().unwrap();
        s.create_list(&list, media::OCI_INDEX).unwrap();
        assert!(matches!(
            s.create_list(&list, media::OCI_INDEX),
            Err(ListError::Exists(_))
        ));
        let a = put_image(&s, "amd64");
        let b = put_image(&s, "arm64");
        s.list_add(&list, vec![a.clone(), b.clone()]).unwrap();
        let mut b2 = b.clone();
        b2.platform.as_mut().unwrap().variant = Some("v8".into());
        let d = s.list_add(&list, vec![b2]).unwrap();
        let idx = s.read_image_index(&d.digest).unwrap();
        assert_eq!(idx.manifests.len(), 2);
        assert_eq!(
            idx.manifests[1]
                .platform
                .as_ref()
                .unwrap()
                .variant
                .as_deref(),
            Some("v8")
        );
        s.list_remove(&list, &a.digest).unwrap();
        assert!(matches!(
            s.list_remove(&list, &a.digest),
            Err(ListError::NoSuchEntry { .. })
        ));
        let img = s
            .resolve_image_for(
                "localhost/list:v1",
                Some(&crate::image::Platform::parse("linux/arm64").unwrap()),
            )
            .unwrap();
        assert_eq!(img.manifest_desc.digest, b.digest);
        s.set_tag(&"single".parse().unwrap(), &a).unwrap();
        assert!(matches!(
            s.list_add(&"single".parse().unwrap(), vec![]),
            Err(ListError::NotAList(_))
        ));
    }
}
