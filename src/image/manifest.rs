//! Image manifests and image indexes (OCI, and Docker schema 2 which has the same shape).
//!
//! Manifests are stored as the bytes that arrived and are parsed only to be read; what boxkit
//! writes itself (a build's manifest, `index.json`) is serialised from these types. Fields
//! boxkit does not use (`subject`, `artifactType`, ...) are kept in `extra`, so a manifest or
//! index read and written back keeps them (with the keys inside them sorted, which is why a
//! manifest whose digest matters is never re-serialised).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Descriptor;

/// An image manifest (OCI or Docker schema2: the same shape).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image index, a Docker manifest list, or an OCI layout's `index.json`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Entries an image index may have. Docker Hub's largest real lists have a few dozen (one per
/// platform plus attestations); a list of thousands is hostile, and every entry costs a
/// manifest read when resolving, so it is refused before anything is stored.
pub const MAX_INDEX_ENTRIES: usize = 1024;

impl Index {
    /// Check what boxkit relies on before storing or resolving an index: a bounded number of
    /// entries, none of them an index. An entry that is itself an index (nesting, which could
    /// loop back to its parent) is refused: docker, podman and registries do not produce them
    /// for images, and following them would need a cycle check at every resolution. Entries
    /// of other types (artifacts) are kept but never picked as a platform's image.
    pub fn check(&self) -> Result<(), String> {
        if self.manifests.len() > MAX_INDEX_ENTRIES {
            return Err(format!(
                "it has {} entries, over the limit of {MAX_INDEX_ENTRIES}",
                self.manifests.len()
            ));
        }
        for (i, d) in self.manifests.iter().enumerate() {
            if super::media::is_index(&d.media_type) {
                return Err(format!(
                    "entry {i} ({}) is itself an index ({}); nested indexes are not supported",
                    d.digest, d.media_type
                ));
            }
        }
        Ok(())
    }

    /// Each entry's platform (None where it names none, or is not an image manifest).
    pub fn platforms(&self) -> Vec<Option<super::Platform>> {
        self.manifests
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .and_then(super::Platform::known)
                    .filter(|_| super::media::is_manifest(&d.media_type))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_nesting_size_and_strange_entries() {
        let d =
            |mt: &str| crate::image::Descriptor::new(mt, crate::digest::Digest::of_bytes(b"x"), 1);
        let mut idx = Index {
            schema_version: 2,
            media_type: Some(crate::image::media::OCI_INDEX.into()),
            manifests: vec![d(crate::image::media::OCI_MANIFEST)],
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        };
        assert!(idx.check().is_ok());
        idx.manifests
            .push(d(crate::image::media::DOCKER_MANIFEST_LIST));
        assert!(idx.check().unwrap_err().contains("nested"));
        idx.manifests = vec![d(crate::image::media::OCI_MANIFEST); MAX_INDEX_ENTRIES + 1];
        assert!(idx.check().unwrap_err().contains("entries"));
        // An artifact entry is kept, but names no platform.
        let mut art = d("application/vnd.example.artifact+json");
        art.platform = Some(crate::image::Platform::parse("linux/amd64").unwrap());
        idx.manifests = vec![art];
        assert!(idx.check().is_ok());
        assert_eq!(idx.platforms(), vec![None]);
    }

    #[test]
    fn a_manifest_read_and_written_back_is_byte_identical() {
        // Compact, in the field order boxkit writes, with fields it does not know (whose own
        // keys are sorted: serde_json's maps sort them).
        let text = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3},"layers":[],"annotations":{"k":"v"},"artifactType":"application/x","subject":{"digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","mediaType":"application/vnd.oci.image.manifest.v1+json","size":3}}"#;
        let m: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), text);
        let idx = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"a":"b"},"x-extension":1}"#;
        let i: Index = serde_json::from_str(idx).unwrap();
        assert_eq!(serde_json::to_string(&i).unwrap(), idx);
    }
}
