//! Registry configuration: containers-registries.conf(5), version 2 (TOML).
//!
//! The same file podman, buildah and skopeo read, so a CI runner's pull-through mirror or an
//! insecure in-house registry works for boxkit unchanged.
//!
//! The main file is `$CONTAINERS_REGISTRIES_CONF` when set, else
//! `~/.config/containers/registries.conf`, else `/etc/containers/registries.conf` (the first
//! that exists; no merging between them, as podman). Drop-ins follow, as
//! containers-registries.conf.d(5) says: `*.conf` files of `/etc/containers/registries.conf.d`
//! and then of `~/.config/containers/registries.conf.d` (only the latter when the main file is
//! the user's), each directory in lexical order; a later file's `unqualified-search-registries`
//! replaces the earlier list, its `[[registry]]` replaces an entry with the same prefix and adds
//! the others, and its `[aliases]` are merged name by name. `$BOX_REGISTRIES_CONF` names one
//! file used alone, without drop-ins (boxkit's own override, hermetic for tests and CI).
//!
//! `[aliases]` map a short name (`"tool" = "quay.io/team/tool"`) to a fully qualified one; an
//! alias wins over the search list and over docker's docker.io default.
//!
//! A `[[registry]]` entry applies to every image name that equals its `prefix` (default: its
//! `location`) or continues it with `/`; `*.example.com` matches subdomains. The longest prefix
//! wins. Pulls try the entry's mirrors in order and then the location itself; a mirror that
//! fails falls back to the next endpoint.

use std::collections::BTreeMap;
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
    /// Short name → fully qualified name.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Where this configuration came from (for messages): the main file.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The drop-in files merged over the main file, in order.
    #[serde(skip)]
    pub drop_ins: Vec<PathBuf>,
}

/// One file as written: what it leaves out must not override what an earlier file set.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfFile {
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<RegistryEntry>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
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
    /// The main configuration file in effect, if any.
    pub fn find() -> Option<PathBuf> {
        Self::sources().0
    }

    /// The main file and the drop-in directories to read after it, in order.
    fn sources() -> (Option<PathBuf>, Vec<PathBuf>) {
        let env = |v: &str| {
            std::env::var_os(v)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        if let Some(p) = env("BOX_REGISTRIES_CONF") {
            return (Some(p), Vec::new());
        }
        let config_home = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|h| h.join(".config")));
        let user_file = config_home
            .as_ref()
            .map(|c| c.join("containers/registries.conf"));
        let user_dir = config_home.map(|c| c.join("containers/registries.conf.d"));
        let system_dir = PathBuf::from("/etc/containers/registries.conf.d");
        if let Some(p) = env("CONTAINERS_REGISTRIES_CONF") {
            return (
                Some(p),
                [Some(system_dir), user_dir].into_iter().flatten().collect(),
            );
        }
        if let Some(u) = user_file.filter(|p| p.is_file()) {
            return (Some(u), user_dir.into_iter().collect());
        }
        let system = PathBuf::from("/etc/containers/registries.conf");
        let dirs = [Some(system_dir), user_dir].into_iter().flatten().collect();
        (system.is_file().then_some(system), dirs)
    }

    /// Load the configuration in effect: the main file (none: empty) and its drop-ins.
    pub fn load() -> Result<RegistriesConf> {
        let (main, dirs) = Self::sources();
        let mut conf = match &main {
            Some(p) => Self::load_from(p)?,
            None => RegistriesConf::default(),
        };
        for dir in dirs {
            for file in drop_in_files(&dir)? {
                let text = read(&file)?;
                let layer = parse_file(&text).map_err(|why| RegistryError::Config {
                    path: file.clone(),
                    why,
                })?;
                conf.merge(layer);
                conf.drop_ins.push(file);
            }
        }
        Ok(conf)
    }

    pub fn load_from(path: &Path) -> Result<RegistriesConf> {
        let text = read(path)?;
        let mut conf = Self::parse(&text).map_err(|why| RegistryError::Config {
            path: path.to_path_buf(),
            why,
        })?;
        conf.path = Some(path.to_path_buf());
        Ok(conf)
    }

    pub fn parse(text: &str) -> std::result::Result<RegistriesConf, String> {
        let mut conf = RegistriesConf::default();
        conf.merge(parse_file(text)?);
        Ok(conf)
    }

    /// Lay a later file over this configuration (containers-registries.conf.d(5) rules).
    fn merge(&mut self, f: ConfFile) {
        if let Some(search) = f.unqualified_search_registries {
            self.unqualified_search_registries = search;
        }
        for r in f.registry {
            let key = r.key().map(str::to_string);
            match self
                .registry
                .iter_mut()
                .find(|e| e.key().map(str::to_string) == key)
            {
                Some(e) => *e = r,
                None => self.registry.push(r),
            }
        }
        self.aliases.extend(f.aliases);
    }

    /// Where this configuration came from, for messages: the main file and any drop-ins.
    pub fn describe(&self) -> String {
        let mut files: Vec<String> = self.path.iter().map(|p| p.display().to_string()).collect();
        files.extend(self.drop_ins.iter().map(|p| p.display().to_string()));
        if files.is_empty() {
            "no registries.conf".into()
        } else {
            files.join(", ")
        }
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
        if !Reference::parse_is_qualified(name)
            && let Some(r) = self.alias(name)?
        {
            return Ok(vec![r]);
        }
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

impl RegistriesConf {
    /// What an `[aliases]` entry makes of a short name (its tag or digest carried over).
    pub fn alias(&self, name: &str) -> Result<Option<Reference>> {
        let (bare, suffix) = match name.find(['@', ':']) {
            Some(i) => name.split_at(i),
            None => (name, ""),
        };
        let Some(target) = self.aliases.get(bare) else {
            return Ok(None);
        };
        let target_has_tag =
            target.contains('@') || target.rsplit('/').next().is_some_and(|l| l.contains(':'));
        let full = if suffix.is_empty() || target_has_tag {
            target.clone()
        } else {
            format!("{target}{suffix}")
        };
        if !Reference::parse_is_qualified(&full) {
            return Err(RegistryError::Config {
                path: self.path.clone().unwrap_or_default(),
                why: format!("alias {bare:?} = {target:?} is not a fully qualified image name"),
            });
        }
        Ok(Some(full.parse()?))
    }
}

impl RegistryEntry {
    /// What identifies an entry when files are merged: its prefix (default: its location).
    fn key(&self) -> Option<&str> {
        self.prefix.as_deref().or(self.location.as_deref())
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| RegistryError::Config {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn parse_file(text: &str) -> std::result::Result<ConfFile, String> {
    let f: ConfFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if f.registry.iter().any(|r| r.key().is_none()) {
        return Err("a [[registry]] entry needs a prefix or a location".into());
    }
    Ok(f)
}

/// The `*.conf` files of a drop-in directory, in lexical order; none when it is missing.
fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(RegistryError::Config {
                path: dir.to_path_buf(),
                why: e.to_string(),
            });
        }
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
        .collect();
    out.sort();
    Ok(out)
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
    fn drop_ins_merge_in_lexical_order_and_later_wins() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(
            d.join("20-later.conf"),
            "unqualified-search-registries = [\"b.example\"]\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"second.example\"\n[aliases]\n\"tool\" = \"b.example/tool\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-first.conf"),
            "[aliases]\n\"tool\" = \"a.example/tool\"\n\"other\" = \"a.example/other\"\n",
        )
        .unwrap();
        std::fs::write(d.join("ignored.txt"), "not toml [").unwrap();
        let files = drop_in_files(d).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap()).collect();
        assert_eq!(names, ["10-first.conf", "20-later.conf"]);
        let mut c = RegistriesConf::parse(MIRROR).unwrap();
        for f in &files {
            c.merge(parse_file(&std::fs::read_to_string(f).unwrap()).unwrap());
        }
        assert_eq!(c.unqualified_search_registries, ["b.example"]);
        assert_eq!(c.aliases["tool"], "b.example/tool");
        assert_eq!(c.aliases["other"], "a.example/other");
        // The docker.io entry was replaced (one mirror now), the others kept.
        let eps = c.pull_endpoints(&"busybox".parse().unwrap()).unwrap();
        let hosts: Vec<_> = eps.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["second.example", "docker.io"]);
        assert!(c.entry_for("evil.example.com/x").unwrap().blocked);
        assert!(drop_in_files(&d.join("missing")).unwrap().is_empty());
    }

    #[test]
    fn aliases_win_over_the_search_list_and_keep_the_tag() {
        let c = RegistriesConf::parse(
            "unqualified-search-registries = [\"docker.io\"]\n[aliases]\n\"tool\" = \"127.0.0.1:5000/team/tool\"\n\"pinned\" = \"quay.io/x/y:1\"\n\"bad\" = \"short\"\n",
        )
        .unwrap();
        let one = |n: &str| c.candidates(n).unwrap()[0].to_string();
        assert_eq!(one("tool"), "127.0.0.1:5000/team/tool:latest");
        assert_eq!(one("tool:2"), "127.0.0.1:5000/team/tool:2");
        assert_eq!(one("pinned"), "quay.io/x/y:1");
        assert_eq!(c.candidates("tool").unwrap().len(), 1);
        assert_eq!(one("busybox"), "docker.io/library/busybox:latest");
        // A qualified name is never aliased.
        assert_eq!(
            one("docker.io/library/tool"),
            "docker.io/library/tool:latest"
        );
        assert!(c.candidates("bad").is_err());
    }

    #[test]
    fn bad_toml_is_an_error_not_a_panic() {
        assert!(RegistriesConf::parse("[[registry]\n").is_err());
        assert!(RegistriesConf::parse("[[registry]]\ninsecure = true\n").is_err());
    }
}
