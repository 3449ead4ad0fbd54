//! Registry configuration: containers-registries.conf(5), version 2 (TOML).
//!
//! The same file podman, buildah and skopeo read, so a CI runner's pull-through mirror or an
//! insecure in-house registry works for boxkit unchanged. Looked up in `$BOX_REGISTRIES_CONF`,
//! then `~/.config/containers/registries.conf`, then `/etc/containers/registries.conf`; the
//! first that exists wins (no merging, as podman does when a user file exists).
//!
//! A `[[registry]]` entry applies to every image name that equals its `prefix` (default: its
//! `location`) or continues it with `/`; `*.example.com` matches subdomains. The longest prefix
//! wins. Pulls try the entry's mirrors in order and then the location itself; a mirror that
//! fails falls back to the next endpoint.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{RegistryError, Result};
use crate::image::Reference;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistriesConf {
    #[serde(default)]
    pub unqualified_search_registries: Vec<String>,
    #[serde(default)]
    pub registry: Vec<RegistryEntry>,
    /// Where this configuration came from (for messages).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror_by_digest_only: bool,
    #[serde(default)]
    pub pull_from_mirror: Option<String>,
    #[serde(default)]
    pub mirror: Vec<MirrorEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MirrorEntry {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub pull_from_mirror: Option<String>,
}

/// One place an image can be fetched from: a host (with port) and the repository there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as configured (`docker.io` stays `docker.io`; see [`Endpoint::api_host`]).
    pub host: String,
    pub repository: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    pub mirror: bool,
}

impl Endpoint {
    /// The host that serves the API: Docker Hub's is `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        if self.host == crate::image::reference::DOCKER_HUB || self.host == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            &self.host
        }
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.api_host())
    }
}

impl RegistriesConf {
    /// The configuration file in effect, if any.
    pub fn find() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("BOX_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let mut candidates = Vec::new();
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(c) = config_home {
            candidates.push(c.join("containers/registries.conf"));
        }
        candidates.push(PathBuf::from("/etc/containers/registries.conf"));
        candidates.into_iter().find(|p| p.is_file())
    }

    /// Load the configuration in effect; an empty one when no file exists.
    pub fn load() -> Result<RegistriesConf> {
        match Self::find() {
            Some(p) => Self::load_from(&p),
            None => Ok(RegistriesConf::default()),
        }
    }

    pub fn load_from(path: &Path) -> Result<RegistriesConf> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Config {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        let mut conf = Self::parse(&text).map_err(|why| RegistryError::Config {
            path: path.to_path_buf(),
            why,
        })?;
        conf.path = Some(path.to_path_buf());
        Ok(conf)
    }

    pub fn parse(text: &str) -> std::result::Result<RegistriesConf, String> {
        let conf: RegistriesConf = toml::from_str(text).map_err(|e| e.to_string())?;
        for r in &conf.registry {
            if r.prefix.is_none() && r.location.is_none() {
                return Err("a [[registry]] entry needs a prefix or a location".into());
            }
        }
        Ok(conf)
    }

    /// The entry for `name` (`host/repo`), by longest matching prefix.
    pub fn entry_for(&self, name: &str) -> Option<&RegistryEntry> {
        self.registry
            .iter()
            .filter_map(|r| {
                let prefix = r.prefix.as_deref().or(r.location.as_deref())?;
                prefix_matches(prefix, name).then_some((prefix.len(), r))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r)
    }

    /// Whether `host` is configured insecure (plain HTTP), looking at entries and mirrors.
    pub fn is_insecure_host(&self, host: &str) -> bool {
        if let Some(e) = self.entry_for(host) {
            return e.insecure;
        }
        self.registry
            .iter()
            .flat_map(|r| &r.mirror)
            .any(|m| m.insecure && split_host(&m.location).0 == host)
    }

    /// Where to pull `r` from, in order: mirrors first, then the location itself.
    pub fn pull_endpoints(&self, r: &Reference) -> Result<Vec<Endpoint>> {
        let name = r.name();
        let Some(entry) = self.entry_for(&name) else {
            return Ok(vec![Endpoint {
                host: r.registry().to_string(),
                repository: r.repository().to_string(),
                insecure: self.is_insecure_host(r.registry()),
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(RegistryError::Blocked {
                name,
                conf: self.path.clone(),
            });
        }
        let prefix = entry
            .prefix
            .as_deref()
            .or(entry.location.as_deref())
            .unwrap_or_default();
        let rest = rewrite_rest(prefix, &name);
        let by_digest = r.digest().is_some();
        let mut out = Vec::new();
        for m in &entry.mirror {
            let policy = m
                .pull_from_mirror
                .as_deref()
                .or(entry.pull_from_mirror.as_deref())
                .unwrap_or(if entry.mirror_by_digest_only {
                    "digest-only"
                } else {
                    "all"
                });
            let allowed = match policy {
                "digest-only" => by_digest,
                "tag-only" => !by_digest,
                _ => true,
            };
            if allowed {
                out.push(endpoint(&m.location, &rest, m.insecure, true));
            }
        }
        let location = if prefix.starts_with("*.") {
            r.registry()
        } else {
            entry.location.as_deref().unwrap_or(prefix)
        };
        out.push(endpoint(location, &rest, entry.insecure, false));
        Ok(out)
    }

    /// Where to push `r`: the location only (mirrors are for pulling), as podman does.
    pub fn push_endpoint(&self, r: &Reference) -> Result<Endpoint> {
        let eps = self.pull_endpoints(&r.with_tag(r.tag().unwrap_or("latest")))?;
        Ok(eps.into_iter().last().expect("the location is always last"))
    }

    /// The names a user's short name may mean: each unqualified-search registry in order, or
    /// Docker Hub when none is configured (docker's rule). A qualified name means itself.
    pub fn candidates(&self, name: &str) -> Result<Vec<Reference>> {
        let parsed: Reference = name.parse()?;
        if Reference::parse_is_qualified(name) || self.unqualified_search_registries.is_empty() {
            return Ok(vec![parsed]);
        }
        let mut out = Vec::new();
        for reg in &self.unqualified_search_registries {
            let r = if reg == crate::image::reference::DOCKER_HUB {
                parsed.clone()
            } else {
                format!("{reg}/{name}").parse()?
            };
            if !out.contains(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = split_host(name).0;
        return host.ends_with(&format!(".{domain}"));
    }
    name == prefix
        || (name.starts_with(prefix)
            && matches!(name.as_bytes().get(prefix.len()), Some(b'/' | b':' | b'@')))
}

/// What is left of `name` after the prefix (the part a location or mirror is prefixed to).
fn rewrite_rest(prefix: &str, name: &str) -> String {
    if prefix.starts_with("*.") {
        // A wildcard entry cannot rewrite; its location (if any) must equal the host.
        return split_host(name)
            .1
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
    }
    name[prefix.len().min(name.len())..].to_string()
}

fn endpoint(location: &str, rest: &str, insecure: bool, mirror: bool) -> Endpoint {
    let full = format!("{location}{rest}");
    let (host, repo) = split_host(&full);
    Endpoint {
        host: host.to_string(),
        repository: repo.unwrap_or_default().trim_start_matches('/').to_string(),
        insecure,
        mirror,
    }
}

fn split_host(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIRROR: &str = r#"
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "127.0.0.1:5001"
insecure = true

[[registry.mirror]]
location = "mirror.example.com/hub"

[[registry]]
location = "127.0.0.1:5001"
insecure = true

[[registry]]
prefix = "evil.example.com"
blocked = true

[[registry]]
prefix = "quay.io/team"
location = "internal.example.com:8443/quay-team"
"#;

    #[test]
    fn docker_hub_names_go_to_mirrors_then_the_hub() {
        let c = RegistriesConf::parse(MIRROR).unwrap();
        let r: Reference = "busybox".parse().unwrap();
        let eps = c.pull_endpoints(&r).unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].host, "127.0.0.1:5001");
        assert_eq!(eps[0].repository, "library/busybox");
        assert!(eps[0].insecure && eps[0].mirror);
        assert_eq!(eps[0].base_url(), "http://127.0.0.1:5001");
        assert_eq!(eps[1].host, "mirror.example.com");
        assert_eq!(eps[1].repository, "hub/library/busybox");
        assert!(!eps[1].insecure);
        assert_eq!(eps[2].host, "docker.io");
        assert_eq!(eps[2].base_url(), "https://registry-1.docker.io");
        assert!(!eps[2].mirror);
    }

    #[test]
    fn locations_rewrite_the_prefix_and_blocked_is_refused() {
        let c = RegistriesConf::parse(MIRROR).unwrap();
        let r: Reference = "quay.io/team/app:1".parse().unwrap();
        let eps = c.pull_endpoints(&r).unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].host, "internal.example.com:8443");
        assert_eq!(eps[0].repository, "quay-team/app");
        // "quay.io/teamwork" is not under the prefix "quay.io/team".
        let other: Reference = "quay.io/teamwork/app".parse().unwrap();
        assert_eq!(c.pull_endpoints(&other).unwrap()[0].host, "quay.io");
        let blocked: Reference = "evil.example.com/x".parse().unwrap();
        let err = c.pull_endpoints(&blocked).unwrap_err();
        assert!(err.to_string().contains("blocked"), "{err}");
        let direct: Reference = "127.0.0.1:5001/x/y".parse().unwrap();
        assert!(c.pull_endpoints(&direct).unwrap()[0].insecure);
    }

    #[test]
    fn digest_only_mirrors_skip_tags() {
        let c = RegistriesConf::parse(
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"digest-only\"\n",
        )
        .unwrap();
        let tag: Reference = "busybox:1".parse().unwrap();
        assert_eq!(c.pull_endpoints(&tag).unwrap().len(), 1);
        let d = crate::digest::Digest::of_bytes(b"x");
        let pinned = tag.with_digest(d);
        assert_eq!(c.pull_endpoints(&pinned).unwrap()[0].host, "m.example");
    }

    #[test]
    fn short_names_use_the_search_list() {
        let c =
            RegistriesConf::parse("unqualified-search-registries = [\"quay.io\", \"docker.io\"]\n")
                .unwrap();
        let names: Vec<String> = c
            .candidates("busybox")
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            names,
            ["quay.io/busybox:latest", "docker.io/library/busybox:latest"]
        );
        assert_eq!(c.candidates("ghcr.io/x/y").unwrap().len(), 1);
        let empty = RegistriesConf::default();
        assert_eq!(
            empty.candidates("busybox").unwrap()[0].to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn bad_toml_is_an_error_not_a_panic() {
        assert!(RegistriesConf::parse("[[registry]\n").is_err());
        assert!(RegistriesConf::parse("[[registry]]\ninsecure = true\n").is_err());
    }
}
