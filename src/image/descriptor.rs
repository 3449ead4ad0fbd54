//! The OCI content descriptor: what a manifest, an index and `index.json` point at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Platform;
use crate::digest::Digest;

/// An OCI content descriptor. Fields boxkit does not use (`urls`, `artifactType`, `data`, ...)
/// are kept in `extra`, so an `index.json` entry another tool wrote survives our rewrites.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3,"platform":{"architecture":"arm","os":"linux","variant":"v7"},"annotations":{"a":"b"},"artifactType":"application/x","urls":["https://example.com/x"]}"#;
        let d: Descriptor = serde_json::from_str(text).unwrap();
        assert_eq!(d.platform.as_ref().unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(d.extra["artifactType"], "application/x");
        assert_eq!(serde_json::to_string(&d).unwrap(), text);
    }
}
