//! The image config: the OCI image config plus the fields Docker keeps beside it
//! (`Healthcheck`, `OnBuild`, `Shell`).
//!
//! The OCI spec has no slot for Docker's fields, and Buildah drops them when it writes OCI
//! format; we keep them in the config as Docker does, because podman and docker read them back
//! from either format and dropping them silently would change what the image does. Fields
//! boxkit does not know (`os.version`, `container_config`, `ArgsEscaped`, a build cache's
//! records, ...) are kept in `extra` at both levels, so a base image's config passes through a
//! build untouched. A `null` where a list, map or string belongs reads as empty, as Go's
//! encoding/json (and so Docker) reads it: older Docker wrote `"Volumes": null` and the like.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Platform, null_default};
use crate::digest::Digest;

/// Docker's default SHELL.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: RootFs,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ImageConfig {
    /// The uncompressed layer digests, bottom first; entries that are not a digest are
    /// skipped (a caller that needs one per layer compares the counts).
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.rootfs
            .diff_ids
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect()
    }

    /// The platform the image is for, if the config names one.
    pub fn platform(&self) -> Option<Platform> {
        Platform {
            os: self.os.clone(),
            arch: self.architecture.clone(),
            variant: self.variant.clone(),
            extra: BTreeMap::new(),
        }
        .known()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type", default = "layers", deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<String>,
}

fn layers() -> String {
    "layers".into()
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: layers(),
            diff_ids: vec![],
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "null_default"
    )]
    pub empty_layer: bool,
}

/// Docker's `Healthcheck`; durations in nanoseconds, zero meaning "inherit".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub test: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_default"
    )]
    pub interval: u64,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_default"
    )]
    pub timeout: u64,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_default"
    )]
    pub start_period: u64,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_default"
    )]
    pub start_interval: u64,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_default"
    )]
    pub retries: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The `config` object: what a container made from the image starts with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub user: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub volumes: BTreeMap<String, serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub working_dir: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ContainerConfig {
    /// The value of an environment variable.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// Set (replace or append) an environment variable, keeping the order Docker keeps.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = entry,
            None => self.env.push(entry),
        }
    }

    /// SHELL, or Docker's default.
    pub fn shell(&self) -> Vec<String> {
        self.shell.clone().unwrap_or_else(default_shell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_kept_at_both_levels() {
        let base = serde_json::json!({"architecture": "amd64", "os": "linux", "os.version": "x",
            "config": {"Env": ["A=1"], "Domainname": "d"}, "rootfs": {"type": "layers", "diff_ids": []}});
        let cfg: ImageConfig = serde_json::from_value(base.clone()).unwrap();
        let out = serde_json::to_value(&cfg).unwrap();
        assert_eq!(out["os.version"], "x");
        assert_eq!(out["config"]["Domainname"], "d");
    }

    #[test]
    fn null_reads_as_empty_as_go_reads_it() {
        let old_docker = r#"{"architecture":"amd64","os":"linux","config":{"User":"","Env":null,
            "Cmd":["sh"],"Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,
            "Labels":null,"ExposedPorts":null},"rootfs":{"type":"layers","diff_ids":null},
            "history":null}"#;
        let cfg: ImageConfig = serde_json::from_str(old_docker).unwrap();
        assert_eq!(cfg.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert!(cfg.config.env.is_empty() && cfg.config.labels.is_empty());
        assert!(cfg.diff_ids().is_empty() && cfg.history.is_empty());
        assert_eq!(cfg.platform().unwrap().to_string(), "linux/amd64");
    }

    #[test]
    fn a_config_boxkit_writes_reads_back_to_the_same_bytes() {
        let mut cfg = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        cfg.config.env_set("PATH", "/bin");
        cfg.config.healthcheck = Some(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        });
        cfg.config.shell = Some(vec!["/bin/bash".into(), "-c".into()]);
        cfg.rootfs.diff_ids.push(Digest::of_bytes(b"x").to_string());
        cfg.history.push(History {
            created_by: Some("RUN x".into()),
            empty_layer: true,
            ..Default::default()
        });
        cfg.extra
            .insert("io.boxkit.build-cache.v1".into(), serde_json::json!({}));
        let bytes = serde_json::to_vec(&cfg).unwrap();
        let back: ImageConfig = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(serde_json::to_vec(&back).unwrap(), bytes);
        assert_eq!(back.diff_ids(), [Digest::of_bytes(b"x")]);
    }
}
